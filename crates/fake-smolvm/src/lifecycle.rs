//! `machine create/start/stop/delete/ls/status`, with smolvm 0.8.0's messages,
//! on smolvm's own host state (`host`, `registry`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::fail::{fail, Res};
use crate::host::{Host, MachineDir};
use crate::machine;
use crate::registry::{Record, Registry, State};

/// How long `machine start` waits for the guest to report readiness.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long `machine stop` waits for the guest to disappear.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// Longest socket path a `sockaddr_un` holds.
const MAX_SOCKET_PATH: usize = 107;

/// The state folders and the registry, opened.
pub struct Env {
    host: Host,
    registry: Registry,
}

impl Env {
    /// Resolves the folders from the environment and opens the registry.
    pub fn open() -> Res<Env> {
        let host = Host::from_env()?;
        let registry = Registry::open(&host.registry_path())?;
        Ok(Env { host, registry })
    }

    fn dir(&self, name: &str) -> MachineDir {
        MachineDir(self.host.machine_dir(name))
    }
}

/// `machine create [NAME] [--image IMAGE]`: no image is a bare machine.
pub fn create(env: &Env, name: Option<String>, image: Option<String>) -> Res<()> {
    let name = match name {
        Some(n) => n,
        None => {
            machine::generated_name().map_err(|e| fail(format!("cannot generate a name: {e}")))?
        }
    };
    machine::validate_name(&name)?;
    if env.registry.get(&name)?.is_some() {
        return Err(fail(format!("machine '{name}' already exists")));
    }
    env.host.ensure_machine_dir(&name)?;
    env.registry
        .put(&Record::new(&name, image, machine::now_secs()))?;
    println!("Created machine: {name}");
    Ok(())
}

/// The agent's processes, when they run.
struct Live {
    front: i32,
    guest: Option<i32>,
}

fn live(dir: &MachineDir) -> Option<Live> {
    let text = fs::read_to_string(dir.agent_pid()).ok()?;
    let mut lines = text.lines();
    // Never 0 or 1 nor negative: `kill(0, …)` would hit our own process group.
    let front: i32 = lines.next()?.trim().parse().ok().filter(|p: &i32| *p > 1)?;
    let ticks = lines.next().and_then(|t| t.trim().parse().ok());
    machine::is_live_agent(front, ticks).then(|| Live {
        front,
        guest: machine::read_pid(&dir.guest_pid()),
    })
}

/// `machine start [--name NAME]`.
pub fn start(env: &Env, name: &str) -> Res<()> {
    let mut rec = env.registry.require(name)?;
    let dir = MachineDir(env.host.ensure_machine_dir(name)?);
    if let Some(l) = live(&dir) {
        if crate::wire::answers_ping(&dir.socket()) {
            println!("Machine '{name}' is already running (PID: {})", l.front);
            return Ok(());
        }
        // A live agent that does not answer: replace it.
        stop_agent(&dir, &l)?;
    }
    if dir.socket().as_os_str().len() > MAX_SOCKET_PATH {
        return Err(fail(format!(
            "machine folder path too long for a Unix socket ({} > {MAX_SOCKET_PATH} bytes): {}; use a shorter XDG_CACHE_HOME",
            dir.socket().as_os_str().len(),
            dir.socket().display()
        )));
    }
    eprintln!("Starting machine '{name}'...");
    for f in [dir.socket(), dir.agent_pid(), dir.guest_pid()] {
        let _ = fs::remove_file(f);
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.agent_log())
        .map_err(|e| fail(format!("cannot open {}: {e}", dir.agent_log().display())))?;
    let exe = std::env::current_exe().map_err(|e| fail(format!("cannot find own binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__agent")
        .arg(dir.path())
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    // SAFETY: setsid is async-signal-safe; it detaches the agent from our session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot spawn the guest agent: {e}")))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(START_DEADLINE).unwrap_or_else(|_| {
        let _ = child.kill();
        "error the guest did not report readiness in time".into()
    });
    let line = line.trim();
    if let Some(pid) = line.strip_prefix("ready ") {
        // The agent goes on as the machine's front: not ours to wait for.
        drop(child);
        rec.state = State::Running;
        rec.pid = pid.parse().ok();
        env.registry.put(&rec)?;
        println!("Machine '{name}' running (PID: {pid})");
        Ok(())
    } else {
        let _ = child.wait();
        let why = line
            .strip_prefix("error ")
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!(
                    "the guest agent exited before it was ready; see {}",
                    dir.agent_log().display()
                )
            });
        rec.state = State::Failed;
        rec.pid = None;
        let _ = env.registry.put(&rec);
        Err(fail(format!("failed to start machine '{name}': {why}")))
    }
}

