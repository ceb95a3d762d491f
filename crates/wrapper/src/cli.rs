//! The command line: `pty-resize [OPTIONS] [MACHINE] -- <SMOLVM ARGV…>`.
//!
//! MACHINE is optional: without it the machine is the wrapped command's
//! `--name` (smolvm's own default, `default`, when that is absent), so the
//! name is written once.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// How sizes are pushed into the guest once the main exec is ready: the
/// one name for this choice, used from the command line to the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// smolvm 0.8.0's agent socket, spoken directly: one short `vm_exec` at
    /// VM level per push (safe at every instant of a bring-up); readiness is
    /// the session's program seen there. Falls back to `channel`, logged,
    /// if the agent cannot be used.
    Agent,
    /// One long-lived `machine exec -i` reads sizes from a pipe: a resize
    /// costs a pipe write. Falls back to `exec` if the channel dies.
    Channel,
    /// One `machine exec` per resize (a full smolvm bring-up each time).
    Exec,
}

impl Mode {
    /// The log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Channel => "channel",
            Self::Exec => "exec",
        }
    }
}

/// The default mode: the agent transport (no crun window can hurt it).
pub const DEFAULT_MODE: Mode = Mode::Agent;

/// The CLI transport the agent transport falls back to.
pub const CLI_FALLBACK: Mode = Mode::Channel;

/// The smallest accepted `--settle-ms`: crun's set-up after `started` takes
/// tens to hundreds of ms in a microVM; below half a second the margin no
/// longer covers a slow one.
pub const MIN_SETTLE_MS: u64 = 500;

const AFTER_HELP: &str = "\
Exit codes:
  N        the wrapped command's exit code
  128+N    the wrapped command was killed by signal N (for SIGINT, SIGQUIT,
           SIGTERM, SIGHUP the wrapper dies of that signal instead, as smolvm would)
  1        internal error before the command started (e.g. --log cannot be opened,
           or 120 s waiting for another session's start-up on the machine)
  2        usage error (missing `--`, empty command, empty machine name, a MACHINE
           that differs from the command's --name, unsafe timings)
  127      the program cannot be run (not found, not executable)

Environment:
  PTY_RESIZE_LOG=FILE     same as --log FILE (empty: no log at all)
  XDG_STATE_HOME, HOME    the default log: $XDG_STATE_HOME/pty-resize/pty-resize.log,
                          else ~/.local/state/pty-resize/pty-resize.log (past 1 MiB it
                          is moved to pty-resize.log.1 and a new one begins)
  PTY_RESIZE_NO_CACHE=1   do not cache `smolvm --version` answers
  PTY_RESIZE_AGENT_SOCKET=PATH
                          --mode agent: use this agent socket instead of smolvm's
                          <cache>/smolvm/vms/<hash>/agent.sock
  XDG_CACHE_HOME, HOME    where smolvm's machine folders are (--mode agent; on
                          macOS ~/Library/Caches)
  XDG_CACHE_HOME          where the version cache lives (pty-resize/versions)
  XDG_RUNTIME_DIR         where the per-machine bring-up locks live (pty-resize/),
                          else XDG_CACHE_HOME, else ~/.cache

Push modes (--mode): `agent` (default) talks to the machine's agent.sock
itself (<cache>/smolvm/vms/<sha256(name)[..8]>/agent.sock): the main exec
gets -e PTY_RESIZE_SESSION=<id>, readiness is that session's program seen at
VM level (vm_exec), and each push is one vm_exec running `stty -F
/proc/<pid>/fd/0`. If the socket is missing or refusing, answers in another
protocol, or vm_exec fails, the wrapper logs why (agent-fallback) and uses
`channel` with raw mode + --settle-ms. `channel`/`exec`: container execs
through the smolvm CLI, ready at raw mode + --settle-ms.

The bridge is off (the command runs as is) when stdin or stdout is not a
terminal or when the command is not a `smolvm machine exec` with -t/--tty;
in the second case one line on stderr says so and why, before it starts.
When `smolvm
--version` reports 0.8.1 or later (native size forwarding) the prologue still
sizes the first frame, but no side channel is ever opened.

Checking a machine: `pty-resize doctor [--smolvm PATH] [MACHINE]` prints one line
per check (smolvm, agent socket, agent, vm_exec, lock, terminal, log, transport)
and exits 0 when a session would be bridged, 1 when not, 2 on a usage error.

Examples:
  pty-resize -- smolvm machine exec --name bottle -t -- claude --resume
  pty-resize bottle -- smolvm machine exec --name bottle -t -- claude --resume
  pty-resize doctor bottle";

/// Keeps a smolvm guest's PTY at the host terminal's size.
///
/// Runs SMOLVM ARGV as a child on the same terminal, starts the guest command
/// at the host size (prologue), and pushes later size changes into the guest
/// through the machine's agent socket at VM level (default), or through a
/// CLI side channel opened only when needed and only once the session's
/// container is taken to be running (raw mode + --settle-ms).
#[derive(Debug, Parser)]
#[command(name = "pty-resize", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The smolvm machine the session runs in [default: the command's
    /// --name, else smolvm's `default`]; if given, it must equal --name.
    #[arg(value_name = "MACHINE")]
    pub machine: Option<String>,

    /// The smolvm command line to run, after `--`.
    #[arg(value_name = "SMOLVM ARGV", last = true, required = true, num_args = 1..)]
    pub argv: Vec<String>,

    /// smolvm program for the side channel [default: the first word of SMOLVM ARGV].
    #[arg(long, value_name = "PATH")]
    pub smolvm: Option<PathBuf>,

    /// How sizes are pushed: `agent` (vm_exec on the machine's agent
    /// socket; falls back to `channel`, logged), `channel` or `exec`.
    #[arg(long, value_enum, default_value_t = DEFAULT_MODE)]
    pub mode: Mode,

    /// Safety margin (ms) after smolvm switched the terminal to raw mode
    /// before the session counts as ready: raw mode means `started`, not
    /// "container running" (at least 500).
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub settle_ms: u64,

    /// Delay (ms) from launch after which the session counts as ready, used
    /// only when the terminal was already raw at start, so smolvm's switch
    /// cannot be observed; at least --settle-ms.
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

    /// Push sizes through side channels even if `smolvm --version` reports
    /// native size forwarding (0.8.1+).
    #[arg(long)]
    pub force_bridge: bool,

    /// Append a logfmt line per decision to FILE [env: PTY_RESIZE_LOG, empty =
    /// none; default: $XDG_STATE_HOME/pty-resize/pty-resize.log].
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Write no decision log at all (not even the default one).
    #[arg(long, conflicts_with = "log")]
    pub no_log: bool,
}

