//! The entry: parse, decide passthrough or bridge, run. `main` maps the one
//! error type to an exit code in one place (`main → run(parse())`).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{self, Cli};
use crate::doctor;
use crate::error::Error;
use crate::guardian;
use crate::handoff;
use crate::hold;
use crate::launch;
use crate::log::Log;
use crate::log_event::LogEvent;
use crate::session::{self, Ending, Plan};
use crate::smolvm_argv::{self, ExecArgv};
use crate::state::Config;
use crate::version::{self, Probe};

/// How long `smolvm --version` may take; after that it counts as unknown
/// (0.8.0 behaviour), and the timeout is cached.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(2);

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Wrap a smolvm command.
    Wrap(Box<Cli>),
    /// `--help` / `--version`: print this on stdout, exit 0.
    Info(String),
    /// The hidden hand-off supervisor ([`handoff::supervise`]).
    Handoff(Vec<String>),
    /// The hidden terminal guardian ([`guardian::run`]).
    Guardian,
    /// The hidden keeper of an abandoned start-up's lock ([`hold::keep`]).
    Hold(Vec<String>),
    /// `pty-resize doctor [--smolvm PATH] [MACHINE]` ([`doctor::run`]).
    Doctor(crate::doctor::DoctorCli),
}

/// Parses the process's arguments and `PTY_RESIZE_LOG`.
pub fn parse() -> Result<Invocation, Error> {
    parse_from(
        std::env::args_os().collect(),
        std::env::var_os("PTY_RESIZE_LOG"),
    )
}

/// Parses `args` (`args[0]` is the program name); `env_log` is
/// `PTY_RESIZE_LOG`, used when `--log` is absent, and ignored when empty.
pub fn parse_from(args: Vec<OsString>, env_log: Option<OsString>) -> Result<Invocation, Error> {
    let has_separator = args.iter().any(|a| a == "--");
    if args.get(1).is_some_and(|a| a == handoff::SUBCOMMAND) {
        let rest = args[2..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return Ok(Invocation::Handoff(rest));
    }
    if args.get(1).is_some_and(|a| a == hold::SUBCOMMAND) {
        let rest = args[2..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return Ok(Invocation::Hold(rest));
    }
    if args.get(1).is_some_and(|a| a == guardian::SUBCOMMAND) {
        return Ok(Invocation::Guardian);
    }
    // `doctor` without a `--`: with one, `doctor` is a machine's name.
    if args.get(1).is_some_and(|a| a == doctor::SUBCOMMAND) && !has_separator {
        let words =
            std::iter::once(OsString::from("pty-resize doctor")).chain(args[2..].iter().cloned());
        return match doctor::DoctorCli::try_parse_from(words) {
            Ok(d) => Ok(Invocation::Doctor(d)),
            Err(e) => match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Ok(Invocation::Info(e.render().to_string()))
                }
                _ => {
                    // clap's "use '-- --x'" tip would be wrong here too.
                    let line = cli::one_line_error(&e.render().to_string());
                    let line = line.split("; tip:").next().unwrap_or(&line).to_string();
                    Err(Error::Usage(format!("doctor: {line}")))
                }
            },
        };
    }
    let mut cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    Ok(Invocation::Info(e.render().to_string()))
                }
                _ => Err(Error::Usage(usage_line(&e, has_separator))),
            };
        }
    };
    // PTY_RESIZE_LOG when --log is absent; an empty one means no log at
    // all (not a file named "", not the default log).
    if cli.log.is_none() && !cli.no_log {
        match env_log {
            Some(v) if v.is_empty() => cli.no_log = true,
            Some(v) => cli.log = Some(PathBuf::from(v)),
            None => {}
        }
    }
    cli.validate().map_err(Error::Usage)?;
    Ok(Invocation::Wrap(Box::new(cli)))
}

