//! Watching smolvm's client switch the terminal: the observable half of
//! readiness (the other half is the settle margin, in [`crate::state`]).
//!
//! The 0.8.0 client, once the agent answered `started`, puts the terminal in
//! raw mode (`ICANON` off) and then sets `O_NONBLOCK` on fd 0. If the terminal
//! was canonical at start, losing `ICANON` marks `started`. If it was already
//! raw, `O_NONBLOCK` appearing marks it (when it was not set at start); that
//! one only ever delays readiness beyond the fallback timer, never replaces it.
//! Neither marks "container running", which nothing on the host can see.

use std::os::fd::BorrowedFd;

use nix::sys::termios::{tcgetattr, LocalFlags};

use crate::state::Watch;

/// Pure rule: what can be watched, from the terminal's local flags at start.
pub fn watch_for(lflags: Option<LocalFlags>) -> Watch {
    if lflags.is_some_and(|f| f.contains(LocalFlags::ICANON)) {
        Watch::Raw
    } else {
        Watch::Timer
    }
}

/// Pure rule: has `started` become visible? `nonblock_at_start` is fd 0's
/// `O_NONBLOCK` when the wrapper started. Returns what was seen.
pub fn observe(
    watch: Watch,
    lflags: Option<LocalFlags>,
    nonblock: Option<bool>,
    nonblock_at_start: Option<bool>,
) -> Option<&'static str> {
    match watch {
        Watch::Raw => lflags
            .is_some_and(|f| !f.contains(LocalFlags::ICANON))
            .then_some("raw"),
        Watch::Timer => {
            (nonblock == Some(true) && nonblock_at_start == Some(false)).then_some("nonblock")
        }
    }
}

/// The local flags of fd 0's terminal, `None` if fd 0 is not a terminal.
pub fn stdin_lflags() -> Option<LocalFlags> {
    // SAFETY: fd 0 is open for the whole life of the process (the wrapper
    // reopens /dev/null on it first thing if it was closed).
    let fd = unsafe { BorrowedFd::borrow_raw(0) };
    tcgetattr(fd).ok().map(|t| t.local_flags)
}

/// Whether fd 0 is `O_NONBLOCK`, `None` if it cannot be read.
pub fn stdin_nonblock() -> Option<bool> {
    // SAFETY: F_GETFL only queries the descriptor.
    let f = unsafe { libc::fcntl(0, libc::F_GETFL) };
    (f >= 0).then_some(f & libc::O_NONBLOCK != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let canon = LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG;
        assert_eq!(watch_for(Some(canon)), Watch::Raw);
        assert_eq!(watch_for(Some(LocalFlags::ISIG)), Watch::Timer);
        assert_eq!(watch_for(None), Watch::Timer);
        let raw = Some(LocalFlags::empty());
        assert_eq!(observe(Watch::Raw, Some(canon), None, None), None);
        assert_eq!(observe(Watch::Raw, raw, None, None), Some("raw"));
        assert_eq!(
            observe(Watch::Raw, None, None, None),
            None,
            "an unreadable terminal is not a readiness signal"
        );
        assert_eq!(
            observe(Watch::Timer, raw, Some(true), Some(false)),
            Some("nonblock")
        );
        assert_eq!(observe(Watch::Timer, raw, Some(true), Some(true)), None);
        assert_eq!(observe(Watch::Timer, raw, Some(false), Some(false)), None);
        assert_eq!(observe(Watch::Timer, raw, None, Some(false)), None);
    }

    #[test]
    fn a_fresh_pty_is_canonical_and_cfmakeraw_is_seen() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut t = tcgetattr(&pty.slave).unwrap();
        assert_eq!(watch_for(Some(t.local_flags)), Watch::Raw);
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSAFLUSH, &t).unwrap();
        let now = tcgetattr(&pty.slave).unwrap().local_flags;
        assert_eq!(observe(Watch::Raw, Some(now), None, None), Some("raw"));
    }
}
