//! The command line: `pty-resize [OPTIONS] <MACHINE> -- <SMOLVM ARGV…>`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// How sizes are pushed into the guest once the main exec is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One long-lived `machine exec -i` reads sizes from a pipe: a resize
    /// costs a pipe write. Falls back to `exec` if the channel dies.
    Channel,
    /// One `machine exec` per resize (a full smolvm bring-up each time).
    Exec,
}

/// The default mode. A one-line change once the benchmark has spoken.
pub const DEFAULT_MODE: Mode = Mode::Channel;

const AFTER_HELP: &str = "\
Exit codes:
  N        the wrapped command's exit code
  128+N    the wrapped command was killed by signal N
  1        internal error before the command started (e.g. --log cannot be opened)
  2        usage error (missing machine, missing `--`, empty command, empty machine name)
  127      the program cannot be run (not found, not executable)

Environment:
  PTY_RESIZE_LOG=FILE     same as --log FILE
  PTY_RESIZE_NO_CACHE=1   do not cache `smolvm --version` answers
  XDG_CACHE_HOME          where the version cache lives (pty-resize/versions)

The bridge is off (the command runs as is) when stdin or stdout is not a
terminal, when the command is not an `exec` with -t/--tty, or when
`smolvm --version` reports 0.8.1 or later (native size forwarding).

Example:
  pty-resize bottle -- smolvm machine exec --name bottle -t -- claude --resume";

/// Keeps a smolvm guest's PTY at the host terminal's size.
///
/// Runs SMOLVM ARGV as a child on the same terminal, starts the guest command
/// at the host size (prologue), and pushes every later size change into the
/// guest through a side channel once the main exec has finished its bring-up.
#[derive(Debug, Parser)]
#[command(name = "pty-resize", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The smolvm machine the session runs in (used for the side channel).
    #[arg(value_name = "MACHINE")]
    pub machine: String,

    /// The smolvm command line to run, after `--`.
    #[arg(value_name = "SMOLVM ARGV", last = true, required = true, num_args = 1..)]
    pub argv: Vec<String>,

    /// smolvm program for the side channel [default: the first word of SMOLVM ARGV].
    #[arg(long, value_name = "PATH")]
    pub smolvm: Option<PathBuf>,

    /// How sizes are pushed after start-up.
    #[arg(long, value_enum, default_value_t = DEFAULT_MODE)]
    pub mode: Mode,

    /// Fallback delay (ms) after which the main exec is assumed past its
    /// bring-up; used only when the terminal was already raw at start, so
    /// smolvm's switch to raw mode cannot be observed.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub fallback_ms: u64,

    /// Timeout (ms) of one push; a push that takes longer is killed and logged.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub push_timeout_ms: u64,

    /// Do not start the guest command through the sizing prologue (the guest
    /// then draws its first frame at smolvm's default size until the first push).
    #[arg(long)]
    pub no_prologue: bool,

    /// Bridge even if `smolvm --version` reports native size forwarding (0.8.1+).
    #[arg(long)]
    pub force_bridge: bool,

    /// Append a logfmt line per decision to FILE.
    #[arg(
        long,
        value_name = "FILE",
        env = "PTY_RESIZE_LOG",
        hide_env_values = true
    )]
    pub log: Option<PathBuf>,
}

/// Folds clap's rendered error into the one line the wrapper prints: the
/// first line without its `error: ` prefix, and when that line ends in `:`
/// (a list follows, e.g. the missing arguments) the listed items joined.
pub fn one_line_error(rendered: &str) -> String {
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first).trim_end();
    match first.strip_suffix(':') {
        Some(head) => {
            let items: Vec<&str> = lines
                .take_while(|l| l.starts_with(' ') && !l.trim().is_empty())
                .map(str::trim)
                .collect();
            if items.is_empty() {
                head.to_string()
            } else {
                format!("{head}: {}", items.join(", "))
            }
        }
        None => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pty-resize").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn full_command_line() {
        let c = parse(&[
            "--mode",
            "exec",
            "--fallback-ms",
            "500",
            "bottle",
            "--",
            "smolvm",
            "machine",
            "exec",
            "-t",
            "--",
            "top",
        ])
        .unwrap();
        assert_eq!(c.machine, "bottle");
        assert_eq!(c.mode, Mode::Exec);
        assert_eq!(c.fallback_ms, 500);
        assert_eq!(c.argv, ["smolvm", "machine", "exec", "-t", "--", "top"]);
    }

    #[test]
    fn defaults() {
        let c = parse(&["m", "--", "smolvm"]).unwrap();
        assert_eq!(c.mode, DEFAULT_MODE);
        assert_eq!(c.fallback_ms, 2000);
        assert_eq!(c.push_timeout_ms, 10_000);
        assert!(!c.no_prologue && !c.force_bridge);
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&[]).is_err(), "missing machine");
        assert!(parse(&["m"]).is_err(), "missing --");
        assert!(parse(&["m", "--"]).is_err(), "empty argv");
        assert!(
            parse(&["m", "smolvm", "machine"]).is_err(),
            "argv without --"
        );
        assert!(
            parse(&["--push-timeout-ms", "0", "m", "--", "x"]).is_err(),
            "zero timeout"
        );
    }

    #[test]
    fn a_missing_argument_list_is_folded_into_the_line() {
        let rendered = "error: the following required arguments were not provided:\n  <MACHINE>\n  <SMOLVM ARGV>...\n\nUsage: pty-resize [OPTIONS] <MACHINE> -- <SMOLVM ARGV>...\n";
        assert_eq!(
            one_line_error(rendered),
            "the following required arguments were not provided: <MACHINE>, <SMOLVM ARGV>..."
        );
    }

    #[test]
    fn a_single_line_error_keeps_its_text() {
        assert_eq!(
            one_line_error("error: unexpected argument 'foo' found\n\nUsage: x\n"),
            "unexpected argument 'foo' found"
        );
        assert_eq!(one_line_error(""), "invalid arguments");
    }
}