/// The one line a usage error prints, with the tip that fixes it.
///
/// clap's own tip for an unknown `-x` ("use '-- -x'") would be wrong here:
/// after `--` comes the smolvm command, and smolvm rejects machine names
/// that start with `-` anyway. A word where the machine's `--` should be
/// (`pty-resize M smolvm …`) gets the separator's tip, even when a later
/// `--` belongs to smolvm.
fn usage_line(e: &clap::Error, has_separator: bool) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    const SEPARATOR_TIP: &str =
        "tip: the smolvm command goes after '--': pty-resize [MACHINE] -- smolvm machine exec …";
    let unknown = match (e.kind(), e.get(ContextKind::InvalidArg)) {
        (ErrorKind::UnknownArgument, Some(ContextValue::String(arg))) => Some(arg.as_str()),
        _ => None,
    };
    match unknown {
        Some(arg) if arg.starts_with('-') => format!(
            "unexpected argument '{arg}' found: not an option of pty-resize, \
             and a machine name (smolvm's rule) starts with a letter or digit"
        ),
        Some(arg) => {
            format!("unexpected argument '{arg}' found; {SEPARATOR_TIP}")
        }
        _ => {
            let mut line = cli::one_line_error(&e.render().to_string());
            if !has_separator {
                line.push_str("; ");
                line.push_str(SEPARATOR_TIP);
            }
            line
        }
    }
}

/// Why the argv runs as is, if it does (pure).
pub fn passthrough_reason(
    stdin_tty: bool,
    stdout_tty: bool,
    exec: Option<&ExecArgv>,
) -> Option<&'static str> {
    if !stdin_tty || !stdout_tty {
        Some("not-a-tty")
    } else if !exec.is_some_and(|e| e.tty) {
        Some("no-tty-exec")
    } else {
        None
    }
}

/// The one line a terminal session that will not be bridged prints on
/// stderr before its command starts (pure): what pty-resize saw, and what
/// would make it bridge.
pub fn not_bridged_line(argv: &[String], exec: Option<&ExecArgv>) -> String {
    const HEAD: &str = "pty-resize: not bridging (runs as is, resizes will not reach the guest)";
    let why = match exec {
        Some(e) if !e.tty => {
            "no -t/--tty before the command: smolvm gives the guest no terminal to size".to_string()
        }
        Some(_) => "internal: a -t exec was not bridged".to_string(),
        None => {
            // `sudo smolvm machine exec …`, `env X=1 smolvm …`: smolvm's exec
            // is there, after a word pty-resize does not look through.
            let at = argv
                .windows(2)
                .position(|w| matches!(w[0].as_str(), "machine" | "vm") && w[1] == "exec");
            match at {
                Some(at) if at >= 2 => {
                    let prefix = argv[..at - 1].join(" ");
                    format!(
                        "the command starts with `{prefix}`, not smolvm: put that before \
                         pty-resize ({prefix} pty-resize -- {} …)",
                        argv[at - 1..=at + 1].join(" ")
                    )
                }
                _ => format!(
                    "`{}` is not a `smolvm machine exec`",
                    argv.iter().take(3).cloned().collect::<Vec<_>>().join(" ")
                ),
            }
        }
    };
    format!("{HEAD}: {why}")
}

fn isatty(fd: i32) -> bool {
    // SAFETY: isatty only queries the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Ends the wrapper the way `ending` says: exits with its code, or dies of
/// its signal by the default action (no core file: the crash, if any, was
/// the child's). Returns the code only if the signal did not end it.
pub fn die_by(ending: Ending) -> i32 {
    if let Ending::Signal(sig) = ending {
        // SAFETY: plain libc calls on local, initialised structs.
        unsafe {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
        }
    }
    ending.code()
}

/// Makes sure fds 0, 1, 2 are open (on /dev/null if they were closed), so
/// files opened later can never take those numbers and be mistaken for them.
pub fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // SAFETY: open/dup2/close on plain integers; the path is a valid C string.
            unsafe {
                let n = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if n >= 0 && n != fd {
                    libc::dup2(n, fd);
                    libc::close(n);
                }
            }
        }
    }
}

/// Runs an invocation; returns how to end (the command's code or signal, or
/// 0 for info).
pub fn run(inv: Invocation) -> Result<Ending, Error> {
    let cli = match inv {
        Invocation::Info(text) => {
            print!("{text}");
            return Ok(Ending::Code(0));
        }
        Invocation::Handoff(args) => return Ok(Ending::Code(handoff::supervise(&args))),
        Invocation::Guardian => return Ok(Ending::Code(guardian::run())),
        Invocation::Hold(args) => return Ok(Ending::Code(hold::keep(&args))),
        Invocation::Doctor(d) => return Ok(Ending::Code(doctor::run(&d))),
        Invocation::Wrap(cli) => cli,
    };
    let start = Instant::now();
    let mut log = match (&cli.log, cli.no_log) {
        (Some(path), _) => Log::open(path, start)?,
        (None, true) => Log::disabled(start),
        // The default log: "resize not working?" always has an answer.
        (None, false) => crate::log::default_path()
            .and_then(|p| crate::log::open_default(&p, crate::log::DEFAULT_MAX, start))
            .unwrap_or_else(|| Log::disabled(start)),
    };
    let result = wrap(&cli, &mut log, start);
    if let Err(e) = &result {
        log.event(&LogEvent::Exit {
            code: e.exit_code(),
            status: e.to_string(),
        });
    }
    result
}

