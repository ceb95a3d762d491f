//! Leaving a side channel to finish its bring-up after the session ended.
//!
//! Killing smolvm's client does not stop the exec's bring-up in the VM: it
//! goes on rewriting `config.json` and setting up a container, and the next
//! session on the machine races it. So a side channel still in its bring-up
//! when the session ends is left to finish, watched by a tiny supervisor:
//! `pty-resize __handoff …` (a hidden internal subcommand), started in its own
//! session with the side channel's pidfd, the machine lock and the log fd
//! inherited. It waits for the side channel to end by itself (its stdin is
//! closed, so it does once it runs), kills its process group at the deadline,
//! logs `handoff-done`, and exits; holding the lock until then keeps the next
//! wrapper's bring-up off the machine. The wrapper exits at once.

use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::log::format_line;
use crate::log_event::LogEvent;

/// The hidden subcommand's name (never shown in `--help`).
pub const SUBCOMMAND: &str = "__handoff";

/// How long the killed side channel may take to disappear before the
/// supervisor gives up watching it.
const AFTER_KILL: Duration = Duration::from_secs(1);

/// The signals the supervisor notes and ignores.
const SUPERVISOR_IGNORES: [i32; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        _ => "SIGQUIT",
    }
}

/// Opens a pidfd for `pid` (Linux 5.3+); `None` elsewhere or on error.
pub fn pidfd_open(pid: u32) -> Option<RawFd> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open takes a pid and flags, returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        (fd >= 0).then_some(fd as RawFd)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// What the wrapper hands to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// The side channel's pid (= its process group: it called setsid).
    pub pid: u32,
    /// A pidfd of it, if the kernel has them.
    pub pidfd: Option<RawFd>,
    /// The machine lock held for its bring-up.
    pub lock_fd: Option<RawFd>,
    /// The decision log.
    pub log_fd: Option<RawFd>,
    /// Read ends of its output pipes, drained so it never dies of SIGPIPE.
    pub drain: Vec<RawFd>,
    /// How long it may still take.
    pub deadline: Duration,
    /// The wrapper's log clock at the hand-off.
    pub t0: Duration,
}

fn fd_arg(fd: Option<RawFd>) -> String {
    fd.map_or_else(|| "-".to_string(), |f| f.to_string())
}

impl Handoff {
    /// The supervisor's arguments after the subcommand.
    pub fn args(&self) -> Vec<String> {
        vec![
            self.pid.to_string(),
            fd_arg(self.pidfd),
            fd_arg(self.lock_fd),
            fd_arg(self.log_fd),
            if self.drain.is_empty() {
                "-".to_string()
            } else {
                self.drain
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            },
            self.deadline.as_millis().to_string(),
            self.t0.as_micros().to_string(),
        ]
    }

    /// Parses [`Handoff::args`]; `None` if malformed.
    pub fn parse(args: &[String]) -> Option<Self> {
        let fd = |s: &String| -> Option<Option<RawFd>> {
            if s == "-" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        let drain = |s: &String| -> Option<Vec<RawFd>> {
            if s == "-" {
                return Some(Vec::new());
            }
            s.split(',').map(|f| f.parse().ok()).collect()
        };
        match args {
            [pid, pidfd, lock, log, pipes, deadline, t0] => Some(Self {
                pid: pid.parse().ok()?,
                pidfd: fd(pidfd)?,
                lock_fd: fd(lock)?,
                log_fd: fd(log)?,
                drain: drain(pipes)?,
                deadline: Duration::from_millis(deadline.parse().ok()?),
                t0: Duration::from_micros(t0.parse().ok()?),
            }),
            _ => None,
        }
    }

    /// Starts the supervisor (own session, stdio on /dev/null, only the
    /// listed fds inherited). Errors mean the caller must kill instead.
    pub fn spawn(&self) -> std::io::Result<()> {
        let keep: Vec<RawFd> = [self.pidfd, self.lock_fd, self.log_fd]
            .into_iter()
            .flatten()
            .chain(self.drain.iter().copied())
            .collect();
        spawn_detached(SUBCOMMAND, &self.args(), keep)
    }
}

/// Starts `pty-resize SUBCOMMAND ARGS…` in a session of its own, stdio on
/// /dev/null, with the `keep` fds inherited (and no other). It is not waited
/// for: it outlives the wrapper by design and is reaped by whoever adopts it.
pub fn spawn_detached(subcommand: &str, args: &[String], keep: Vec<RawFd>) -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg(subcommand)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid and fcntl are async-signal-safe; `keep` is only read.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            for fd in &keep {
                libc::fcntl(*fd, libc::F_SETFD, 0);
            }
            Ok(())
        });
    }
    cmd.spawn().map(drop)
}

/// Termination signals, from now on noted (in the returned flags) and
/// otherwise ignored: a keeper that ended early would release the machine
/// lock while a bring-up still runs in the VM.
pub fn note_and_ignore_stop_signals() -> [(i32, Arc<AtomicBool>); 4] {
    SUPERVISOR_IGNORES.map(|sig| {
        let flag = Arc::new(AtomicBool::new(false));
        let _ = signal_hook::flag::register(sig, flag.clone());
        (sig, flag)
    })
}

