//! The bench's command line: `bench [--quick] [--json FILE] [--naive-bridge PATH]`.

use std::path::PathBuf;

/// Usage text, printed by `--help` and after a usage error.
pub const USAGE: &str = "\
usage: bench [--quick] [--json FILE] [--naive-bridge PATH] [--tmux-launches N]

Measures pty-resize (both push modes) against a naive bridge and against
smolvm alone, on fake-smolvm with its default timings, and prints a table.

  --quick              small counts: a smoke run of every measurement
  --json FILE          where to write the results [default: target/bench/bench.json]
  --naive-bridge PATH  the naive bridge script [default: scripts/naive-bridge]
  --tmux-launches N    launches per variant of the tmux (shared-stdin) row

Exit status: 0 when every measurement ran (targets missed are reported, not
an error), 1 when a measurement could not run, 2 on a usage error.";

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
    /// Launches per variant for the config.json race row.
    pub race_launches: usize,
    /// Launches per variant for the shared-stdin (tmux) row.
    pub tmux_launches: usize,
}

impl Counts {
    /// The full run: the minimums (≥20 resizes, a 100-resize storm,
    /// 50 launches for the race row); the tmux row is smaller because each
    /// launch there costs a tmux server and ~1 s.
    pub const FULL: Counts = Counts {
        bringup_samples: 10,
        latency_resizes: 30,
        storm_resizes: 100,
        cost_launches: 20,
        race_launches: 50,
        tmux_launches: 20,
    };

    /// `--quick`: every measurement once or a few times.
    pub const QUICK: Counts = Counts {
        bringup_samples: 3,
        latency_resizes: 5,
        storm_resizes: 100,
        cost_launches: 3,
        race_launches: 3,
        tmux_launches: 2,
    };
}

// The minimums, checked at compile time.
const _: () = assert!(
    Counts::FULL.latency_resizes >= 20
        && Counts::FULL.storm_resizes == 100
        && Counts::FULL.race_launches >= 50
        && Counts::FULL.cost_launches >= 20
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

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Run with these options.
    Run(Options),
    /// Print the usage and exit 0.
    Help,
}

/// Parses the arguments after the program name. `root` is the workspace
/// folder the defaults are relative to. An error is a one-line message.
pub fn parse(args: &[String], root: &std::path::Path) -> Result<Parsed, String> {
    let mut quick = false;
    let mut json = None;
    let mut naive = None;
    let mut tmux = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--quick" => quick = true,
            "--json" => json = Some(PathBuf::from(value("--json")?)),
            "--naive-bridge" => naive = Some(PathBuf::from(value("--naive-bridge")?)),
            "--tmux-launches" => {
                let v = value("--tmux-launches")?;
                tmux = Some(
                    v.parse::<usize>()
                        .map_err(|_| format!("--tmux-launches wants a number, got '{v}'"))?,
                );
            }
            "-h" | "--help" => return Ok(Parsed::Help),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let mut counts = if quick { Counts::QUICK } else { Counts::FULL };
    if let Some(n) = tmux {
        counts.tmux_launches = n;
    }
    Ok(Parsed::Run(Options {
        quick,
        counts,
        json: json.unwrap_or_else(|| root.join("target/bench/bench.json")),
        naive_bridge: naive.unwrap_or_else(|| root.join("scripts/naive-bridge")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn run(args: &[&str]) -> Result<Parsed, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&args, Path::new("/repo"))
    }

    #[test]
    fn defaults_are_the_full_counts_under_the_workspace() {
        let Parsed::Run(o) = run(&[]).unwrap() else {
            panic!("expected a run")
        };
        assert_eq!(o.counts, Counts::FULL);
        assert_eq!(o.json, Path::new("/repo/target/bench/bench.json"));
        assert_eq!(o.naive_bridge, Path::new("/repo/scripts/naive-bridge"));
    }

    #[test]
    fn options_are_read() {
        let Parsed::Run(o) = run(&["--quick", "--json", "x.json", "--tmux-launches", "7"]).unwrap()
        else {
            panic!("expected a run")
        };
        assert!(o.quick);
        assert_eq!(o.json, Path::new("x.json"));
        assert_eq!(o.counts.tmux_launches, 7);
        assert_eq!(o.counts.latency_resizes, Counts::QUICK.latency_resizes);
    }

    #[test]
    fn bad_input_is_a_message() {
        assert_eq!(run(&["--json"]), Err("--json needs a value".into()));
        assert_eq!(run(&["--bogus"]), Err("unknown argument '--bogus'".into()));
        assert!(run(&["--tmux-launches", "x"]).is_err());
        assert_eq!(run(&["--help"]), Ok(Parsed::Help));
    }
}
