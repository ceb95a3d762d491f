//! Setting a session up: signals, the main machine lock, the sizing
//! prologue, and the child itself (with a parent-death signal).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use crate::event::{Event, Purpose, Sig};
use crate::lock;
use crate::log::Log;
use crate::log_event::LogEvent;
use crate::script;
use crate::size::Size;
use crate::smolvm_argv::{self, ExecArgv};

/// Installs the handlers for [`Sig::ALL`] and forwards each caught signal as
/// [`Event::Signal`] from a thread. Done before anything else, so no resize
/// and no termination request is ever lost.
pub fn catch_signals(tx: Sender<Event>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new(Sig::ALL.map(|(n, _)| n))?;
    std::thread::spawn(move || {
        for n in signals.forever() {
            if let Some(sig) = Sig::from_raw(n) {
                if tx.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
        }
    });
    Ok(())
}

/// A stop request (SIGTERM, SIGHUP, SIGINT, SIGQUIT) already waiting in
/// `rx`, if any; every other event already there is dropped (before the
/// child starts there is nothing else to react to: the size is read after).
pub fn pending_stop(rx: &Receiver<Event>) -> Option<Sig> {
    let mut stop = None;
    while let Ok(ev) = rx.try_recv() {
        if let Event::Signal(sig @ (Sig::Term | Sig::Hup | Sig::Int | Sig::Quit)) = ev {
            stop = stop.or(Some(sig));
        }
    }
    stop
}

/// The held main lock.
#[derive(Debug)]
pub struct MainLock {
    file: File,
    since: Instant,
}

impl MainLock {
    /// The session ended before it was ready: its bring-up may go on in the
    /// VM, so the lock goes to a keeper ([`crate::hold`]) until the VM shows
    /// the program (`probe`: the agent socket and the marker) or `deadline`.
    /// If no keeper can start, the lock is released as before, logged.
    pub fn hand_over(self, log: &mut Log, deadline: Duration, probe: Option<(PathBuf, String)>) {
        use std::os::fd::AsRawFd;
        let until = if probe.is_some() {
            "program"
        } else {
            "deadline"
        };
        let hold = crate::hold::Hold {
            lock_fd: self.file.as_raw_fd(),
            log_fd: log.raw_fd(),
            deadline,
            t0: log.elapsed(),
            probe,
        };
        log.event(&LogEvent::Hold { deadline, until });
        if let Err(e) = hold.spawn() {
            log.event(&LogEvent::LockUnavailable {
                purpose: Purpose::Main.as_str(),
                reason: format!("no keeper for the abandoned start-up ({e}): released now"),
            });
        }
        // The keeper holds the same open lock: closing ours keeps it locked.
        drop(self.file);
    }

    /// Releases it (readiness) and logs for how long it was held.
    pub fn release(self, log: &mut Log) {
        drop(self.file);
        log.event(&LogEvent::Unlock {
            purpose: Purpose::Main.as_str(),
            held: self.since.elapsed(),
        });
    }
}

/// How waiting for the main lock ended.
#[derive(Debug)]
pub enum LockWait {
    /// Held (or `None`: no lock could be used; the session is uncoordinated).
    Go(Option<MainLock>),
    /// A termination signal (or Ctrl-C, Ctrl-\\) arrived while waiting: no
    /// child to forward it to, so the wrapper ends with it.
    Ended(Sig),
    /// [`LOCK_WAIT_LIMIT`] passed: a start-up never takes that long, so the
    /// holder is stuck (stopped with Ctrl-Z, say); the wrapper gives up.
    TimedOut(Duration),
}

/// After this long waiting for the machine's lock, one line on stderr says why.
pub const LOCK_WAIT_NOTICE: Duration = Duration::from_secs(1);

/// The longest wait for the machine's lock before giving up (exit 1).
pub const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(120);

/// Takes the machine's lock before the main exec spawns, waiting for another
/// session's bring-up to finish if need be; SIGTERM, SIGHUP, SIGINT and
/// SIGQUIT end the wait, and so does [`LOCK_WAIT_LIMIT`].
pub fn main_lock(
    machine: &str,
    path: Option<&Path>,
    rx: &Receiver<Event>,
    tx: &Sender<Event>,
    log: &mut Log,
) -> LockWait {
    let Some(path) = path else {
        log.event(&LogEvent::LockUnavailable {
            purpose: Purpose::Main.as_str(),
            reason: "no lock directory (XDG_RUNTIME_DIR, XDG_CACHE_HOME and HOME unset)".into(),
        });
        return LockWait::Go(None);
    };
    let shown = path.display().to_string();
    let held = |file, waited, log: &mut Log| {
        log.event(&LogEvent::Lock {
            purpose: Purpose::Main.as_str(),
            waited,
            path: shown.clone(),
        });
        LockWait::Go(Some(MainLock {
            file,
            since: Instant::now(),
        }))
    };
    match lock::try_lock(path) {
        Ok(Some(file)) => return held(file, Duration::ZERO, log),
        Ok(None) => {}
        Err(e) => {
            log.event(&LogEvent::LockUnavailable {
                purpose: Purpose::Main.as_str(),
                reason: e.to_string(),
            });
            return LockWait::Go(None);
        }
    }
    log.event(&LogEvent::LockWait {
        purpose: Purpose::Main.as_str(),
        path: shown.clone(),
    });
    lock::wait_in_background(path.to_path_buf(), Purpose::Main, tx.clone());
    let since = Instant::now();
    let mut told = false;
    loop {
        let waited = since.elapsed();
        if waited >= LOCK_WAIT_LIMIT {
            return LockWait::TimedOut(waited);
        }
        if !told && waited >= LOCK_WAIT_NOTICE {
            // Before the child exists the terminal is still the operator's
            // shell's: one line says why nothing happens, and the way out.
            eprintln!(
                "pty-resize: waiting for another session's start-up on machine '{machine}' \
                 (lock {shown}); Ctrl-C gives up"
            );
            told = true;
        }
        let next = if told {
            LOCK_WAIT_LIMIT
        } else {
            LOCK_WAIT_NOTICE
        };
        match rx.recv_timeout(next.saturating_sub(waited)) {
            Ok(Event::Locked { file, waited, .. }) => return held(file, waited, log),
            // No child yet to deliver Ctrl-C / Ctrl-\ to: they end the wait.
            Ok(Event::Signal(sig @ (Sig::Term | Sig::Hup | Sig::Int | Sig::Quit))) => {
                return LockWait::Ended(sig)
            }
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return LockWait::Go(None),
        }
    }
}

/// The machine's lock file, if a lock directory is known.
pub fn lock_path(machine: &str) -> Option<PathBuf> {
    lock::dir().map(|d| d.join(lock::file_name(machine)))
}

/// The argv of a bridged session: `-e PTY_RESIZE_SESSION=<marker>` before
/// the `--` (every push, at VM level or through a CLI exec, finds the
/// session by it), and the sizing prologue (nothing written in the guest)
/// unless it is disabled or impossible. `Err` when there is no `--` to put
/// the marker before (no push can find the session then).
pub fn with_marker(
    argv: &[String],
    exec: &ExecArgv,
    disabled: bool,
    size: Option<Size>,
    marker: &str,
) -> Result<(Vec<String>, Result<(), &'static str>), &'static str> {
    let sep = exec
        .separator
        .ok_or("no `--` in the command to put the marker before")?;
    let marked = smolvm_argv::with_env(argv, sep, script::MARKER_VAR, marker);
    let sep = sep + 2;
    Ok(match (disabled, size) {
        (true, _) => (marked, Err("disabled")),
        (false, None) => (marked, Err("no-size")),
        (false, Some(size)) if sep + 1 < marked.len() => (
            smolvm_argv::with_prologue(&marked, sep, &script::prologue(size)),
            Ok(()),
        ),
        _ => (marked, Err("no-command")),
    })
}

/// A session marker: 16 lowercase hex digits, random per session.
pub fn make_marker() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

/// Spawns the main exec. On Linux it gets `PR_SET_PDEATHSIG(SIGKILL)`, so a
/// SIGKILLed wrapper does not leave smolvm's client reading the terminal.
/// The death signal follows the *thread* that forked, so this must be called
/// from the thread that lives as long as the session (the main thread).
pub fn spawn_child(program: &Path, argv: &[String]) -> std::io::Result<Child> {
    let mut cmd = Command::new(program);
    cmd.arg0(&argv[0]).args(&argv[1..]);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl, getppid and raise are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl: then no signal
                // would ever come.
                if libc::getppid() != parent {
                    libc::raise(libc::SIGKILL);
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_marker_goes_before_the_separator_and_the_prologue_writes_nothing() {
        let argv = v("smolvm machine exec --name m -t -- top");
        let exec = smolvm_argv::parse(&argv).unwrap();
        let size = Some(Size::new(100, 30));
        let (got, prologue) = with_marker(&argv, &exec, false, size, "ab12").unwrap();
        assert_eq!(prologue, Ok(()));
        assert_eq!(
            got[..9],
            v("smolvm machine exec --name m -t -e PTY_RESIZE_SESSION=ab12 --")[..]
        );
        assert_eq!(
            got[9..],
            [
                "sh",
                "-c",
                &script::prologue(Size::new(100, 30)),
                "sh",
                "top"
            ]
        );
        let (got, prologue) = with_marker(&argv, &exec, true, size, "ab12").unwrap();
        assert_eq!(prologue, Err("disabled"));
        assert_eq!(got.last().unwrap(), "top");
        let bare = v("smolvm machine exec --name m -t --");
        let exec = smolvm_argv::parse(&bare).unwrap();
        assert_eq!(
            with_marker(&bare, &exec, false, size, "a").unwrap().1,
            Err("no-command")
        );
        let none = v("smolvm machine exec --name m -t");
        let exec = smolvm_argv::parse(&none).unwrap();
        assert!(with_marker(&none, &exec, false, size, "a").is_err());
        let m = make_marker();
        assert!(m.len() == 16 && script::valid_marker(&m), "{m}");
        assert_ne!(make_marker(), make_marker());
    }
}
