//! [`Machine`]: a fake smolvm machine in temp smolvm state folders
//! (`XDG_CACHE_HOME`, `XDG_DATA_HOME`), where the real client looks too.
//!
//! Driven through the `fake-smolvm` CLI exactly as the contract says
//! (`machine create NAME --image alpine`, `machine start --name NAME`,
//! `machine stop --name NAME`), so it also exercises that surface; every
//! `exec` goes through [`bins::smolvm_client`] (the fake's client, or the
//! one `E2E_SMOLVM` names). Stopped on drop, pass or fail.
//!
//! On the real-agent backend (`E2E_BACKEND=real-agent`, see
//! [`crate::backend`]) the machine is smolvm 0.8.0's own agent and crun,
//! made by `scripts/real-machine up` and ended by `down` (see
//! [`crate::real_machine`]); the fake's switches map where a faithful
//! equivalent exists (`FAKE_SMOLVM_CRUN_MS` → `--crun-delay-ms`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use fake_smolvm::exec_log::{self, ExecRecord};
use fake_smolvm::host::Host;
use tempfile::TempDir;

use crate::bins;
use crate::hermetic;
use crate::real_machine::{self, RealMachine};

/// A running fake machine with its own state folder.
pub struct Machine {
    home: TempDir,
    name: String,
    env: Vec<(String, String)>,
    running: bool,
    /// Set on the real-agent backend: what `scripts/real-machine up` said.
    real: Option<RealMachine>,
}

/// What one CLI call printed.
#[derive(Debug)]
pub struct CliOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

