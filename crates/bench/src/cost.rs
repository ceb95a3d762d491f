//! The cost of what sits in front of smolvm: how long after launch the
//! session's `run` request reaches the agent (its exec.log
//! `bringup_start_ms`, a precise monotonic time; `start_ms`, the client's
//! start, has a 10 ms resolution, too coarse for a 2 ms target), and one
//! bring-up's length. The client's own start-up and handshake are in every
//! variant's offset alike, so the difference with smolvm alone is what the
//! wrapper adds.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::interactive::HOST;
use crate::lab::{arrival_ms, main_exec, Lab};
use crate::stats::{self, Summary};

/// Launch → the session's request at the agent, per variant.
#[derive(Debug, Clone, Serialize)]
pub struct StartOffsets {
    /// One sample per round, ms (`None`: that launch recorded no main exec).
    pub samples: Vec<Option<f64>>,
    /// Summary of the samples present.
    pub summary: Option<Summary>,
}

/// The extra start-up time of `with` over `without`, two ways: the median
/// of the per-round differences (launches of the same round ran back to
/// back, so a load change on the machine hits both), and the difference of
/// the two best launches (the cost without any scheduling noise).
pub fn overhead(with: &[Option<f64>], without: &[Option<f64>]) -> (Option<f64>, Option<f64>) {
    let diffs: Vec<f64> = with
        .iter()
        .zip(without)
        .filter_map(|(a, b)| Some((*a)? - (*b)?))
        .collect();
    let best = |v: &[Option<f64>]| v.iter().flatten().copied().reduce(f64::min);
    let best_diff = match (best(with), best(without)) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    (stats::summarize(&diffs).map(|s| s.median), best_diff)
}

/// Launches `guest true` `n` times in each lab, interleaved (so drift in the
/// machine's load hits every variant alike), and returns the offsets per lab.
pub fn start_offsets(labs: &[&Lab], n: usize) -> Vec<StartOffsets> {
    let mut samples = vec![Vec::new(); labs.len()];
    let guest = vec!["true".to_string()];
    for round in 0..n {
        for (lab, out) in labs.iter().zip(samples.iter_mut()) {
            let mut launch = lab.launch(HOST, &guest);
            let end = Instant::now() + Duration::from_secs(10);
            while launch.term.try_exit().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(2));
            }
            let launch_ms = launch.launch_ms;
            drop(launch);
            lab.quiesce();
            let offset =
                main_exec(&lab.records_since(launch_ms)).map(|r| arrival_ms(r) - launch_ms);
            if offset.is_none() {
                eprintln!(
                    "bench: cost {} round {round}: no main exec recorded",
                    lab.variant.key()
                );
            }
            out.push(offset);
        }
    }
    samples
        .into_iter()
        .map(|s| StartOffsets {
            summary: stats::summarize(&s.iter().flatten().copied().collect::<Vec<_>>()),
            samples: s,
        })
        .collect()
}

/// One exec bring-up, measured two ways.
#[derive(Debug, Clone, Serialize)]
pub struct Bringup {
    /// Wall time of a whole `machine exec -- true`, ms.
    pub wall: Option<Summary>,
    /// Request → command start as the fake recorded it (`bringup_end_ms −
    /// bringup_start_ms`: bring-up and crun window), ms.
    pub window: Option<Summary>,
}

/// Times `n` plain `machine exec --name M -- true` on `lab`'s machine.
pub fn bringup(lab: &Lab, n: usize) -> Bringup {
    let mut wall = Vec::new();
    let mut window = Vec::new();
    for _ in 0..n {
        let since = fake_smolvm::exec_log::monotonic_ms();
        let t0 = Instant::now();
        let ok = lab
            .machine
            .exec_command(&["--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            wall.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        if let Some(r) = lab.records_since(since).last() {
            if let (Some(a), Some(b)) = (r.bringup_start_ms, r.bringup_end_ms) {
                window.push(b - a);
            }
        }
    }
    Bringup {
        wall: stats::summarize(&wall),
        window: stats::summarize(&window),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_pairs_rounds_and_compares_the_best() {
        let with = [Some(5.0), Some(3.0), None, Some(9.0)];
        let without = [Some(2.0), Some(2.5), Some(1.0), Some(2.0)];
        // Paired differences 3.0, 0.5, 7.0 → median 3.0; best 3.0 − 1.0.
        assert_eq!(overhead(&with, &without), (Some(3.0), Some(2.0)));
        assert_eq!(overhead(&[None], &[Some(1.0)]), (None, None));
    }
}
