//! Knowing when the main exec's bring-up is over, by watching the terminal.
//!
//! smolvm puts the host terminal into raw mode (`cfmakeraw` + `TCSAFLUSH`)
//! right after the guest answered `started`, i.e. after the exec's bring-up.
//! If the terminal was in canonical mode (`ICANON`) when the wrapper started,
//! the moment `ICANON` disappears is that signal. If it was already raw, the
//! switch cannot be seen and the caller falls back to a timer.

use std::os::fd::BorrowedFd;

use nix::sys::termios::{tcgetattr, LocalFlags};

/// Pure rule: readiness is observable iff the terminal is in canonical mode now.
pub fn observable(lflags: Option<LocalFlags>) -> bool {
    lflags.is_some_and(|f| f.contains(LocalFlags::ICANON))
}

/// Pure rule: the terminal has left canonical mode (smolvm made it raw).
pub fn went_raw(lflags: Option<LocalFlags>) -> bool {
    lflags.is_some_and(|f| !f.contains(LocalFlags::ICANON))
}

/// The local flags of fd 0's terminal, `None` if fd 0 is not a terminal.
pub fn stdin_lflags() -> Option<LocalFlags> {
    // SAFETY: fd 0 is open for the whole life of the process (the wrapper
    // reopens /dev/null on it first thing if it was closed).
    let fd = unsafe { BorrowedFd::borrow_raw(0) };
    tcgetattr(fd).ok().map(|t| t.local_flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let canon = LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG;
        assert!(observable(Some(canon)));
        assert!(!observable(Some(LocalFlags::ISIG)));
        assert!(!observable(None));
        assert!(!went_raw(Some(canon)));
        assert!(went_raw(Some(LocalFlags::empty())));
        assert!(
            !went_raw(None),
            "an unreadable terminal is not a readiness signal"
        );
    }

    #[test]
    fn a_fresh_pty_is_canonical_and_cfmakeraw_is_seen() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut t = tcgetattr(&pty.slave).unwrap();
        assert!(observable(Some(t.local_flags)));
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSAFLUSH, &t).unwrap();
        assert!(went_raw(Some(tcgetattr(&pty.slave).unwrap().local_flags)));
    }
}