impl Cli {
    /// The checks clap cannot express: timings that would let a side channel
    /// start inside a bring-up, and a MACHINE that is not the one the command
    /// runs in (pushes would resize the wrong machine, or none).
    pub fn validate(&self) -> Result<(), String> {
        if self.machine_name().is_empty() {
            return Err("the machine name is empty".into());
        }
        if self.settle_ms < MIN_SETTLE_MS {
            return Err(format!(
                "--settle-ms {} is below the minimum {MIN_SETTLE_MS}: a side channel could start before the session's container runs",
                self.settle_ms
            ));
        }
        if self.fallback_ms < self.settle_ms {
            return Err(format!(
                "--fallback-ms {} is below --settle-ms {}: with the terminal already raw at start, a side channel could start inside the bring-up",
                self.fallback_ms, self.settle_ms
            ));
        }
        if let (Some(exec), Some(machine)) = (crate::smolvm_argv::parse(&self.argv), &self.machine)
        {
            // smolvm's own default when --name is absent.
            let name = exec.name.as_deref().unwrap_or(DEFAULT_MACHINE);
            if name != machine {
                let given = if exec.name.is_some() {
                    format!("--name '{name}'")
                } else {
                    "no --name (smolvm uses 'default')".to_string()
                };
                return Err(format!(
                    "the machine '{machine}' differs from the command's {given}"
                ));
            }
        }
        Ok(())
    }

    /// The machine the session runs in: MACHINE if given, else the wrapped
    /// command's `--name`, else smolvm's default ([`DEFAULT_MACHINE`]).
    pub fn machine_name(&self) -> String {
        machine_of(self.machine.as_deref(), &self.argv)
    }
}

/// smolvm's machine when `machine exec` has no `--name`.
pub const DEFAULT_MACHINE: &str = "default";

/// The machine of a session (pure): `given` if any, else the `--name` of
/// the wrapped `machine exec`, else [`DEFAULT_MACHINE`].
pub fn machine_of(given: Option<&str>, argv: &[String]) -> String {
    given
        .map(str::to_string)
        .or_else(|| crate::smolvm_argv::parse(argv).and_then(|e| e.name))
        .unwrap_or_else(|| DEFAULT_MACHINE.to_string())
}

