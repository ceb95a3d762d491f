//! Shared helpers for the fake-smolvm integration tests: a hermetic home, a
//! machine guard that stops the guest on drop, PTYs the test owns, waits with
//! deadlines (never fixed sleeps).

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fake_smolvm::exec_log::{self, ExecRecord};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_fake-smolvm");

/// Every switch the fake reads; cleared so the caller's environment never leaks in.
pub const SWITCHES: [&str; 6] = [
    "FAKE_SMOLVM_HOME",
    "FAKE_SMOLVM_BRINGUP_MS",
    "FAKE_SMOLVM_COMPAT",
    "FAKE_SMOLVM_RACE",
    "FAKE_SMOLVM_SHARED_STDIN",
    "FAKE_SMOLVM_SHARED_STDIN_DELAY_MS",
];

/// Test-only switch: the exec client SIGKILLs itself after the final response, before logging.
pub const TEST_DIE_BEFORE_LOG: &str = "FAKE_SMOLVM_TEST_DIE_BEFORE_LOG";

/// A guest command that prints the guest PTY's `stty size` every 50 ms until interrupted.
pub const STTY_LOOP: &str = "while :; do stty size; sleep 0.05; done";

/// Polls `cond` every 10 ms until it holds or `secs` pass; panics with `what()` then.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if Instant::now() >= deadline {
            panic!("timed out after {secs}s waiting; saw: {}", what());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a child with a deadline; kills it (and panics) on timeout.
pub fn wait_child(child: &mut Child, secs: u64) -> ExitStatus {
    wait_child_or(child, secs, String::new)
}

/// [`wait_child`], and on timeout the panic also shows `context()` (e.g. the
/// session's output) and where each of the child's threads is blocked.
pub fn wait_child_or(child: &mut Child, secs: u64, context: impl Fn() -> String) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let threads = describe_threads(child.id());
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process {} did not exit within {secs}s\nits threads:\n{threads}\n{}",
                child.id(),
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One line per thread of `pid`: its name, state and kernel wait channel,
/// which is what tells a hang in read(2) from one in a lock or tcsetattr.
fn describe_threads(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "  (gone)".into();
    };
    let mut lines: Vec<String> = tasks
        .flatten()
        .map(|t| {
            let dir = t.path();
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            let state = read("stat")
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
                .unwrap_or_default();
            format!(
                "  tid {} {} state {state} wchan {}",
                t.file_name().to_string_lossy(),
                read("comm").trim(),
                read("wchan").trim()
            )
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// A temp `FAKE_SMOLVM_HOME`.
pub struct Fake {
    pub home: tempfile::TempDir,
}

impl Fake {
    pub fn new() -> Fake {
        Fake {
            home: tempfile::Builder::new().prefix("fsm").tempdir().unwrap(),
        }
    }

    /// `fake-smolvm ARGS` with this home, no inherited switches, no TMUX, stdin /dev/null.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new(BIN);
        for v in SWITCHES {
            c.env_remove(v);
        }
        // The hidden test-only switch is not in SWITCHES (that list must match --help).
        c.env_remove(TEST_DIE_BEFORE_LOG);
        c.env_remove("TMUX")
            .env("FAKE_SMOLVM_HOME", self.home.path())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs to completion (30 s deadline) and returns the output.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_output(self.cmd(args))
    }

    pub fn machine_dir(&self, name: &str) -> PathBuf {
        self.home.path().join("vms").join(name)
    }

    pub fn log(&self, name: &str) -> Vec<ExecRecord> {
        exec_log::read_settled(&self.machine_dir(name), Duration::from_secs(10)).unwrap()
    }

    /// Creates and starts machine `name`; the guard stops it on drop.
    pub fn machine(&self, name: &str) -> Machine<'_> {
        self.machine_with(name, &[])
    }

    /// Like [`Fake::machine`], with extra environment for `machine start`.
    pub fn machine_with(&self, name: &str, env: &[(&str, &str)]) -> Machine<'_> {
        let out = self.run(["machine", "create", name]);
        assert!(out.status.success(), "create: {}", text(&out.stderr));
        let mut c = self.cmd(["machine", "start", "--name", name]);
        c.envs(env.iter().copied());
        let out = run_output(c);
        assert!(
            out.status.success(),
            "start: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        self.adopt(name)
    }

    /// The guard of machine `name`, started by the test itself; stops it on drop.
    pub fn adopt(&self, name: &str) -> Machine<'_> {
        let pid = std::fs::read_to_string(self.machine_dir(name).join("agent.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Machine {
            fake: self,
            name: name.into(),
            init_pid: pid,
        }
    }
}

/// Runs a command with a 30 s deadline, capturing stdout and stderr.
pub fn run_output(mut c: Command) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = wait_child(&mut child, 30);
    Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A running machine; stopped (guest and all its processes killed) on drop.
pub struct Machine<'a> {
    pub fake: &'a Fake,
    pub name: String,
    pub init_pid: i32,
}

