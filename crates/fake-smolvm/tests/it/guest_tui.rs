//! guest-tui in a PTY this test creates, read through a terminal emulator
//! (vt100): what a person would see on the screen.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::pty::{openpty, Winsize};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const DEADLINE: Duration = Duration::from_secs(10);

/// guest-tui running on a fresh PTY of a chosen size.
struct Pty {
    master: File,
    child: Child,
    parser: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

fn winsize(cols: u16, rows: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

fn cloexec(fd: &OwnedFd) {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
}

impl Pty {
    /// Starts guest-tui with `args` on a PTY that is `cols`x`rows` before it starts.
    fn spawn(cols: u16, rows: u16, args: &[&str]) -> Pty {
        let pty = openpty(&winsize(cols, rows), None).expect("openpty");
        // Other tests in this process spawn children concurrently: they must
        // not inherit this PTY, or it would never report EOF.
        cloexec(&pty.master);
        cloexec(&pty.slave);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_guest-tui"));
        cmd.args(args)
            .env_clear()
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
        // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn guest-tui");
        drop(pty.slave);
        drop(cmd);
        let master = File::from(pty.master);
        // The emulator needs a non-zero size; at 0x0 the program draws one
        // status line anyway.
        let parser = Arc::new(Mutex::new(vt100::Parser::new(
            rows.max(24).try_into().unwrap(),
            cols.max(80).try_into().unwrap(),
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let (p, r) = (parser.clone(), raw.clone());
        // Ends with EIO once the child and every copy of the slave are gone.
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                p.lock().unwrap().process(&buf[..n]);
                r.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            child,
            parser,
            raw,
        }
    }

    fn screen(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&vt100::Screen) -> bool) {
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if pred(self.parser.lock().unwrap().screen()) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "timed out after {DEADLINE:?} waiting for {what}\n--- screen ---\n{}\n--- raw ---\n{}",
            self.screen(),
            String::from_utf8_lossy(&self.raw.lock().unwrap()).escape_debug()
        );
    }

    fn wait_text(&self, text: &str) {
        self.wait_for(&format!("{text:?} on screen"), |s| {
            s.contents().contains(text)
        });
    }

    fn resize(&self, cols: u16, rows: u16) {
        self.parser
            .lock()
            .unwrap()
            .screen_mut()
            .set_size(rows.try_into().unwrap(), cols.try_into().unwrap());
        // SAFETY: TIOCSWINSZ reads one winsize from a live local.
        let rc = unsafe {
            libc::ioctl(
                self.master.as_raw_fd(),
                libc::TIOCSWINSZ,
                &winsize(cols, rows),
            )
        };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "guest-tui did not exit within {DEADLINE:?}\n{}",
            self.screen()
        );
    }

    /// Once the program is gone, what the emulator shows is the normal screen
    /// with a visible cursor: guest-tui restored the terminal.
    fn assert_restored(&self) {
        self.wait_for("the normal screen and a visible cursor", |s| {
            !s.alternate_screen() && !s.hide_cursor()
        });
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        // The child leads its own session; kill its whole process group.
        let _ = kill(Pid::from_raw(-(self.child.id() as i32)), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[test]
fn first_frame_shows_the_pty_size_and_q_quits_with_0() {
    let mut pty = Pty::spawn(100, 30, &[]);
    pty.wait_text("guest-tui size 100x30 first 100x30 frames 1 winch 0");
    pty.wait_text("believed 100x30");
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
    assert!(pty.child.try_wait().unwrap().is_none(), "exited at 0x0");
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
    kill(Pid::from_raw(pty.child.id() as i32), Signal::SIGTERM).unwrap();
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
