//! One exec's timeline in the guest, as smolvm 0.8.0's agent runs it
//! (`crates/smolvm-agent/src/main.rs`, `handle_interactive_run` 2605-2725,
//! `spawn_interactive_command` 3160-3215; `storage.rs` `run_command`
//! 2100-2180; `handle_interactive_vm_exec` 4547):
//!
//! ```text
//! run:     bring-up ─ touch (config.json, main container) ─ started ─ crun window ─ command ─ exited
//! joined:  bring-up ─ touch (main running: join)          ─ command ─ started ───────────── exited
//! vm_exec: bring-up ─────────────────────────────────────── command ─ started ───────────── exited
//! ```
//! `started` is sent as soon as crun is spawned: the host's terminal goes raw
//! while the container is still being set up. A second exec that touches the
//! machine inside that window tears `config.json` (exit 1, in-band) or
//! deletes the container as stale (exit 137): `timeline` decides which.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use std::os::unix::process::ExitStatusExt;

use super::container::{self, Mode, Pending};
use super::guest::{self, Ctl, SpawnError, Spawned, Spec};
use super::peer::Peer;
use super::record::{self, Ending, Progress};
use super::relay::{self, Input, InputSlot, Out};
use super::state::Machine;
use super::timeline::{ExecId, Load, Resolve};
use crate::exec_log::{self, monotonic_ms, ExecPath, Fault};
use crate::oci;
use crate::settings::{Compat, Resolved};
use crate::wire::{Bytes, ExecRequest, Response};

/// How long `crun exec --tty` takes before it copies the agent PTY's size
/// (the client's first `resize` normally lands within a few ms of `started`).
const JOIN_SETUP_MS: f64 = 100.0;

/// What the exec does once it has touched the machine.
enum Plan {
    /// Create a container: crun window, then load `config.json`.
    Create,
    /// Join the running main container (`crun exec`).
    Join(ExecId),
    /// `vm_exec`: run in the VM itself.
    Direct,
}

/// Everything one exec needs, in one place.
struct Exec<'a> {
    machine: &'a Machine,
    id: ExecId,
    mark: String,
    peer: &'a Peer,
    req: &'a ExecRequest,
    path: ExecPath,
    cfg: Resolved,
    ctl: Arc<Ctl>,
    out: Arc<Out>,
    input: Arc<Mutex<InputSlot>>,
    progress: Progress,
    /// The crun of a container this exec is creating, until `go`.
    pending: Option<Pending>,
    /// The main container a hang-up of this `-t` session left running.
    orphan: Option<container::Orphan>,
}

/// Serves one `run` or `vm_exec` on `stream` to the end and records it.
pub fn run(
    machine: &Machine,
    peer: &Peer,
    path: ExecPath,
    req: &ExecRequest,
    stream: std::os::unix::net::UnixStream,
    reader: std::os::unix::net::UnixStream,
) {
    let id = machine.next_id();
    let mark = format!("{}-{id}", peer.pid);
    // Brackets everything this exec does, its exec.log append included:
    // exec_log::read_settled waits while an exec whose client is gone has no
    // closing mark yet.
    eprintln!("{}{mark}", exec_log::EXEC_OPEN);
    if let Some(e) = &peer.switch_error {
        eprintln!("agent: exec {mark}: {e}; the machine's switches apply");
    }
    let ctl = Arc::new(Ctl::default());
    let out = Arc::new(Out::new(stream));
    let input = relay::spawn_input(reader, ctl.clone(), out.clone());
    let mut exec = Exec {
        machine,
        id,
        mark: mark.clone(),
        peer,
        req,
        path,
        cfg: peer.switches.or(&machine.defaults).resolve(),
        ctl,
        out,
        input,
        progress: Progress::default(),
        pending: None,
        orphan: None,
    };
    let ending = exec.go();
    match exec.orphan.take() {
        // Its container goes on as the machine's main container.
        Some(orphan) => orphan.watch(machine, id),
        None => {
            for joined in machine.timeline.lock().unwrap().exited(id) {
                joined.kill(Some(Fault::MainExited));
            }
        }
    }
    machine.forget_tty(id);
    let rec = record::build(
        peer,
        req,
        path,
        &exec.progress,
        &ending,
        exec.out.gone_before_end(),
    );
    exec.out.shutdown();
    if let Err(e) = exec_log::append(&machine.dir.exec_log(), &rec) {
        eprintln!("agent: exec {mark}: cannot append exec.log: {e}");
    }
    eprintln!(
        "agent: exec {mark}: exit {}{}",
        rec.exit_code,
        rec.fault
            .map(|f| format!(" fault {f:?}"))
            .unwrap_or_default()
    );
    eprintln!("{}{mark}", exec_log::EXEC_CLOSED);
}