fn wrap(cli: &Cli, log: &mut Log, start: Instant) -> Result<Ending, Error> {
    let program = &cli.argv[0];
    let main_path = version::resolve(program).map_err(|e| Error::cannot_run(program, &e))?;
    let side_path = match &cli.smolvm {
        Some(p) => {
            let shown = p.to_string_lossy();
            version::resolve(&shown).map_err(|e| Error::cannot_run(&shown, &e))?
        }
        None => main_path.clone(),
    };
    // `exec -t CMD` (no `--`, which smolvm accepts) gets one, so the
    // prologue and the marker apply to it as well.
    let argv = smolvm_argv::with_separator(&cli.argv);
    let exec = smolvm_argv::parse(&argv);
    let (stdin_tty, stdout_tty) = (isatty(0), isatty(1));
    if let Some(reason) = passthrough_reason(stdin_tty, stdout_tty, exec.as_ref()) {
        log.event(&LogEvent::Passthrough { reason });
        if stdin_tty && stdout_tty {
            // A terminal that will not follow resizes: never silently.
            eprintln!("{}", not_bridged_line(&cli.argv, exec.as_ref()));
        }
        // Replace the wrapper: exit codes, signals and the terminal are then
        // exactly the command's own, at zero cost.
        let err = Command::new(&main_path)
            .arg0(program)
            .args(&cli.argv[1..])
            .exec();
        return Err(Error::CannotRun {
            program: program.clone(),
            reason: err.to_string(),
        });
    }
    let exec = exec.ok_or_else(|| Error::Internal("bridge without an exec".into()))?;
    // Signals are caught from here on, before `smolvm --version` may run for
    // up to its timeout: a Ctrl-C then ends the wrapper, logged, before any
    // smolvm starts (the session sees it queued), instead of killing it
    // outright.
    let (tx, rx) = mpsc::channel();
    launch::catch_signals(tx.clone())
        .map_err(|e| Error::Internal(format!("cannot install signal handlers: {e}")))?;
    let native = !cli.force_bridge && detect_native(&main_path, log);
    let plan = Plan {
        argv,
        exec,
        main_path,
        side_path,
        machine: cli.machine_name(),
        mode: (!native).then_some(cli.mode),
        config: Config {
            settle: Duration::from_millis(cli.settle_ms),
            fallback: Duration::from_millis(cli.fallback_ms),
            push_timeout: Duration::from_millis(cli.push_timeout_ms),
            native,
            // Set by the session once the agent socket is found.
            agent: None,
        },
        no_prologue: cli.no_prologue,
    };
    session::run(
        plan,
        std::mem::replace(log, Log::disabled(start)),
        start,
        (tx, rx),
    )
}

