//! The host terminal as smolvm 0.8.0's client treats it
//! (`src/agent/client.rs` 869-1003): raw mode with `-t` on a terminal, then
//! `O_NONBLOCK` on fd 0 (the open file description, shared with every other
//! process on that terminal), both restored on a normal exit only. A client
//! killed by SIGTERM, SIGHUP or SIGINT restores neither, exactly as the real
//! one: nothing here installs a handler for them.

use std::os::fd::BorrowedFd;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{self, SetArg, Termios};

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// What to put back on a normal exit.
#[derive(Default)]
pub struct Saved {
    termios: Option<Termios>,
    flags: Option<OFlag>,
}

/// Raw mode (TCSAFLUSH), when `raw` and stdin is a terminal.
pub fn enter_raw(saved: &mut Saved) {
    let Ok(before) = termios::tcgetattr(stdin_fd()) else {
        return;
    };
    let mut raw = before.clone();
    termios::cfmakeraw(&mut raw);
    if termios::tcsetattr(stdin_fd(), SetArg::TCSAFLUSH, &raw).is_ok() {
        saved.termios = Some(before);
    }
}

/// `O_NONBLOCK` on fd 0.
pub fn set_nonblocking(saved: &mut Saved) {
    let Ok(bits) = fcntl(stdin_fd(), FcntlArg::F_GETFL) else {
        return;
    };
    let flags = OFlag::from_bits_truncate(bits);
    if fcntl(stdin_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).is_ok() {
        saved.flags = Some(flags);
    }
}

/// Restores what was changed (normal exit only).
pub fn restore(saved: Saved) {
    if let Some(flags) = saved.flags {
        let _ = fcntl(stdin_fd(), FcntlArg::F_SETFL(flags));
    }
    if let Some(t) = saved.termios {
        let _ = termios::tcsetattr(stdin_fd(), SetArg::TCSAFLUSH, &t);
    }
}

/// The terminal's size, asked of fd 0 (`None` when it is not a terminal).
pub fn size() -> Option<(u16, u16)> {
    rustix::termios::tcgetwinsize(stdin_fd())
        .ok()
        .map(|ws| (ws.ws_col, ws.ws_row))
}

/// Whether fd 0 is a terminal.
pub fn stdin_is_tty() -> bool {
    nix::unistd::isatty(stdin_fd()).unwrap_or(false)
}