impl Exec<'_> {
    fn go(&mut self) -> Ending {
        self.progress.bringup_start = Some(monotonic_ms());
        self.machine.watch_tty(
            self.id,
            self.peer,
            &self.cfg,
            &self.ctl,
            self.req.interactive,
        );
        let plan = match self.path {
            // VM level, on any machine: `handle_vm_exec` (`main.rs`
            // 4383-4544) spawns the command at once — no storage to mount
            // (`main.rs` 1771-1781 skip `ensure_storage_mounted`), no
            // `config.json`, no main-container lookup, no crun. So no
            // bring-up and no touch: it is safe inside any crun window.
            ExecPath::VmExec => Plan::Direct,
            ExecPath::Run => {
                // Overlay and mounts; goes on if the client hangs up, as in a VM.
                thread::sleep(Duration::from_millis(self.cfg.bringup_ms));
                self.touch()
            }
        };
        if let Plan::Create = plan {
            if let Some(ending) = self.crun_window() {
                return ending;
            }
        }
        self.command(&plan)
    }

    /// Writes `config.json` and resolves the main container, in the order
    /// the real agent does (non-interactive: write first).
    fn touch(&mut self) -> Plan {
        let mut tl = self.machine.timeline.lock().unwrap();
        // Why here, under the lock and before any kill: a session this touch
        // kills closes its window after this instant, so exec.log shows the
        // touch inside that window.
        self.progress.touched = Some(monotonic_ms());
        if !self.req.interactive {
            tl.write_config(self.id);
            self.write_config_file();
        }
        match tl.resolve_main() {
            Resolve::Join(main) => Plan::Join(main),
            Resolve::Fresh { stale } => {
                if let Some(victim) = stale {
                    victim.kill(Some(Fault::StaleKill));
                }
                if self.req.interactive {
                    tl.write_config(self.id);
                    self.write_config_file();
                    tl.record_main(self.id, self.ctl.clone(), self.cfg.race);
                }
                Plan::Create
            }
        }
    }

    fn write_config_file(&self) {
        let path = self.machine.dir.config_json();
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Err(e) = std::fs::write(&path, self.document()) {
            eprintln!("agent: cannot write {}: {e}", path.display());
        }
    }

    fn document(&self) -> String {
        let env: Vec<String> = self
            .req
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        oci::config_document(
            &self.machine.name,
            &self.mark,
            &self.req.command,
            &env,
            self.req.workdir.as_deref().unwrap_or("/"),
            self.req.tty,
        )
    }

    /// Whether `started` waits for the end of the crun window: 0.8.1 (#312)
    /// with `-t` runs crun with `--console-socket` and sends `started` only
    /// once crun has handed the PTY master over (v0.8.1 `main.rs` 2690-2712,
    /// 3320-3358) — crun has loaded `config.json` and made the terminal.
    fn started_after_window(&self) -> bool {
        self.req.tty && self.cfg.compat == Compat::V081
    }

    /// `started` (0.8.0: at once), then crun's set-up; `Some` when the exec
    /// ends inside it.
    fn crun_window(&mut self) -> Option<Ending> {
        self.progress.window_start = Some(monotonic_ms());
        if self.req.interactive && !self.started_after_window() {
            self.out.send(&Response::Started);
            self.progress.started = Some(monotonic_ms());
        }
        // crun sets the container up: namespaces, its devpts, the PTY.
        let tty = self.pty(&Plan::Create).0;
        match container::prepare(Mode::Run(tty), self.req.interactive, &self.ctl) {
            Ok(p) => self.pending = Some(p),
            // A fault killed crun while it set up: the window's kill below.
            Err(_) if self.ctl.killed().is_some_and(|f| f.is_some()) => {}
            Err(e) => {
                self.progress.window_end = Some(monotonic_ms());
                return Some(self.in_band_failure(1, e.message, None));
            }
        }
        let killed = self.ctl.wait_fault(Duration::from_millis(self.cfg.crun_ms));
        let load = if killed {
            None
        } else {
            Some(
                self.machine
                    .timeline
                    .lock()
                    .unwrap()
                    .load(self.id, self.cfg.race),
            )
        };
        self.progress.window_end = Some(monotonic_ms());
        if load != Some(Load::Clean) {
            if let Some(p) = self.pending.take() {
                p.abandon();
            }
        }
        if load != Some(Load::Clean) && self.started_after_window() {
            return Some(self.no_console(load.is_none()));
        }
        match load {
            None => {
                let fault = self.ctl.killed().flatten();
                Some(self.deliver(Ending::code(137, Some(libc::SIGKILL), fault)))
            }
            Some(Load::Torn) => {
                let theirs =
                    std::fs::read_to_string(self.machine.dir.config_json()).unwrap_or_default();
                let msg = oci::tear_message(&self.document(), &theirs);
                Some(self.in_band_failure(1, msg, Some(Fault::ConfigRace)))
            }
            Some(Load::Clean) => None,
        }
    }

    /// 0.8.1, `-t`: crun died (torn `config.json`) or was killed (stale
    /// container) before it handed the PTY master over. The agent waits for
    /// it on the console socket until `CONSOLE_SOCKET_TIMEOUT` (5 s, v0.8.1
    /// `main.rs` 2743; poll on the listener, `console_socket.rs` 45-62) and
    /// answers `error` — no `started`, so the client's terminal never went raw.
    fn no_console(&mut self, killed: bool) -> Ending {
        let since = self.progress.window_start.unwrap_or_else(monotonic_ms);
        let left = (since + 5000.0 - monotonic_ms()).max(0.0);
        thread::sleep(Duration::from_secs_f64(left / 1000.0));
        let msg = "failed to receive PTY master from crun: console socket: timed out waiting for crun to connect";
        self.out.send(&Response::error(msg, "SPAWN_FAILED"));
        let fault = if killed {
            self.ctl.killed().flatten()
        } else {
            Some(Fault::ConfigRace)
        };
        Ending {
            error: Some(msg.into()),
            ..Ending::code(1, None, fault)
        }
    }

    /// A failure crun prints on the command's output, then its exit code.
    fn in_band_failure(&mut self, code: i32, msg: String, fault: Option<Fault>) -> Ending {
        if self.req.interactive {
            // A PTY's onlcr turns crun's `\n` into `\r\n`; a pipe does not.
            let eol = if self.req.tty { "\r\n" } else { "\n" };
            let data = Bytes(format!("{msg}{eol}").into_bytes());
            self.out.send(&if self.req.tty {
                Response::Stdout { data }
            } else {
                Response::Stderr { data }
            });
            self.deliver(Ending::code(code, None, fault))
        } else {
            let ending = Ending::code(code, None, fault);
            self.out.send(&Response::Completed {
                exit_code: code,
                stdout: Bytes::default(),
                stderr: Bytes(format!("{msg}\n").into_bytes()),
            });
            ending
        }
    }

    /// Sends the interactive final response.
    fn deliver(&mut self, ending: Ending) -> Ending {
        if self.req.interactive {
            if self.progress.started.is_none() {
                self.send_started();
            }
            self.out.send(&Response::Exited {
                exit_code: ending.exit_code,
            });
        } else {
            self.out.send(&Response::Completed {
                exit_code: ending.exit_code,
                stdout: Bytes::default(),
                stderr: Bytes::default(),
            });
        }
        ending
    }

    fn send_started(&mut self) {
        self.out.send(&Response::Started);
        self.progress.started = Some(monotonic_ms());
    }

    /// The PTY a `-t` command starts on, and whether `resize` frames reach it.
    fn pty(&self, plan: &Plan) -> (Option<Option<(u16, u16)>>, bool) {
        if !self.req.tty {
            return (None, false);
        }
        match (plan, self.cfg.compat) {
            // The agent's own PTY, sized by the client (`pty.rs`).
            (Plan::Direct, _) => (Some(Some((80, 24))), true),
            // 0.8.1 (#312): crun hands the PTY to the agent: 80×24
            // (`consoleSize`) from its creation, resized on each frame.
            (_, Compat::V081) => (Some(Some((80, 24))), true),
            // 0.8.0, joined: `crun exec`'s PTY, at the agent PTY's size
            // (set in `start_joined`), never resized.
            (Plan::Join(_), Compat::V080) => (Some(None), false),
            // 0.8.0: crun's own PTY, 0×0, that nobody sizes.
            (_, Compat::V080) => (Some(None), false),
        }
    }

    /// `go` to the crun that set this exec's container up in the window.
    fn start_created(&mut self, spec: &Spec) -> Result<Spawned, SpawnError> {
        let pending = self.pending.take().ok_or_else(|| SpawnError {
            code: 1,
            message: "crun: no container was set up".into(),
        })?;
        let workdir = match guest::preflight(spec) {
            Ok(w) => w,
            Err(e) => {
                pending.abandon();
                return Err(e);
            }
        };
        let init = pending.init_pid;
        let spawned = pending.go(go_of(spec, workdir, None), &self.ctl)?;
        // The main container of a `-t` session: a killed client kills crun,
        // not the container.
        let main = self
            .machine
            .timeline
            .lock()
            .unwrap()
            .main_handle(self.id)
            .is_some();
        if let (true, true, Some(init)) = (self.req.tty, main, init) {
            self.ctl.keep_on_hangup(init);
        }
        Ok(spawned)
    }

    /// `crun exec` into running main container `main`. Error 137: it is gone.
    fn start_joined(&mut self, main: ExecId, spec: &Spec) -> Result<Spawned, SpawnError> {
        let workdir = guest::preflight(spec)?;
        let target = self
            .machine
            .timeline
            .lock()
            .unwrap()
            .main_handle(main)
            .and_then(|h| h.init());
        let Some(target) = target else {
            return Err(SpawnError {
                code: 137,
                message: "the main container is gone".into(),
            });
        };
        let tty = spec.tty.is_some();
        let mut size = spec.tty.flatten();
        if tty && self.cfg.compat == Compat::V080 {
            // `crun exec --tty` makes the PTY at the size of the agent's own
            // PTY, which the client's first `resize` (sent on `started`)
            // has set by then; it never follows a later one.
            self.send_started();
            size = Some(self.agent_pty_size());
        }
        let pending = container::prepare(Mode::Exec { target, tty }, spec.interactive, &self.ctl)?;
        pending.go(go_of(spec, workdir, size), &self.ctl)
    }

    /// The agent's own PTY for a joined `-t` exec: 80×24 until the client's
    /// first `resize`, which `crun exec` (tens of ms to set up) sees.
    fn agent_pty_size(&self) -> (u16, u16) {
        let until = monotonic_ms() + JOIN_SETUP_MS;
        loop {
            if let Some(size) = self.input.lock().unwrap().held_size() {
                return size;
            }
            if monotonic_ms() >= until || self.out.is_gone() {
                return (80, 24);
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// A joined command SIGKILLed by no kill of ours: its container's pid
    /// namespace ended with the main command. Waits (briefly) for the main
    /// exec to say so, which marks this exec `main-exited`.
    fn await_main_exit(&self, main: ExecId, status: &std::process::ExitStatus) {
        if self.ctl.killed().is_some() {
            return;
        }
        let crun_killed =
            status.signal() == Some(libc::SIGKILL) || status.code() == Some(128 + libc::SIGKILL);
        if !crun_killed {
            return;
        }
        let until = monotonic_ms() + 1000.0;
        while monotonic_ms() < until {
            let running = self
                .machine
                .timeline
                .lock()
                .unwrap()
                .main_handle(main)
                .is_some();
            if !running {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts the command, relays it, and reports its end.
    fn command(&mut self, plan: &Plan) -> Ending {
        let (tty, resizable) = self.pty(plan);
        let spec = Spec {
            argv: &self.req.command,
            env: &self.req.env,
            workdir: self.req.workdir.as_deref(),
            hostname: &self.machine.name,
            term: self.peer.term.as_deref(),
            interactive: self.req.interactive,
            tty,
        };
        let spawned = match plan {
            Plan::Direct => guest::spawn(&spec),
            Plan::Create => self.start_created(&spec),
            Plan::Join(main) => self.start_joined(*main, &spec),
        };
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) if e.code == 137 => {
                // The main container ended between the resolve and now.
                return self.deliver(Ending::code(
                    137,
                    Some(libc::SIGKILL),
                    Some(Fault::MainExited),
                ));
            }
            Err(e) if e.code == 1 && self.progress.started.is_none() => {
                self.out
                    .send(&Response::error(e.message.clone(), "SPAWN_FAILED"));
                return Ending {
                    error: Some(e.message),
                    ..Ending::code(1, None, None)
                };
            }
            Err(e) => return self.in_band_failure(e.code, e.message, None),
        };
        self.progress.running = Some(monotonic_ms());
        if spawned.crun.is_none() {
            self.ctl.started(spawned.child.id() as i32);
        }
        if let Plan::Join(main) = plan {
            self.progress.joined = true;
            let mut tl = self.machine.timeline.lock().unwrap();
            if !tl.join(*main, self.id, self.ctl.clone()) {
                // The main container ended between the resolve and now.
                self.ctl.kill(Some(Fault::MainExited));
            }
        }
        // The command's input first, then `started`: a `resize` the client
        // sends on `started` finds the PTY (0.8.1: applied on arrival,
        // v0.8.1 `main.rs` 3836-3840).
        // A second hold on the PTY master: a main container a hang-up
        // leaves running must not see its terminal hung up.
        let keep_master = spawned.master.as_ref().and_then(|m| m.try_clone().ok());
        self.input.lock().unwrap().attach(Input {
            sink: spawned.sink,
            resize: spawned.master.filter(|_| resizable),
        });
        if self.req.interactive && self.progress.started.is_none() {
            self.send_started();
        }
        if self.out.is_gone() {
            self.ctl.kill(None);
        }
        let relays = relay::start_output(spawned.output, &self.out);
        let status = guest::wait_with_timeout(spawned.child, self.req.timeout_ms, &self.ctl);
        if let Plan::Join(main) = plan {
            self.await_main_exit(*main, &status);
        }
        // A container exec: crun says how the command itself ended.
        let status = match &spawned.crun {
            Some(crun) => container::status(crun, status),
            None => status,
        };
        let fault = self.ctl.finish();
        if let Some(init) = self.ctl.orphaned() {
            self.orphan = Some(container::Orphan::new(init, keep_master));
        }
        let (stdout, stderr) = relays.finish();
        let signal = status.signal();
        let exit_code = match (fault, status.code(), signal) {
            (Some(Fault::Timeout), _, _) => 124,
            (_, Some(code), _) => code,
            // At VM level 0.8.0 reports `status.code().unwrap_or(-1)`
            // (`main.rs` 3360, 3575, 3667); crun turns a signal into 128+N.
            (_, None, Some(_)) if self.path == ExecPath::VmExec => {
                super::vm_exec::exit_code(status, self.cfg.compat)
            }
            (_, None, Some(sig)) => 128 + sig,
            _ => 1,
        };
        let ending = Ending::code(exit_code, signal, fault);
        if self.req.interactive {
            self.out.send(&Response::Exited { exit_code });
        } else {
            self.out.send(&Response::Completed {
                exit_code,
                stdout: Bytes(stdout),
                stderr: Bytes(stderr),
            });
        }
        ending
    }
}

/// What crun starts the command with.
fn go_of(spec: &Spec, workdir: &str, pty_size: Option<(u16, u16)>) -> crate::crun::Go {
    crate::crun::Go {
        argv: spec.argv.to_vec(),
        env: guest::environment(spec),
        workdir: workdir.into(),
        pty_size,
    }
}
