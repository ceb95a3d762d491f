//! Waiting on a condition with a deadline, never a fixed sleep.

use std::time::{Duration, Instant};

/// How often a condition that cannot be waited on directly is re-checked.
pub const POLL: Duration = Duration::from_millis(10);

/// Waits until `cond` holds (checked every [`POLL`]); panics with
/// `description` and `explain()` (e.g. a log's contents) after `deadline`.
/// For conditions outside a screen: a log line, a file, a process.
pub fn wait_for(
    description: &str,
    deadline: Duration,
    mut cond: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    if poll_until(deadline, || cond().then_some(())).is_none() {
        panic!(
            "e2e: gave up after {deadline:?} waiting for: {description}\n{}",
            explain()
        );
    }
}

/// Checks `ready` until it returns `Some` or `deadline` has passed.
pub fn poll_until<T>(deadline: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(POLL);
    }
}
