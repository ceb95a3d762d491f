//! Rows of many sessions on one machine: back-to-back short sessions (each
//! starts as soon as the previous one has ended, so it meets whatever the
//! previous one left running in the VM), and neighbours (sessions launched
//! 100 ms apart, so their bring-ups and crun windows overlap unless
//! something keeps them apart).

use std::time::{Duration, Instant};

use e2e::Term;
use fake_smolvm::exec_log::{monotonic_ms, ExecRecord};

use crate::frames;
use crate::interactive::{quit, HOST, OTHER};
use crate::lab::{arrival_ms, main_exec_of, Lab, Launch, Variant};
use crate::robust::{verdict, wait_until, Robust};

/// Launch spacing of the neighbours.
pub const NEIGHBOUR_GAP: Duration = Duration::from_millis(100);

/// `n` sessions of `machine exec -t -- true`, each launched the moment the
/// previous one has ended. Lost: the session's own exit status is not 0, or
/// its main exec (the i-th `-t` record, in start order) faulted, exited
/// non-zero or is missing.
pub fn short(lab: &Lab, n: usize) -> Robust {
    let since = monotonic_ms();
    let guest = vec!["true".to_string()];
    let mut exits = Vec::with_capacity(n);
    for _ in 0..n {
        let mut launch = lab.launch(HOST, &guest);
        let end = Instant::now() + Duration::from_secs(15);
        let exit = loop {
            if let Some(exit) = launch.term.try_exit() {
                break exit.code();
            }
            if Instant::now() >= end {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        exits.push(exit);
    }
    lab.quiesce();
    let mut mains: Vec<ExecRecord> = lab
        .records_since(since)
        .into_iter()
        .filter(|r| r.tty)
        .collect();
    mains.sort_by(|a, b| arrival_ms(a).total_cmp(&arrival_ms(b)));
    let mut out = Robust::default();
    for (i, exit) in exits.into_iter().enumerate() {
        out.add(short_verdict(exit, mains.get(i)));
    }
    out
}

/// Why a short session was lost, if it was: its exit status first, then its
/// main exec's record (`true` draws nothing, so no frame is expected).
pub fn short_verdict(exit: Option<i32>, main: Option<&ExecRecord>) -> Option<String> {
    match exit {
        None => Some("session did not end (or ended by a signal)".into()),
        Some(0) => verdict(main, true),
        Some(code) => Some(verdict(main, true).unwrap_or(format!("session exit {code}"))),
    }
}

/// One round of `n` guest-tui sessions on `lab`'s machine, launched
/// [`NEIGHBOUR_GAP`] apart; each is resized once, as soon as its guest has
/// drawn; then they are quit newest first (the later sessions may have
/// joined the first one's container, whose processes end with it).
pub fn neighbours(lab: &Lab, n: usize, out: &mut Robust) {
    let since = monotonic_ms();
    let start = Instant::now();
    let mut sessions: Vec<(std::path::PathBuf, Launch)> = Vec::with_capacity(n);
    for i in 0..n {
        crate::robust::sleep_until(start, (NEIGHBOUR_GAP * i as u32).as_millis() as u64);
        let record = lab.fresh_path("frames.jsonl");
        let launch = lab.launch(HOST, &lab.guest_tui(&record));
        sessions.push((record, launch));
    }
    let mut resized = Vec::with_capacity(n);
    for (record, launch) in &mut sessions {
        let term = &mut launch.term;
        let drew = wait_until(Duration::from_secs(10), || {
            !frames::read(record).is_empty() || gone(term)
        });
        let at = monotonic_ms();
        if drew && !gone(term) {
            term.resize(OTHER.0, OTHER.1);
        }
        resized.push(at);
    }
    // Every guest at the new size, or the deadline (smolvm alone: never).
    let deadline = if lab.variant == Variant::Direct {
        1
    } else {
        15
    };
    let at_other = |i: usize, record: &std::path::Path| {
        frames::first_at(&frames::read(record), OTHER, resized[i]).is_some()
    };
    wait_until(Duration::from_secs(deadline), || {
        sessions
            .iter()
            .enumerate()
            .all(|(i, (r, _))| at_other(i, r))
    });
    let reached: Vec<bool> = sessions
        .iter()
        .enumerate()
        .map(|(i, (r, _))| at_other(i, r))
        .collect();
    for (_, launch) in sessions.iter_mut().rev() {
        quit(&mut launch.term, Duration::from_secs(5));
    }
    let records: Vec<_> = sessions.iter().map(|(r, _)| r.clone()).collect();
    drop(sessions);
    lab.quiesce();
    let execs = lab.records_since(since);
    for (record, reached) in records.iter().zip(reached) {
        let drew = !frames::read(record).is_empty();
        out.add(verdict(main_exec_of(&execs, record), drew));
        out.reached(reached);
    }
}

fn gone(term: &mut Term) -> bool {
    term.try_exit().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn main_rec(exit_code: i32) -> ExecRecord {
        ExecRecord {
            pid: 1,
            argv: vec!["true".into()],
            tty: true,
            interactive: true,
            exit_code,
            ..ExecRecord::default()
        }
    }

    #[test]
    fn a_short_session_is_lost_by_its_exit_or_its_record() {
        assert_eq!(short_verdict(Some(0), Some(&main_rec(0))), None);
        assert_eq!(
            short_verdict(Some(0), None).as_deref(),
            Some("no main exec recorded")
        );
        assert_eq!(
            short_verdict(Some(1), Some(&main_rec(1))).as_deref(),
            Some("exit 1")
        );
        assert_eq!(
            short_verdict(Some(2), Some(&main_rec(0))).as_deref(),
            Some("session exit 2")
        );
        assert!(short_verdict(None, Some(&main_rec(0))).is_some());
    }
}
