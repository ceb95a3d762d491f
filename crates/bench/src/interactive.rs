//! One long session per variant: time to the correct size, resize latency,
//! and the peak RSS of the process on the terminal.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::Term;
use fake_smolvm::exec_log::monotonic_ms;
use serde::Serialize;

use crate::frames::{self, Frame};
use crate::lab::{Lab, Variant};
use crate::procs;
use crate::stats::{self, Summary};

/// The host terminal's size at launch.
pub const HOST: (u16, u16) = (100, 30);

/// The other size the latency runs alternate with.
pub const OTHER: (u16, u16) = (90, 26);

/// How long the first correct frame may take (the naive bridge's is ~2 s).
const FIRST_DEADLINE: Duration = Duration::from_secs(10);

/// How long one resize may take to show before it counts as missed.
const RESIZE_DEADLINE: Duration = Duration::from_secs(5);

/// Pause after each observed redraw once the side channel that carried it
/// has ended (see [`settle`]).
const PACE: Duration = Duration::from_millis(20);

/// When the first frame at the host size came.
#[derive(Debug, Clone, Serialize)]
pub struct FirstFrame {
    /// Launch → that frame, ms.
    pub ms: f64,
    /// Frames drawn at a wrong size before it.
    pub wrong_frames: usize,
}

/// What the long session measured.
#[derive(Debug, Clone, Serialize)]
pub struct Interactive {
    /// `None`: no frame at the host size within the deadline.
    pub first_frame: Option<FirstFrame>,
    /// Frames drawn (all at a wrong size) when there was no correct one.
    pub frames_without_correct: usize,
    /// Host resize → guest frame at the new size, ms.
    pub latency: Option<Summary>,
    /// Every latency sample, ms.
    pub latency_samples: Vec<f64>,
    /// Resizes that never showed within the deadline.
    pub latency_missed: usize,
    /// Peak RSS (VmHWM) of the process on the terminal, KiB.
    pub rss_kib: Option<u64>,
    /// The terminal's guardian (pty-resize only): its peak RSS and what
    /// starting it cost the session.
    pub guardian: Option<GuardianCost>,
}

/// What the terminal's guardian costs (`pty-resize __guardian`).
#[derive(Debug, Clone, Serialize)]
pub struct GuardianCost {
    /// Its peak RSS (VmHWM), KiB, read while the session runs.
    pub rss_kib: Option<u64>,
    /// From the log event before it to its `guardian` event: spawning it
    /// and waiting until it has saved the terminal, ms.
    pub start_ms: f64,
}

/// The guardian's pid and start-up cost, from a wrapper log's records.
pub fn guardian_of(log: &[pty_resize::log::Record]) -> Option<(u32, f64)> {
    let at = log.iter().position(|r| r.event == "guardian")?;
    let pid = log[at].get("pid")?.parse().ok()?;
    let before = at.checked_sub(1).map_or(0.0, |i| log[i].t_ms);
    Some((pid, log[at].t_ms - before))
}

