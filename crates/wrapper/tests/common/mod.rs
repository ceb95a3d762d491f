//! Test harness: a fake-smolvm machine in a temp home, and `pty-resize`
//! running on a PTY the test creates (never the operator's terminal).
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fake_smolvm::exec_log::{self, ExecRecord};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::pty::{openpty, Winsize};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn wrapper_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pty-resize"))
}

fn bin_dir() -> PathBuf {
    wrapper_bin().parent().unwrap().to_path_buf()
}

/// `target/<profile>/fake-smolvm`, built once if missing.
pub fn fake_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let p = bin_dir().join("fake-smolvm");
            if !p.exists() || !bin_dir().join("guest-tui").exists() {
                let st = Command::new(env!("CARGO"))
                    .args(["build", "-p", "fake-smolvm", "--bins"])
                    .status()
                    .expect("cargo build -p fake-smolvm");
                assert!(st.success(), "building fake-smolvm failed");
            }
            p
        })
        .clone()
}

pub fn guest_tui_bin() -> PathBuf {
    fake_bin();
    bin_dir().join("guest-tui")
}

/// Polls `cond` until it returns `Some` or the deadline passes; on timeout
/// panics with `what` and the diagnostics `explain` returns.
pub fn wait_for<T>(
    what: &str,
    mut cond: impl FnMut() -> Option<T>,
    explain: impl Fn() -> String,
) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out waiting for {what}\n{}", explain());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A fake-smolvm home with one running machine; stopped on drop.
pub struct Fake {
    pub home: tempfile::TempDir,
    pub machine: String,
}