impl Machine<'_> {
    /// `machine exec --name NAME ARGS…` as a command.
    pub fn exec<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = self.fake.cmd(["machine", "exec", "--name", &self.name]);
        c.args(args);
        c
    }

    /// `machine exec --name NAME -t -- sh -c STTY_LOOP`: a TTY session that
    /// keeps reporting the size the guest sees.
    pub fn stty_loop(&self) -> Command {
        self.exec(["-t", "--", "sh", "-c", STTY_LOOP])
    }

    pub fn log(&self) -> Vec<ExecRecord> {
        self.fake.log(&self.name)
    }

    pub fn dir(&self) -> PathBuf {
        self.fake.machine_dir(&self.name)
    }
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        let _ = self.fake.run(["machine", "stop", "--name", &self.name]);
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => false,
    }
}

/// Host pids of live processes whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
                && alive(*pid)
        })
        .collect()
}

/// A unique marker string for /proc scans.
pub fn marker(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("fsm-marker-{tag}-{}-{nanos}", std::process::id())
}

/// A PTY the test owns, with a process on its slave as a real terminal would run it.
pub struct PtySession {
    master: File,
    pub slave_path: PathBuf,
    pub child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

pub fn winsize(cols: u16, rows: u16) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl PtySession {
    /// Spawns `cmd` with a fresh test-owned PTY (cols x rows) as its controlling
    /// terminal and stdin/stdout/stderr.
    pub fn spawn(mut cmd: Command, cols: u16, rows: u16) -> PtySession {
        let pty = nix::pty::openpty(Some(&winsize(cols, rows)), None).unwrap();
        let slave_path = nix::unistd::ttyname(&pty.slave).unwrap();
        let dup = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        cmd.stdin(dup(&pty.slave))
            .stdout(dup(&pty.slave))
            .stderr(dup(&pty.slave));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(cmd);
        drop(pty.slave);
        let master = File::from(pty.master);
        let out = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let mut m = master.try_clone().unwrap();
            let out = out.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match m.read(&mut buf) {
                        Ok(0) | Err(_) => break, // EIO: the last slave fd closed
                        Ok(n) => out.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
            })
        };
        PtySession {
            master,
            slave_path,
            child,
            out,
            reader: Some(reader),
        }
    }

    pub fn output(&self) -> String {
        text(&self.out.lock().unwrap())
    }

    /// Waits until the output satisfies `cond`.
    pub fn wait_output(&self, secs: u64, cond: impl Fn(&str) -> bool) {
        wait_until(
            secs,
            || cond(&self.output()),
            || format!("{:?}", self.output()),
        );
    }

    pub fn write(&self, bytes: &[u8]) {
        (&self.master).write_all(bytes).unwrap();
    }

    /// Types Ctrl-C and expects the guest command to die of SIGINT (exit 130).
    #[track_caller]
    pub fn interrupt(&mut self) {
        self.write(b"\x03");
        assert_eq!(self.wait_exit(30).code(), Some(130));
    }

    /// Waits until the process put the terminal in raw mode (ICANON off):
    /// from then on typed bytes go to the guest instead of being flushed.
    pub fn wait_raw(&self, secs: u64) {
        let slave = self.open_slave();
        wait_until(
            secs,
            || {
                !nix::sys::termios::tcgetattr(&slave)
                    .unwrap()
                    .local_flags
                    .contains(nix::sys::termios::LocalFlags::ICANON)
            },
            || self.output(),
        );
    }

    /// Resizes the test's PTY (the kernel sends SIGWINCH to its foreground group).
    pub fn resize(&self, cols: u16, rows: u16) {
        let ws = winsize(cols, rows);
        // SAFETY: TIOCSWINSZ reads our struct; the fd is our own PTY master.
        assert_eq!(
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
            0
        );
    }

    /// The test PTY's size as (cols, rows).
    pub fn size(&self) -> (u16, u16) {
        let mut ws = winsize(0, 0);
        // SAFETY: TIOCGWINSZ fills our struct.
        assert_eq!(
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) },
            0
        );
        (ws.ws_col, ws.ws_row)
    }

    /// Opens the slave again (O_NOCTTY), e.g. to share it as another process's stdin.
    pub fn open_slave(&self) -> File {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&self.slave_path)
            .unwrap()
    }

    /// Waits for the process to exit, then for the rest of its output.
    pub fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let out = Arc::clone(&self.out);
        let status = wait_child_or(&mut self.child, secs, move || {
            format!("its output so far:\n{}", text(&out.lock().unwrap()))
        });
        if let Some(r) = self.reader.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !r.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
        status
    }
}

impl Drop for PtySession {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The exec log record of the client with host pid `pid`.
pub fn record_of(records: &[ExecRecord], pid: u32) -> ExecRecord {
    records
        .iter()
        .find(|r| r.pid == pid)
        .cloned()
        .unwrap_or_else(|| panic!("no exec.log record for pid {pid}: {records:?}"))
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