/// Whether smolvm forwards sizes itself (0.8.1+); logged either way.
fn detect_native(program: &std::path::Path, log: &mut Log) -> bool {
    let cache = version::cache_file();
    let (probe, source) = version::detect(program, cache.as_deref(), VERSION_TIMEOUT);
    let (name, error) = match &probe {
        Probe::Version(_) => ("version", None),
        Probe::NoVersion => ("no-version", None),
        Probe::Timeout => ("timeout", None),
        Probe::Failed(e) => ("failed", Some(e.clone())),
    };
    log.event(&LogEvent::Version {
        version: probe.version(),
        source: source.as_str(),
        probe: name,
        error,
    });
    probe.version().is_some_and(version::is_native)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("pty-resize")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn passthrough_decision() {
        let t = smolvm_argv::parse(&["s", "machine", "exec", "-t"].map(String::from)).unwrap();
        let i = smolvm_argv::parse(&["s", "machine", "exec", "-i"].map(String::from)).unwrap();
        assert_eq!(passthrough_reason(false, true, Some(&t)), Some("not-a-tty"));
        assert_eq!(passthrough_reason(true, false, Some(&t)), Some("not-a-tty"));
        assert_eq!(
            passthrough_reason(true, true, Some(&i)),
            Some("no-tty-exec")
        );
        assert_eq!(passthrough_reason(true, true, None), Some("no-tty-exec"));
        assert_eq!(passthrough_reason(true, true, Some(&t)), None);
    }

    #[test]
    fn parsing_routes_help_handoff_and_errors() {
        assert!(
            matches!(parse_from(args(&["--help"]), None), Ok(Invocation::Info(t)) if t.contains("--settle-ms"))
        );
        assert!(
            matches!(parse_from(args(&["__handoff", "1"]), None), Ok(Invocation::Handoff(a)) if a == ["1"])
        );
        let e = parse_from(
            args(&[
                "--fallback-ms",
                "0",
                "m",
                "--",
                "smolvm",
                "machine",
                "exec",
                "--name",
                "m",
                "-t",
            ]),
            None,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--fallback-ms 0"), "{e}");
        let e = parse_from(args(&["m", "smolvm", "machine"]), None).unwrap_err();
        assert!(e.to_string().contains("goes after '--'"), "{e}");
        let e = parse_from(
            args(&["m", "smolvm", "machine", "exec", "-t", "--", "x"]),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("goes after '--'"), "{e}");
        let e = parse_from(args(&["-m", "--", "smolvm"]), None).unwrap_err();
        assert!(!e.to_string().contains("'-- -m'"), "{e}");
        assert!(
            e.to_string().contains("starts with a letter or digit"),
            "{e}"
        );
        let e = parse_from(args(&["m", "--", "a", "--x"]), None);
        assert!(e.is_ok(), "after -- everything is the command's");
    }

    #[test]
    fn the_log_comes_from_the_flag_else_the_environment_else_the_default() {
        let log = |a: &[&str], env: Option<&str>| match parse_from(args(a), env.map(OsString::from))
        {
            Ok(Invocation::Wrap(cli)) => (cli.log, cli.no_log),
            other => panic!("{other:?}"),
        };
        let p = |s: &str| Some(PathBuf::from(s));
        // Empty: no log at all.
        assert_eq!(log(&["m", "--", "true"], Some("")), (None, true));
        // Nothing said: the default log (chosen at run time).
        assert_eq!(log(&["m", "--", "true"], None), (None, false));
        assert_eq!(
            log(&["--no-log", "m", "--", "true"], Some("/e")),
            (None, true)
        );
        assert_eq!(log(&["m", "--", "true"], Some("/e")), (p("/e"), false));
        assert_eq!(
            log(&["--log", "/f", "m", "--", "true"], Some("/e")),
            (p("/f"), false)
        );
    }

    #[test]
    fn doctor_is_a_subcommand_unless_a_separator_makes_it_a_machine() {
        assert!(matches!(
            parse_from(args(&["doctor"]), None),
            Ok(Invocation::Doctor(d)) if d.machine.is_none()
        ));
        assert!(matches!(
            parse_from(args(&["doctor", "--smolvm", "/s", "bottle"]), None),
            Ok(Invocation::Doctor(d)) if d.machine.as_deref() == Some("bottle")
                && d.smolvm.as_deref() == Some(std::path::Path::new("/s"))
        ));
        assert!(matches!(
            parse_from(args(&["doctor", "--", "smolvm", "machine", "exec", "--name", "doctor", "-t"]), None),
            Ok(Invocation::Wrap(c)) if c.machine_name() == "doctor"
        ));
        let e = parse_from(args(&["doctor", "--bogus"]), None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn a_terminal_session_not_bridged_says_why_in_one_line() {
        let line = |s: &str| {
            let argv: Vec<String> = s.split_whitespace().map(String::from).collect();
            not_bridged_line(&argv, smolvm_argv::parse(&argv).as_ref())
        };
        let l = line("smolvm machine exec --name m -- top");
        assert!(l.starts_with("pty-resize: not bridging"), "{l}");
        assert!(l.contains("no -t/--tty"), "{l}");
        let l = line("sudo smolvm machine exec -t -- top");
        assert!(l.contains("starts with `sudo`"), "{l}");
        assert!(
            l.contains("sudo pty-resize -- smolvm machine exec …"),
            "{l}"
        );
        let l = line("env X=1 smolvm vm exec -t -- top");
        assert!(l.contains("`env X=1`"), "{l}");
        let l = line("smolvm machine ls");
        assert!(
            l.contains("`smolvm machine ls` is not a `smolvm machine exec`"),
            "{l}"
        );
        for s in [
            "smolvm machine exec -- top",
            "sudo smolvm machine exec -t",
            "ls",
        ] {
            assert_eq!(line(s).lines().count(), 1, "{s}");
        }
    }
}