/// Polls the record file until a frame at `size` drawn at or after
/// `since_ms` appears; gives up at `deadline` or when the session has ended.
pub fn wait_frame(
    record: &Path,
    size: (u16, u16),
    since_ms: f64,
    deadline: Duration,
    term: &mut Term,
) -> Option<(Frame, usize)> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(hit) = frames::first_at(&frames::read(record), size, since_ms) {
            return Some(hit);
        }
        if Instant::now() >= end || term.try_exit().is_some() {
            // One last look: the frame may have landed just before the exit.
            return frames::first_at(&frames::read(record), size, since_ms);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Quits guest-tui with `q` and waits (bounded) for the session to end; the
/// caller's drop of the term kills whatever is left.
pub fn quit(term: &mut Term, deadline: Duration) {
    if term.try_exit().is_none() {
        term.send_keys("q");
    }
    let end = Instant::now() + deadline;
    while term.try_exit().is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the long session of `lab`'s variant with `resizes` timed resizes.
pub fn run(lab: &Lab, resizes: usize) -> Interactive {
    let record = lab.fresh_path("frames.jsonl");
    let mut launch = lab.launch(HOST, &lab.guest_tui(&record));
    let term = &mut launch.term;
    let first = if lab.variant == Variant::Direct {
        // smolvm alone never sizes the guest: wait for its first frame only.
        wait_any_frame(&record, term);
        None
    } else {
        wait_frame(&record, HOST, launch.launch_ms, FIRST_DEADLINE, term)
    };
    let first_frame = first.map(|(f, wrong)| FirstFrame {
        ms: f.ms - launch.launch_ms,
        wrong_frames: wrong,
    });
    let frames_without_correct = if first_frame.is_none() {
        frames::read(&record).len()
    } else {
        0
    };

    let mut samples = Vec::new();
    let mut missed = 0;
    if lab.variant != Variant::Direct && first_frame.is_some() {
        // Warm-up resize, not measured: the channel (if any) is open after it.
        let since = monotonic_ms();
        term.resize(OTHER.0, OTHER.1);
        let _ = wait_frame(&record, OTHER, since, RESIZE_DEADLINE, term);
        settle(lab);
        for i in 0..resizes {
            let size = if i % 2 == 0 { HOST } else { OTHER };
            let t0 = monotonic_ms();
            term.resize(size.0, size.1);
            match wait_frame(&record, size, t0, RESIZE_DEADLINE, term) {
                Some((f, _)) => samples.push(f.ms - t0),
                None => missed += 1,
            }
            settle(lab);
        }
    } else {
        // Still give the process a few resizes to handle before its RSS is read.
        for size in [OTHER, HOST, OTHER] {
            term.resize(size.0, size.1);
            std::thread::sleep(PACE);
        }
    }
    let rss_kib = procs::peak_rss_kib(term.pid());
    let guardian = Lab::wrapper_log(launch.log.as_deref())
        .and_then(|log| guardian_of(&log))
        .map(|(pid, start_ms)| GuardianCost {
            rss_kib: procs::peak_rss_kib(pid),
            start_ms,
        });
    quit(term, Duration::from_secs(5));
    drop(launch);
    lab.quiesce();
    Interactive {
        first_frame,
        frames_without_correct,
        latency: stats::summarize(&samples),
        latency_samples: samples,
        latency_missed: missed,
        rss_kib,
        guardian,
    }
}

/// Waits (at most 2 s) until the exec that carried the last resize has
/// ended, then [`PACE`]: the latency figure is that of one resize on an idle
/// session. Without this the naive bridge, which can drop a SIGWINCH that
/// arrives while its previous push runs, would lose more resizes here; the
/// storm shows that cost instead.
fn settle(lab: &Lab) {
    // The main exec, plus the persistent channel in channel mode.
    let idle = if lab.variant == Variant::Channel {
        2
    } else {
        1
    };
    let end = Instant::now() + Duration::from_secs(2);
    while procs::live_clients(lab.machine.name()) > idle && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(PACE);
}

fn wait_any_frame(record: &Path, term: &mut Term) {
    let end = Instant::now() + Duration::from_secs(5);
    while frames::read(record).is_empty() && Instant::now() < end && term.try_exit().is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guardian_cost_is_read_from_the_log() {
        let log: Vec<_> = "t_ms=0.1 event=open pid=1\nt_ms=2.5 event=version version=0.8.0\n\
                           t_ms=4.0 event=guardian pid=4242\nt_ms=4.2 event=lock for=main\n"
            .lines()
            .filter_map(pty_resize::log::parse_line)
            .collect();
        let (pid, ms) = guardian_of(&log).unwrap();
        assert_eq!(pid, 4242);
        assert!((ms - 1.5).abs() < 1e-9, "{ms}");
        let none: Vec<_> = "t_ms=4.0 event=guardian reason=x\n"
            .lines()
            .filter_map(pty_resize::log::parse_line)
            .collect();
        assert_eq!(guardian_of(&none), None);
    }
}