/// Kills the agent (its keeper and the guest init die with it) and waits
/// until every one of them is gone.
fn stop_agent(dir: &MachineDir, l: &Live) -> Res<()> {
    let _ = kill(Pid::from_raw(l.front), Signal::SIGKILL);
    if let Some(g) = l.guest {
        // Why also directly: the guest must be gone even if the
        // parent-death chain were broken.
        let _ = kill(Pid::from_raw(g), Signal::SIGKILL);
    }
    let deadline = Instant::now() + STOP_DEADLINE;
    for pid in std::iter::once(l.front).chain(l.guest) {
        while !machine::has_exited(pid) {
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "agent process {pid} did not exit after SIGKILL"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for f in [dir.socket(), dir.agent_pid(), dir.guest_pid()] {
        let _ = fs::remove_file(f);
    }
    Ok(())
}

/// `machine stop [--name NAME]`.
pub fn stop(env: &Env, name: &str) -> Res<()> {
    let mut rec = env.registry.require(name)?;
    let dir = env.dir(name);
    let Some(l) = live(&dir) else {
        let state = effective(&dir, &rec).0;
        println!("Machine '{name}' is not running (state: {state})");
        if rec.state == State::Running {
            rec.state = State::Stopped;
            rec.pid = None;
            let _ = env.registry.put(&rec);
        }
        return Ok(());
    };
    eprintln!("Stopping machine '{name}'...");
    stop_agent(&dir, &l)?;
    rec.state = State::Stopped;
    rec.pid = None;
    env.registry.put(&rec)?;
    println!("Stopped machine: {name}");
    Ok(())
}

/// `machine delete NAME [-f]`.
pub fn delete(env: &Env, name: &str, force: bool) -> Res<()> {
    env.registry.require(name)?;
    let dir = env.dir(name);
    if let Some(l) = live(&dir) {
        if !force {
            return Err(fail(format!(
                "machine '{name}' is running; stop it first or use --force"
            )));
        }
        stop_agent(&dir, &l)?;
    }
    if dir.path().exists() {
        fs::remove_dir_all(dir.path())
            .map_err(|e| fail(format!("cannot delete {}: {e}", dir.path().display())))?;
    }
    env.registry.delete(name)?;
    println!("Deleted machine: {name}");
    Ok(())
}

/// The state `ls`/`status` report, and the agent pid when running.
fn effective(dir: &MachineDir, rec: &Record) -> (String, Option<i32>) {
    match live(dir) {
        Some(l) if crate::wire::answers_ping(&dir.socket()) => ("running".into(), Some(l.front)),
        Some(l) => ("unreachable".into(), Some(l.front)),
        None if rec.state == State::Running => ("stopped".into(), None),
        None => (rec.state.word().into(), None),
    }
}

/// One row of `ls`/`status`.
#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    state: String,
    pid: Option<i32>,
    image: Option<String>,
}

fn row(env: &Env, rec: Record) -> Row {
    let (state, pid) = effective(&env.dir(&rec.name), &rec);
    Row {
        name: rec.name,
        state,
        pid,
        image: rec.image,
    }
}

/// `machine ls [--json]`.
pub fn ls(env: &Env, json: bool) -> Res<()> {
    let rows: Vec<Row> = env
        .registry
        .all()?
        .into_iter()
        .map(|r| row(env, r))
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        );
    } else if rows.is_empty() {
        println!("No machines found");
    } else {
        println!("{:<24} {:<12} {:<8} IMAGE", "NAME", "STATE", "PID");
        for r in rows {
            let pid = r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            let image = r.image.as_deref().unwrap_or("(bare)");
            println!("{:<24} {:<12} {pid:<8} {image}", r.name, r.state);
        }
    }
    Ok(())
}

/// `machine status [--name NAME] [--json]`.
pub fn status(env: &Env, name: &str, json: bool) -> Res<()> {
    let r = row(env, env.registry.require(name)?);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("row serializes")
        );
    } else {
        match r.pid {
            Some(pid) => println!("Machine '{}': {} (PID: {pid})", r.name, r.state),
            None => println!("Machine '{}': {}", r.name, r.state),
        }
    }
    Ok(())
}