/// The names of the signals `caught` noted, comma-separated, if any.
pub fn noted(caught: &[(i32, Arc<AtomicBool>)]) -> Option<String> {
    let names: Vec<&str> = caught
        .iter()
        .filter(|(_, flag)| flag.load(Ordering::Relaxed))
        .map(|(sig, _)| signal_name(*sig))
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// Reads and discards whatever is ready on the drained pipes; forgets the
/// ones that reached EOF.
fn drain_ready(fds: &mut Vec<libc::pollfd>) {
    let mut buf = [0u8; 4096];
    fds.retain(|p| {
        if p.revents == 0 {
            return true;
        }
        // SAFETY: a read into a local buffer from an inherited fd.
        let n = unsafe { libc::read(p.fd, buf.as_mut_ptr().cast(), buf.len()) };
        n > 0
    });
}

/// Waits until the process behind `pidfd` (or `pid`) is gone, up to
/// `limit`, draining its output pipes meanwhile.
fn wait_gone(h: &Handoff, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    let pollfd = |fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut pipes: Vec<libc::pollfd> = h.drain.iter().map(|&fd| pollfd(fd)).collect();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        // With a pidfd, poll it; without, probe the pid every 20 ms (once
        // the wrapper is gone the side channel is adopted and reaped).
        let mut set: Vec<libc::pollfd> = h.pidfd.map(pollfd).into_iter().collect();
        let watched = set.len();
        set.extend(pipes.iter().copied());
        let step = if watched == 1 {
            left
        } else {
            left.min(Duration::from_millis(20))
        };
        // Rounded up: poll's millisecond timeout must not end early.
        let ms = step.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: a valid array of pollfds; an empty one just sleeps.
        let rc = unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, ms) };
        if rc > 0 && watched == 1 && set[0].revents != 0 {
            return true;
        }
        pipes = set.split_off(watched);
        drain_ready(&mut pipes);
        // SAFETY: signal 0 only checks existence.
        if watched == 0 && unsafe { libc::kill(h.pid as libc::pid_t, 0) } != 0 {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
    }
}

/// The supervisor's body (`pty-resize __handoff …`); returns its exit code.
pub fn supervise(args: &[String]) -> i32 {
    let Some(h) = Handoff::parse(args) else {
        eprintln!("pty-resize: {SUBCOMMAND} is internal");
        return 2;
    };
    let start = Instant::now();
    let caught = note_and_ignore_stop_signals();
    let outcome = if wait_gone(&h, h.deadline) {
        "exited"
    } else {
        // Its process group: the client and anything it started.
        // SAFETY: killpg with a plain pid; at worst ESRCH.
        unsafe { libc::killpg(h.pid as libc::pid_t, libc::SIGKILL) };
        wait_gone(&h, AFTER_KILL);
        "killed"
    };
    if let Some(fd) = h.log_fd {
        let ev = LogEvent::HandoffDone {
            pid: h.pid,
            outcome,
            after: start.elapsed(),
            ignored: noted(&caught),
        };
        let line = format_line(h.t0 + start.elapsed(), ev.name(), &ev.fields());
        // SAFETY: a write of a valid buffer to an inherited fd.
        unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
    }
    // The lock fd closes with this process: the next bring-up may start.
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let h = Handoff {
            pid: 42,
            pidfd: Some(7),
            lock_fd: None,
            log_fd: Some(3),
            drain: vec![5, 6],
            deadline: Duration::from_millis(10_000),
            t0: Duration::from_micros(1_234_567),
        };
        assert_eq!(h.args(), ["42", "7", "-", "3", "5,6", "10000", "1234567"]);
        assert_eq!(Handoff::parse(&h.args()), Some(h.clone()));
        let none = Handoff {
            drain: Vec::new(),
            ..h
        };
        assert_eq!(none.args()[4], "-");
        assert_eq!(Handoff::parse(&none.args()), Some(none));
        assert_eq!(Handoff::parse(&["1".to_string()]), None);
        let bad: Vec<String> = ["x", "-", "-", "-", "-", "1", "0"].map(String::from).into();
        assert_eq!(Handoff::parse(&bad), None);
        assert_eq!(supervise(&bad), 2);
    }

    #[test]
    fn the_supervisor_waits_for_an_exit_and_kills_at_the_deadline() {
        // A process that ends by itself: seen as exited, quickly.
        let mut quick = Command::new("sh").args(["-c", "exit 0"]).spawn().unwrap();
        let pidfd = pidfd_open(quick.id());
        let h = Handoff {
            pid: quick.id(),
            pidfd,
            lock_fd: None,
            log_fd: None,
            drain: Vec::new(),
            deadline: Duration::from_secs(10),
            t0: Duration::ZERO,
        };
        let t = Instant::now();
        assert!(wait_gone(&h, h.deadline));
        assert!(t.elapsed() < Duration::from_secs(5));
        quick.wait().unwrap();

        // A process that would run for a minute, in its own group: killed.
        let mut slow = Command::new("sleep");
        slow.arg("60");
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            slow.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut slow = slow.spawn().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        use std::os::fd::AsRawFd;
        let h = Handoff {
            pid: slow.id(),
            pidfd: pidfd_open(slow.id()),
            lock_fd: None,
            log_fd: Some(log.as_raw_fd()),
            drain: Vec::new(),
            deadline: Duration::from_millis(200),
            t0: Duration::from_millis(5),
        };
        // The reaper must be someone: here, a thread of the test.
        let reaper = std::thread::spawn(move || slow.wait().unwrap());
        assert_eq!(supervise(&h.args()), 0);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(reaper.join().unwrap().signal(), Some(libc::SIGKILL));
        let recs = crate::log::read(&dir.path().join("log")).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].event, "handoff-done");
        assert_eq!(recs[0].get("outcome"), Some("killed"));
        assert!(recs[0].t_ms >= 205.0, "{}", recs[0].t_ms);
    }
}