/// Folds clap's rendered error into the one line the wrapper prints: the
/// first line without its `error: ` prefix, and when that line ends in `:`
/// (a list follows, e.g. the missing arguments) the listed items joined.
pub fn one_line_error(rendered: &str) -> String {
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first).trim_end();
    // The hints clap prints under the first line (`[possible values: …]`,
    // `tip: …`) are what tells the user how to fix it: keep them.
    let extra: Vec<&str> = lines
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match (first.strip_suffix(':'), extra.is_empty()) {
        (_, true) => first.strip_suffix(':').unwrap_or(first).to_string(),
        (Some(head), false) => format!("{head}: {}", extra.join(", ")),
        (None, false) => format!("{first}; {}", extra.join("; ")),
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
            "700",
            "--settle-ms",
            "600",
            "bottle",
            "--",
            "smolvm",
            "machine",
            "exec",
            "--name",
            "bottle",
            "-t",
            "--",
            "top",
        ])
        .unwrap();
        assert_eq!(c.machine.as_deref(), Some("bottle"));
        assert_eq!(c.machine_name(), "bottle");
        assert_eq!(c.mode, Mode::Exec);
        assert_eq!(c.fallback_ms, 700);
        assert_eq!(c.settle_ms, 600);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c.argv,
            ["smolvm", "machine", "exec", "--name", "bottle", "-t", "--", "top"]
        );
    }

    #[test]
    fn defaults() {
        let c = parse(&["m", "--", "smolvm"]).unwrap();
        assert_eq!(c.mode, DEFAULT_MODE);
        assert_eq!(c.fallback_ms, 2000);
        assert_eq!(c.settle_ms, 2000);
        assert_eq!(c.push_timeout_ms, 10_000);
        assert!(!c.no_prologue && !c.force_bridge);
    }

    #[test]
    fn one_name_the_machine_comes_from_the_commands_name() {
        let c = parse(&["--", "smolvm", "machine", "exec", "--name", "bottle", "-t"]).unwrap();
        assert_eq!(c.machine, None);
        assert_eq!(c.machine_name(), "bottle");
        assert_eq!(c.validate(), Ok(()));
        let c = parse(&["--", "smolvm", "machine", "exec", "--name=b2", "-t"]).unwrap();
        assert_eq!(c.machine_name(), "b2");
        // No --name: smolvm's default.
        let c = parse(&["--", "smolvm", "machine", "exec", "-t", "--", "sh"]).unwrap();
        assert_eq!(c.machine_name(), "default");
        // Not an exec: the name is irrelevant (the command runs as is).
        let c = parse(&["--", "smolvm", "machine", "ls"]).unwrap();
        assert_eq!(c.machine_name(), "default");
        let c = parse(&["--", "smolvm", "machine", "exec", "--name", "", "-t"]).unwrap();
        assert_eq!(c.validate().unwrap_err(), "the machine name is empty");
        let c = parse(&["--no-log", "--", "x"]).unwrap();
        assert!(c.no_log);
        assert!(parse(&["--no-log", "--log", "f", "--", "x"]).is_err());
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&[]).is_err(), "missing command");
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

    fn invalid(args: &[&str]) -> String {
        parse(args).unwrap().validate().unwrap_err()
    }

    #[test]
    fn unsafe_timings_are_rejected() {
        let exec = ["--", "smolvm", "machine", "exec", "--name", "m", "-t"];
        let with = |opts: &[&'static str]| -> Vec<&str> {
            opts.iter().copied().chain(["m"]).chain(exec).collect()
        };
        assert_eq!(
            invalid(&with(&["--fallback-ms", "0"])),
            "--fallback-ms 0 is below --settle-ms 2000: with the terminal already raw at start, a side channel could start inside the bring-up"
        );
        assert!(
            invalid(&with(&["--settle-ms", "499", "--fallback-ms", "600"]))
                .starts_with("--settle-ms 499 is below the minimum 500")
        );
        assert!(
            invalid(&with(&["--settle-ms", "900", "--fallback-ms", "899"]))
                .starts_with("--fallback-ms 899 is below --settle-ms 900")
        );
        // The boundaries themselves are accepted.
        let ok = parse(&with(&["--settle-ms", "500", "--fallback-ms", "500"])).unwrap();
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn a_machine_other_than_the_commands_name_is_rejected() {
        assert_eq!(
            invalid(&["a", "--", "smolvm", "machine", "exec", "--name", "b", "-t"]),
            "the machine 'a' differs from the command's --name 'b'"
        );
        assert_eq!(
            invalid(&["a", "--", "smolvm", "machine", "exec", "-t", "--", "sh"]),
            "the machine 'a' differs from the command's no --name (smolvm uses 'default')"
        );
        let ok = parse(&["default", "--", "smolvm", "vm", "exec", "-t"]).unwrap();
        assert_eq!(ok.validate(), Ok(()));
        // Not an exec: nothing to compare (the command runs as is).
        let ok = parse(&["a", "--", "smolvm", "machine", "ls"]).unwrap();
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(invalid(&["", "--", "true"]), "the machine name is empty");
    }

    #[test]
    fn clap_hints_stay_in_the_line() {
        let e = parse(&["--mode", "fast", "m", "--", "x"]).unwrap_err();
        let line = one_line_error(&e.render().to_string());
        assert!(
            line.contains("[possible values: agent, channel, exec]"),
            "{line}"
        );
        let rendered = "error: unexpected argument '-x' found\n\n  tip: to pass '-x' as a value, use '-- -x'\n\nUsage: pty-resize\n";
        assert_eq!(
            one_line_error(rendered),
            "unexpected argument '-x' found; tip: to pass '-x' as a value, use '-- -x'"
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
