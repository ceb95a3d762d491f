//! The event loop: wires signals, the child, readiness, the pushers and the
//! decision log around the pure state machine.

use std::collections::VecDeque;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGWINCH};

use crate::channel::{Channel, ExecPush};
use crate::cli::{Cli, Mode};
use crate::log::Log;
use crate::size::{self, Size};
use crate::state::{self, Action, Machine, Outcome};
use crate::{readiness, script, smolvm_argv, version};

/// Exit code for usage errors.
pub const EXIT_USAGE: i32 = 2;
/// Exit code when the program cannot be run.
pub const EXIT_CANNOT_RUN: i32 = 127;
/// Exit code for an internal error before the child started.
pub const EXIT_INTERNAL: i32 = 1;

/// How often the terminal's mode is polled while waiting for readiness.
const READINESS_POLL: Duration = Duration::from_millis(5);

/// How long a closing channel may take to end by itself before it is killed
/// (when the wrapper exits) — see [`Channel::close`].
const CHANNEL_GRACE: Duration = Duration::from_millis(100);

/// Everything the event loop reacts to.
#[derive(Debug)]
pub enum Event {
    /// A signal caught by the signal thread.
    Signal(i32),
    /// The wrapped command ended.
    ChildExited(ExitStatus),
    /// A one-exec push ended.
    ExecDone {
        /// The push id.
        id: u64,
        /// Its exit status (or the wait error).
        status: Result<ExitStatus, String>,
        /// What it printed on stdout.
        stdout: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A line from the persistent channel's stdout.
    ChannelLine(String),
    /// A line from the persistent channel's stderr.
    ChannelStderr(String),
    /// The persistent channel's stdout closed.
    ChannelEof,
}

/// The exit code the shell convention gives a status: the code, or 128+N for signal N.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(EXIT_INTERNAL)
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

fn isatty(fd: i32) -> bool {
    // SAFETY: isatty only queries the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// The wrapper's entry point: returns the process exit code.
pub fn main() -> i32 {
    let start = Instant::now();
    ensure_std_fds();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    if cli.machine.is_empty() {
        eprintln!("pty-resize: error: the machine name is empty (try 'pty-resize --help')");
        return EXIT_USAGE;
    }
    let mut log = match &cli.log {
        Some(path) => match Log::open(path, start) {
            Ok(log) => log,
            Err(e) => {
                eprintln!("pty-resize: cannot open log '{}': {e}", path.display());
                return EXIT_INTERNAL;
            }
        },
        None => Log::disabled(start),
    };
    let program = &cli.argv[0];
    let main_path = match version::resolve(program) {
        Ok(p) => p,
        Err(reason) => return cannot_run(program, &reason, &mut log),
    };
    let side_path = match &cli.smolvm {
        Some(p) => match version::resolve(&p.to_string_lossy()) {
            Ok(p) => p,
            Err(reason) => return cannot_run(&p.to_string_lossy(), &reason, &mut log),
        },
        None => main_path.clone(),
    };

    let parsed = smolvm_argv::parse(&cli.argv);
    let passthrough_reason = if !isatty(0) || !isatty(1) {
        Some("not-a-tty".to_string())
    } else if !parsed.as_ref().is_some_and(|p| p.tty) {
        Some("no-tty-exec".to_string())
    } else if cli.force_bridge {
        None
    } else {
        let (answer, source) = version::detect(&main_path);
        let src = format!("{source:?}").to_lowercase();
        match answer {
            Ok(Some(v)) if version::is_native(v) => Some(format!("native-{}.{}.{}", v.0, v.1, v.2)),
            Ok(Some(v)) => {
                log.event(
                    "version",
                    &[
                        ("version", format!("{}.{}.{}", v.0, v.1, v.2)),
                        ("source", src),
                    ],
                );
                None
            }
            Ok(None) => {
                log.event("version", &[("version", "unknown".into()), ("source", src)]);
                None
            }
            Err(e) => {
                log.event("version", &[("version", "unknown".into()), ("error", e)]);
                None
            }
        }
    };
    if let Some(reason) = passthrough_reason {
        log.event("start", &[("bridge", "off".into()), ("reason", reason)]);
        // Replace the wrapper: exit codes, signals and the terminal are then
        // exactly the command's own, at zero cost.
        let err = Command::new(&main_path)
            .arg0(program)
            .args(&cli.argv[1..])
            .exec();
        return cannot_run(program, &err.to_string(), &mut log);
    }
    let parsed = parsed.expect("bridge implies a parsed exec");
    bridge(&cli, parsed, &main_path, side_path, log, start)
}

fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        _ => {
            let line = crate::cli::one_line_error(&e.render().to_string());
            eprintln!("pty-resize: error: {line} (try 'pty-resize --help')");
            EXIT_USAGE
        }
    }
}

