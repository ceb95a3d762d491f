//! `machine create/start/stop/delete/ls/status`, with smolvm 0.8.0's messages.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::fail::{fail, Res};
use crate::machine::{self, Home, Meta};

/// How long `machine start` waits for the guest to report readiness.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long `machine stop` waits for the guest init to disappear.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// Longest socket path a `sockaddr_un` holds.
const MAX_SOCKET_PATH: usize = 107;

/// `machine create [NAME]`.
pub fn create(home: &Home, name: Option<String>) -> Res<()> {
    home.ensure()?;
    let name = match name {
        Some(n) => n,
        None => {
            machine::generated_name().map_err(|e| fail(format!("cannot generate a name: {e}")))?
        }
    };
    machine::validate_name(&name)?;
    let dir = home.machine_dir(&name);
    if machine::load(&dir).is_some() {
        return Err(fail(format!("machine '{name}' already exists")));
    }
    fs::create_dir_all(&dir).map_err(|e| {
        fail(format!(
            "cannot create machine folder {}: {e}",
            dir.display()
        ))
    })?;
    machine::save(
        &dir,
        &Meta {
            name: name.clone(),
            state: "created".into(),
            created: machine::now_secs(),
        },
    )?;
    println!("Created machine: {name}");
    Ok(())
}

/// `machine start [-n NAME]`.
pub fn start(home: &Home, name: &str) -> Res<()> {
    home.ensure()?;
    let (dir, mut meta) = machine::require(home, name)?;
    if let (state, Some(pid)) = machine::effective_state(&dir, &meta) {
        if state == "running" {
            println!("Machine '{name}' is already running (PID: {pid})");
            return Ok(());
        }
        // Unreachable: a live agent that does not answer. Replace it.
        stop_agent(&dir, pid)?;
    }
    let sock = dir.join("agent.sock");
    if sock.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(fail(format!(
            "machine folder path too long for a Unix socket ({} > {MAX_SOCKET_PATH} bytes): {}; use a shorter FAKE_SMOLVM_HOME",
            sock.as_os_str().len(),
            sock.display()
        )));
    }
    eprintln!("Starting machine '{name}'...");
    for f in ["agent.sock", "agent.pid"] {
        let _ = fs::remove_file(dir.join(f));
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))
        .map_err(|e| {
            fail(format!(
                "cannot open {}: {e}",
                dir.join("agent.log").display()
            ))
        })?;
    let exe = std::env::current_exe().map_err(|e| fail(format!("cannot find own binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__agent")
        .arg(&dir)
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
    let _ = child.wait();
    let line = line.trim();
    if let Some(pid) = line.strip_prefix("ready ") {
        meta.state = "running".into();
        machine::save(&dir, &meta)?;
        println!("Machine '{name}' running (PID: {pid})");
        Ok(())
    } else {
        let why = line
            .strip_prefix("error ")
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!(
                    "the guest agent exited before it was ready; see {}",
                    dir.join("agent.log").display()
                )
            });
        if let Some(pid) = machine::agent_pid(&dir) {
            let _ = stop_agent(&dir, pid);
        }
        meta.state = "failed".into();
        let _ = machine::save(&dir, &meta);
        Err(fail(format!("failed to start machine '{name}': {why}")))
    }
}

/// Kills the guest init (and so every guest process) and waits until it is gone.
fn stop_agent(dir: &std::path::Path, pid: i32) -> Res<()> {
    if machine::is_live_agent(pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let deadline = Instant::now() + STOP_DEADLINE;
        while !machine::has_exited(pid) {
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "guest init (PID: {pid}) did not exit after SIGKILL"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for f in ["agent.sock", "agent.pid"] {
        let _ = fs::remove_file(dir.join(f));
    }
    Ok(())
}

/// `machine stop [-n NAME]`.
pub fn stop(home: &Home, name: &str) -> Res<()> {
    let (dir, mut meta) = machine::require(home, name)?;
    let (state, pid) = machine::effective_state(&dir, &meta);
    let Some(pid) = pid else {
        println!("Machine '{name}' is not running (state: {state})");
        if meta.state == "running" {
            meta.state = "stopped".into();
            let _ = machine::save(&dir, &meta);
        }
        return Ok(());
    };
    eprintln!("Stopping machine '{name}'...");
    stop_agent(&dir, pid)?;
    meta.state = "stopped".into();
    machine::save(&dir, &meta)?;
    println!("Stopped machine: {name}");
    Ok(())
}

/// `machine delete NAME [-f]`.
pub fn delete(home: &Home, name: &str, force: bool) -> Res<()> {
    let (dir, meta) = machine::require(home, name)?;
    if let (_, Some(pid)) = machine::effective_state(&dir, &meta) {
        if !force {
            return Err(fail(format!(
                "machine '{name}' is running; stop it first or use --force"
            )));
        }
        stop_agent(&dir, pid)?;
    }
    fs::remove_dir_all(&dir).map_err(|e| fail(format!("cannot delete {}: {e}", dir.display())))?;
    println!("Deleted machine: {name}");
    Ok(())
}

/// One row of `ls`/`status`.
#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    state: String,
    pid: Option<i32>,
}

fn row(home: &Home, name: &str) -> Res<Row> {
    let (dir, meta) = machine::require(home, name)?;
    let (state, pid) = machine::effective_state(&dir, &meta);
    Ok(Row {
        name: meta.name,
        state,
        pid,
    })
}

/// `machine ls [--json]`.
pub fn ls(home: &Home, json: bool) -> Res<()> {
    let mut names: Vec<String> = match fs::read_dir(home.vms()) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("machine.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    let rows: Vec<Row> = names.iter().filter_map(|n| row(home, n).ok()).collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        );
    } else if rows.is_empty() {
        println!("No machines found");
    } else {
        println!("{:<24} {:<12} PID", "NAME", "STATE");
        for r in rows {
            let pid = r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            println!("{:<24} {:<12} {pid}", r.name, r.state);
        }
    }
    Ok(())
}

/// `machine status [-n NAME] [--json]`.
pub fn status(home: &Home, name: &str, json: bool) -> Res<()> {
    let r = row(home, name)?;
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