impl Fake {
    pub fn start(machine: &str) -> Fake {
        let home = tempfile::tempdir().unwrap();
        let fake = Fake {
            home,
            machine: machine.to_string(),
        };
        for args in [
            vec!["machine", "create", machine],
            vec!["machine", "start", "--name", machine],
        ] {
            let out = fake
                .command()
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "fake-smolvm {args:?}: {out:?}");
        }
        fake
    }

    /// `fake-smolvm` with this home and a clean, hermetic environment.
    pub fn command(&self) -> Command {
        let mut c = Command::new(fake_bin());
        c.env("FAKE_SMOLVM_HOME", self.home.path())
            .env_remove("TMUX");
        c
    }

    pub fn exec_log_path(&self) -> PathBuf {
        self.home
            .path()
            .join("vms")
            .join(&self.machine)
            .join("exec.log")
    }

    /// Once the agent is done with every connection (a side channel killed
    /// as the wrapper exited may be logged by the agent a moment later).
    pub fn exec_log(&self) -> Vec<ExecRecord> {
        let dir = self.exec_log_path().parent().unwrap().to_path_buf();
        exec_log::read_settled(&dir, Duration::from_secs(10)).unwrap()
    }

    pub fn exec_log_text(&self) -> String {
        std::fs::read_to_string(self.exec_log_path()).unwrap_or_default()
    }

    /// `fake-smolvm machine exec --name <m> -t -- <cmd…>` as a wrapped argv.
    pub fn exec_argv(&self, tty: bool, cmd: &[&str]) -> Vec<String> {
        let mut v = vec![
            fake_bin().to_string_lossy().into_owned(),
            "machine".into(),
            "exec".into(),
            "--name".into(),
            self.machine.clone(),
        ];
        if tty {
            v.push("-t".into());
        }
        v.push("--".into());
        v.extend(cmd.iter().map(|s| s.to_string()));
        v
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self
            .command()
            .args(["machine", "stop", "--name", &self.machine])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
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

/// How the test's PTY starts.
pub struct PtyOpts {
    pub cols: u16,
    pub rows: u16,
    /// Put the terminal in raw mode before the wrapper starts (readiness
    /// then cannot be observed).
    pub raw: bool,
    /// Give the wrapper a pipe as stdout instead of the PTY.
    pub stdout_pipe: bool,
}

impl Default for PtyOpts {
    fn default() -> Self {
        Self {
            cols: 100,
            rows: 30,
            raw: false,
            stdout_pipe: false,
        }
    }
}

/// A program (the wrapper or the naive client) on a PTY the test created.
pub struct Session {
    pub master: File,
    pub child: Child,
    parser: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
    status: Option<ExitStatus>,
    /// The reader thread; finished once every holder of the slave is gone.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Session {
    /// Runs `program args…` with the PTY as controlling terminal and stdio.
    pub fn spawn(
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        opts: PtyOpts,
    ) -> Session {
        Session::spawn_in(tempfile::tempdir().unwrap(), program, args, env, opts)
    }

    fn spawn_in(
        dir: tempfile::TempDir,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        opts: PtyOpts,
    ) -> Session {
        let log = dir.path().join("pty-resize.log");
        let pty = openpty(&winsize(opts.cols, opts.rows), None).expect("openpty");
        // Tests run in parallel: other children must not inherit this PTY.
        cloexec(&pty.master);
        cloexec(&pty.slave);
        if opts.raw {
            let mut t = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
            nix::sys::termios::cfmakeraw(&mut t);
            nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t)
                .unwrap();
        }
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_remove("TMUX")
            .env_remove("PTY_RESIZE_LOG")
            .env("TERM", "xterm-256color")
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
        if opts.stdout_pipe {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(Stdio::from(pty.slave.try_clone().unwrap()));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
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
        let child = cmd.spawn().expect("spawn");
        drop(cmd);
        drop(pty.slave);
        let master = File::from(pty.master);
        let parser = Arc::new(Mutex::new(vt100::Parser::new(
            opts.rows.max(1).try_into().unwrap(),
            opts.cols.max(1).try_into().unwrap(),
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let (p, r) = (parser.clone(), raw.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                p.lock().unwrap().process(&buf[..n]);
                r.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Session {
            master,
            child,
            parser,
            raw,
            log,
            _dir: dir,
            status: None,
            reader: Some(reader),
        }
    }

    /// `pty-resize --log <log> <wrapper_args…>` on a fresh PTY.
    pub fn wrapper(wrapper_args: &[String], env: &[(&str, String)], opts: PtyOpts) -> Session {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("pty-resize.log");
        let mut args = vec!["--log".to_string(), log.to_string_lossy().into_owned()];
        args.extend(wrapper_args.iter().cloned());
        Session::spawn_in(dir, &wrapper_bin(), &args, env, opts)
    }

    pub fn screen(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Diagnostics for a failed wait.
    pub fn explain(&self, fake: Option<&Fake>) -> String {
        format!(
            "--- screen ---\n{}\n--- raw output ---\n{:?}\n--- wrapper log ---\n{}\n--- exec.log ---\n{}",
            self.screen(),
            self.output(),
            self.log_text(),
            fake.map(|f| f.exec_log_text()).unwrap_or_default()
        )
    }

    /// Waits until the screen contains `text`.
    pub fn wait_screen(&self, text: &str, fake: Option<&Fake>) {
        wait_for(
            &format!("screen to show {text:?}"),
            || self.screen().contains(text).then_some(()),
            || self.explain(fake),
        );
    }

    /// Waits until the wrapper log has an `event=<event>` line.
    pub fn wait_log(&self, event: &str, fake: Option<&Fake>) {
        let needle = format!("event={event}");
        wait_for(
            &format!("log event {event}"),
            || self.log_text().contains(&needle).then_some(()),
            || self.explain(fake),
        );
    }

    /// Resizes the PTY (the kernel sends SIGWINCH to its foreground group).
    pub fn resize(&self, cols: u16, rows: u16) {
        let ws = winsize(cols, rows);
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "TIOCSWINSZ");
        self.parser.lock().unwrap().screen_mut().set_size(
            rows.max(1).try_into().unwrap(),
            cols.max(1).try_into().unwrap(),
        );
    }

    pub fn type_bytes(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Waits for the program to exit; returns the status and how long it took.
    pub fn wait_exit(&mut self, fake: Option<&Fake>) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        let child = &mut self.child;
        let st = {
            let end = Instant::now() + DEADLINE;
            loop {
                if let Some(st) = child.try_wait().unwrap() {
                    break st;
                }
                if Instant::now() > end {
                    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                    let _ = child.wait();
                    panic!("timed out waiting for exit\n{}", self.explain(fake));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        self.status = Some(st);
        // The child's last bytes may still be in the PTY: wait (bounded, a
        // stray process may hold the slave) until the reader hits EOF, so
        // output() holds everything the child wrote.
        if let Some(reader) = self.reader.take() {
            let end = Instant::now() + Duration::from_secs(5);
            while !reader.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        st
    }

    /// The token the wrapper logged for the prologue, if any.
    pub fn token(&self) -> Option<String> {
        let text = self.log_text();
        let at = text.find("token=")? + "token=".len();
        Some(text[at..].split_whitespace().next()?.to_string())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            // The wrapper's session holds everything it started on the PTY.
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
        // The fake guest shares the host's /tmp: remove the prologue's record.
        if let Some(t) = self.token() {
            let _ = std::fs::remove_file(format!("/tmp/.pty-resize-{t}"));
        }
    }
}

/// Side-channel execs (everything but the main `-t` exec).
pub fn side_execs(records: &[ExecRecord]) -> Vec<&ExecRecord> {
    records.iter().filter(|r| !r.tty).collect()
}

/// The main (`-t`) exec.
pub fn main_exec(records: &[ExecRecord]) -> &ExecRecord {
    let mains: Vec<_> = records.iter().filter(|r| r.tty).collect();
    assert_eq!(mains.len(), 1, "exactly one -t exec: {records:#?}");
    mains[0]
}

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}
