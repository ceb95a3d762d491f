//! The command line: the subset of smolvm 0.8.0's CLI a wrapper uses.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::{self, ExecOptions};
use crate::fail::Res;
use crate::lifecycle::{self, Env};
use crate::settings::Switches;

/// The environment switches, shown by `--help` and `machine exec --help`.
pub const ENV_HELP: &str = "\
State (where smolvm 0.8.0 keeps it, so the real client can drive fake machines):
  XDG_CACHE_HOME  machine folders: $XDG_CACHE_HOME/smolvm/vms/<hash>/ [default: ~/.cache]
  XDG_DATA_HOME   registry: $XDG_DATA_HOME/smolvm/server/smolvm.db [default: ~/.local/share]

Switches (read by `machine start` as the machine's default, and from each exec client's
environment as a per-exec override — any client, the real smolvm included):
  FAKE_SMOLVM_BRINGUP_MS             the agent's work before `started`, ms [default: 250]
  FAKE_SMOLVM_CRUN_MS                crun's set-up after `started` (terminal raw, container not
                                     yet running), ms [default: 300]
  FAKE_SMOLVM_COMPAT                 0.8.0: guest PTY 0x0, resizes never reach it [default]
                                     0.8.1: `started` once crun made the PTY, 80x24, the
                                     client's resizes applied on arrival
  FAKE_SMOLVM_RACE                   a second exec inside a session's crun window:
                                     exit1 (config.json torn: crun's message in-band, exit 1) [default],
                                     sigkill (stale container deleted: exit 137), off
  FAKE_SMOLVM_SHARED_STDIN           the seeds' first hypothesis, opt-in: an exec sharing a live
                                     session's terminal as stdin kills it: never [default], tmux, always
  FAKE_SMOLVM_SHARED_STDIN_DELAY_MS  delay before that SIGKILL, ms [default: 100]

Exit codes: 0 ok; 1 `Error: ...`; 2 usage error; exec: the guest's code, 128+N if it died of signal N, 124 on --timeout.";

/// Every variable [`ENV_HELP`] documents.
pub const ENV_VARS: [&str; 8] = [
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    "FAKE_SMOLVM_BRINGUP_MS",
    "FAKE_SMOLVM_CRUN_MS",
    "FAKE_SMOLVM_COMPAT",
    "FAKE_SMOLVM_RACE",
    "FAKE_SMOLVM_SHARED_STDIN",
    "FAKE_SMOLVM_SHARED_STDIN_DELAY_MS",
];

/// fake-smolvm: a stand-in for smolvm 0.8.0 that reproduces its terminal bugs.
#[derive(Debug, Parser)]
#[command(name = "fake-smolvm", disable_version_flag = true, after_help = ENV_HELP)]
struct Cli {
    /// Print the version (`smolvm 0.8.0`, or `smolvm 0.8.1` under FAKE_SMOLVM_COMPAT=0.8.1).
    #[arg(short = 'V', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Top>,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Manage machines.
    #[command(alias = "vm", subcommand)]
    Machine(MachineCmd),
    /// Internal: the guest agent (started by `machine start`).
    #[command(name = "__agent", hide = true)]
    Agent {
        dir: std::path::PathBuf,
        name: String,
    },
    /// Internal: the fake crun (started by the guest agent for a container exec).
    #[command(name = "__crun", hide = true)]
    Crun {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Subcommand)]
enum MachineCmd {
    /// Create a machine (name `vm-<8 hex>` if omitted).
    Create {
        name: Option<String>,
        /// Container image: execs take smolvm's image path (crun, the 0x0 PTY,
        /// config.json). Without it the machine is bare (`vm_exec`).
        #[arg(short = 'I', long)]
        image: Option<String>,
    },
    /// Start a machine's guest.
    Start(NameArg),
    /// Stop a machine's guest and every process in it.
    Stop(NameArg),
    /// Show a machine's state.
    Status {
        #[command(flatten)]
        name: NameArg,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Delete a machine.
    Delete {
        name: String,
        /// Stop it first if it is running.
        #[arg(short, long)]
        force: bool,
    },
    /// List machines.
    #[command(alias = "list")]
    Ls {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a running machine.
    #[command(after_help = ENV_HELP)]
    Exec(ExecArgs),
}

#[derive(Debug, Args)]
struct NameArg {
    /// Machine name.
    #[arg(short, long, default_value = "default")]
    name: String,
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// Machine name.
    #[arg(long, default_value = "default")]
    name: String,
    /// Keep stdin open (interactive path).
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a guest PTY (interactive path; raw host terminal).
    #[arg(short, long)]
    tty: bool,
    /// KEY=VALUE for the guest (repeatable; entries without '=' are dropped, like smolvm).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory in the guest.
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// Kill the command after DURATION (30s, 5m, 250ms); exit 124.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Accepted for compatibility; output is relayed as smolvm 0.8.0 does without it.
    #[arg(long)]
    stream: bool,
    /// The command to run (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

/// `--timeout` values: humantime durations; zero is rejected like smolvm does.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("invalid duration: {e}"))?;
    if d.is_zero() {
        return Err("timeout must be greater than zero".into());
    }
    Ok(d)
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if cli.version {
        let compat = Switches::from_env()
            .map(|s| s.resolve().compat)
            .unwrap_or_default();
        println!("smolvm {}", compat.version());
        return 0;
    }
    let outcome = match cli.command {
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            return 2;
        }
        Some(Top::Agent { dir, name }) => return crate::agent::run_agent(dir, name),
        Some(Top::Crun { args }) => return crate::crun::main(&args),
        Some(Top::Machine(MachineCmd::Exec(a))) => client::exec(ExecOptions {
            name: a.name,
            interactive: a.interactive,
            tty: a.tty,
            env: client::parse_env(&a.env),
            workdir: a.workdir,
            timeout_ms: a.timeout.map(|d| d.as_millis().max(1) as u64),
            argv: a.command,
        }),
        Some(Top::Machine(cmd)) => Env::open().and_then(|env| lifecycle(&env, cmd)).map(|()| 0),
    };
    // The one place an outcome becomes an exit code.
    match outcome {
        Ok(code) => code,
        Err(f) => {
            eprintln!("{f}");
            f.code
        }
    }
}

fn lifecycle(env: &Env, cmd: MachineCmd) -> Res<()> {
    match cmd {
        MachineCmd::Create { name, image } => lifecycle::create(env, name, image),
        MachineCmd::Start(n) => lifecycle::start(env, &n.name),
        MachineCmd::Stop(n) => lifecycle::stop(env, &n.name),
        MachineCmd::Status { name, json } => lifecycle::status(env, &name.name, json),
        MachineCmd::Delete { name, force } => lifecycle::delete(env, &name, force),
        MachineCmd::Ls { json } => lifecycle::ls(env, json),
        MachineCmd::Exec(_) => unreachable!("exec is dispatched before the lifecycle commands"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timeout_values() {
        assert_eq!(parse_timeout("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_timeout("0s")
            .unwrap_err()
            .contains("greater than zero"));
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn exec_takes_everything_after_dashes() {
        let cli = Cli::try_parse_from([
            "fake-smolvm",
            "vm",
            "exec",
            "--name",
            "m",
            "-it",
            "-e",
            "A=1",
            "--",
            "sh",
            "-c",
            "echo -n hi",
        ])
        .unwrap();
        match cli.command {
            Some(Top::Machine(MachineCmd::Exec(a))) => {
                assert_eq!(a.name, "m");
                assert!(a.interactive && a.tty);
                assert_eq!(a.command, ["sh", "-c", "echo -n hi"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exec_without_command_is_a_usage_error() {
        let err =
            Cli::try_parse_from(["fake-smolvm", "machine", "exec", "--name", "m"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn help_documents_every_switch() {
        for var in ENV_VARS {
            assert!(ENV_HELP.contains(var), "{var}");
        }
    }
}
