//! The terminal's guardian: a tiny process that outlives a SIGKILLed wrapper
//! and hands the operator's terminal back.
//!
//! smolvm's client puts the terminal in raw mode and sets `O_NONBLOCK` on
//! fd 0; killed by a signal it restores neither, and a SIGKILLed wrapper runs
//! no code at all (its parent-death signal takes the client down with it,
//! leaving the terminal raw). So before the client starts, the wrapper starts
//! `pty-resize __guardian` (a hidden internal subcommand) in a session of its
//! own: it saves the terminal's mode and flags from the inherited fd 0, says
//! it is ready, then blocks in one `read` on a pipe whose write end only the
//! wrapper holds — no timer, no wakeup while idle.
//!
//! - The wrapper ends normally (or by any path that runs its destructors): it
//!   writes `disarm` first, and the guardian exits without touching anything
//!   (the shell may already own the terminal again).
//! - The wrapper dies without a word (SIGKILL, an abort): the read sees the
//!   end of the pipe. The guardian waits for the session's smolvm client to
//!   be gone (the wrapper sent its pid; where no parent-death signal exists,
//!   as on macOS, it ends the client itself), restores the terminal, exits.
//!
//! Why a session of its own: Ctrl-C, Ctrl-\ and a hang-up go to the
//! terminal's foreground group and session, never to the guardian; and on a
//! terminal that is not its controlling terminal `tcsetattr` needs no
//! foreground check.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::terminal::Saved;

/// The hidden subcommand's name (never shown in `--help`).
pub const SUBCOMMAND: &str = "__guardian";

/// The fd the guardian reads the wrapper's messages on.
const MESSAGES_FD: RawFd = 3;

/// How long the wrapper waits for the guardian to have saved the terminal.
const READY_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a client may outlive the wrapper by itself before the guardian
/// ends it (Linux's parent-death signal makes this at once).
const CLIENT_GRACE: Duration = Duration::from_millis(200);

/// How long the guardian waits for a client it ended to be gone.
const CLIENT_GONE: Duration = Duration::from_secs(1);

/// A message from the wrapper to its guardian (one line each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// The session's smolvm client: gone before the terminal is restored.
    Client(u32),
    /// The wrapper ends normally: touch nothing.
    Disarm,
}

impl Message {
    /// The line on the pipe.
    pub fn line(self) -> String {
        match self {
            Self::Client(pid) => format!("client {pid}\n"),
            Self::Disarm => "disarm\n".to_string(),
        }
    }

    /// Parses one line; unknown lines are ignored by the guardian.
    pub fn parse(line: &str) -> Option<Self> {
        match line.trim().split_once(' ') {
            Some(("client", pid)) => pid.parse().ok().map(Self::Client),
            None if line.trim() == "disarm" => Some(Self::Disarm),
            _ => None,
        }
    }
}

/// What the guardian learned by the time the pipe ended (pure).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    /// The client's pid, if sent.
    pub client: Option<u32>,
    /// Whether the wrapper disarmed it.
    pub disarmed: bool,
}

impl Heard {
    /// Folds the messages read, in order.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Self {
        let mut heard = Heard::default();
        for m in lines.into_iter().filter_map(Message::parse) {
            match m {
                Message::Client(pid) => heard.client = Some(pid),
                Message::Disarm => heard.disarmed = true,
            }
        }
        heard
    }
}

/// The wrapper's handle on its guardian. Dropping it disarms the guardian:
/// every path that runs destructors has handed the terminal back itself.
#[derive(Debug)]
pub struct Guardian {
    messages: Option<File>,
    pid: u32,
}