fn cannot_run(program: &str, reason: &str, log: &mut Log) -> i32 {
    log.event(
        "exit",
        &[
            ("code", EXIT_CANNOT_RUN.to_string()),
            ("reason", reason.to_string()),
        ],
    );
    eprintln!("pty-resize: cannot run '{program}': {reason}");
    EXIT_CANNOT_RUN
}

/// A session token: only digits, unique per wrapper process.
fn make_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(Instant::now().elapsed().as_nanos());
    // Keep it short enough to read in a log; collisions need the same pid too.
    (h.finish() % 1_000_000_000) * 10_000_000 + u64::from(std::process::id()) % 10_000_000
}

/// Where the push in flight went.
enum Transport {
    Channel,
    Exec(ExecPush),
}

struct Session {
    tx: Sender<Event>,
    log: Log,
    start: Instant,
    side_path: PathBuf,
    machine: String,
    mode: Mode,
    token: Option<u64>,
    sm: Machine,
    channel: Option<Channel>,
    channel_failed: bool,
    channel_stderr: Option<String>,
    in_flight: Option<(u64, Size, Transport)>,
    child_pid: Pid,
}

fn bridge(
    cli: &Cli,
    parsed: smolvm_argv::ExecArgv,
    main_path: &std::path::Path,
    side_path: PathBuf,
    mut log: Log,
    start: Instant,
) -> i32 {
    let (tx, rx) = mpsc::channel();
    // Signals first: a resize from now on is never lost.
    let mut signals =
        match signal_hook::iterator::Signals::new([SIGWINCH, SIGTERM, SIGHUP, SIGINT, SIGQUIT]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("pty-resize: cannot install signal handlers: {e}");
                return EXIT_INTERNAL;
            }
        };
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for sig in signals.forever() {
                if tx.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
        });
    }
    let initial = size::read_host();
    log.event(
        "size",
        &[
            ("size", initial.map_or("none".into(), |s| s.to_string())),
            ("at", "start".into()),
        ],
    );
    let token = make_token();
    let mut argv = cli.argv.clone();
    let prologue = match (cli.no_prologue, parsed.separator, initial) {
        (false, Some(sep), Some(size)) if parsed.has_command(&argv) => {
            argv = smolvm_argv::with_prologue(&argv, sep, &script::prologue(size, token));
            log.event(
                "prologue",
                &[("size", size.to_string()), ("token", token.to_string())],
            );
            true
        }
        _ => {
            let reason = if cli.no_prologue {
                "disabled"
            } else if initial.is_none() {
                "no-size"
            } else {
                "no-command"
            };
            log.event(
                "prologue",
                &[("applied", "false".into()), ("reason", reason.into())],
            );
            false
        }
    };
    let observable = readiness::observable(readiness::stdin_lflags());
    let mut child = match Command::new(main_path)
        .arg0(&argv[0])
        .args(&argv[1..])
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return cannot_run(&argv[0], &e.to_string(), &mut log),
    };
    // From here on nothing is written to the terminal: the child owns it.
    let child_pid = Pid::from_raw(child.id() as i32);
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(Event::ChildExited(status));
            }
        });
    }
    let cfg = state::Config {
        fallback: Duration::from_millis(cli.fallback_ms),
        push_timeout: Duration::from_millis(cli.push_timeout_ms),
    };
    let mut s = Session {
        tx,
        log,
        start,
        side_path,
        machine: cli.machine.clone(),
        mode: cli.mode,
        token: prologue.then_some(token),
        sm: Machine::new(cfg),
        channel: None,
        channel_failed: false,
        channel_stderr: None,
        in_flight: None,
        child_pid,
    };
    let now = s.now();
    let actions = s.sm.start(now, initial, prologue, observable);
    s.execute(actions);
    s.event_loop(rx, observable)
}

