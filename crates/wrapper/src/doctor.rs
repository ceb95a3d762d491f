//! `pty-resize doctor [--smolvm PATH] [MACHINE]`: what a session on this
//! machine, from this terminal, would do, and why — one line per check.
//!
//! The checks use the session's own code (version probe, [`crate::agent`]'s
//! socket lookup and `vm_exec`, [`crate::lock::dir`], [`crate::log`]'s
//! default path), so the doctor cannot disagree with a session. Gathering
//! ([`gather`]) is kept apart from judging ([`judge`], pure), which decides
//! the transport and the verdict exactly as [`crate::session`] would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::agent;
use crate::size::Size;
use crate::version::{self, Probe};

/// The subcommand's name (`pty-resize doctor`).
pub const SUBCOMMAND: &str = "doctor";

/// Exit code: a session would be bridged (sizes reach the guest).
pub const EXIT_BRIDGED: i32 = 0;
/// Exit code: a session would not be bridged (see the verdict line).
pub const EXIT_NOT_BRIDGED: i32 = 1;

const AFTER_HELP: &str = "\
Exit codes:
  0  a session would be bridged: sizes reach the guest (transport agent,
     channel, or native on smolvm 0.8.1+)
  1  a session would not be bridged (the verdict line says why)
  2  usage error";

/// Checks what a session on MACHINE would do, one line per check.
#[derive(Debug, Parser)]
#[command(name = "pty-resize doctor", after_help = AFTER_HELP)]
pub struct DoctorCli {
    /// The smolvm program [default: `smolvm` from PATH].
    #[arg(long, value_name = "PATH")]
    pub smolvm: Option<PathBuf>,

    /// The machine [default: smolvm's `default`].
    #[arg(value_name = "MACHINE")]
    pub machine: Option<String>,
}

/// Everything the doctor looked at.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The machine checked.
    pub machine: String,
    /// The smolvm program and its `--version`, or why it cannot be run.
    pub smolvm: Result<(PathBuf, Probe), String>,
    /// The agent socket as a session finds it, or why not.
    pub socket: Result<PathBuf, String>,
    /// `ping` on it (`None`: no socket to ask).
    pub ping: Option<Result<u64, String>>,
    /// `vm_exec true` on it (`None`: not tried).
    pub vm_exec: Option<Result<i32, String>>,
    /// The lock folder ([`crate::lock::dir`]).
    pub lock_dir: Option<PathBuf>,
    /// Whether fd 0 and fd 1 are terminals.
    pub ttys: (bool, bool),
    /// The terminal's size, or why there is none.
    pub size: Result<Size, String>,
    /// Where a session's log would go.
    pub log: LogPlace,
}

/// Where a session's decision log would go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogPlace {
    /// `PTY_RESIZE_LOG=FILE`.
    Env(PathBuf),
    /// `PTY_RESIZE_LOG=` (empty): none.
    Off,
    /// The default log.
    Default(PathBuf),
    /// No base folder known (no `XDG_STATE_HOME`, no `HOME`).
    Nowhere,
}

/// One printed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The check.
    pub check: &'static str,
    /// `ok`, `FAIL`, `warn`, `-` (skipped), or the transport's name.
    pub status: String,
    /// What was seen.
    pub detail: String,
}

/// The doctor's conclusion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether a session would be bridged.
    pub bridged: bool,
    /// The verdict line.
    pub text: String,
}

/// How long the `ping` and the `vm_exec` may take.
const AGENT_DEADLINE: Duration = Duration::from_secs(3);

/// Looks at everything (the version is asked afresh: no cache).
pub fn gather(cli: &DoctorCli) -> Facts {
    let machine = cli
        .machine
        .clone()
        .unwrap_or_else(|| crate::cli::DEFAULT_MACHINE.to_string());
    let program = cli.smolvm.as_ref().map_or_else(
        || "smolvm".to_string(),
        |p| p.to_string_lossy().into_owned(),
    );
    let smolvm = version::resolve(&program)
        .map_err(|e| format!("cannot run '{program}': {e}"))
        .map(|path| {
            let probe = version::query(&path, version::VERSION_TIMEOUT);
            (path, probe)
        });
    let socket = agent::find_socket(&machine).map_err(|u| u.to_string());
    let ping = socket
        .as_ref()
        .ok()
        .map(|s| agent::ping(s, AGENT_DEADLINE).map_err(|e| e.to_string()));
    let vm_exec = match (&socket, &ping) {
        (Ok(s), Some(Ok(_))) => Some(
            match agent::vm_exec(s, &["true".to_string()], 2000, AGENT_DEADLINE) {
                Ok(crate::agent_wire::Answer::Completed { exit_code, .. }) => Ok(exit_code),
                Ok(crate::agent_wire::Answer::Error { message, code }) => Err(format!(
                    "error {}: {message}",
                    code.as_deref().unwrap_or("-")
                )),
                Err(e) => Err(e.to_string()),
            },
        ),
        _ => None,
    };
    let log = match std::env::var_os("PTY_RESIZE_LOG") {
        Some(v) if v.is_empty() => LogPlace::Off,
        Some(v) => LogPlace::Env(PathBuf::from(v)),
        None => crate::log::default_path().map_or(LogPlace::Nowhere, LogPlace::Default),
    };
    Facts {
        machine,
        smolvm,
        socket,
        ping,
        vm_exec,
        lock_dir: crate::lock::dir(),
        ttys: (isatty(0), isatty(1)),
        size: crate::size::read_host().map_err(|e| e.to_string()),
        log,
    }
}

