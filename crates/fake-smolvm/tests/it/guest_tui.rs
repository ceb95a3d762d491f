//! guest-tui in a PTY this test creates, read through a terminal emulator
//! (vt100): what a person would see on the screen.

use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use testkit::term::resize_screen;

const DEADLINE: Duration = Duration::from_secs(10);

/// guest-tui running on a fresh PTY of a chosen size (see [`testkit::Term`]).
struct Pty(testkit::Term);

impl Pty {
    /// Starts guest-tui with `args` on a PTY that is `cols`x`rows` before it starts.
    fn spawn(cols: u16, rows: u16, args: &[&str]) -> Pty {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_guest-tui"));
        cmd.args(args)
            .env_clear()
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8");
        Pty(testkit::Term::spawn(cols, rows, cmd).expect("spawn guest-tui"))
    }

    fn pid(&self) -> i32 {
        self.0.pid() as i32
    }

    fn screen(&self) -> String {
        self.0.lock().sink.screen().contents()
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&vt100::Screen) -> bool) {
        if !(self.0.output()).wait_until(DEADLINE, |s| pred(s.sink.screen())) {
            panic!(
                "timed out after {DEADLINE:?} waiting for {what}\n--- screen ---\n{}\n--- raw ---\n{}",
                self.screen(),
                self.0.output().text().escape_debug()
            );
        }
    }

    fn wait_text(&self, text: &str) {
        self.wait_for(&format!("{text:?} on screen"), |s| {
            s.contents().contains(text)
        });
    }

    fn resize(&self, cols: u16, rows: u16) {
        let resized = self
            .0
            .resize(cols, rows, |p| resize_screen(p.screen_mut(), cols, rows));
        resized.unwrap_or_else(|e| panic!("TIOCSWINSZ: {e}"));
    }

    fn send(&mut self, bytes: &[u8]) {
        self.0.send(bytes).unwrap();
    }

    fn try_exit(&self) -> Option<ExitStatus> {
        self.0.try_exit()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        self.0.wait_exit(DEADLINE).unwrap_or_else(|| {
            panic!(
                "guest-tui did not exit within {DEADLINE:?}\n{}",
                self.screen()
            )
        })
    }

    /// Once the program is gone, what the emulator shows is the normal screen
    /// with a visible cursor: guest-tui restored the terminal.
    fn assert_restored(&self) {
        self.wait_for("the normal screen and a visible cursor", |s| {
            !s.alternate_screen() && !s.hide_cursor()
        });
    }
}

#[test]
fn first_frame_shows_the_pty_size_and_q_quits_with_0() {
    let mut pty = Pty::spawn(100, 30, &[]);
    pty.wait_text("guest-tui size 100x30 first 100x30 frames 1 winch 0");
    pty.wait_text("believed 100x30");
    // The frame's last row may come in a later write than its status line.
    pty.wait_text("└");
    let screen = pty.screen();
    let rows: Vec<&str> = screen.lines().collect();
    assert!(
        rows[1].starts_with('┌') && rows[1].chars().count() == 100,
        "{screen}"
    );
    assert!(rows[29].starts_with('└'), "{screen}");
    pty.send(b"q");
    assert_eq!(pty.wait_exit().code(), Some(0));
    pty.assert_restored();
}

#[test]
fn zero_size_is_shown_and_the_program_keeps_running() {
    let mut pty = Pty::spawn(0, 0, &["--label", "zero"]);
    pty.wait_text("guest-tui zero size 0x0 first 0x0 frames 1 winch 0");
    pty.wait_text("no size: cannot draw");
    assert!(pty.try_exit().is_none(), "exited at 0x0");
    pty.send(b"q");
    assert_eq!(pty.wait_exit().code(), Some(0));
}

#[test]
fn resize_redraws_at_the_new_size_and_keeps_the_first_size() {
    let mut pty = Pty::spawn(100, 30, &[]);
    pty.wait_text("size 100x30 first 100x30 frames 1");
    pty.resize(60, 20);
    pty.wait_text("guest-tui size 60x20 first 100x30 frames 2 winch 1");
    pty.wait_text("believed 60x20");
    pty.send(b"q");
    assert_eq!(pty.wait_exit().code(), Some(0));
}

#[test]
fn exit_code_is_used_for_q_and_for_exit_after() {
    let mut pty = Pty::spawn(80, 24, &["--exit-code", "7"]);
    pty.wait_text("frames 1");
    pty.send(b"q");
    assert_eq!(pty.wait_exit().code(), Some(7));

    let mut pty = Pty::spawn(80, 24, &["--exit-after", "200", "--exit-code", "3"]);
    assert_eq!(pty.wait_exit().code(), Some(3));
    pty.assert_restored();
}

#[test]
fn sigterm_restores_the_terminal_and_exits_143() {
    let mut pty = Pty::spawn(80, 24, &[]);
    pty.wait_text("frames 1");
    kill(Pid::from_raw(pty.pid()), Signal::SIGTERM).unwrap();
    assert_eq!(pty.wait_exit().code(), Some(128 + 15));
    pty.assert_restored();
}

#[test]
fn record_file_has_one_line_per_frame() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("frames.jsonl");
    let mut pty = Pty::spawn(100, 30, &["--record", record.to_str().unwrap()]);
    pty.wait_text("frames 1");
    pty.resize(60, 20);
    pty.wait_text("size 60x20 first 100x30 frames 2");
    pty.send(b"q");
    assert_eq!(pty.wait_exit().code(), Some(0));

    let text = std::fs::read_to_string(&record).unwrap();
    let frames: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(frames.len(), 2, "{text}");
    let sizes: Vec<(u64, u64, u64)> = frames
        .iter()
        .map(|f| {
            (
                f["frame"].as_u64().unwrap(),
                f["cols"].as_u64().unwrap(),
                f["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(sizes, [(1, 100, 30), (2, 60, 20)]);
    let (t1, t2) = (
        frames[0]["ms"].as_f64().unwrap(),
        frames[1]["ms"].as_f64().unwrap(),
    );
    assert!(0.0 < t1 && t1 < t2, "{text}");
}

#[test]
fn bad_usage_exits_2_and_no_terminal_is_a_clear_error() {
    let bin = env!("CARGO_BIN_EXE_guest-tui");
    let out = Command::new(bin)
        .arg("--exit-code")
        .arg("300")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("Error: not a terminal"), "{stderr}");
}
