//! [`Term`]: a program on a real PTY, seen through a terminal emulator.
//!
//! Why not expectrl's spawn: expectrl 0.9 (ptyprocess 0.5) opens every PTY at
//! 80x24 and sets 80x24 again from the parent *after* the child has exec'd,
//! which races the program's first frame — the very thing these tests check.
//! Here the PTY is opened and sized before the child exists, so the program's
//! first `TIOCGWINSZ` sees the chosen size (0x0 included).
//!
//! The terminal answers the queries real programs send and may block on
//! (cursor position, device attributes, window size: see [`crate::answer`]),
//! records the session as an asciicast (see [`crate::cast`]) and keeps the
//! last settled screens, so a failed wait leaves a failure folder (see
//! [`crate::failure`]).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::answer::Answerer;
use crate::cast::Recorder;
use crate::exit::Exit;
use crate::failure::{self, Context, Evidence, Report};
use crate::screens::Screens;
use crate::snapshot::Grid;
use crate::wait::{poll_until, POLL};

/// How long the screen must be quiet (no new bytes) to count as settled.
pub const SETTLE_QUIET: Duration = Duration::from_millis(150);

/// How long [`Term::snapshot`] waits for the screen to settle at most.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(5);

/// The emulated size used for a PTY with a 0 dimension (the emulator needs
/// at least one cell; the snapshot header still shows the PTY's size).
const ZERO_FALLBACK: (u16, u16) = (80, 24);

/// Raw output kept for failure messages; older bytes are dropped.
const RAW_KEEP: usize = 1 << 20;

/// What the reader thread shares with the test.
struct Shared {
    parser: vt100::Parser<Answerer>,
    raw: Vec<u8>,
    last_byte: Option<Instant>,
    eof: bool,
    /// The PTY's size, which the header shows when it differs from the
    /// emulated one.
    pty_size: (u16, u16),
    cast: Recorder,
    screens: Screens,
    /// Whether output or a resize came since the last screen kept in
    /// `screens`.
    unsettled: bool,
}

impl Shared {
    fn grid(&self) -> Grid {
        let mut grid = Grid::from_vt100(self.parser.screen());
        grid.pty_size = Some(self.pty_size);
        grid
    }

    /// Keeps the screen in the history if it has been quiet for
    /// [`SETTLE_QUIET`] since the last change.
    fn keep_if_settled(&mut self) {
        let quiet = self.last_byte.is_none_or(|t| t.elapsed() >= SETTLE_QUIET);
        if self.unsettled && quiet {
            self.unsettled = false;
            let (at, screen) = (self.cast.elapsed(), self.grid().render());
            self.screens.push(at, screen);
        }
    }
}

/// A program running on a PTY of a chosen size, its output fed continuously
/// into a `vt100` emulator of the same size. Dropping it kills the program's
/// whole process group and reaps it.
pub struct Term {
    program: String,
    master: File,
    child: Child,
    exit: Option<Exit>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    context: Context,
}

fn winsize(cols: u16, rows: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

fn set_winsize(fd: &impl AsRawFd, cols: u16, rows: u16) -> std::io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize from a live local.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &winsize(cols, rows)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn emulated(cols: u16, rows: u16) -> (u16, u16) {
    if cols == 0 || rows == 0 {
        ZERO_FALLBACK
    } else {
        (cols, rows)
    }
}

/// A master and its slave, both close-on-exec from the start: tests spawn
/// children from many threads at once, and a slave inherited by another
/// test's child would keep this PTY from ever reporting EOF.
fn open_pty(cols: u16, rows: u16) -> std::io::Result<(PtyMaster, OwnedFd)> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname_r(&master)?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    set_winsize(&slave, cols, rows)?;
    Ok((master, slave))
}

impl Term {
    /// Starts `cmd` on a new PTY that is `cols` x `rows` before the program
    /// starts. The program leads its own session with the PTY as its
    /// controlling terminal, on stdin, stdout and stderr. Build `cmd` with
    /// [`crate::hermetic::command`]. Panics if the PTY or the spawn fails.
    pub fn spawn(cols: u16, rows: u16, mut cmd: Command) -> Term {
        let program = format!("{cmd:?}");
        // The recording's header shows the TERM the program got.
        let term_env = cmd
            .get_envs()
            .find(|(k, _)| *k == "TERM")
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let (master, slave) =
            open_pty(cols, rows).unwrap_or_else(|e| panic!("e2e: cannot open a PTY: {e}"));
        let stdio = || Stdio::from(slave.try_clone().expect("e2e: dup PTY slave"));
        cmd.stdin(stdio()).stdout(stdio()).stderr(stdio());
        // SAFETY: between fork and exec only async-signal-safe calls are made
        // (setsid, ioctl).
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("e2e: cannot start {program}: {e}"));
        // Our copies of the slave must go, or the master never sees EOF.
        drop(cmd);
        drop(slave);