fn isatty(fd: i32) -> bool {
    // SAFETY: isatty only queries the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

fn line(check: &'static str, status: &str, detail: impl Into<String>) -> Line {
    Line {
        check,
        status: status.to_string(),
        detail: detail.into(),
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// The lines and the verdict for `facts` (pure): the transport is chosen as
/// a session would choose it.
pub fn judge(f: &Facts) -> (Vec<Line>, Verdict) {
    let mut lines = Vec::new();
    let native = match &f.smolvm {
        Ok((path, probe)) => {
            let (status, detail, native) = match probe {
                Probe::Version(v) if version::is_native(*v) => (
                    "ok",
                    format!(
                        "smolvm {}.{}.{} at {}: forwards sizes itself (0.8.1+), pty-resize only sizes the first frame",
                        v.0, v.1, v.2, shown(path)
                    ),
                    true,
                ),
                Probe::Version(v) => (
                    "ok",
                    format!(
                        "smolvm {}.{}.{} at {}: does not forward sizes (before 0.8.1), pty-resize pushes them",
                        v.0, v.1, v.2, shown(path)
                    ),
                    false,
                ),
                Probe::NoVersion => (
                    "warn",
                    format!("{}: --version printed no version; taken as 0.8.0", shown(path)),
                    false,
                ),
                Probe::Timeout => (
                    "warn",
                    format!("{}: --version gave no answer in 2 s; taken as 0.8.0", shown(path)),
                    false,
                ),
                Probe::Failed(e) => (
                    "warn",
                    format!("{}: --version failed ({e}); taken as 0.8.0", shown(path)),
                    false,
                ),
            };
            lines.push(line("smolvm", status, detail));
            Some(native)
        }
        Err(e) => {
            lines.push(line(
                "smolvm",
                "FAIL",
                format!("{e} (--smolvm PATH names another)"),
            ));
            None
        }
    };
    let running = match &f.socket {
        Ok(sock) => {
            lines.push(line(
                "agent.sock",
                "ok",
                format!(
                    "{} (its folder's name file says '{}')",
                    shown(sock),
                    f.machine
                ),
            ));
            match &f.ping {
                Some(Ok(v)) => {
                    lines.push(line(
                        "ping",
                        "ok",
                        format!("the agent answered pong (protocol {v})"),
                    ));
                    true
                }
                Some(Err(e)) => {
                    lines.push(line(
                        "ping",
                        "FAIL",
                        format!("{e}: the machine is not running"),
                    ));
                    false
                }
                None => false,
            }
        }
        Err(e) => {
            lines.push(line(
                "agent.sock",
                "FAIL",
                format!(
                    "{e}: machine '{}' is not running (smolvm machine start --name {}), or its \
                     state is elsewhere (PTY_RESIZE_AGENT_SOCKET)",
                    f.machine, f.machine
                ),
            ));
            lines.push(line("ping", "-", "skipped: no socket"));
            false
        }
    };
    let agent_ok = match &f.vm_exec {
        Some(Ok(0)) => {
            lines.push(line("vm_exec", "ok", "`true` ran at VM level, exit 0"));
            true
        }
        Some(Ok(code)) => {
            lines.push(line(
                "vm_exec",
                "FAIL",
                format!("`true` at VM level exited {code}"),
            ));
            false
        }
        Some(Err(e)) => {
            lines.push(line("vm_exec", "FAIL", e.clone()));
            false
        }
        None => {
            lines.push(line("vm_exec", "-", "skipped: no agent answered"));
            false
        }
    };
    match &f.lock_dir {
        Some(d) => lines.push(line(
            "lock",
            "ok",
            format!("{} (one start-up at a time per machine)", shown(d)),
        )),
        None => lines.push(line(
            "lock",
            "warn",
            "no usable folder (XDG_RUNTIME_DIR, XDG_CACHE_HOME, HOME): sessions run uncoordinated",
        )),
    }
    let terminal = f.ttys.0 && f.ttys.1;
    match (f.ttys, &f.size) {
        ((true, true), Ok(s)) => lines.push(line(
            "terminal",
            "ok",
            format!("stdin and stdout are terminals, {s}"),
        )),
        ((true, true), Err(e)) => lines.push(line(
            "terminal",
            "warn",
            format!("stdin and stdout are terminals, but no usable size: {e}"),
        )),
        ((i, o), _) => {
            let which = match (i, o) {
                (false, false) => "neither stdin nor stdout is a terminal",
                (false, true) => "stdin is not a terminal",
                _ => "stdout is not a terminal",
            };
            lines.push(line(
                "terminal",
                "FAIL",
                format!("{which}: a session runs as is"),
            ));
        }
    }
    lines.push(match &f.log {
        LogPlace::Env(p) => line("log", "ok", format!("{} (PTY_RESIZE_LOG)", shown(p))),
        LogPlace::Default(p) => line("log", "ok", format!("{} (the default)", shown(p))),
        LogPlace::Off => line("log", "-", "off (PTY_RESIZE_LOG is empty)"),
        LogPlace::Nowhere => line("log", "-", "none (no XDG_STATE_HOME, no HOME)"),
    });
    let (transport, why, bridged) = if native.is_none() {
        ("none", "smolvm cannot be run".to_string(), false)
    } else if !terminal {
        (
            "none",
            "not a terminal: the command runs as is (passthrough)".to_string(),
            false,
        )
    } else if !running {
        (
            "none",
            format!("machine '{}' is not running", f.machine),
            false,
        )
    } else if native == Some(true) {
        (
            "native",
            "smolvm forwards every resize itself; no side channel".to_string(),
            true,
        )
    } else if agent_ok {
        (
            "agent",
            "vm_exec on agent.sock: readiness seen at VM level, each resize one vm_exec"
                .to_string(),
            true,
        )
    } else {
        (
            "channel",
            "the agent's vm_exec fails (agent-fallback): a CLI side channel, ready at raw mode + 2 s"
                .to_string(),
            true,
        )
    };
    lines.push(line("transport", transport, why.clone()));
    let text = if bridged {
        format!("bridged (transport {transport})")
    } else {
        format!("not bridged: {why}")
    };
    (lines, Verdict { bridged, text })
}

/// The report as printed (pure).
pub fn render(machine: &str, lines: &[Line], verdict: &Verdict) -> String {
    let mut out = format!("pty-resize doctor: machine '{machine}'\n");
    for l in lines {
        out.push_str(&format!("{:<10} {:<7} {}\n", l.check, l.status, l.detail));
    }
    out.push_str(&format!("verdict: {}\n", verdict.text));
    out
}

/// Runs the doctor: prints the report on stdout, returns the exit code.
pub fn run(cli: &DoctorCli) -> i32 {
    let facts = gather(cli);
    let (lines, verdict) = judge(&facts);
    print!("{}", render(&facts.machine, &lines, &verdict));
    if verdict.bridged {
        EXIT_BRIDGED
    } else {
        EXIT_NOT_BRIDGED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            machine: "m".into(),
            smolvm: Ok((PathBuf::from("/bin/smolvm"), Probe::Version((0, 8, 0)))),
            socket: Ok(PathBuf::from("/c/agent.sock")),
            ping: Some(Ok(1)),
            vm_exec: Some(Ok(0)),
            lock_dir: Some(PathBuf::from("/run/pty-resize")),
            ttys: (true, true),
            size: Ok(Size::new(100, 30)),
            log: LogPlace::Default(PathBuf::from("/s/pty-resize.log")),
        }
    }

    fn verdict(f: &Facts) -> (String, bool) {
        let (lines, v) = judge(f);
        let t = lines.iter().find(|l| l.check == "transport").unwrap();
        (t.status.clone(), v.bridged)
    }

    #[test]
    fn the_transport_is_chosen_as_a_session_would() {
        assert_eq!(verdict(&facts()), ("agent".into(), true));
        let mut f = facts();
        f.smolvm = Ok((PathBuf::from("/s"), Probe::Version((0, 8, 1))));
        assert_eq!(verdict(&f), ("native".into(), true));
        let mut f = facts();
        f.vm_exec = Some(Ok(127));
        assert_eq!(verdict(&f), ("channel".into(), true));
        let mut f = facts();
        f.socket = Err("no socket at /x".into());
        f.ping = None;
        f.vm_exec = None;
        assert_eq!(verdict(&f), ("none".into(), false));
        let mut f = facts();
        f.ping = Some(Err("refused".into()));
        f.vm_exec = None;
        assert_eq!(verdict(&f), ("none".into(), false));
        let mut f = facts();
        f.ttys = (true, false);
        assert_eq!(verdict(&f), ("none".into(), false));
        let mut f = facts();
        f.smolvm = Err("cannot run 'smolvm': not found in PATH".into());
        assert_eq!(verdict(&f), ("none".into(), false));
    }

    #[test]
    fn one_line_per_check_in_a_fixed_order() {
        let (lines, v) = judge(&facts());
        let checks: Vec<_> = lines.iter().map(|l| l.check).collect();
        assert_eq!(
            checks,
            [
                "smolvm",
                "agent.sock",
                "ping",
                "vm_exec",
                "lock",
                "terminal",
                "log",
                "transport"
            ]
        );
        let text = render("m", &lines, &v);
        assert_eq!(text.lines().count(), checks.len() + 2);
        assert!(
            text.ends_with("verdict: bridged (transport agent)\n"),
            "{text}"
        );
    }
}
