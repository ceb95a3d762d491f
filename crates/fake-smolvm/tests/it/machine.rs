//! The fake as the tests drive it: its binary and switches, the two
//! clients, hermetic state folders, and machines that stop on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fake_smolvm::host::Host;

use crate::procs::{notice, run_output, text};

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

    /// Where a file the guest wrote at `guest` (a path under `/tmp`) shows
    /// on the host: the machine's own `/tmp` layer, `<machine dir>/tmp/`.
    pub fn guest_tmp(&self, guest: impl AsRef<Path>) -> PathBuf {
        fake_smolvm::host::guest_tmp_on_host(&self.dir(), guest.as_ref())
            .expect("a guest path under /tmp")
    }
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        let _ = self.home.run(["machine", "stop", "--name", &self.name]);
    }
}