        // SAFETY: into_raw_fd hands over sole ownership of the master fd.
        let master = unsafe { File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
        let (ecols, erows) = emulated(cols, rows);
        let shared = Arc::new((
            Mutex::new(Shared {
                parser: vt100::Parser::new_with_callbacks(
                    erows.try_into().expect("non-zero"),
                    ecols.try_into().expect("non-zero"),
                    0,
                    Answerer::default(),
                ),
                raw: Vec::new(),
                last_byte: None,
                eof: false,
                pty_size: (cols, rows),
                // At the emulated size: a player cannot show a 0x0 screen.
                cast: Recorder::new(ecols, erows, &[("TERM", &term_env), ("SHELL", "/bin/sh")]),
                screens: Screens::default(),
                unsettled: true,
            }),
            Condvar::new(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let master = master.try_clone().expect("e2e: dup PTY master");
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || read_loop(master, &shared, &stop))
        };
        Term {
            program,
            master,
            child,
            exit: None,
            shared,
            stop,
            reader: Some(reader),
            context: Context::default(),
        }
    }

    /// The program's pid (also its process group and session id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Registers a file (a log) whose tail every failure message shows.
    pub fn add_context(&mut self, name: &str, path: &Path) {
        self.context.add(name, path);
    }

    /// Registers `machine`'s `exec.log` and wrapper log (see
    /// [`crate::Machine::logs`]) for failure messages.
    pub fn watch(&mut self, machine: &crate::Machine) {
        for (name, path) in machine.logs() {
            self.context.add(name, &path);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the current screen.
    pub fn with_screen<T>(&self, f: impl FnOnce(&vt100::Screen) -> T) -> T {
        f(self.lock().parser.screen())
    }

    /// The screen's text, rows joined by newlines, trailing blanks trimmed.
    pub fn contents(&self) -> String {
        self.with_screen(|s| s.contents())
    }

    /// Every byte the program wrote so far (the last MiB of it).
    pub fn raw(&self) -> Vec<u8> {
        self.lock().raw.clone()
    }

    /// The current screen in snapshot format, without waiting.
    pub fn render(&self) -> String {
        self.lock().grid().render()
    }

    /// The current screen in snapshot format with its colours and
    /// attributes (see [`Grid::styled`]), without waiting.
    pub fn render_styled(&self) -> String {
        let shared = self.lock();
        shared.grid().styled(shared.parser.screen()).render()
    }

    /// The session so far as an asciicast v2 recording.
    pub fn cast(&self) -> String {
        self.lock().cast.text().to_string()
    }

    /// Waits until `pred` holds for the screen. On timeout panics with
    /// `description`, the screen, the last bytes written and the registered
    /// logs. Also gives up early if the program has exited and its output is
    /// fully read, since the screen can no longer change.
    pub fn wait_until(
        &mut self,
        description: &str,
        deadline: Duration,
        pred: impl Fn(&vt100::Screen) -> bool,
    ) {
        let end = Instant::now() + deadline;
        let (lock, cvar) = &*self.shared;
        let mut shared = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if pred(shared.parser.screen()) {
                return;
            }
            let now = Instant::now();
            if now >= end || shared.eof {
                break;
            }
            // Woken by every new chunk; the timeout re-checks the deadline.
            shared = cvar
                .wait_timeout(shared, (end - now).min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(shared);
        self.fail(description, deadline);
    }

    /// Waits until the screen shows `text` somewhere.
    pub fn wait_for_text(&mut self, text: &str, deadline: Duration) {
        self.wait_until(&format!("{text:?} on screen"), deadline, |s| {
            s.contents().contains(text)
        });
    }

    fn status(&mut self) -> String {
        match self.try_exit() {
            Some(exit) => format!("{} ({exit})", self.program),
            None => format!("{} (pid {}, running)", self.program, self.pid()),
        }
    }

    /// Panics with the failure report, after writing the failure folder.
    fn fail(&mut self, description: &str, deadline: Duration) -> ! {
        let program = self.status();
        let pid = self.pid();
        let shared = self.lock();
        let screen = shared.grid().render();
        let raw = &shared.raw;
        let tail = &raw[raw.len().saturating_sub(failure::RAW_TAIL)..];
        let report = Report {
            what: description,
            deadline,
            program,
            screen: screen.clone(),
            raw_tail: Some(tail),
            context: &self.context,
        }
        .render();
        let evidence = Evidence {
            cast: shared.cast.text().to_string(),
            screens: shared.screens.render((shared.cast.elapsed(), &screen)),
            svg: crate::svg::render(
                shared.parser.screen(),
                &format!("waiting for: {description}"),
            ),
            processes: crate::proctree::render(pid as i32),
        };
        drop(shared);
        panic!(
            "{}",
            failure::report_with_folder(&report, &evidence, &self.context)
        );
    }

    /// Waits until no byte has arrived for `quiet` (or the program's output
    /// ended), at most `deadline`; panics if it never settles.
    pub fn settle(&mut self, quiet: Duration, deadline: Duration) {
        let end = Instant::now() + deadline;
        let (lock, cvar) = &*self.shared;
        let mut shared = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let since = shared.last_byte.map_or(quiet, |t| t.elapsed());
            if shared.eof || since >= quiet {
                return;
            }
            let now = Instant::now();
            if now >= end {
                break;
            }
            shared = cvar
                .wait_timeout(shared, (quiet - since).min(end - now))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(shared);
        self.fail(
            &format!("the screen to stay unchanged for {quiet:?}"),
            deadline,
        );
    }

    /// The screen in snapshot format, once it has settled (no new bytes for
    /// [`SETTLE_QUIET`]). Check it with `insta::assert_snapshot!`.
    pub fn snapshot(&mut self) -> String {
        self.settle(SETTLE_QUIET, SETTLE_DEADLINE);
        self.render()
    }

    /// Like [`Term::snapshot`], with the colours and attributes of every
    /// cell as a run list under the rows (see [`crate::style`]): for a test
    /// that must see colour, e.g. a status line drawn in inverse video.
    pub fn snapshot_styled(&mut self) -> String {
        self.settle(SETTLE_QUIET, SETTLE_DEADLINE);
        self.render_styled()
    }

    /// Resizes the PTY and the emulator together; the kernel then sends
    /// SIGWINCH to the program's foreground process group.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        let (ecols, erows) = emulated(cols, rows);
        // Under the lock, so no byte written after the resize is parsed at the
        // old size.
        let mut shared = self.lock();
        shared.parser.screen_mut().set_size(
            erows.try_into().expect("non-zero"),
            ecols.try_into().expect("non-zero"),
        );
        set_winsize(&self.master, cols, rows)
            .unwrap_or_else(|e| panic!("e2e: TIOCSWINSZ {cols}x{rows}: {e}"));
        shared.pty_size = (cols, rows);
        shared.cast.resize(ecols, erows);
        shared.unsettled = true;
    }

    /// Types `keys` (raw bytes: `"q"`, `"\r"`, `"\x03"` for Ctrl-C).
    pub fn send_keys(&mut self, keys: impl AsRef<[u8]>) {
        self.lock().cast.input(keys.as_ref());
        self.master
            .write_all(keys.as_ref())
            .and_then(|()| self.master.flush())
            .unwrap_or_else(|e| panic!("e2e: writing keys to the PTY: {e}"));
    }

    /// How the program ended, if it has. The program is not reaped until
    /// drop, so its process group id cannot be reused meanwhile.
    pub fn try_exit(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            let pid = Pid::from_raw(self.child.id() as i32);
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
            self.exit = match waitid(Id::Pid(pid), flags) {
                Ok(WaitStatus::Exited(_, code)) => Some(Exit::Code(code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => Some(Exit::Signal(sig as i32)),
                _ => None,
            };
        }
        self.exit
    }

    /// Waits for the program to end, then for its last output to be read
    /// (when nothing else holds the PTY open); panics with the failure report
    /// on timeout.
    pub fn wait_exit(&mut self, deadline: Duration) -> Exit {
        let end = Instant::now() + deadline;
        let Some(exit) = poll_until(deadline, || self.try_exit()) else {
            self.fail("the program to exit", deadline);
        };
        // A background process may still hold the PTY; then the output read
        // so far is what there is.
        let remaining = end.saturating_duration_since(Instant::now()).max(POLL);
        poll_until(remaining.min(Duration::from_secs(1)), || {
            self.lock().eof.then_some(())
        });
        exit
    }
}

/// Drains the master into the emulator until EOF/EIO (every slave closed) or
/// `stop`, answering the program's queries and recording the session. Polls
/// with a timeout so that drop can stop it even while a stray process still
/// holds the slave open, and so that a screen that has gone quiet is kept
/// in the history.
fn read_loop(mut master: File, shared: &(Mutex<Shared>, Condvar), stop: &AtomicBool) {
    let mut buf = [0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(50u8)) {
            Ok(0) => {
                let mut s = shared.0.lock().unwrap_or_else(|e| e.into_inner());
                s.keep_if_settled();
                continue;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        let n = match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break, // EIO: the last slave fd was closed
        };
        let (lock, cvar) = shared;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        s.parser.process(&buf[..n]);
        let replies = s.parser.callbacks_mut().take();
        s.cast.output(&buf[..n]);
        if !replies.is_empty() {
            s.cast.input(&replies);
        }
        s.raw.extend_from_slice(&buf[..n]);
        if s.raw.len() > RAW_KEEP {
            let cut = s.raw.len() - RAW_KEEP;
            s.raw.drain(..cut);
        }
        s.last_byte = Some(Instant::now());
        s.unsettled = true;
        cvar.notify_all();
        drop(s);
        // Outside the lock: the answer is already computed from the screen
        // at the query, and a program slow to read must not stall the test.
        if !replies.is_empty() {
            let _ = master.write_all(&replies);
        }
    }
    let (lock, cvar) = shared;
    lock.lock().unwrap_or_else(|e| e.into_inner()).eof = true;
    cvar.notify_all();
}

impl Drop for Term {
    fn drop(&mut self) {
        // The child leads its own session and process group: kill the whole
        // group (helpers it started too). Not yet reaped, so the id is ours.
        let pgid = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.child.wait();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
