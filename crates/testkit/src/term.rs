//! [`Term`]: a program on a PTY of a chosen size, its output read
//! continuously into a [`Sink`] (a `vt100` emulator by default).
//!
//! Why not expectrl's spawn: expectrl 0.9 (ptyprocess 0.5) opens every PTY at
//! 80x24 and sets 80x24 again from the parent *after* the child has exec'd,
//! which races the program's first frame — the very thing these tests check.
//! Here the PTY is opened and sized before the child exists (see
//! [`crate::pty`]).

use std::fs::File;
use std::io::{self, Write};
use std::num::NonZeroU16;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::output::{Output, Sink, State};
use crate::pty::{Pty, Wiring};
use crate::wait::{poll_until, POLL};

/// The emulated size for a PTY with a 0 dimension: an emulator needs at
/// least one cell (a caller still knows the PTY's real size).
pub const ZERO_FALLBACK: (u16, u16) = (80, 24);

/// The size to emulate a `cols` x `rows` PTY at ([`ZERO_FALLBACK`] for 0).
pub fn emulated(cols: u16, rows: u16) -> (u16, u16) {
    if cols == 0 || rows == 0 {
        ZERO_FALLBACK
    } else {
        (cols, rows)
    }
}

fn non_zero(cols: u16, rows: u16) -> (NonZeroU16, NonZeroU16) {
    let (cols, rows) = emulated(cols, rows);
    let nz = |n: u16| NonZeroU16::new(n).expect("emulated sizes are non-zero");
    (nz(cols), nz(rows))
}

/// A `vt100` emulator of a `cols` x `rows` PTY (see [`emulated`]).
pub fn parser(cols: u16, rows: u16) -> vt100::Parser {
    parser_with(cols, rows, ())
}

/// [`parser`] with `callbacks` (e.g. a terminal that answers queries).
pub fn parser_with<C: vt100::Callbacks>(cols: u16, rows: u16, callbacks: C) -> vt100::Parser<C> {
    let (cols, rows) = non_zero(cols, rows);
    vt100::Parser::new_with_callbacks(rows, cols, 0, callbacks)
}

/// Resizes an emulator to a `cols` x `rows` PTY (see [`emulated`]).
pub fn resize_screen(screen: &mut vt100::Screen, cols: u16, rows: u16) {
    let (cols, rows) = non_zero(cols, rows);
    screen.set_size(rows, cols);
}

/// A program running on its own PTY, leading its own session with the PTY
/// as its controlling terminal. Dropping it kills the program's whole
/// process group, reaps it and stops the reader.
pub struct Term<S: Sink = vt100::Parser> {
    master: File,
    child: Child,
    // Declared after `child`, so the reader stops after the kill in `drop`.
    output: Output<S>,
}

impl Term<vt100::Parser> {
    /// Starts `cmd` with stdin, stdout and stderr on a new PTY that is
    /// `cols` x `rows` before the program starts, seen through a `vt100`
    /// emulator of that size.
    pub fn spawn(cols: u16, rows: u16, cmd: Command) -> io::Result<Term> {
        Term::spawn_on(Pty::open(cols, rows)?, cmd, Wiring::All, parser(cols, rows))
    }
}

impl<S: Sink> Term<S> {
    /// Starts `cmd` on `pty` wired as `wiring` says, its output read into
    /// `sink`. `pty`'s slave is dropped here, so the output ends when the
    /// program and its children have closed theirs (keep a duplicate to
    /// hold it open).
    pub fn spawn_on(pty: Pty, mut cmd: Command, wiring: Wiring, sink: S) -> io::Result<Term<S>> {
        crate::pty::wire(&mut cmd, &pty.slave, wiring)?;
        crate::pty::new_session(&mut cmd, true);
        let child = cmd.spawn()?;
        // Our copies of the slave must go, or the master never sees EOF.
        drop(cmd);
        drop(pty.slave);
        let master = File::from(pty.master);
        let output = Output::start(master.try_clone()?, sink);
        Ok(Term {
            master,
            child,
            output,
        })
    }

    /// The program's pid (also its process group and session id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The program's process, e.g. to take the pipes of a
    /// [`Wiring::StdinOnly`] program. Reap it only through [`Term`].
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The test's side of the PTY.
    pub fn master(&self) -> &File {
        &self.master
    }

    /// The reader's output.
    pub fn output(&self) -> &Output<S> {
        &self.output
    }

