//! Waiting on a condition with a deadline, never a fixed sleep; a wait that
//! gives up says what it saw.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often a condition that cannot be waited on directly is re-checked.
pub const POLL: Duration = Duration::from_millis(10);

/// Waits until `cond` holds (checked every [`POLL`]); panics with
/// `description` and `explain()` (what was seen: a log's contents, the
/// processes left) after `deadline`. For conditions outside a screen: a log
/// line, a file, a process.
#[track_caller]
pub fn wait_for(
    description: &str,
    deadline: Duration,
    mut cond: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    if poll_until(deadline, || cond().then_some(())).is_none() {
        panic!(
            "gave up after {deadline:?} waiting for: {description}\n{}",
            explain()
        );
    }
}

/// Checks `ready` every [`POLL`] until it returns `Some` or `deadline` has
/// passed (it is checked once more at the deadline).
pub fn poll_until<T>(deadline: Duration, ready: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(POLL, deadline, ready)
}

/// [`poll_until`] with its own interval: 1 ms for a test that starts its
/// next step from the moment a condition holds.
pub fn poll_every<T>(
    every: Duration,
    deadline: Duration,
    mut ready: impl FnMut() -> Option<T>,
) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Waits for `child` to exit and reaps it; `None` if it is still running at
/// `deadline` (the caller kills it and says what it saw).
pub fn child_exit(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    poll_until(deadline, || child.try_wait().ok().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_until_returns_the_first_value_and_none_at_the_deadline() {
        let mut n = 0;
        assert_eq!(
            poll_until(Duration::from_secs(5), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        let start = Instant::now();
        assert_eq!(poll_until(Duration::from_millis(50), || None::<()>), None);
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn wait_for_says_what_it_waited_for_and_what_it_saw() {
        let err = std::panic::catch_unwind(|| {
            wait_for(
                "the moon",
                Duration::from_millis(20),
                || false,
                || "saw: clouds".into(),
            )
        })
        .unwrap_err();
        let message = err.downcast_ref::<String>().unwrap();
        assert_eq!(
            message,
            "gave up after 20ms waiting for: the moon\nsaw: clouds"
        );
        wait_for("now", Duration::ZERO, || true, || unreachable!());
    }

    #[test]
    fn child_exit_reaps_or_gives_up() {
        let mut quick = std::process::Command::new("true").spawn().unwrap();
        let status = child_exit(&mut quick, Duration::from_secs(10)).unwrap();
        assert!(status.success());
        let mut slow = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(child_exit(&mut slow, Duration::from_millis(30)).is_none());
        slow.kill().unwrap();
        assert!(child_exit(&mut slow, Duration::from_secs(10)).is_some());
    }
}
