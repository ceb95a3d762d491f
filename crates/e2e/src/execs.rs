//! Questions the scenarios ask of an `exec.log`: which record is the main
//! session, which are side-channels, and whether any of them collided.
//!
//! The main session is the one exec with `-t` (`tty: true`); every
//! side-channel a bridge starts (one exec per push, or the persistent
//! `-i` channel) has no TTY. Pure functions over parsed records.

use fake_smolvm::exec_log::{ExecRecord, Fault};

/// The one `-t` exec of the log; panics (showing the log) unless there is
/// exactly one.
pub fn main_exec(records: &[ExecRecord]) -> &ExecRecord {
    let mains: Vec<&ExecRecord> = records.iter().filter(|r| r.tty).collect();
    assert_eq!(
        mains.len(),
        1,
        "expected exactly one -t (main) exec in exec.log:\n{records:#?}"
    );
    mains[0]
}

/// Every exec without a TTY: the side-channels a bridge started.
pub fn side_channels(records: &[ExecRecord]) -> Vec<&ExecRecord> {
    records.iter().filter(|r| !r.tty).collect()
}

/// The side channels that went through the CLI into a container (no TTY,
/// container level): what a bring-up can be hurt by. `pty-resize`'s agent
/// transport sends `vm_exec`s at VM level instead, which are not counted.
pub fn container_side_channels(records: &[ExecRecord]) -> Vec<&ExecRecord> {
    records
        .iter()
        .filter(|r| !r.tty && r.level == fake_smolvm::exec_log::Level::Container)
        .collect()
}

/// The `vm_exec`s (VM level): the agent transport's probes and pushes.
pub fn vm_level(records: &[ExecRecord]) -> Vec<&ExecRecord> {
    records
        .iter()
        .filter(|r| r.level == fake_smolvm::exec_log::Level::Vm)
        .collect()
}

/// Pairs of records where one touched the machine (wrote `config.json`,
/// resolved the main container) inside the other's crun window: what kills
/// or tears a session. Indexes into `records`.
pub fn overlapping_bringups(records: &[ExecRecord]) -> Vec<(usize, usize)> {
    let all: Vec<&ExecRecord> = records.iter().collect();
    pairs(&all, ExecRecord::bringup_overlaps)
}

/// Pairs of records whose lives in the agent (arrival → done) overlap, as
/// indexes into `records`.
pub fn overlapping_lifetimes(records: &[&ExecRecord]) -> Vec<(usize, usize)> {
    pairs(records, ExecRecord::lifetime_overlaps)
}

fn pairs(
    records: &[&ExecRecord],
    overlap: impl Fn(&ExecRecord, &ExecRecord) -> bool,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for i in 0..records.len() {
        for j in i + 1..records.len() {
            if overlap(records[i], records[j]) {
                out.push((i, j));
            }
        }
    }
    out
}

/// Records that hit a fault (config-race, stale-kill, shared-stdin,
/// timeout). Not `main-exited`: a side channel that joined the session's
/// container ends with it when the session ends — in a real VM too — which
/// is how a persistent channel is meant to end.
pub fn faulted(records: &[ExecRecord]) -> Vec<&ExecRecord> {
    records
        .iter()
        .filter(|r| r.fault.is_some_and(|f| f != Fault::MainExited))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record that touched the machine at `window.0` and whose crun
    /// window ran `window.0..window.1`.
    fn rec(tty: bool, start: f64, window: (f64, f64), end: f64) -> ExecRecord {
        ExecRecord {
            tty,
            interactive: tty,
            start_ms: start,
            bringup_start_ms: Some(start),
            touched_ms: Some(window.0),
            window_start_ms: Some(window.0),
            window_end_ms: Some(window.1),
            end_ms: end,
            ..ExecRecord::default()
        }
    }

    #[test]
    fn main_and_side_channels_are_told_apart_by_tty() {
        let log = [
            rec(true, 0.0, (1.0, 250.0), 900.0),
            rec(false, 300.0, (301.0, 550.0), 560.0),
        ];
        assert_eq!(main_exec(&log).start_ms, 0.0);
        assert_eq!(side_channels(&log).len(), 1);
    }

    #[test]
    #[should_panic(expected = "exactly one -t")]
    fn two_main_execs_are_an_error() {
        let log = [
            rec(true, 0.0, (1.0, 2.0), 3.0),
            rec(true, 0.0, (1.0, 2.0), 3.0),
        ];
        main_exec(&log);
    }

    #[test]
    fn overlaps_are_found_pairwise() {
        let log = [
            rec(true, 0.0, (1.0, 250.0), 900.0),
            rec(false, 10.0, (11.0, 260.0), 270.0),
            rec(false, 300.0, (301.0, 550.0), 560.0),
        ];
        assert_eq!(overlapping_bringups(&log), [(0, 1)]);
        let sides = side_channels(&log);
        assert!(overlapping_lifetimes(&sides).is_empty());
        let all: Vec<&ExecRecord> = log.iter().collect();
        assert_eq!(overlapping_lifetimes(&all), [(0, 1), (0, 2)]);
    }
}