impl Session {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn event_loop(&mut self, rx: Receiver<Event>, observable: bool) -> i32 {
        loop {
            let polling = observable && !self.sm.is_ready();
            let now = self.now();
            let mut wait = self.sm.next_deadline().map(|d| d.saturating_sub(now));
            if polling {
                wait = Some(wait.map_or(READINESS_POLL, |w| w.min(READINESS_POLL)));
            }
            let event = match wait {
                Some(w) => match rx.recv_timeout(w) {
                    Ok(ev) => Some(ev),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return EXIT_INTERNAL,
                },
                None => match rx.recv() {
                    Ok(ev) => Some(ev),
                    Err(_) => return EXIT_INTERNAL,
                },
            };
            if let Some(ev) = event {
                if let Some(code) = self.handle(ev) {
                    return code;
                }
            }
            if observable && !self.sm.is_ready() && readiness::went_raw(readiness::stdin_lflags()) {
                let now = self.now();
                let actions = self.sm.ready(now);
                self.execute(actions);
            }
            let now = self.now();
            let actions = self.sm.tick(now);
            self.execute(actions);
        }
    }

    /// Handles one event; `Some(code)` ends the session.
    fn handle(&mut self, ev: Event) -> Option<i32> {
        match ev {
            Event::ChildExited(status) => return Some(self.finish(status)),
            Event::Signal(sig) => self.signal(sig),
            Event::ExecDone {
                id,
                status,
                stdout,
                stderr,
            } => {
                if matches!(self.in_flight, Some((fid, _, Transport::Exec(_))) if fid == id) {
                    self.in_flight = None;
                }
                let outcome = match status {
                    Ok(st) if st.success() => Outcome::Ok,
                    Ok(st) => Outcome::Failed(describe_failure(st, &stdout, &stderr)),
                    Err(e) => Outcome::Failed(format!("wait: {e}")),
                };
                let now = self.now();
                let actions = self.sm.push_done(now, id, outcome);
                self.execute(actions);
            }
            Event::ChannelLine(line) => self.channel_line(line),
            Event::ChannelStderr(line) => self.channel_stderr = Some(line),
            Event::ChannelEof => {
                if self.channel.is_some() {
                    let actions = self.channel_dead("eof");
                    self.execute(actions);
                }
            }
        }
        None
    }

    /// An answer from the channel: completes the push it carried.
    fn channel_line(&mut self, line: String) {
        let Some(ack) = script::parse_ack(&line) else {
            return;
        };
        let Some((id, size, Transport::Channel)) = self.in_flight else {
            self.log.event("channel-line", &[("line", line)]);
            return;
        };
        self.in_flight = None;
        let outcome = match ack {
            Ok(got) if got == size => Outcome::Ok,
            Ok(got) => Outcome::Failed(format!("ack for {got}, expected {size}")),
            Err(line) => Outcome::Failed(format!("channel: {line}")),
        };
        let now = self.now();
        let actions = self.sm.push_done(now, id, outcome);
        self.execute(actions);
    }

    fn signal(&mut self, sig: i32) {
        let name =
            Signal::try_from(sig).map_or_else(|_| sig.to_string(), |s| s.as_str().to_string());
        match sig {
            SIGWINCH => {
                let size = size::read_host();
                let now = self.now();
                let actions = self.sm.winch(now, size);
                self.execute(actions);
            }
            SIGTERM | SIGHUP => {
                let r = kill(self.child_pid, Signal::try_from(sig).ok());
                self.log.event(
                    "signal",
                    &[
                        ("signal", name),
                        ("action", "forwarded".into()),
                        ("ok", r.is_ok().to_string()),
                    ],
                );
            }
            _ => {
                // SIGINT/SIGQUIT come from the terminal, which sends them to the
                // child too: the wrapper outlives them and exits with the child.
                self.log
                    .event("signal", &[("signal", name), ("action", "ignored".into())]);
            }
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let more = match action {
                Action::Log(e) => {
                    self.log.event(e.event, &e.fields);
                    Vec::new()
                }
                Action::Ready => {
                    if self.mode == Mode::Channel {
                        self.open_channel();
                    }
                    Vec::new()
                }
                Action::Push { id, size } => self.push(id, size),
                Action::Abort { id } => self.abort(id),
            };
            queue.extend(more);
        }
    }

    fn open_channel(&mut self) {
        match Channel::open(&self.side_path, &self.machine, self.token, self.tx.clone()) {
            Ok(ch) => {
                self.log
                    .event("channel-open", &[("pid", ch.pid().to_string())]);
                self.channel = Some(ch);
            }
            Err(e) => {
                self.channel_failed = true;
                self.log
                    .event("channel-dead", &[("reason", format!("spawn: {e}"))]);
            }
        }
    }