impl Machine {
    /// Creates and starts image machine `name` (smolvm's `run` path, with
    /// the 0×0 PTY and the crun window) in fresh temp state folders, with
    /// `env` (e.g. `("FAKE_SMOLVM_CRUN_MS", "500")`) given to every process
    /// it runs. Panics with the CLI's output if either step fails.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Machine {
        Machine::start_with(name, Some("alpine"), env)
    }

    /// The same for a bare machine (no image: smolvm's `vm_exec` path).
    pub fn start_bare(name: &str, env: &[(&str, &str)]) -> Machine {
        Machine::start_with(name, None, env)
    }

    fn start_with(name: &str, image: Option<&str>, env: &[(&str, &str)]) -> Machine {
        let home = tempfile::Builder::new()
            .prefix("e2e-smolvm-")
            .tempdir()
            .expect("e2e: temp state folder");
        let mut machine = Machine {
            home,
            name: name.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            running: false,
            real: None,
        };
        if crate::backend::real_agent() {
            assert!(
                image.is_some(),
                "e2e: the real-agent backend has no bare machine; guard the scenario with e2e::backend::fake_only"
            );
            let plan = real_machine::plan(env).unwrap_or_else(|e| panic!("{e}"));
            machine.env = plan.env.clone();
            machine.running = true; // from here on, drop must try `down`
            machine.real = Some(real_machine::up(name, machine.home(), &plan));
            return machine;
        }
        match image {
            Some(image) => machine.cli_ok(&["machine", "create", name, "--image", image]),
            None => machine.cli_ok(&["machine", "create", name]),
        };
        machine.running = true; // from here on, drop must try to stop it
        machine.cli_ok(&["machine", "start", "--name", name]);
        machine
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The temp folder holding the machine's state folders and logs.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The machine's folder, where smolvm keeps it:
    /// `<cache>/smolvm/vms/<hash of the name>/`.
    pub fn dir(&self) -> PathBuf {
        Host::at(self.cache_dir(), self.data_dir()).machine_dir(&self.name)
    }

    /// The agent's socket, where smolvm's client (and a `vm_exec` writer)
    /// reaches it: `<machine dir>/agent.sock`.
    pub fn agent_socket(&self) -> PathBuf {
        self.dir().join("agent.sock")
    }

    /// Whether this is the real 0.8.0 agent (the real-agent backend).
    pub fn is_real_agent(&self) -> bool {
        self.real.is_some()
    }

    /// Path of the guest agent's own log (`agent.log`; on the real agent,
    /// the client's `agent-startup-error.log`, the `_boot-vm` stderr).
    pub fn agent_log_path(&self) -> PathBuf {
        if self.real.is_some() {
            return self.dir().join("agent-startup-error.log");
        }
        self.dir().join("agent.log")
    }

    /// Path of the machine's `exec.log`.
    pub fn exec_log_path(&self) -> PathBuf {
        self.dir().join("exec.log")
    }

    /// Every exec recorded so far (empty if none); panics on a corrupt log.
    /// Waits (up to 10 s) until the agent is done with every connection, so
    /// a side channel killed a moment ago has its line too.
    pub fn exec_log(&self) -> Vec<ExecRecord> {
        assert!(
            self.real.is_none(),
            "e2e: exec.log is the fake's; guard this scenario with e2e::backend::fake_only"
        );
        exec_log::read_settled(&self.dir(), std::time::Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("e2e: reading {}: {e}", self.exec_log_path().display()))
    }

    /// The variables a command needs to reach this machine: smolvm's state
    /// folders (`XDG_CACHE_HOME`, `XDG_DATA_HOME`), a private `HOME` and
    /// `XDG_RUNTIME_DIR`, and the settings given to [`Machine::start`].
    ///
    /// Why private folders: the real client creates sparse disks in the
    /// machine folder, `pty-resize` caches `smolvm --version` (whose answer
    /// depends on `FAKE_SMOLVM_COMPAT`) and keeps its per-machine lock
    /// there, and tests must never write into the user's own folders.
    pub fn env(&self) -> Vec<(String, String)> {
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut env = vec![
            ("XDG_CACHE_HOME".to_string(), path(self.cache_dir())),
            ("XDG_DATA_HOME".to_string(), path(self.data_dir())),
            ("XDG_RUNTIME_DIR".to_string(), path(self.home().join("run"))),
            ("HOME".to_string(), path(self.home().join("home"))),
        ];
        env.extend(self.env.iter().cloned());
        if let Some(real) = &self.real {
            // What `scripts/real-machine up` exported wins (its state
            // folders, SMOLVM_LIB_DIR, …).
            env.retain(|(k, _)| !real.exports.iter().any(|(rk, _)| rk == k));
            env.extend(real.exports.iter().cloned());
        }
        env
    }

    /// This machine's private `XDG_CACHE_HOME` (`<home>/cache`, or what
    /// `scripts/real-machine up` exported).
    pub fn cache_dir(&self) -> PathBuf {
        match self.real.as_ref().and_then(|r| r.export("XDG_CACHE_HOME")) {
            Some(dir) => PathBuf::from(dir),
            None => self.home().join("cache"),
        }
    }

    /// This machine's private `XDG_DATA_HOME` (`<home>/data`, or what
    /// `scripts/real-machine up` exported).
    pub fn data_dir(&self) -> PathBuf {
        match self.real.as_ref().and_then(|r| r.export("XDG_DATA_HOME")) {
            Some(dir) => PathBuf::from(dir),
            None => self.home().join("data"),
        }
    }

    /// Where the wrapper started by [`Machine::wrapped_command`] writes its
    /// decision log (`<home>/pty-resize.log`).
    pub fn wrapper_log_path(&self) -> PathBuf {
        self.home().join("pty-resize.log")
    }

    /// The wrapper's decision log so far (empty if none).
    pub fn wrapper_log(&self) -> String {
        std::fs::read_to_string(self.wrapper_log_path()).unwrap_or_default()
    }

    /// The decision log at `path` as typed records (empty if none yet),
    /// through the wrapper's own reader.
    pub fn wrapper_events(path: &Path) -> Vec<pty_resize::log::Record> {
        pty_resize::log::read(path).unwrap_or_default()
    }

    /// The logs a failure message should show: `exec.log`, the wrapper's
    /// and the agent's.
    pub fn logs(&self) -> [(&'static str, PathBuf); 3] {
        [
            ("exec.log", self.exec_log_path()),
            ("pty-resize.log", self.wrapper_log_path()),
            ("agent.log", self.agent_log_path()),
        ]
    }

    /// The argv of `smolvm machine exec --name NAME <args…>` with the chosen
    /// client's full path (what a user would give `pty-resize` after `--`).
    pub fn exec_argv(&self, args: &[impl AsRef<str>]) -> Vec<String> {
        let mut argv = vec![
            bins::smolvm_client().to_string_lossy().into_owned(),
            "machine".into(),
            "exec".into(),
            "--name".into(),
            self.name.clone(),
        ];
        argv.extend(args.iter().map(|a| a.as_ref().to_string()));
        argv
    }

    /// The argv of `pty-resize --log <home>/pty-resize.log <opts…> NAME --
    /// fake-smolvm machine exec --name NAME <exec_args…>`.
    pub fn wrapped_argv(&self, opts: &[&str], exec_args: &[impl AsRef<str>]) -> Vec<String> {
        self.wrapped_argv_logging_to(&self.wrapper_log_path(), opts, exec_args)
    }

    /// [`Machine::wrapped_argv`] with the decision log at `log` (one log per
    /// session when several run at once).
    pub fn wrapped_argv_logging_to(
        &self,
        log: &Path,
        opts: &[&str],
        exec_args: &[impl AsRef<str>],
    ) -> Vec<String> {
        let mut argv = vec![
            bins::pty_resize().to_string_lossy().into_owned(),
            "--log".into(),
            log.to_string_lossy().into_owned(),
        ];
        argv.extend(opts.iter().map(|a| a.to_string()));
        argv.push(self.name.clone());
        argv.push("--".into());
        argv.extend(self.exec_argv(exec_args));
        argv
    }

    /// A hermetic command running [`Machine::wrapped_argv`] with
    /// [`Machine::env`] set.
    pub fn wrapped_command(&self, opts: &[&str], exec_args: &[impl AsRef<str>]) -> Command {
        command_from(&self.wrapped_argv(opts, exec_args), self.env())
    }

    /// The argv of `scripts/naive-bridge <opts…> NAME -- fake-smolvm machine
    /// exec --name NAME <exec_args…>` (e.g. opts `["--stdin", "inherit"]`).
    pub fn naive_argv(&self, opts: &[&str], exec_args: &[impl AsRef<str>]) -> Vec<String> {
        let mut argv = vec![bins::naive_bridge().to_string_lossy().into_owned()];
        argv.extend(opts.iter().map(|a| a.to_string()));
        argv.push(self.name.clone());
        argv.push("--".into());
        argv.extend(self.exec_argv(exec_args));
        argv
    }

    /// A hermetic command running [`Machine::naive_argv`] with
    /// [`Machine::env`] set.
    pub fn naive_command(&self, opts: &[&str], exec_args: &[impl AsRef<str>]) -> Command {
        command_from(&self.naive_argv(opts, exec_args), self.env())
    }

    /// `argv` in the pane of a fresh private tmux server (`cols`x`rows`),
    /// with [`Machine::env`] set and this machine's logs watched.
    pub fn tmux(&self, cols: u16, rows: u16, argv: &[String]) -> crate::Tmux {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut tmux = crate::Tmux::start(cols, rows, &crate::shell::join(argv), &env);
        tmux.watch(self);
        tmux
    }

    /// A hermetic `fake-smolvm` command with [`Machine::env`] set (the real
    /// client on the real-agent backend).
    pub fn command(&self) -> Command {
        let cli = match self.real {
            Some(_) => bins::smolvm_client(),
            None => bins::fake_smolvm(),
        };
        let mut cmd = hermetic::command(cli);
        cmd.envs(self.env());
        cmd
    }

    /// `smolvm machine exec --name NAME <args…>` through the chosen client,
    /// e.g. `exec_command(&["-t", "--", "guest-tui"])`.
    pub fn exec_command(&self, args: &[impl AsRef<str>]) -> Command {
        command_from(&self.exec_argv(args), self.env())
    }

    /// Runs the fake's CLI with `args`. Output goes to files, not pipes: a
    /// background agent that inherited a pipe would keep it open and block
    /// the read forever.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        let out_path = self.home().join(".cli-stdout");
        let err_path = self.home().join(".cli-stderr");
        let out = File::create(&out_path).expect("e2e: cli stdout file");
        let err = File::create(&err_path).expect("e2e: cli stderr file");
        let status = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .unwrap_or_else(|e| panic!("e2e: cannot run fake-smolvm: {e}"));
        CliOutput {
            status,
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        }
    }

    fn cli_ok(&self, args: &[&str]) -> CliOutput {
        let out = self.cli(args);
        if !out.status.success() {
            panic!(
                "e2e: `fake-smolvm {}` failed ({}):\nstdout: {}\nstderr: {}",
                args.join(" "),
                out.status,
                out.stdout.trim(),
                out.stderr.trim()
            );
        }
        out
    }

    /// Stops the machine (`machine stop --name NAME`, or `scripts/real-machine
    /// down`); panics if that fails.
    pub fn stop(&mut self) {
        if let Some(real) = &self.real {
            real_machine::down(&self.name, real).unwrap_or_else(|e| panic!("{e}"));
            self.running = false;
            return;
        }
        let name = self.name.clone();
        self.cli_ok(&["machine", "stop", "--name", &name]);
        self.running = false;
    }
}

/// A hermetic command for `argv` with `env` added.
fn command_from(argv: &[String], env: Vec<(String, String)>) -> Command {
    let mut cmd = hermetic::command(&argv[0]);
    cmd.args(&argv[1..]).envs(env);
    cmd
}

impl Drop for Machine {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        if let Some(real) = &self.real {
            if let Err(e) = real_machine::down(&self.name, real) {
                crate::note(&e);
            }
            return;
        }
        let name = self.name.clone();
        let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.cli(&["machine", "stop", "--name", &name])
                .status
                .success()
        }))
        .unwrap_or(false);
        if !stopped {
            // Last resort, so no guest outlives the test: the agent's
            // front and the guest's init, by pid.
            for file in ["agent.pid", "guest.pid"] {
                if let Some(pid) = std::fs::read_to_string(self.dir().join(file))
                    .ok()
                    .and_then(|s| s.lines().next()?.trim().parse::<i32>().ok())
                    .filter(|pid| *pid > 1)
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}
