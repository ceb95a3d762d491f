//! Test kit for the wrapper's contract tests: a PTY the test creates, the
//! real `pty-resize` binary on it, and a stub `smolvm` (stub-smolvm.pl) whose
//! journal says what it saw. No fake-smolvm, no other terminal touched.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use testkit::output::Output;
use testkit::pty::Wiring;

use pty_resize::log::{self, Record};

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// One journal line of the stub.
#[derive(Debug, Clone)]
pub struct Step {
    /// Epoch milliseconds.
    pub t: f64,
    /// The stub process.
    pub pid: i32,
    /// `main-start`, `channel-push`, …
    pub event: String,
    /// The rest (`size=100x30`, `inwindow=0`).
    pub rest: String,
}

/// A PTY pair sized before anything runs on it.
pub struct Pty {
    /// The test's side.
    pub master: OwnedFd,
    /// The terminal the wrapper gets.
    pub slave: OwnedFd,
}

impl Pty {
    /// A PTY of `cols`×`rows`, close-on-exec from the start (see
    /// [`testkit::pty`]).
    pub fn new(cols: u16, rows: u16) -> Self {
        let p = testkit::pty::Pty::open(cols, rows).expect("open a PTY");
        Self {
            master: p.master,
            slave: p.slave,
        }
    }

    /// Resizes it; the kernel sends SIGWINCH to its foreground group.
    pub fn resize(&self, cols: u16, rows: u16) {
        testkit::winsize::set(&self.master, cols, rows).expect("TIOCSWINSZ");
    }

    /// Types bytes into the terminal.
    pub fn type_in(&self, bytes: &[u8]) {
        nix::unistd::write(&self.master, bytes).expect("write to the PTY");
    }

    /// The terminal's mode and fd flags, as the tests compare them.
    pub fn mode(&self) -> (Vec<u8>, i32) {
        let t = nix::sys::termios::tcgetattr(&self.slave).expect("tcgetattr");
        let raw: libc::termios = t.into();
        let bytes = format!(
            "{:x} {:x} {:x} {:x} {:?}",
            raw.c_iflag, raw.c_oflag, raw.c_cflag, raw.c_lflag, raw.c_cc
        );
        // SAFETY: F_GETFL only queries.
        let fl = unsafe { libc::fcntl(self.slave.as_raw_fd(), libc::F_GETFL) };
        (bytes.into_bytes(), fl)
    }
}

/// A wrapper run on a PTY against the stub.
pub struct Run {
    /// The wrapper process.
    pub child: Child,
    /// The stub's journal and lock/cache homes live here.
    pub dir: PathBuf,
    /// The wrapper's decision log.
    pub log: PathBuf,
    status: Option<ExitStatus>,
    /// Reads the PTY so the terminal never fills up; stopped on drop.
    output: Output<()>,
}

/// How to start a run.
pub struct Setup<'a> {
    /// Shared state dir (journal, XDG dirs); several runs may share one.
    pub dir: &'a Path,
    /// The machine name.
    pub machine: &'a str,
    /// Options before MACHINE.
    pub opts: Vec<String>,
    /// Stub switches (`STUB_BRINGUP_MS`…).
    pub env: Vec<(&'a str, String)>,
    /// Make the PTY the wrapper's controlling terminal (the normal case).
    pub ctty: bool,
    /// Log file name in `dir`.
    pub log_name: &'a str,
    /// What follows `<stub> machine exec` (default: `--name MACHINE -t -- guest arg`).
    pub exec_args: Option<Vec<String>>,
    /// Whether MACHINE is given before `--` (default: yes).
    pub given_machine: bool,
    /// Words before the stub after `--` (`env X=1`, `sudo`).
    pub prefix: Vec<String>,
}

impl<'a> Setup<'a> {
    /// Defaults: settle 500 ms (the minimum, to keep tests short), a ctty.
    pub fn new(dir: &'a Path, machine: &'a str) -> Self {
        Self {
            dir,
            machine,
            opts: vec!["--settle-ms".into(), "500".into()],
            env: Vec::new(),
            ctty: true,
            log_name: "wrapper.log",
            exec_args: None,
            given_machine: true,
            prefix: Vec::new(),
        }
    }

