//! A PTY sized before the program exists, and a command wired onto it.
//!
//! Sized first because the program's first `TIOCGWINSZ` must see the chosen
//! size (0x0 included): a PTY opened at a default size and resized after the
//! spawn races the program's first frame. Close-on-exec from the moment each
//! fd exists (`O_CLOEXEC` at open, not `FD_CLOEXEC` after): tests spawn
//! children from many threads at once, and a slave inherited by another
//! test's child in that gap would keep this PTY from ever reporting EOF.

use std::io;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};

/// A PTY pair: the test's side (`master`) and the program's (`slave`).
pub struct Pty {
    /// The test's side: read the program's output, type its input, resize.
    pub master: OwnedFd,
    /// The terminal the program gets.
    pub slave: OwnedFd,
}

impl Pty {
    /// A PTY of `cols` x `rows`, both fds close-on-exec from the start.
    pub fn open(cols: u16, rows: u16) -> io::Result<Pty> {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let name = ptsname_r(&master)?;
        let slave = nix::fcntl::open(
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        crate::winsize::set(&slave, cols, rows)?;
        // SAFETY: into_raw_fd hands over sole ownership of the master fd.
        let master =
            unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(master.into_raw_fd()) };
        Ok(Pty { master, slave })
    }
}

/// Which of a program's standard fds are the PTY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wiring {
    /// stdin, stdout and stderr (a terminal as a person uses it).
    All,
    /// stdin only; stdout and stderr stay as the command set them (pipes,
    /// to tell the program's output from what the terminal shows).
    StdinOnly,
}

/// Puts `slave` on `cmd`'s standard fds as `wiring` says (each a duplicate,
/// itself close-on-exec in this process).
pub fn wire(cmd: &mut Command, slave: &OwnedFd, wiring: Wiring) -> io::Result<()> {
    cmd.stdin(Stdio::from(slave.try_clone()?));
    if wiring == Wiring::All {
        cmd.stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave.try_clone()?));
    }
    Ok(())
}

/// Makes `cmd` lead a new session (so its pid is its process group, which a
/// test can kill whole) and, with `ctty`, take its stdin terminal as its
/// controlling terminal — what a shell in a terminal gives a program, so
/// SIGWINCH and Ctrl-C reach it.
pub fn new_session(cmd: &mut Command, ctty: bool) {
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (setsid, ioctl).
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            if ctty && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};

    fn cloexec(fd: &OwnedFd) -> bool {
        FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap())
            .contains(FdFlag::FD_CLOEXEC)
    }

    #[test]
    fn opens_at_the_size_and_close_on_exec() {
        let pty = Pty::open(0, 0).unwrap();
        assert!(cloexec(&pty.master) && cloexec(&pty.slave));
        assert_eq!(crate::winsize::get(&pty.slave).unwrap(), (0, 0));
        let pty = Pty::open(100, 30).unwrap();
        assert_eq!(crate::winsize::get(&pty.slave).unwrap(), (100, 30));
    }

    #[test]
    fn a_program_on_the_pty_sees_its_size_and_has_it_as_controlling_terminal() {
        let pty = Pty::open(77, 11).unwrap();
        let mut cmd = Command::new("sh");
        // /dev/tty opens only for a process with a controlling terminal.
        cmd.args(["-c", "stty size; : </dev/tty && echo ctty"]);
        wire(&mut cmd, &pty.slave, Wiring::StdinOnly).unwrap();
        cmd.stdout(Stdio::piped());
        new_session(&mut cmd, true);
        let out = cmd.output().unwrap();
        drop(pty);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text, "11 77\nctty\n");
    }
}
