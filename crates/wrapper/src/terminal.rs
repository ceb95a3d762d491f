//! Handing the terminal back as it was.
//!
//! smolvm 0.8.0's client puts the terminal in raw mode and sets `O_NONBLOCK`
//! on fd 0 (a flag of the open file description the whole terminal session
//! shares). Killed by SIGTERM, SIGHUP or SIGINT it restores neither, which
//! leaves the user's shell (or tmux pane) unusable. The wrapper saves both
//! before the child starts and restores what changed whenever the child ends
//! by a signal or the wrapper forwarded one to it.

use std::os::fd::RawFd;

/// The terminal state saved before the child starts.
#[derive(Clone, Copy)]
pub struct Saved {
    fd: RawFd,
    termios: Option<libc::termios>,
    flags: Option<libc::c_int>,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("fd", &self.fd)
            .field("termios", &self.termios.is_some())
            .field("flags", &self.flags)
            .finish()
    }
}

/// What restoring one part did (the log spelling via [`Outcome::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It had changed and was put back.
    Restored,
    /// It had not changed.
    Unchanged,
    /// It could not be read or written.
    Failed,
}

impl Outcome {
    /// The log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restored => "restored",
            Self::Unchanged => "unchanged",
            Self::Failed => "failed",
        }
    }
}

fn get_termios(fd: RawFd) -> Option<libc::termios> {
    // SAFETY: zeroed termios is a valid out-parameter; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, writable termios.
    (unsafe { libc::tcgetattr(fd, &mut t) } == 0).then_some(t)
}

fn get_flags(fd: RawFd) -> Option<libc::c_int> {
    // SAFETY: F_GETFL only queries the descriptor.
    let f = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    (f >= 0).then_some(f)
}

/// Whether two terminal modes are the same (flags, control characters, speeds).
pub fn same_mode(a: &libc::termios, b: &libc::termios) -> bool {
    a.c_iflag == b.c_iflag
        && a.c_oflag == b.c_oflag
        && a.c_cflag == b.c_cflag
        && a.c_lflag == b.c_lflag
        && a.c_cc == b.c_cc
        // SAFETY: cfget*speed only read the struct.
        && unsafe { libc::cfgetispeed(a) == libc::cfgetispeed(b) }
        && unsafe { libc::cfgetospeed(a) == libc::cfgetospeed(b) }
}

impl Saved {
    /// Saves the mode and status flags of `fd` (normally 0).
    pub fn save(fd: RawFd) -> Self {
        Self {
            fd,
            termios: get_termios(fd),
            flags: get_flags(fd),
        }
    }

    /// Puts back whatever changed since [`Saved::save`].
    ///
    /// SIGTTOU is ignored for the call: a wrapper that is not in the
    /// terminal's foreground group (job control) would otherwise be stopped by
    /// `tcsetattr` instead of restoring; the child has ended by then, so the
    /// changed disposition is never inherited.
    pub fn restore(&self) -> (Outcome, Outcome) {
        let termios = match (self.termios, get_termios(self.fd)) {
            (Some(saved), Some(now)) if same_mode(&saved, &now) => Outcome::Unchanged,
            (Some(saved), Some(_)) => {
                // SAFETY: signal() with SIG_IGN and back; tcsetattr reads `saved`.
                let ok = unsafe {
                    let old = libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                    let rc = libc::tcsetattr(self.fd, libc::TCSANOW, &saved);
                    libc::signal(libc::SIGTTOU, old);
                    rc == 0
                };
                if ok {
                    Outcome::Restored
                } else {
                    Outcome::Failed
                }
            }
            _ => Outcome::Failed,
        };
        let flags = match (self.flags, get_flags(self.fd)) {
            (Some(saved), Some(now)) if saved == now => Outcome::Unchanged,
            // SAFETY: F_SETFL with flags read from this very descriptor.
            (Some(saved), Some(_))
                if unsafe { libc::fcntl(self.fd, libc::F_SETFL, saved) } == 0 =>
            {
                Outcome::Restored
            }
            _ => Outcome::Failed,
        };
        (termios, flags)
    }
}

/// Whether this process has a controlling terminal. Without one (started
/// under `setsid`, a daemon), no SIGWINCH ever reaches it.
pub fn has_controlling_terminal() -> bool {
    // SAFETY: open/close on a constant path; O_NOCTTY so nothing is acquired.
    unsafe {
        let fd = libc::open(
            c"/dev/tty".as_ptr(),
            libc::O_RDONLY | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            libc::close(fd);
        }
        fd >= 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn raw_mode_and_nonblock_are_put_back_and_reported() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let fd = pty.slave.as_raw_fd();
        let saved = Saved::save(fd);
        assert_eq!(saved.restore(), (Outcome::Unchanged, Outcome::Unchanged));
        let before = get_termios(fd).unwrap();
        // What smolvm's client does, and leaves behind when killed.
        let mut raw = before;
        // SAFETY: cfmakeraw edits the struct in place.
        unsafe { libc::cfmakeraw(&mut raw) };
        assert_eq!(unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &raw) }, 0);
        let fl = get_flags(fd).unwrap();
        assert_eq!(
            unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) },
            0
        );
        assert!(!same_mode(&before, &get_termios(fd).unwrap()));
        assert_eq!(saved.restore(), (Outcome::Restored, Outcome::Restored));
        assert!(same_mode(&before, &get_termios(fd).unwrap()));
        assert_eq!(get_flags(fd).unwrap() & libc::O_NONBLOCK, 0);
        assert_eq!(Outcome::Restored.as_str(), "restored");
        assert_eq!(Outcome::Unchanged.as_str(), "unchanged");
        assert_eq!(Outcome::Failed.as_str(), "failed");
    }

    #[test]
    fn a_non_terminal_reports_failed_termios() {
        let f = tempfile::tempfile().unwrap();
        let saved = Saved::save(f.as_raw_fd());
        assert_eq!(saved.restore(), (Outcome::Failed, Outcome::Unchanged));
    }
}