    /// Kills the channel, logs why, and fails the push it carried (which the
    /// state machine then retries through one exec per push).
    fn channel_dead(&mut self, reason: &str) -> Vec<Action> {
        let mut fields = vec![("reason", reason.to_string())];
        if let Some(ch) = self.channel.take() {
            // The channel is broken: no grace, kill it now.
            if let Some(st) = ch.close(Duration::ZERO) {
                fields.push(("status", describe_status(st)));
            }
        }
        if let Some(line) = self.channel_stderr.take() {
            fields.push(("stderr", line));
        }
        self.channel_failed = true;
        self.log.event("channel-dead", &fields);
        match self.in_flight {
            Some((id, _, Transport::Channel)) => {
                self.in_flight = None;
                let now = self.now();
                self.sm
                    .push_done(now, id, Outcome::TransportDied(format!("channel {reason}")))
            }
            _ => Vec::new(),
        }
    }

    fn push(&mut self, id: u64, size: Size) -> Vec<Action> {
        if self.channel.is_some() {
            self.log.event(
                "push",
                &[
                    ("id", id.to_string()),
                    ("size", size.to_string()),
                    ("mode", "channel".into()),
                ],
            );
            let sent = self.channel.as_mut().map(|c| c.send(size));
            match sent {
                Some(Ok(())) => {
                    self.in_flight = Some((id, size, Transport::Channel));
                    return Vec::new();
                }
                _ => {
                    // Mark it in flight through the channel so channel_dead retries it.
                    self.in_flight = Some((id, size, Transport::Channel));
                    return self.channel_dead("write");
                }
            }
        }
        self.log.event(
            "push",
            &[
                ("id", id.to_string()),
                ("size", size.to_string()),
                ("mode", "exec".into()),
            ],
        );
        match ExecPush::spawn(
            &self.side_path,
            &self.machine,
            id,
            size,
            self.token,
            self.tx.clone(),
        ) {
            Ok(p) => {
                self.in_flight = Some((id, size, Transport::Exec(p)));
                Vec::new()
            }
            Err(e) => {
                let now = self.now();
                self.sm
                    .push_done(now, id, Outcome::Failed(format!("spawn: {e}")))
            }
        }
    }

    fn abort(&mut self, id: u64) -> Vec<Action> {
        match self.in_flight.take() {
            Some((fid, size, Transport::Channel)) if fid == id => {
                self.in_flight = Some((fid, size, Transport::Channel));
                self.channel_dead("timeout")
            }
            Some((fid, _, Transport::Exec(p))) if fid == id => {
                p.kill();
                let now = self.now();
                self.sm
                    .push_done(now, id, Outcome::Failed("timeout".into()))
            }
            other => {
                self.in_flight = other;
                Vec::new()
            }
        }
    }

    /// The child ended: stop every side-channel and return its exit code.
    fn finish(&mut self, status: ExitStatus) -> i32 {
        if let Some((_, _, Transport::Exec(p))) = self.in_flight.take() {
            p.kill();
        }
        if let Some(ch) = self.channel.take() {
            ch.close(CHANNEL_GRACE);
        }
        let code = exit_code(status);
        self.log.event(
            "exit",
            &[
                ("code", code.to_string()),
                ("status", describe_status(status)),
            ],
        );
        code
    }
}

fn describe_status(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit-{c}"),
        (None, Some(s)) => format!("signal-{s}"),
        _ => "unknown".into(),
    }
}

fn describe_failure(st: ExitStatus, stdout: &str, stderr: &str) -> String {
    let msg = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if msg.is_empty() {
        describe_status(st)
    } else {
        format!("{}: {msg}", describe_status(st))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGTERM)), 143);
    }

    #[test]
    fn tokens_are_numbers_and_differ() {
        let a = make_token();
        let b = make_token();
        assert_ne!(a, b);
        assert!(script::token_path(a)
            .trim_start_matches("/tmp/.pty-resize-")
            .chars()
            .all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn failure_description_prefers_stderr() {
        let st = ExitStatus::from_raw(1 << 8);
        assert_eq!(
            describe_failure(st, "", "Error: vm not found: x\n"),
            "exit-1: Error: vm not found: x"
        );
        assert_eq!(describe_failure(st, "", ""), "exit-1");
    }
}