    /// The reader's state, locked.
    pub fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.output.lock()
    }

    /// Types `bytes` (raw: `"q"`, `"\r"`, `"\x03"` for Ctrl-C).
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        (&self.master).write_all(bytes)?;
        (&self.master).flush()
    }

    /// Resizes the PTY; the kernel then sends SIGWINCH to the program's
    /// foreground process group. `also` runs on the sink under its lock
    /// first, so no byte written after the resize is fed at the old size.
    pub fn resize(&self, cols: u16, rows: u16, also: impl FnOnce(&mut S)) -> io::Result<()> {
        let mut state = self.output.lock();
        also(&mut state.sink);
        crate::winsize::set(&self.master, cols, rows)
    }

    /// How the program ended, if it has. It is not reaped until drop, so its
    /// pid and process group cannot be reused meanwhile.
    pub fn try_exit(&self) -> Option<ExitStatus> {
        let pid = Pid::from_raw(self.child.id() as i32);
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::Exited(_, code)) => Some(ExitStatus::from_raw((code & 0xff) << 8)),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(ExitStatus::from_raw(sig as i32)),
            _ => None,
        }
    }

    /// Waits for the program to end, then (at most a second more) for its
    /// last output to be read — unless something else still holds the PTY,
    /// in which case the output read so far is what there is. `None` if it
    /// is still running at `deadline`.
    pub fn wait_exit(&self, deadline: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        let status = poll_until(deadline, || self.try_exit())?;
        let remaining = end.saturating_duration_since(Instant::now()).max(POLL);
        self.output.wait_eof(remaining.min(Duration::from_secs(1)));
        Some(status)
    }
}

impl<S: Sink> Drop for Term<S> {
    fn drop(&mut self) {
        // The child leads its own session and process group: kill the whole
        // group (helpers it started too). Not yet reaped, so the id is ours.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).env("TERM", "xterm");
        cmd
    }

    /// The emulator's size as (cols, rows).
    fn screen_size(term: &Term) -> (u16, u16) {
        let (rows, cols) = term.lock().sink.screen().size();
        (cols.get(), rows.get())
    }

    #[test]
    fn the_first_look_sees_the_size_and_the_screen_shows_the_output() {
        let term = Term::spawn(33, 7, sh("stty size; printf 'a\\033[1;10Hb'")).unwrap();
        let status = term.wait_exit(DEADLINE).expect("exits");
        assert_eq!(status.code(), Some(0));
        assert_eq!(term.lock().sink.screen().contents(), "7 33     b\na");
        assert_eq!(screen_size(&term), (33, 7));
    }

    #[test]
    fn a_zero_size_pty_is_emulated_at_the_fallback() {
        let term = Term::spawn(0, 0, sh("stty size")).unwrap();
        assert_eq!(term.wait_exit(DEADLINE).and_then(|s| s.code()), Some(0));
        assert_eq!(term.lock().sink.screen().contents(), "0 0");
        assert_eq!(screen_size(&term), (80, 24));
    }

    #[test]
    fn resize_reaches_the_program_and_keys_reach_its_stdin() {
        let term = Term::spawn(80, 24, sh("read x; stty size; read y; exit 3")).unwrap();
        term.resize(100, 30, |p| resize_screen(p.screen_mut(), 100, 30))
            .unwrap();
        term.send(b"\r").unwrap();
        assert!(term.output().wait_until(DEADLINE, |s| s
            .sink
            .screen()
            .contents()
            .contains("30 100")));
        assert!(term.try_exit().is_none());
        term.send(b"\r").unwrap();
        assert_eq!(term.wait_exit(DEADLINE).and_then(|s| s.code()), Some(3));
    }

    #[test]
    fn a_signal_is_reported() {
        let term = Term::spawn(80, 24, sh("kill -TERM $$")).unwrap();
        let status = term.wait_exit(DEADLINE).expect("exits");
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn drop_kills_the_whole_group() {
        let term = Term::spawn(80, 24, sh("sleep 30 & echo $!; wait")).unwrap();
        assert!(term
            .output()
            .wait_until(DEADLINE, |s| s.raw.ends_with(b"\r\n")));
        let text = term.output().text();
        let sleeper: i32 = text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(!crate::procs::has_exited(sleeper));
        drop(term);
        crate::wait::wait_for(
            "the background sleep killed with its group",
            DEADLINE,
            || crate::procs::has_exited(sleeper),
            String::new,
        );
    }
}
