//! PTYs the test owns: a client with the PTY as its controlling terminal,
//! what it printed, and the terminal's state (termios, O_NONBLOCK) before,
//! during and after it.

#![allow(dead_code)]

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{self, LocalFlags};
use testkit::pty::Pty;
use testkit::wait::poll_until;

use crate::procs::{collect_pipes, wait_until, wait_until_every, Collectors};

/// A terminal's state as a client leaves it: termios and the open file
/// description's O_NONBLOCK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtyState {
    /// ICANON off.
    pub raw: bool,
    /// O_NONBLOCK on the shared open file description.
    pub nonblock: bool,
    flags: (u32, u32, u32, u32),
    cc: Vec<u8>,
}

fn tty_state(fd: impl AsFd) -> TtyState {
    let t = termios::tcgetattr(&fd).unwrap();
    let fl = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).unwrap());
    TtyState {
        raw: !t.local_flags.contains(LocalFlags::ICANON),
        nonblock: fl.contains(OFlag::O_NONBLOCK),
        flags: (
            t.input_flags.bits() as u32,
            t.output_flags.bits() as u32,
            t.control_flags.bits() as u32,
            t.local_flags.bits() as u32,
        ),
        cc: t.control_chars.to_vec(),
    }
}

pub use testkit::pty::Wiring;

/// A PTY the test created, with a process on its slave as its controlling
/// terminal. The test keeps a duplicate of the process's stdin (same open
/// file description) until the process is gone, so it can read what the
/// process left behind: termios and O_NONBLOCK.
pub struct Term {
    inner: testkit::Term<()>,
    slave: Option<OwnedFd>,
    pub slave_path: PathBuf,
    pipes: Option<Collectors>,
    /// stdout and stderr (with [`Wiring::StdinOnly`], after `wait_exit`).
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The terminal's state when the process had exited.
    pub after: Option<TtyState>,
    /// Its state before the process started.
    pub before: TtyState,
    status: Option<ExitStatus>,
}

impl Term {
    /// Spawns `cmd` on a fresh cols x rows PTY, everything on it.
    pub fn spawn(cmd: Command, cols: u16, rows: u16) -> Term {
        Term::spawn_wired(cmd, cols, rows, Wiring::All)
    }

    pub fn spawn_wired(mut cmd: Command, cols: u16, rows: u16, wiring: Wiring) -> Term {
        let pty = Pty::open(cols, rows).unwrap();
        let slave_path = nix::unistd::ttyname(&pty.slave).unwrap();
        let before = tty_state(&pty.slave);
        // The test's own duplicate, to read the terminal's state (and to
        // keep the output open until `wait_exit`).
        let slave = pty.slave.try_clone().unwrap();
        if wiring == Wiring::StdinOnly {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut inner = testkit::Term::spawn_on(pty, cmd, wiring, ()).unwrap();
        let pipes = (wiring == Wiring::StdinOnly).then(|| collect_pipes(inner.child_mut()));
        Term {
            inner,
            slave: Some(slave),
            slave_path,
            pipes,
            stdout: Vec::new(),
            stderr: Vec::new(),
            after: None,
            before,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// What the PTY showed so far.
    pub fn output(&self) -> String {
        self.inner.output().text()
    }

    /// The terminal's state now (while the process runs).
    pub fn state(&self) -> TtyState {
        tty_state(self.slave.as_ref().expect("before wait_exit"))
    }

    /// Waits until the output satisfies `cond`; `context` goes into the panic.
    pub fn wait_output(
        &self,
        secs: u64,
        cond: impl Fn(&str) -> bool,
        context: impl Fn() -> String,
    ) {
        wait_until(
            secs,
            || cond(&self.output()),
            || format!("PTY output: {:?}\n{}", self.output(), context()),
        );
    }

    /// Waits until the process put the terminal in raw mode (1 ms polls:
    /// the determinism tests start their second exec from this moment).
    pub fn wait_raw(&self, secs: u64, context: impl Fn() -> String) {
        let slave = self.slave.as_ref().expect("before wait_exit");
        wait_until_every(
            secs,
            Duration::from_millis(1),
            || tty_state(slave).raw,
            || format!("PTY output: {:?}\n{}", self.output(), context()),
        );
    }

    pub fn write(&self, bytes: &[u8]) {
        self.inner.send(bytes).unwrap();
    }

    /// Resizes the test's PTY (the kernel sends SIGWINCH to its foreground group).
    pub fn resize(&self, cols: u16, rows: u16) {
        testkit::winsize::set(self.inner.master(), cols, rows).unwrap();
    }

    /// The test PTY's size as (cols, rows).
    pub fn size(&self) -> (u16, u16) {
        testkit::winsize::get(self.inner.master()).unwrap()
    }

    /// Opens the slave again (O_NOCTTY): a new open file description, e.g. to
    /// share the terminal as another process's stdin.
    pub fn open_slave(&self) -> File {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&self.slave_path)
            .unwrap()
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    /// Types Ctrl-C and expects the guest command to die of SIGINT (exit 130).
    #[track_caller]
    pub fn interrupt(&mut self, context: impl Fn() -> String) {
        self.interrupt_expecting(130, context)
    }

    /// [`Term::interrupt`] where the client exits `code`: 255 at VM level
    /// (a bare machine), where smolvm 0.8.0 reports a signal as -1.
    pub fn interrupt_expecting(&mut self, code: i32, context: impl Fn() -> String) {
        self.write(b"\x03");
        let status = self.wait_exit(30, &context);
        assert_eq!(
            status.code(),
            Some(code),
            "{:?}\n{}",
            self.output(),
            context()
        );
    }

    /// Waits for the process to exit; notes the terminal's state it left,
    /// lets go of the terminal and collects the rest of the output.
    pub fn wait_exit(&mut self, secs: u64, context: impl Fn() -> String) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let Some(status) = poll_until(Duration::from_secs(secs), || self.inner.try_exit()) else {
            panic!(
                "process {} did not exit within {secs}s\nPTY output so far: {:?}\n{}",
                self.pid(),
                self.output(),
                context()
            );
        };
        self.status = Some(status);
        if let Some(slave) = self.slave.take() {
            self.after = Some(tty_state(&slave));
        }
        if let Some((o, e)) = self.pipes.take() {
            self.stdout = o.join().unwrap();
            self.stderr = e.join().unwrap();
        }
        // Our slave is gone: the rest of the output is read once the
        // process's children let go of the terminal too.
        self.inner.output().wait_eof(Duration::from_secs(5));
        status
    }
}
