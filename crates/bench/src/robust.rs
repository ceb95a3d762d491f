//! Robustness: sessions lost, and what counts as lost.
//!
//! A session is lost when its main exec's record has a fault or a non-zero
//! exit, or when its guest never drew ([`verdict`]). The rows: a resize the
//! moment the terminal goes raw (inside the crun window, [`crate::window`]),
//! back-to-back short sessions and neighbouring sessions
//! ([`crate::sessions`]), and here the tmux row: inside a real tmux, a resize
//! ~600 ms after launch, with the fake's opt-in shared-stdin abort switched
//! on (`FAKE_SMOLVM_SHARED_STDIN=tmux`: the seeds' first hypothesis, which
//! smolvm has no path for) — does any variant still share the pane as stdin?

use std::time::{Duration, Instant};

use e2e::Tmux;
use fake_smolvm::exec_log::{monotonic_ms, ExecRecord};
use serde::Serialize;

use crate::frames;
use crate::interactive::{HOST, OTHER};
use crate::lab::{main_exec_of, Lab, Variant};

/// Resize delay after launch in the tmux row.
pub const TMUX_RESIZE_MS: u64 = 600;

/// The switch the tmux row turns on in each session's environment.
pub const SHARED_STDIN: (&str, &str) = ("FAKE_SMOLVM_SHARED_STDIN", "tmux");

/// Sessions lost out of so many launches.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Robust {
    /// Launches made.
    pub launches: usize,
    /// Sessions lost.
    pub lost: usize,
    /// Why each lost session was lost (`config-race`, `exit 137`, …).
    pub reasons: Vec<String>,
    /// Sessions whose guest ended at the host's final size (`None`: not
    /// checked by this row).
    pub final_size: Option<usize>,
}

impl Robust {
    /// Notes whether one session's guest ended at the final size.
    pub fn reached(&mut self, yes: bool) {
        *self.final_size.get_or_insert(0) += usize::from(yes);
    }

    /// Counts one session: lost when `verdict` says why.
    pub fn add(&mut self, verdict: Option<String>) {
        self.launches += 1;
        if let Some(reason) = verdict {
            self.lost += 1;
            self.reasons.push(reason);
        }
    }
}

/// Why a session was lost, or `None` if it was not: the main exec's record
/// has a fault or a non-zero exit, or the guest never drew.
pub fn verdict(main: Option<&ExecRecord>, drew: bool) -> Option<String> {
    match main {
        None => Some("no main exec recorded".into()),
        Some(r) => match (r.fault, r.exit_code) {
            (Some(f), _) => Some(
                serde_json::to_value(f)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("{f:?}")),
            ),
            (None, 0) if drew => None,
            (None, 0) => Some("guest never drew".into()),
            (None, code) => Some(format!("exit {code}")),
        },
    }
}

pub fn sleep_until(launch: Instant, after_ms: u64) {
    let due = launch + Duration::from_millis(after_ms);
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

/// Single-quotes `s` for `sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One launch of the tmux row.
pub fn tmux_launch(lab: &Lab, out: &mut Robust) {
    let record = lab.fresh_path("frames.jsonl");
    let log = lab
        .variant
        .is_wrapper()
        .then(|| lab.fresh_path("wrapper.log"));
    let argv = lab.argv(&lab.guest_tui(&record), log.as_deref());
    let mut words = vec!["exec".to_string(), "env".to_string()];
    words.extend(lab.env().iter().map(|(k, v)| sh_quote(&format!("{k}={v}"))));
    words.push(sh_quote(&format!("{}={}", SHARED_STDIN.0, SHARED_STDIN.1)));
    words.extend(argv.iter().map(|a| sh_quote(a)));
    let launch_ms = monotonic_ms();
    let started = Instant::now();
    let tmux = Tmux::start(HOST.0, HOST.1, &words.join(" "), &[]);
    let gone = |tmux: &Tmux| tmux.try_exit().is_some();
    let drew = wait_until(Duration::from_secs(5), || {
        !frames::read(&record).is_empty() || gone(&tmux)
    });
    let mut reached = false;
    if drew && !gone(&tmux) {
        sleep_until(started, TMUX_RESIZE_MS);
        let resized_ms = monotonic_ms();
        tmux.resize(OTHER.0, OTHER.1);
        let at_other = || frames::first_at(&frames::read(&record), OTHER, resized_ms).is_some();
        // smolvm alone never resizes the guest: no point waiting for it.
        let deadline = if lab.variant == Variant::Direct { 1 } else { 6 };
        wait_until(Duration::from_secs(deadline), || at_other() || gone(&tmux));
        reached = at_other();
        if !gone(&tmux) {
            tmux.send_keys("q");
        }
        wait_until(Duration::from_secs(5), || gone(&tmux));
    }
    drop(tmux);
    lab.quiesce();
    let drew = !frames::read(&record).is_empty();
    let records = lab.records_since(launch_ms);
    out.add(verdict(main_exec_of(&records, &record), drew));
    out.reached(reached);
}

/// Polls `cond` every 5 ms until it holds (true) or `deadline` passes (false).
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake_smolvm::exec_log::Fault;

    fn main_rec(exit_code: i32, fault: Option<Fault>) -> ExecRecord {
        ExecRecord {
            pid: 1,
            argv: vec!["guest-tui".into()],
            tty: true,
            interactive: true,
            stdin: "tty:/dev/pts/1".into(),
            bringup_start_ms: Some(1.0),
            bringup_end_ms: Some(2.0),
            end_ms: 3.0,
            exit_code,
            fault,
            ..ExecRecord::default()
        }
    }

    #[test]
    fn a_session_is_lost_to_a_fault_an_error_exit_or_no_frame() {
        assert_eq!(verdict(Some(&main_rec(0, None)), true), None);
        assert_eq!(
            verdict(Some(&main_rec(1, Some(Fault::ConfigRace))), false).as_deref(),
            Some("config-race")
        );
        assert_eq!(
            verdict(Some(&main_rec(137, Some(Fault::SharedStdin))), true).as_deref(),
            Some("shared-stdin")
        );
        assert_eq!(
            verdict(Some(&main_rec(1, None)), true).as_deref(),
            Some("exit 1")
        );
        assert_eq!(
            verdict(Some(&main_rec(0, None)), false).as_deref(),
            Some("guest never drew")
        );
        assert!(verdict(None, true).is_some());
    }

    #[test]
    fn sh_quote_survives_quotes() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
