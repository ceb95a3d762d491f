//! The supervisor: what `krun_start_enter` becomes (same pid as `smolvm
//! _boot-vm`, single-threaded after the exec). It prepares the private root
//! copy, the loop devices and the listening `agent.sock`, forks the
//! [`crate::janitor`], clones the guest's pid 1 ([`crate::guest`]) into new
//! namespaces, serves the local registry inside the guest's network
//! namespace, forwards the agent's ready marker to the client's rootfs, and
//! on SIGTERM (`machine stop`, `manager.rs` 1276) ends the guest and cleans
//! up: no process, mount or loop device left.

use crate::config::VmConfig;
use crate::guest::{self, Plan};
use crate::janitor::{self, Leftovers};
use crate::loopdev;
use crate::safety::{self, Expected};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The ready marker the agent writes at its root (`AGENT_READY_MARKER`).
pub const READY_MARKER: &str = ".smolvm-ready";
/// Per-machine settings written by `scripts/real-machine up` in the vm dir.
pub const SETTINGS_NAME: &str = "krun-standin.json";
/// The guest file holding the crun delay the `crun` wrapper reads.
pub const CRUN_DELAY_IN_GUEST: &str = "etc/krun-standin/crun-delay-ms";
/// The guest file holding the crun stall the `crun` wrapper reads.
pub const CRUN_STALL_IN_GUEST: &str = "etc/krun-standin/crun-stall-ms";
/// Environment: a mount namespace file to return to first (the /dev/kvm
/// stand-in runs `machine start` in a private mount namespace).
pub const HOST_MNTNS_ENV: &str = "KRUN_STANDIN_HOST_MNTNS";

/// The local registry served in the guest's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// The `crane` binary (host path).
    pub crane: PathBuf,
    /// Port on the guest's 127.0.0.1.
    pub port: u16,
    /// `crane registry serve --disk` folder.
    pub disk: PathBuf,
    /// The image tarball pushed at each boot (manifests live in memory).
    pub image_tar: PathBuf,
    /// The reference the machine was created with.
    pub image_ref: String,
}

/// Per-machine settings (`<vm dir>/krun-standin.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Milliseconds the guest's `crun` wrapper waits before `crun run`.
    #[serde(default)]
    pub crun_delay_ms: u64,
    /// Milliseconds the guest's `crun` wrapper stops crun once the container
    /// is created (its status file exists), before it runs.
    #[serde(default)]
    pub crun_stall_ms: u64,
    /// The registry, if the machine uses an image.
    #[serde(default)]
    pub registry: Option<Registry>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn log(msg: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "krun-standin: [{}.{:03}] {msg}",
        now.as_secs(),
        now.subsec_millis()
    );
}

/// Runs the supervisor for the recorded configuration; the process exit code.
pub fn run(record: &Path) -> i32 {
    match supervise(record) {
        Ok(code) => code,
        Err(e) => {
            log(&format!("boot failed: {e}"));
            1
        }
    }
}

fn install_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: an async-signal-safe handler that only stores an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop as *const () as usize;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn copy_root(from: &Path, to: &Path) -> Result<(), String> {
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(|e| format!("remove stale {}: {e}", to.display()))?;
    }
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .map_err(|e| format!("cp: {e}"))?;
    if !st.success() {
        return Err(format!("cp -a {} failed", from.display()));
    }
    let _ = std::fs::remove_file(to.join(READY_MARKER));
    Ok(())
}

