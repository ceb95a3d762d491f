//! Shared helpers: hermetic state folders, machines that stop on drop, the
//! two clients, PTYs the test owns (with a handle on the client's stdin open
//! file description, to read its termios and O_NONBLOCK), and waits with
//! deadlines whose panics show what was seen.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use fake_smolvm::exec_log::{self, ExecRecord};
use fake_smolvm::host::Host;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{self, LocalFlags};
use testkit::procs::{has_exited, running_with_arg};
use testkit::pty::Pty;
use testkit::wait::{child_exit, poll_every, poll_until, POLL};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_fake-smolvm");

/// The switches `--help` documents.
pub const SWITCHES: [&str; 8] = fake_smolvm::cli::ENV_VARS;

/// Short timings for execs whose timeline is not the subject.
pub const QUICK: [(&str, &str); 2] = [
    ("FAKE_SMOLVM_BRINGUP_MS", "30"),
    ("FAKE_SMOLVM_CRUN_MS", "30"),
];

/// A guest command that prints the guest PTY's `stty size` every 50 ms until interrupted.
pub const STTY_LOOP: &str = "while :; do stty size; sleep 0.05; done";

/// crun's message when another exec tore the session's config.json.
pub const TORN: &str =
    "load `config.json`: parse error: trailing garbage { \"ociVersion\": \"1.0.2\", … }";

/// Writes a line where the test harness does not capture it.
pub fn notice(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

// ------------------------------------------------------------------ clients

/// Which program runs `machine exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// The fake's own client.
    Fake,
    /// The real smolvm 0.8.0 host CLI.
    Real(PathBuf),
}

impl Client {
    pub fn program(&self) -> &Path {
        match self {
            Client::Fake => Path::new(BIN),
            Client::Real(p) => p,
        }
    }

    /// The program name exec.log records for it.
    pub fn logged_name(&self) -> &'static str {
        match self {
            Client::Fake => "fake-smolvm",
            Client::Real(_) => "smolvm",
        }
    }
}

/// Where the real client is expected.
pub fn real_client_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/smolvm-0.8.0/smolvm")
}

/// The real client, or `None` after printing the skip notice.
pub fn real_client() -> Option<Client> {
    let p = real_client_path();
    if p.is_file() {
        Some(Client::Real(p.canonicalize().unwrap_or(p)))
    } else {
        notice(&format!("skipped: no real client at {}", p.display()));
        None
    }
}

/// Both clients (the real one only when present; its absence is announced).
pub fn clients() -> Vec<Client> {
    std::iter::once(Client::Fake).chain(real_client()).collect()
}

// ------------------------------------------------------------------- waits

/// Polls `cond` every `step` until it holds or `secs` pass; panics with `what()` then.
pub fn wait_until_every(
    secs: u64,
    step: Duration,
    mut cond: impl FnMut() -> bool,
    what: impl Fn() -> String,
) {
    let deadline = Duration::from_secs(secs);
    if poll_every(step, deadline, || cond().then_some(())).is_none() {
        panic!("timed out after {secs}s waiting; saw:\n{}", what());
    }
}

/// [`wait_until_every`] with the kit's step ([`testkit::wait::POLL`]).
pub fn wait_until(secs: u64, cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    wait_until_every(secs, POLL, cond, what)
}

/// Waits for a child with a deadline; kills it and panics with `context()` on timeout.
pub fn wait_child_or(child: &mut Child, secs: u64, context: impl Fn() -> String) -> ExitStatus {
    if let Some(status) = child_exit(child, Duration::from_secs(secs)) {
        return status;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "process {} did not exit within {secs}s\n{}",
        child.id(),
        context()
    );
}

/// Runs a command with a 30 s deadline, capturing stdout and stderr.
pub fn run_output(mut c: Command) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let (t1, t2) = collect_pipes(&mut child);
    let status = wait_child_or(&mut child, 30, String::new);
    Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// Threads collecting a child's stdout and stderr.
type Collectors = (JoinHandle<Vec<u8>>, JoinHandle<Vec<u8>>);

fn collect_pipes(child: &mut Child) -> Collectors {
    let collect = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let so = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn Read + Send>);
    let se = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn Read + Send>);
    (collect(so), collect(se))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------- the home