    /// Puts `words` before the stub (`pty-resize -- env X=1 stub machine exec …`).
    pub fn prefix(mut self, words: &[&str]) -> Self {
        self.prefix = words.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Replaces what follows `<stub> machine exec`.
    pub fn exec_args(mut self, a: &[&str]) -> Self {
        self.exec_args = Some(a.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Leaves MACHINE out (`pty-resize -- smolvm machine exec --name M …`).
    pub fn without_machine(mut self) -> Self {
        self.given_machine = false;
        self
    }

    /// Adds options.
    pub fn opts(mut self, o: &[&str]) -> Self {
        self.opts.extend(o.iter().map(|s| s.to_string()));
        self
    }

    /// Adds a stub switch.
    pub fn env(mut self, k: &'a str, v: impl ToString) -> Self {
        self.env.push((k, v.to_string()));
        self
    }

    /// Starts `pty-resize OPTS MACHINE -- stub machine exec --name MACHINE -t -- guest arg`
    /// (or the exec arguments given) on `pty`.
    pub fn spawn(self, pty: &Pty) -> Run {
        let stub = stub_path();
        let log = self.dir.join(self.log_name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pty-resize"));
        let exec_args = self.exec_args.clone().unwrap_or_else(|| {
            ["--name", self.machine, "-t", "--", "guest", "arg"]
                .map(String::from)
                .to_vec()
        });
        cmd.args(&self.opts)
            .args(["--log", log.to_str().unwrap()])
            .args(self.given_machine.then_some(self.machine))
            .arg("--")
            .args(&self.prefix)
            .arg(&stub)
            .args(["machine", "exec"])
            .args(&exec_args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("STUB_DIR", self.dir)
            .env("XDG_RUNTIME_DIR", self.dir.join("run"))
            .env("XDG_CACHE_HOME", self.dir.join("cache"))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        testkit::pty::wire(&mut cmd, &pty.slave, Wiring::All).expect("dup slave");
        testkit::pty::new_session(&mut cmd, self.ctty);
        let child = cmd.spawn().expect("spawn pty-resize");
        let master = pty.master.try_clone().expect("dup master");
        Run {
            child,
            dir: self.dir.to_path_buf(),
            log,
            status: None,
            output: Output::start(File::from(master), ()),
        }
    }
}

/// How a process ended, as the log spells it: `exit-N` or `signal-N`.
pub fn ended(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit-{c}"),
        (None, Some(n)) => format!("signal-{n}"),
        _ => format!("{status:?}"),
    }
}

/// The stub's path, made executable.
pub fn stub_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kit/stub-smolvm.pl")
}

/// The stub's journal in `dir`.
pub fn journal(dir: &Path) -> Vec<Step> {
    std::fs::read_to_string(dir.join("journal"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.splitn(4, ' ');
            Some(Step {
                t: w.next()?.parse().ok()?,
                pid: w.next()?.parse().ok()?,
                event: w.next()?.to_string(),
                rest: w.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// Waits for `cond` until [`DEADLINE`]; on timeout panics with `what` and
/// what the journal and the logs said.
pub fn wait_for(what: &str, dir: &Path, cond: impl FnMut() -> bool) {
    testkit::wait::wait_for(what, DEADLINE, cond, || context(dir));
}

/// The journal and every `*.log` in `dir`, for failure messages.
pub fn context(dir: &Path) -> String {
    let mut out = format!(
        "--- journal\n{}",
        std::fs::read_to_string(dir.join("journal")).unwrap_or_default()
    );
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                out.push_str(&format!(
                    "--- {}\n{}",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
        }
    }
    out
}

/// Whether a process is gone (or a zombie nobody reaped yet): the
/// workspace's one definition.
pub use testkit::procs::has_exited as gone;

impl Run {
    /// The decision log so far.
    pub fn records(&self) -> Vec<Record> {
        log::read(&self.log).unwrap_or_default()
    }

    /// The first record of `event`, if any.
    pub fn first(&self, event: &str) -> Option<Record> {
        self.records().into_iter().find(|r| r.event == event)
    }

    /// How many records of `event`.
    pub fn count(&self, event: &str) -> usize {
        self.records().iter().filter(|r| r.event == event).count()
    }

    /// Waits until the log has an `event` record and returns it.
    pub fn wait_event(&self, event: &str) -> Record {
        let mut found = None;
        wait_for(&format!("log event {event}"), &self.dir, || {
            found = self.first(event);
            found.is_some()
        });
        found.unwrap()
    }

    /// Waits until the terminal shows `text` (the wrapper's own stderr,
    /// before smolvm runs, is the terminal too); panics with what it showed.
    pub fn wait_output(&self, text: &str) {
        let seen = self.output.wait_until(DEADLINE, |st| {
            String::from_utf8_lossy(&st.raw).contains(text)
        });
        assert!(
            seen,
            "never showed {text:?}; it showed {:?}",
            self.output.text()
        );
    }

    /// The stub main exec's pid (from the `start` record).
    pub fn smolvm_pid(&self) -> i32 {
        self.wait_event("start")
            .get("pid")
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Waits for the wrapper to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        let Some(st) = testkit::wait::child_exit(&mut self.child, DEADLINE) else {
            panic!("pty-resize did not exit\n{}", context(&self.dir));
        };
        self.status = Some(st);
        st
    }

    /// Sends a signal to the wrapper.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with our child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // No process outlives a test: the wrapper, and every stub it started.
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for step in journal(&self.dir) {
            // Only a pid that is still a stub (pids are reused).
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", step.pid)).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("stub-smolvm") {
                // SAFETY: SIGKILL to a stub this test started.
                unsafe { libc::kill(step.pid, libc::SIGKILL) };
            }
        }
    }
}
