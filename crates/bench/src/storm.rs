//! The resize storm: many resizes paced over one second on a fresh session.

use std::time::{Duration, Instant};

use fake_smolvm::exec_log::monotonic_ms;
use serde::Serialize;

use crate::interactive::{quit, wait_frame, HOST};
use crate::lab::{any_overlap, arrival_ms, Lab};
use e2e::execs::{container_side_channels, vm_level};

/// The size the storm ends on; none of the others is this.
pub const FINAL: (u16, u16) = (120, 40);

/// One resize every this long: 100 resizes in one second.
const STEP: Duration = Duration::from_millis(10);

/// What the storm cost.
#[derive(Debug, Clone, Serialize)]
pub struct Storm {
    /// Resizes made.
    pub resizes: usize,
    /// First → last resize, ms (should be about one second).
    pub span_ms: f64,
    /// Side-channel execs started from the first resize on.
    pub execs: usize,
    /// Side-channel execs of the whole session (a channel opened at start-up
    /// included).
    pub execs_session: usize,
    /// The agent transport's `vm_exec`s (VM level, harmless to any bring-up;
    /// not side channels): probes and pushes of the whole session.
    pub vm_execs: usize,
    /// Whether any two side-channel execs (or two `vm_exec`s) of the session
    /// were alive at once.
    pub overlapped: bool,
    /// Last resize → first guest frame at the final size, ms (`None`: never,
    /// within the deadline).
    pub settle_ms: Option<f64>,
}

/// The size of resize `i` of `n`: a walk that never repeats the previous
/// size and reaches [`FINAL`] only at the end.
pub fn size_at(i: usize, n: usize) -> (u16, u16) {
    if i + 1 == n {
        FINAL
    } else {
        (60 + (i % 40) as u16, 20 + (i % 10) as u16)
    }
}

/// Runs the storm on a fresh session of `lab`'s variant.
pub fn run(lab: &Lab, resizes: usize) -> Option<Storm> {
    let record = lab.fresh_path("frames.jsonl");
    let mut launch = lab.launch(HOST, &lab.guest_tui(&record));
    let term = &mut launch.term;
    wait_frame(
        &record,
        HOST,
        launch.launch_ms,
        Duration::from_secs(10),
        term,
    )?;
    let storm_ms = monotonic_ms();
    let start = Instant::now();
    let mut last_ms = storm_ms;
    for i in 0..resizes {
        let due = start + STEP * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let size = size_at(i, resizes);
        last_ms = monotonic_ms();
        term.resize(size.0, size.1);
    }
    let settled = wait_frame(&record, FINAL, last_ms, Duration::from_secs(10), term);
    quit(term, Duration::from_secs(10));
    let launch_ms = launch.launch_ms;
    drop(launch);
    lab.quiesce();
    let records = lab.records_since(launch_ms);
    // Side channels are execs into the machine (containers); the agent
    // transport's VM-level `vm_exec`s are counted apart.
    let sides = container_side_channels(&records);
    let vm = vm_level(&records);
    Some(Storm {
        resizes,
        span_ms: last_ms - storm_ms,
        execs: sides.iter().filter(|r| arrival_ms(r) >= storm_ms).count(),
        execs_session: sides.len(),
        vm_execs: vm.len(),
        overlapped: any_overlap(&sides) || any_overlap(&vm),
        settle_ms: settled.map(|(f, _)| f.ms - last_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_sizes_change_every_step_and_end_on_the_final_size() {
        let n = 100;
        let sizes: Vec<_> = (0..n).map(|i| size_at(i, n)).collect();
        assert!(sizes.windows(2).all(|w| w[0] != w[1]));
        assert_eq!(sizes[n - 1], FINAL);
        assert!(!sizes[..n - 1].contains(&FINAL));
        assert!(!sizes.contains(&HOST), "the storm starts with a change");
    }
}