impl Guardian {
    /// Starts the guardian on fd 0 (`program` is this executable) and waits
    /// until it has saved the terminal; `Err` says why there is none.
    pub fn start(program: &std::path::Path) -> Result<Guardian, String> {
        let (read_end, write_end) = pipe().map_err(|e| format!("pipe: {e}"))?;
        let theirs = read_end.as_raw_fd();
        let mut cmd = Command::new(program);
        cmd.arg(SUBCOMMAND)
            .stdin(Stdio::inherit())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // SAFETY: setsid, dup2 and fcntl are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if theirs == MESSAGES_FD {
                    let fl = libc::fcntl(theirs, libc::F_GETFD);
                    libc::fcntl(theirs, libc::F_SETFD, fl & !libc::FD_CLOEXEC);
                } else if libc::dup2(theirs, MESSAGES_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        drop(read_end);
        let pid = child.id();
        let mut ready = child.stdout.take().ok_or("no stdout pipe")?;
        // The guardian is never waited for: it outlives the wrapper on
        // purpose, and init reaps it. Dropping `child` does not kill it.
        drop(child);
        if !wait_readable(ready.as_raw_fd(), READY_TIMEOUT) {
            return Err("not ready within 500 ms".into());
        }
        let mut byte = [0u8; 1];
        match ready.read(&mut byte) {
            Ok(1) if byte[0] == b'r' => Ok(Guardian {
                messages: Some(File::from(write_end)),
                pid,
            }),
            _ => Err("it exited before it was ready".into()),
        }
    }

    /// Its pid (for the log).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Tells it the session's smolvm client.
    pub fn watch(&mut self, client: u32) {
        self.send(Message::Client(client));
    }

    fn send(&mut self, m: Message) {
        if let Some(f) = self.messages.as_mut() {
            let _ = f.write_all(m.line().as_bytes());
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.send(Message::Disarm);
        self.messages = None;
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array; CLOEXEC so neither end
    // leaks into smolvm's client or the side channels.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for fd in fds {
        // SAFETY: F_SETFD on fds we just made.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Whether `pid` is gone (or only a zombie waiting for its reaper).
fn gone(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid as libc::pid_t, 0) != 0 }
    }
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let until = Instant::now() + within;
    while !gone(pid) {
        if Instant::now() >= until {
            return false;
        }
        // Only after the wrapper died: a short, bounded poll.
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// The guardian process (`pty-resize __guardian`); returns its exit code.
pub fn run() -> i32 {
    // SAFETY: setting dispositions before any thread exists.
    unsafe {
        for sig in [
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGHUP,
            libc::SIGPIPE,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let saved = Saved::save(0);
    {
        let mut out = std::io::stdout();
        if out.write_all(b"r").and_then(|()| out.flush()).is_err() {
            return 1;
        }
    }
    // Nothing of the guardian's may ever reach the terminal.
    // SAFETY: open/dup2 on a constant path and the standard fds.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            libc::close(null);
        }
    }
    // SAFETY: fd 3 was set up by `Guardian::start` for this process alone.
    let messages = unsafe { File::from_raw_fd(MESSAGES_FD) };
    let lines: Vec<String> = BufReader::new(messages)
        .lines()
        .map_while(Result::ok)
        .collect();
    let heard = Heard::from_lines(lines.iter().map(String::as_str));
    if heard.disarmed {
        return 0;
    }
    if let Some(client) = heard.client {
        if !wait_gone(client, CLIENT_GRACE) {
            // No parent-death signal here (macOS): end it as Linux would.
            // SAFETY: kill on the pid the wrapper spawned moments ago.
            unsafe { libc::kill(client as libc::pid_t, libc::SIGKILL) };
            wait_gone(client, CLIENT_GONE);
        }
    }
    let _ = saved.restore();
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_unknown_lines_are_ignored() {
        for m in [Message::Client(4242), Message::Disarm] {
            assert_eq!(Message::parse(&m.line()), Some(m));
        }
        assert_eq!(Message::parse("client x\n"), None);
        assert_eq!(Message::parse("hello\n"), None);
    }

    #[test]
    fn only_a_disarm_spares_the_terminal() {
        assert_eq!(
            Heard::from_lines(["client 7", "disarm"]),
            Heard {
                client: Some(7),
                disarmed: true
            }
        );
        assert_eq!(
            Heard::from_lines(["client 7"]),
            Heard {
                client: Some(7),
                disarmed: false
            }
        );
        assert!(!Heard::from_lines([]).disarmed);
    }

    #[test]
    fn a_live_process_is_not_gone_and_a_reaped_one_is() {
        assert!(!gone(std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(gone(pid));
    }
}