/// Hermetic state: HOME, XDG_CACHE_HOME and XDG_DATA_HOME in one temp dir.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Default for Home {
    fn default() -> Self {
        Home::new()
    }
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::Builder::new().prefix("fsm").tempdir().unwrap();
        for d in ["h", "c", "d"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Home { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn cache(&self) -> PathBuf {
        self.path().join("c")
    }
    pub fn data(&self) -> PathBuf {
        self.path().join("d")
    }
    pub fn host(&self) -> Host {
        Host::at(self.cache(), self.data())
    }
    pub fn machine_dir(&self, name: &str) -> PathBuf {
        self.host().machine_dir(name)
    }
    pub fn registry(&self) -> PathBuf {
        self.host().registry_path()
    }

    /// `program ARGS` with only PATH and this home in its environment (no
    /// inherited switch, no TMUX), stdin /dev/null.
    pub fn cmd_of<I, S>(&self, program: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path().join("h"))
            .env("XDG_CACHE_HOME", self.cache())
            .env("XDG_DATA_HOME", self.data())
            .env("TERM", "xterm")
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// `fake-smolvm ARGS`.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd_of(Path::new(BIN), args)
    }

    /// Runs `fake-smolvm ARGS` to completion (30 s deadline).
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_output(self.cmd(args))
    }

    /// Creates (`--image alpine` when `image`) and starts machine `name`.
    pub fn machine(&self, name: &str, image: bool) -> Machine<'_> {
        self.machine_with(name, image, &[])
    }

    /// [`Home::machine`] with extra environment for `machine start`.
    pub fn machine_with(&self, name: &str, image: bool, env: &[(&str, &str)]) -> Machine<'_> {
        let mut args = vec!["machine", "create", name];
        if image {
            args.extend(["--image", "alpine"]);
        }
        let out = self.run(&args);
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

    /// The guard of running machine `name`; stops it on drop.
    pub fn adopt(&self, name: &str) -> Machine<'_> {
        let dir = self.machine_dir(name);
        let pidfile = std::fs::read_to_string(dir.join("agent.pid")).unwrap();
        let front = pidfile.lines().next().unwrap().trim().parse().unwrap();
        let guest = std::fs::read_to_string(dir.join("guest.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Machine {
            home: self,
            name: name.into(),
            front_pid: front,
            guest_pid: guest,
        }
    }
}

// ------------------------------------------------------------- a machine

/// A running machine; stopped (every process of it killed) on drop.
pub struct Machine<'a> {
    pub home: &'a Home,
    pub name: String,
    /// The `__agent` front (agent.pid).
    pub front_pid: i32,
    /// The guest init (guest.pid).
    pub guest_pid: i32,
}

impl Machine<'_> {
    /// `machine exec --name NAME ARGS…` through the fake's client.
    pub fn exec<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.exec_by(&Client::Fake, args)
    }

    /// `machine exec --name NAME ARGS…` through `client`.
    pub fn exec_by<I, S>(&self, client: &Client, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = self.home.cmd_of(
            client.program(),
            ["machine", "exec", "--name", self.name.as_str()],
        );
        c.args(args);
        c
    }

    /// A `-t` session that keeps reporting the size the guest sees.
    pub fn stty_loop(&self, client: &Client) -> Command {
        self.exec_by(client, ["-t", "--", "sh", "-c", STTY_LOOP])
    }

    pub fn dir(&self) -> PathBuf {
        self.home.machine_dir(&self.name)
    }

    /// exec.log, once every exec of a client that is gone has its line.
    pub fn log(&self) -> Vec<ExecRecord> {
        exec_log::read_settled(&self.dir(), Duration::from_secs(10)).unwrap()
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("agent.log")).unwrap_or_default()
    }

    /// exec.log and the tail of agent.log, for panic messages.
    pub fn context(&self) -> String {
        let log = std::fs::read_to_string(self.dir().join("exec.log")).unwrap_or_default();
        let agent = self.agent_log();
        let lines: Vec<&str> = agent.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("--- exec.log ---\n{log}--- agent.log (tail) ---\n{tail}")
    }

    /// The single exec.log record of the client with pid `pid`.
    #[track_caller]
    pub fn record_of(&self, pid: u32) -> ExecRecord {
        let log = self.log();
        let mine: Vec<&ExecRecord> = log.iter().filter(|r| r.pid == pid).collect();
        assert_eq!(mine.len(), 1, "records of pid {pid}\n{}", self.context());
        mine[0].clone()
    }

    /// Stops the machine and checks nothing of it is left: front, guest
    /// init, socket.
    #[track_caller]
    pub fn stop_and_check(&self) {
        let out = self.home.run(["machine", "stop", "--name", &self.name]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(!alive(self.front_pid), "front {} survived", self.front_pid);
        assert!(!alive(self.guest_pid), "guest {} survived", self.guest_pid);
        assert!(!self.dir().join("agent.sock").exists(), "socket left");
    }
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        let _ = self.home.run(["machine", "stop", "--name", &self.name]);
    }
}

// --------------------------------------------------------------- processes

/// Whether `pid` exists and has not exited (see [`has_exited`]).
pub fn alive(pid: i32) -> bool {
    !has_exited(pid)
}

/// Host pids of live processes one of whose arguments contains `marker`.
pub fn pids_with(marker: &str) -> Vec<i32> {
    running_with_arg(marker)
}

/// A unique marker string for /proc scans.
pub fn marker(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("fsm-marker-{tag}-{}-{n}", std::process::id())
}

// -------------------------------------------------------------- terminals

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
        self.write(b"\x03");
        let status = self.wait_exit(30, &context);
        assert_eq!(
            status.code(),
            Some(130),
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
