//! The bench's command line (clap): `bench [--quick] [--json FILE]
//! [--naive-bridge PATH] [--tmux-launches N]`, and the counts it selects.

use std::path::{Path, PathBuf};

use clap::Parser;

/// What clap parses; [`Cli::options`] turns it into [`Options`].
#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Measures pty-resize (both push modes) against a naive bridge and against \
             smolvm alone, on fake-smolvm with its default timings, and prints a table.",
    after_help = "Exit status: 0 when every measurement ran (targets missed are reported, \
                  not an error), 1 when a measurement could not run, 2 on a usage error."
)]
pub struct Cli {
    /// Small counts: a smoke run of every measurement.
    #[arg(long)]
    pub quick: bool,
    /// Where to write the results [default: target/bench/bench.json].
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The naive bridge script [default: scripts/naive-bridge].
    #[arg(long, value_name = "PATH")]
    pub naive_bridge: Option<PathBuf>,
    /// Launches per variant of the tmux (shared-stdin) row.
    #[arg(long, value_name = "N")]
    pub tmux_launches: Option<usize>,
}

/// How many times each measurement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Timed runs of a plain `machine exec -- true` (one bring-up).
    pub bringup_samples: usize,
    /// Resizes in the latency measurement (each waited for).
    pub latency_resizes: usize,
    /// Resizes in the storm.
    pub storm_resizes: usize,
    /// Launches per variant for the start-up overhead.
    pub cost_launches: usize,
    /// Launches per variant with a resize inside the crun window.
    pub window_launches: usize,
    /// The same with a long crun window ([`crate::window::LONG_CRUN_MS`]).
    pub long_window_launches: usize,
    /// Launches per variant for the shared-stdin (tmux) row.
    pub tmux_launches: usize,
    /// Back-to-back short sessions per variant.
    pub short_sessions: usize,
    /// Rounds of neighbouring sessions per variant.
    pub neighbour_rounds: usize,
    /// Sessions per round of neighbours.
    pub neighbours: usize,
}

impl Counts {
    /// The full run, sized to fit in about ten minutes on two cores: a
    /// session now lasts until pty-resize's settle margin has passed
    /// (~2.3 s), so the robustness rows are smaller than issue #5's 50.
    pub const FULL: Counts = Counts {
        bringup_samples: 10,
        latency_resizes: 30,
        storm_resizes: 100,
        cost_launches: 20,
        window_launches: 20,
        long_window_launches: 5,
        tmux_launches: 10,
        short_sessions: 20,
        neighbour_rounds: 2,
        neighbours: 5,
    };

    /// `--quick`: every measurement once or a few times.
    pub const QUICK: Counts = Counts {
        bringup_samples: 3,
        latency_resizes: 5,
        storm_resizes: 100,
        cost_launches: 3,
        window_launches: 3,
        long_window_launches: 2,
        tmux_launches: 2,
        short_sessions: 5,
        neighbour_rounds: 1,
        neighbours: 5,
    };
}

// The minimums the figures are quoted with, checked at compile time.
const _: () = assert!(
    Counts::FULL.latency_resizes >= 20
        && Counts::FULL.storm_resizes == 100
        && Counts::FULL.cost_launches >= 20
        && Counts::FULL.short_sessions >= 20
        && Counts::FULL.neighbours == 5
);

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Whether `--quick` was given.
    pub quick: bool,
    /// The counts in force.
    pub counts: Counts,
    /// Where the JSON goes.
    pub json: PathBuf,
    /// The naive bridge script.
    pub naive_bridge: PathBuf,
}

impl Cli {
    /// The options, with the defaults relative to `root` (the workspace).
    pub fn options(self, root: &Path) -> Options {
        let mut counts = if self.quick {
            Counts::QUICK
        } else {
            Counts::FULL
        };
        if let Some(n) = self.tmux_launches {
            counts.tmux_launches = n;
        }
        Options {
            quick: self.quick,
            counts,
            json: self
                .json
                .unwrap_or_else(|| root.join("target/bench/bench.json")),
            naive_bridge: self
                .naive_bridge
                .unwrap_or_else(|| root.join("scripts/naive-bridge")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn run(args: &[&str]) -> Result<Options, ErrorKind> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|c| c.options(Path::new("/repo")))
            .map_err(|e| e.kind())
    }

    #[test]
    fn defaults_are_the_full_counts_under_the_workspace() {
        let o = run(&[]).unwrap();
        assert_eq!(o.counts, Counts::FULL);
        assert_eq!(o.json, Path::new("/repo/target/bench/bench.json"));
        assert_eq!(o.naive_bridge, Path::new("/repo/scripts/naive-bridge"));
    }

    #[test]
    fn options_are_read() {
        let o = run(&["--quick", "--json", "x.json", "--tmux-launches", "7"]).unwrap();
        assert!(o.quick);
        assert_eq!(o.json, Path::new("x.json"));
        assert_eq!(o.counts.tmux_launches, 7);
        assert_eq!(o.counts.latency_resizes, Counts::QUICK.latency_resizes);
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        assert!(run(&["--json"]).is_err());
        assert_eq!(run(&["--bogus"]), Err(ErrorKind::UnknownArgument));
        assert_eq!(
            run(&["--tmux-launches", "x"]),
            Err(ErrorKind::ValueValidation)
        );
        assert_eq!(run(&["--help"]), Err(ErrorKind::DisplayHelp));
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