fn supervise(record: &Path) -> Result<i32, String> {
    install_handlers();
    if let Some(ns) = std::env::var_os(HOST_MNTNS_ENV) {
        std::env::remove_var(HOST_MNTNS_ENV);
        sys::setns_path(Path::new(&ns), libc::CLONE_NEWNS).map_err(|e| e.to_string())?;
    }
    let text = std::fs::read(record).map_err(|e| format!("{}: {e}", record.display()))?;
    let cfg: VmConfig = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    cfg.validate()?;
    let vm_dir = cfg.vm_dir().ok_or("no vm dir")?.to_path_buf();
    let rootfs = cfg.root.clone().ok_or("no root")?;
    let settings: Settings = match std::fs::read(vm_dir.join(SETTINGS_NAME)) {
        Ok(t) => serde_json::from_slice(&t).map_err(|e| format!("{SETTINGS_NAME}: {e}"))?,
        Err(_) => Settings::default(),
    };
    let work = vm_dir.join("krun-standin");
    let private_root = work.join("root");
    let t0 = Instant::now();
    copy_root(&rootfs, &private_root)?;
    for (file, ms) in [
        (CRUN_DELAY_IN_GUEST, settings.crun_delay_ms),
        (CRUN_STALL_IN_GUEST, settings.crun_stall_ms),
    ] {
        let path = private_root.join(file);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        std::fs::write(&path, format!("{ms}\n")).map_err(|e| e.to_string())?;
    }
    // With neither knob, the real crun goes back in place: the natural
    // window is measured without the wrapper's shell start.
    let real_crun = private_root.join("usr/bin/crun.real");
    if settings.crun_delay_ms == 0 && settings.crun_stall_ms == 0 && real_crun.exists() {
        std::fs::rename(&real_crun, private_root.join("usr/bin/crun"))
            .map_err(|e| format!("restore crun: {e}"))?;
    }
    log(&format!(
        "private root ready in {} ms (crun delay {} ms, stall {} ms)",
        t0.elapsed().as_millis(),
        settings.crun_delay_ms,
        settings.crun_stall_ms
    ));

    let ns = |n: &str| safety::ns_inode(n).map_err(|e| format!("/proc/self/ns/{n}: {e}"));
    let host_root = safety::file_id(Path::new("/")).map_err(|e| e.to_string())?;
    let private_id = safety::file_id(&private_root).map_err(|e| e.to_string())?;

    let storage = &cfg.disks[0].path;
    let overlay = &cfg.disks[1].path;
    let vda = loopdev::attach(storage).map_err(|e| format!("attach {}: {e}", storage.display()))?;
    let vdb = match loopdev::attach(overlay) {
        Ok(l) => l,
        Err(e) => {
            drop(vda);
            return Err(format!("attach {}: {e}", overlay.display()));
        }
    };
    let expected = Expected {
        host_pid_ns: ns("pid")?,
        host_mnt_ns: ns("mnt")?,
        host_net_ns: ns("net")?,
        host_root,
        private_root: private_id,
        vda_minor: vda.minor,
        vdb_minor: vdb.minor,
    };
    let marker_host = rootfs.join(READY_MARKER);
    let leftovers = Leftovers {
        loops: vec![(vda.minor, storage.clone()), (vdb.minor, overlay.clone())],
        private_root: private_root.clone(),
        files: vec![marker_host.clone()],
    };
    log(&format!(
        "loop{} = /dev/vda ({}), loop{} = /dev/vdb ({})",
        vda.minor,
        storage.display(),
        vdb.minor,
        overlay.display()
    ));
    let janitor = janitor::spawn(leftovers.clone()).map_err(|e| format!("janitor: {e}"))?;

    let sock = cfg.agent_socket().ok_or("no agent socket")?.to_path_buf();
    let _ = std::fs::remove_file(&sock);
    let listener =
        UnixListener::bind(&sock).map_err(|e| format!("bind {}: {e}", sock.display()))?;
    let listener_fd = listener.into_raw_fd();
    sys::keep_on_exec(listener_fd).map_err(|e| e.to_string())?;

    let (ready_r, ready_w) = sys::pipe().map_err(|e| e.to_string())?;
    let (go_r, go_w) = sys::pipe().map_err(|e| e.to_string())?;
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET;
    let guest_pid = sys::clone_into(flags).map_err(|e| e.to_string())?;
    if guest_pid == 0 {
        drop(ready_r);
        drop(go_w);
        guest::run(Plan {
            root: private_root.clone(),
            vda_minor: vda.minor,
            vdb_minor: vdb.minor,
            listener: listener_fd,
            console: cfg.console_output.clone(),
            exec_path: cfg.exec_path.clone().unwrap_or_else(|| "/sbin/init".into()),
            argv: if cfg.argv.is_empty() {
                vec!["/sbin/init".into()]
            } else {
                cfg.argv.clone()
            },
            env: cfg.env.clone(),
            expected,
            net_ready: ready_w,
            go: go_r,
        });
    }
    drop(ready_w);
    drop(go_r);
    // SAFETY: our copy of the listener; the guest holds its own.
    unsafe { libc::close(listener_fd) };
    log(&format!("guest pid {guest_pid} (host pid namespace)"));

    let mut registry_pid = 0;
    let outcome = (|| -> Result<(), String> {
        if sys::recv_byte(&ready_r) != Some(b'N') {
            return Err(
                "guest set-up failed before its network was up (see the console log)".into(),
            );
        }
        if let Some(reg) = &settings.registry {
            registry_pid = start_registry(reg, guest_pid, &work)?;
            push_image(reg, guest_pid, &work)?;
        }
        sys::send_byte(&go_w, b'G');
        Ok(())
    })();
    drop(go_w);
    let code = match outcome {
        Err(e) => {
            log(&format!("boot aborted: {e}"));
            1
        }
        Ok(()) => watch(
            guest_pid,
            &private_root.join(READY_MARKER),
            &marker_host,
            &vm_dir,
        ),
    };
    if code != 0 && sys::try_wait(guest_pid).is_some() {
        let mut rest = Vec::new();
        while let Some(b) = sys::recv_byte(&ready_r) {
            rest.push(b);
        }
        if let Some(reason) = rest.strip_prefix(b"R") {
            log(&format!(
                "the safety gate REFUSED to start the agent: {}",
                String::from_utf8_lossy(reason)
            ));
        }
    }
    // The agent synced on `Shutdown` already; a short grace for its own exit.
    stop_process(guest_pid, Duration::from_millis(300));
    log("guest gone");
    stop_process(registry_pid, Duration::from_millis(500));
    log("registry gone");
    drop(vda);
    drop(vdb);
    match janitor::clean(&leftovers, Duration::from_secs(5)) {
        Ok(()) => log("cleaned up: guest ended, loop devices detached, private root removed"),
        Err(e) => log(&format!("cleanup incomplete (the janitor retries): {e}")),
    }
    sys::send_byte(&janitor, b'D');
    drop(janitor);
    Ok(code)
}

