//! A terminal's size: the `TIOCGWINSZ`/`TIOCSWINSZ` pair, as (cols, rows).

use std::io;
use std::os::fd::{AsFd, AsRawFd};

fn winsize(cols: u16, rows: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Sets the size of the terminal behind `fd` (either side of a PTY); the
/// kernel then sends SIGWINCH to its foreground process group.
pub fn set(fd: impl AsFd, cols: u16, rows: u16) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize from a live local.
    let rc = unsafe {
        libc::ioctl(
            fd.as_fd().as_raw_fd(),
            libc::TIOCSWINSZ,
            &winsize(cols, rows),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The size of the terminal behind `fd`, as (cols, rows).
pub fn get(fd: impl AsFd) -> io::Result<(u16, u16)> {
    let mut ws = winsize(0, 0);
    // SAFETY: TIOCGWINSZ fills one winsize, a live local.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    if rc == 0 {
        Ok((ws.ws_col, ws.ws_row))
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_then_get_on_either_side() {
        let pty = crate::pty::Pty::open(10, 5).unwrap();
        assert_eq!(get(&pty.master).unwrap(), (10, 5));
        set(&pty.master, 132, 40).unwrap();
        assert_eq!(get(&pty.slave).unwrap(), (132, 40));
        set(&pty.slave, 0, 0).unwrap();
        assert_eq!(get(&pty.master).unwrap(), (0, 0));
    }

    #[test]
    fn not_a_terminal_is_an_error() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(get(&file).is_err());
        assert!(set(&file, 1, 1).is_err());
    }
}
