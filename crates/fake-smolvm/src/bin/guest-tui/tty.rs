//! The terminal guest-tui runs on: its size straight from the kernel, and a
//! guard that puts it in full-screen raw mode and always puts it back.

use std::io::{self, Write};
use std::os::fd::RawFd;

use crossterm::{cursor, execute, terminal};

use crate::view::Size;

/// The size the kernel holds for the terminal on `fd`, or `None` if `fd` is
/// not a terminal.
///
/// Why not `crossterm::terminal::size`: it falls back to `tput` and treats
/// 0x0 as an error, and the point of guest-tui is to show exactly what the
/// PTY says, 0x0 included.
fn winsize_of(fd: RawFd) -> Option<Size> {
    // SAFETY: the fd is only borrowed for this one call; a closed fd fails.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::termios::tcgetwinsize(fd).ok().map(|ws| Size {
        cols: ws.ws_col,
        rows: ws.ws_row,
    })
}

/// The size of the controlling terminal, read from stdout or else stdin.
pub fn size() -> Option<Size> {
    winsize_of(libc::STDOUT_FILENO).or_else(|| winsize_of(libc::STDIN_FILENO))
}

/// Raw mode, alternate screen, hidden cursor while alive; restored on drop.
pub struct FullScreen(());

impl FullScreen {
    /// Enters full-screen mode and installs a panic hook that restores the
    /// terminal before the panic message is printed (so it stays readable).
    pub fn enter() -> io::Result<FullScreen> {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            default_hook(info);
        }));
        terminal::enable_raw_mode()?;
        let guard = FullScreen(());
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(guard)
    }
}

impl Drop for FullScreen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves full-screen mode. Safe to call more than once; errors are ignored
/// because this runs on exit paths where nothing better can be done.
pub fn restore() {
    let mut out = io::stdout();
    let _ = execute!(out, cursor::Show, terminal::LeaveAlternateScreen);
    let _ = out.flush();
    let _ = terminal::disable_raw_mode();
}