/// Waits for the guest to end, a stop signal, or the machine's folder to
/// vanish (a test that removed its state without `down`: nobody could stop
/// this machine any more); forwards the ready marker.
fn watch(guest_pid: libc::pid_t, marker_guest: &Path, marker_host: &Path, vm_dir: &Path) -> i32 {
    let mut forwarded = false;
    let mut tick = 0u64;
    loop {
        if let Some(st) = sys::try_wait(guest_pid) {
            log(&format!("guest ended: {}", sys::describe_status(st)));
            return if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 {
                0
            } else {
                1
            };
        }
        if STOP.load(Ordering::SeqCst) {
            log("stop signal: ending the guest");
            return 0;
        }
        tick += 1;
        if tick % 100 == 0 && !vm_dir.join("agent.sock").exists() {
            log("the machine's folder or agent.sock is gone: ending the guest");
            return 1;
        }
        if !forwarded {
            if let Ok(t) = std::fs::read(marker_guest) {
                forwarded = std::fs::write(marker_host, t).is_ok();
                if forwarded {
                    log("agent ready; marker forwarded");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGTERM, then SIGKILL after `grace`; reaps it.
fn stop_process(pid: libc::pid_t, grace: Duration) {
    if pid <= 0 || sys::try_wait(pid).is_some() {
        return;
    }
    sys::kill(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if sys::try_wait(pid).is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    sys::kill(pid, libc::SIGKILL);
    sys::wait(pid);
}

/// Forks a child in the guest's network namespace (host mount namespace)
/// that execs `argv`, output appended to `log_file`.
fn spawn_in_guest_net(
    guest_pid: libc::pid_t,
    argv: &[String],
    log_file: &Path,
) -> Result<libc::pid_t, String> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(|e| format!("{}: {e}", log_file.display()))?;
    let c: Vec<std::ffi::CString> = argv
        .iter()
        .map(|a| std::ffi::CString::new(a.as_str()).unwrap_or_default())
        .collect();
    let mut p: Vec<*const libc::c_char> = c.iter().map(|a| a.as_ptr()).collect();
    p.push(std::ptr::null());
    let net = PathBuf::from(format!("/proc/{guest_pid}/ns/net"));
    let pid = sys::fork().map_err(|e| e.to_string())?;
    if pid == 0 {
        let ok = sys::die_with_parent(libc::SIGKILL).is_ok()
            && sys::setns_path(&net, libc::CLONE_NEWNET).is_ok();
        if !ok {
            sys::exit_now(127);
        }
        // SAFETY: stdio redirection and exec in a forked child.
        unsafe {
            libc::dup2(out.as_raw_fd(), 1);
            libc::dup2(out.as_raw_fd(), 2);
            libc::execv(p[0], p.as_ptr());
        }
        sys::exit_now(127);
    }
    Ok(pid)
}

fn start_registry(
    reg: &Registry,
    guest_pid: libc::pid_t,
    work: &Path,
) -> Result<libc::pid_t, String> {
    let argv = [
        reg.crane.display().to_string(),
        "registry".into(),
        "serve".into(),
        "--address".into(),
        format!("127.0.0.1:{}", reg.port),
        "--disk".into(),
        reg.disk.display().to_string(),
    ];
    let pid = spawn_in_guest_net(guest_pid, &argv, &work.join("registry.log"))?;
    log(&format!(
        "registry pid {pid} on the guest's 127.0.0.1:{}",
        reg.port
    ));
    Ok(pid)
}

/// Pushes the image tarball (manifests are in the registry's memory only),
/// retrying while the registry starts.
fn push_image(reg: &Registry, guest_pid: libc::pid_t, work: &Path) -> Result<(), String> {
    let argv = [
        reg.crane.display().to_string(),
        "push".into(),
        reg.image_tar.display().to_string(),
        reg.image_ref.clone(),
    ];
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(20);
    loop {
        let pid = spawn_in_guest_net(guest_pid, &argv, &work.join("push.log"))?;
        let st = sys::wait(pid);
        if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 {
            log(&format!(
                "image {} pushed in {} ms",
                reg.image_ref,
                t0.elapsed().as_millis()
            ));
            return Ok(());
        }
        if Instant::now() > deadline || STOP.load(Ordering::SeqCst) {
            return Err(format!(
                "crane push {} failed ({}); see {}",
                reg.image_ref,
                sys::describe_status(st),
                work.join("push.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
