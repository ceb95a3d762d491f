//! Steps shared by the real-agent scenarios and their by-hand measurements
//! (`scenario_real_agent.rs`, `real_agent_measure.rs`).

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use e2e::place::{Place, Screen};
use e2e::wait::{poll_until, wait_for};
use e2e::{guest, Exit, Machine, Term};

/// How long any one step may take on the real agent.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The wrapper's decision log for one session.
pub fn events(log: &Path) -> Vec<pty_resize::log::Record> {
    Machine::wrapper_events(log)
}

/// The decision log's text (empty if none yet).
pub fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits (checking every millisecond) until the client has put `term` in
/// raw mode: the moment smolvm got `started`.
pub fn wait_raw(term: &Term) {
    let seen = testkit::wait::poll_every(Duration::from_millis(1), DEADLINE, || {
        term.is_raw().then_some(())
    });
    assert!(
        seen.is_some(),
        "the client never put the terminal in raw mode within {DEADLINE:?}; screen:\n{}",
        term.contents()
    );
}

/// How a session fired at by a naive push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its container deleted as stale (`crun delete -f`): 128+9.
    Killed137,
    /// Exit 1 (a torn `config.json`, or crun's status file gone).
    Exit1,
    /// Its own command never ran: the session ended (`Some`) or hung
    /// (`None`) without it.
    NeverRan(Option<Exit>),
    /// Its own program ran and drew its screen.
    Survived,
    /// Its own command ran, then the session ended otherwise.
    Other(Exit),
}

impl Outcome {
    /// From how the session ended (`None`: still running at the deadline),
    /// whether its command started, and whether its program drew.
    pub fn classify(exit: Option<Exit>, ran: bool, drew: bool) -> Outcome {
        match (exit, ran, drew) {
            (_, _, true) => Outcome::Survived,
            (Some(Exit::Code(137)), _, _) => Outcome::Killed137,
            (Some(Exit::Code(1)), _, _) => Outcome::Exit1,
            (exit, false, _) => Outcome::NeverRan(exit),
            (Some(exit), true, _) => Outcome::Other(exit),
            (None, true, _) => Outcome::Other(Exit::Signal(0)),
        }
    }

    /// Whether the session was lost (137, 1, or its command never ran).
    pub fn lost(self) -> bool {
        matches!(
            self,
            Outcome::Killed137 | Outcome::Exit1 | Outcome::NeverRan(_)
        )
    }
}

/// What the session runs: a marker line, then guest-tui (so "its own
/// command ran" and "its program drew" can be told apart).
const RAN: &str = "own-command-ran";

/// A session through the real client alone (no wrapper) running `sh -c
/// 'echo own-command-ran; exec guest-tui --label LABEL'`, and a second
/// `machine exec` fired the instant the terminal goes raw. Returns how the
/// session ended; a surviving session is quit with `q`.
pub fn naive_push_at_raw(machine: &Machine, label: &str) -> Outcome {
    let script = format!("echo {RAN}; exec {} --label {label}", guest::tui_path());
    let args = ["-t", "--", "sh", "-c", script.as_str()];
    let mut term = Term::spawn(100, 30, machine.exec_command(&args));
    term.watch(machine);
    wait_raw(&term);
    let mut push = machine
        .exec_command(&["--", "sh", "-c", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("e2e: the naive push: {e}"));
    let drew_text = format!("guest-tui {label} size");
    let ended = poll_until(DEADLINE, || {
        let exit = term.try_exit();
        let drew = term.contents().contains(&drew_text);
        (exit.is_some() || drew).then_some(())
    });
    let drew = term.contents().contains(&drew_text);
    let ran = drew || contains(&term.raw(), RAN.as_bytes());
    let exit = term.try_exit();
    let outcome = Outcome::classify(exit, ran, drew);
    if ended.is_some() && exit.is_none() {
        term.send_keys("q");
        term.wait_exit(DEADLINE);
    }
    reap(&mut push);
    outcome
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Waits for a side client to end, killing it after [`DEADLINE`].
fn reap(child: &mut Child) {
    if testkit::wait::child_exit(child, DEADLINE).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One wrapped guest-tui session at 100x30 in `place`, resized to 90x25
/// the moment the wrapper logs smolvm's switch to raw mode (inside the crun
/// window), quit once the guest shows 90x25 (panics otherwise). Returns the
/// decision log's path.
pub fn resize_at_raw(machine: &Machine, place: Place, n: usize) -> PathBuf {
    resize_at_raw_with(machine, place, n, &[])
}

/// [`resize_at_raw`] with pty-resize options `opts` (e.g. `--mode channel`).
pub fn resize_at_raw_with(machine: &Machine, place: Place, n: usize, opts: &[&str]) -> PathBuf {
    let label = format!("raw-{n}");
    let log = machine.home().join(format!("raw-{n}.log"));
    let argv = machine.wrapped_argv_logging_to(&log, opts, &guest::tui_exec_args(&label, &[]));
    let mut screen = Screen::open(place, machine, 100, 30, &argv, Some(&log));
    wait_for(
        "the wrapper to see smolvm's switch to raw mode",
        DEADLINE,
        || events(&log).iter().any(|r| r.event == "started"),
        || log_text(&log),
    );
    screen.resize(90, 25);
    screen.wait_for_text(&guest::status_at(&label, 90, 25), DEADLINE);
    screen.send_keys("q");
    assert_eq!(screen.wait_exit(DEADLINE), Exit::Code(0), "{place:?}");
    log
}

/// One short wrapped session (guest-tui quits by itself after 300 ms) in
/// `place`; panics unless it exits 0 having drawn at the host's 100x30 (the
/// drawing checked in a PTY, whose bytes the harness keeps).
pub fn back_to_back_short_session(machine: &Machine, place: Place, n: usize) {
    let label = format!("short-{n}");
    let log = machine.home().join(format!("short-{n}.log"));
    let argv = machine.wrapped_argv_logging_to(
        &log,
        &[],
        &guest::tui_exec_args(&label, &["--exit-after", "300"]),
    );
    let mut screen = Screen::open(place, machine, 100, 30, &argv, Some(&log));
    assert_eq!(
        screen.wait_exit(DEADLINE),
        Exit::Code(0),
        "session {n} ({place:?})"
    );
    if let Screen::Pty(term) = &screen {
        let status = guest::status_at(&label, 100, 30);
        assert!(
            contains(&term.raw(), status.as_bytes()),
            "session {n} never drew at 100x30:\n{}",
            String::from_utf8_lossy(&term.raw())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_classified() {
        use Outcome::*;
        assert_eq!(
            Outcome::classify(Some(Exit::Code(137)), false, false),
            Killed137
        );
        assert_eq!(Outcome::classify(Some(Exit::Code(1)), false, false), Exit1);
        assert_eq!(
            Outcome::classify(Some(Exit::Code(0)), false, false),
            NeverRan(Some(Exit::Code(0)))
        );
        assert_eq!(Outcome::classify(None, false, false), NeverRan(None));
        assert_eq!(Outcome::classify(None, true, true), Survived);
        assert!(!Survived.lost() && Killed137.lost() && NeverRan(None).lost());
    }
}
