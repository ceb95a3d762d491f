//! [`Term`]: a program on a real PTY, seen through a terminal emulator.
//!
//! Built on [`testkit::Term`]: the PTY is opened and sized before the child
//! exists, so the program's first `TIOCGWINSZ` sees the chosen size (0x0
//! included), and its output is read on a thread into the emulator.
//!
//! The terminal answers the queries real programs send and may block on
//! (cursor position, device attributes, window size: see [`crate::answer`]),
//! records the session as an asciicast (see [`crate::cast`]) and keeps the
//! last settled screens, so a failed wait leaves a failure folder (see
//! [`crate::failure`]).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use testkit::output::{Sink, State};
use testkit::pty::{Pty, Wiring};
use testkit::term::{emulated, parser_with, resize_screen};

use crate::answer::Answerer;
use crate::cast::Recorder;
use crate::exit::Exit;
use crate::failure::{self, Context, Evidence, Report};
use crate::screens::Screens;
use crate::snapshot::Grid;

/// How long the screen must be quiet (no new bytes) to count as settled.
pub const SETTLE_QUIET: Duration = Duration::from_millis(150);

/// How long [`Term::snapshot`] waits for the screen to settle at most.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(5);

/// What the program's output goes into: the emulator (which answers the
/// program's queries), the recording and the settled screens.
struct Screen {
    parser: vt100::Parser<Answerer>,
    /// The PTY's size, which the header shows when it differs from the
    /// emulated one.
    pty_size: (u16, u16),
    cast: Recorder,
    screens: Screens,
    /// Whether output or a resize came since the last screen kept in
    /// `screens`.
    unsettled: bool,
}

impl Screen {
    fn grid(&self) -> Grid {
        let mut grid = Grid::from_vt100(self.parser.screen());
        grid.pty_size = Some(self.pty_size);
        grid
    }
}

impl Sink for Screen {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.parser.process(chunk);
        let replies = self.parser.callbacks_mut().take();
        self.cast.output(chunk);
        if !replies.is_empty() {
            self.cast.input(&replies);
        }
        self.unsettled = true;
        replies
    }

    /// Keeps the screen in the history if it has been quiet for
    /// [`SETTLE_QUIET`] since the last change.
    fn idle(&mut self, last_byte: Option<Instant>) {
        let quiet = last_byte.is_none_or(|t| t.elapsed() >= SETTLE_QUIET);
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
    inner: testkit::Term<Screen>,
    exit: Option<Exit>,
    context: Context,
}

impl Term {
    /// Starts `cmd` on a new PTY that is `cols` x `rows` before the program
    /// starts. The program leads its own session with the PTY as its
    /// controlling terminal, on stdin, stdout and stderr. Build `cmd` with
    /// [`crate::hermetic::command`]. Panics if the PTY or the spawn fails.
    pub fn spawn(cols: u16, rows: u16, cmd: Command) -> Term {
        let program = format!("{cmd:?}");
        // The recording's header shows the TERM the program got.
        let term_env = cmd
            .get_envs()
            .find(|(k, _)| *k == "TERM")
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let pty = Pty::open(cols, rows).unwrap_or_else(|e| panic!("e2e: cannot open a PTY: {e}"));
        let (ecols, erows) = emulated(cols, rows);
        let screen = Screen {
            parser: parser_with(cols, rows, Answerer::default()),
            pty_size: (cols, rows),
            // At the emulated size: a player cannot show a 0x0 screen.
            cast: Recorder::new(ecols, erows, &[("TERM", &term_env), ("SHELL", "/bin/sh")]),
            screens: Screens::default(),
            unsettled: true,
        };
        let inner = testkit::Term::spawn_on(pty, cmd, Wiring::All, screen)
            .unwrap_or_else(|e| panic!("e2e: cannot start {program}: {e}"));
        Term {
            program,
            inner,
            exit: None,
            context: Context::default(),
        }
    }

    /// The program's pid (also its process group and session id).
    pub fn pid(&self) -> u32 {
        self.inner.pid()
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

    fn lock(&self) -> MutexGuard<'_, State<Screen>> {
        self.inner.lock()
    }

    /// Runs `f` on the current screen.
    pub fn with_screen<T>(&self, f: impl FnOnce(&vt100::Screen) -> T) -> T {
        f(self.lock().sink.parser.screen())
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
        self.lock().sink.grid().render()
    }

    /// The current screen in snapshot format with its colours and
    /// attributes (see [`Grid::styled`]), without waiting.
    pub fn render_styled(&self) -> String {
        let shared = self.lock();
        let screen = &shared.sink;
        screen.grid().styled(screen.parser.screen()).render()
    }

    /// The session so far as an asciicast v2 recording.
    pub fn cast(&self) -> String {
        self.lock().sink.cast.text().to_string()
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
        let seen = (self.inner.output()).wait_until(deadline, |s| pred(s.sink.parser.screen()));
        if !seen {
            self.fail(description, deadline);
        }
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
        let screen = shared.sink.grid().render();
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
            cast: shared.sink.cast.text().to_string(),
            screens: (shared.sink.screens).render((shared.sink.cast.elapsed(), &screen)),
            svg: crate::svg::render(
                shared.sink.parser.screen(),
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
        if self.inner.output().settle(quiet, deadline) {
            return;
        }
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
        // Under the lock, so no byte written after the resize is parsed at the
        // old size.
        let resized = self.inner.resize(cols, rows, |screen| {
            resize_screen(screen.parser.screen_mut(), cols, rows);
            let (ecols, erows) = emulated(cols, rows);
            screen.pty_size = (cols, rows);
            screen.cast.resize(ecols, erows);
            screen.unsettled = true;
        });
        resized.unwrap_or_else(|e| panic!("e2e: TIOCSWINSZ {cols}x{rows}: {e}"));
    }

    /// Types `keys` (raw bytes: `"q"`, `"\r"`, `"\x03"` for Ctrl-C).
    pub fn send_keys(&mut self, keys: impl AsRef<[u8]>) {
        self.lock().sink.cast.input(keys.as_ref());
        self.inner
            .send(keys.as_ref())
            .unwrap_or_else(|e| panic!("e2e: writing keys to the PTY: {e}"));
    }

    /// Whether the terminal is in raw mode now (`ICANON` off): on Linux,
    /// `TCGETS` on the master reads the slave's settings, so this sees what
    /// the program set (smolvm goes raw when the agent says `started`).
    pub fn is_raw(&self) -> bool {
        nix::sys::termios::tcgetattr(self.inner.master())
            .map(|t| {
                !t.local_flags
                    .contains(nix::sys::termios::LocalFlags::ICANON)
            })
            .unwrap_or(false)
    }

    /// How the program ended, if it has. The program is not reaped until
    /// drop, so its process group id cannot be reused meanwhile.
    pub fn try_exit(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            self.exit = self.inner.try_exit().map(|status| match status.signal() {
                Some(sig) => Exit::Signal(sig),
                None => Exit::Code(status.code().unwrap_or_default()),
            });
        }
        self.exit
    }

    /// Waits for the program to end, then for its last output to be read
    /// (when nothing else holds the PTY open); panics with the failure report
    /// on timeout.
    pub fn wait_exit(&mut self, deadline: Duration) -> Exit {
        if self.inner.wait_exit(deadline).is_none() {
            self.fail("the program to exit", deadline);
        }
        self.try_exit().expect("the program has exited")
    }
}
