//! The guest's pid 1 before it becomes the agent: runs in the child cloned
//! into new mount, pid, uts, ipc and network namespaces. It builds the guest's
//! view on the private root copy (a tmpfs `/dev` with only what a libkrun
//! guest has, `/proc`, read-only sysfs and cgroup2, `lo`), pivots into it,
//! gathers the [`crate::safety`] facts and execs the agent only if they pass.
//! The listening unix socket (the host's `agent.sock`) is inherited and handed
//! to the agent's `socket(AF_VSOCK)` by the LD_PRELOAD shim.

use crate::safety::{self, Expected};
use crate::sys;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// Where the LD_PRELOAD shim lives inside the guest root.
pub const SHIM_IN_GUEST: &str = "/usr/lib/krun-standin/libkrun-vsock-shim.so";
/// The variable telling the shim which fd is the listener.
pub const SHIM_FD_ENV: &str = "KRUN_STANDIN_VSOCK_FD";
/// Test-only: `proc` leaves `/proc` unmounted (the gate must then refuse).
pub const OMIT_ENV: &str = "KRUN_STANDIN_TEST_OMIT";
/// Exit code of the guest's pid 1 when the safety gate refuses.
pub const EXIT_REFUSED: i32 = 111;
/// Exit code of the guest's pid 1 when its set-up fails.
pub const EXIT_SETUP: i32 = 112;

/// Everything the guest's pid 1 needs (copied into it by the clone).
#[derive(Debug)]
pub struct Plan {
    /// The private root copy (host path).
    pub root: PathBuf,
    /// Loop minors of storage and overlay.
    pub vda_minor: u32,
    /// Overlay loop minor.
    pub vdb_minor: u32,
    /// The inherited listening socket (not CLOEXEC).
    pub listener: RawFd,
    /// The console log (agent's stdout/stderr), a host path.
    pub console: Option<PathBuf>,
    /// The exec path (`/sbin/init`), argv and environment from `krun_set_exec`.
    pub exec_path: String,
    /// argv.
    pub argv: Vec<String>,
    /// Environment, `K=V`.
    pub env: Vec<String>,
    /// What the host knew, for the safety gate.
    pub expected: Expected,
    /// Written once the network namespace's `lo` is up (`N`); later a
    /// refusal (`R<reason>`).
    pub net_ready: OwnedFd,
    /// Read: `G` means go on; EOF means abort.
    pub go: OwnedFd,
}

/// Runs in the cloned child; never returns.
pub fn run(plan: Plan) -> ! {
    // Die with the supervisor: its death (even SIGKILL) ends the whole guest.
    if sys::die_with_parent(libc::SIGKILL).is_err() {
        sys::exit_now(EXIT_SETUP);
    }
    if let Err(e) = prepare(&plan) {
        eprintln!("krun-standin guest: set-up failed: {e}");
        sys::exit_now(EXIT_SETUP);
    }
    let facts = safety::gather();
    if let Err(r) = safety::check(&facts, &plan.expected) {
        eprintln!("krun-standin guest: REFUSED to start the agent: {r}");
        // The supervisor reads this after our exit, for the client's log.
        let msg = format!("R{r}");
        // SAFETY: writing our own buffer to our pipe.
        unsafe {
            libc::write(
                plan.net_ready.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
            )
        };
        eprintln!("krun-standin guest: facts: {facts:?}");
        sys::exit_now(EXIT_REFUSED);
    }
    let e = exec_agent(&plan);
    eprintln!("krun-standin guest: exec {}: {e}", plan.exec_path);
    sys::exit_now(EXIT_SETUP)
}

fn prepare(plan: &Plan) -> io::Result<()> {
    let root = &plan.root;
    // Device nodes get exactly the modes asked for.
    // SAFETY: plain umask.
    unsafe { libc::umask(0) };
    let rec_private = (libc::MS_REC | libc::MS_PRIVATE) as libc::c_ulong;
    // Nothing we mount may propagate back to the host.
    sys::mount("", Path::new("/"), "", rec_private, "")?;
    // SAFETY: plain sethostname.
    unsafe { libc::sethostname(c"smolvm".as_ptr(), 6) };
    sys::loopback_up()?;
    // The console: the agent's stdout and stderr (host path, opened before the pivot).
    if let Some(c) = &plan.console {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(c)?;
        // SAFETY: dup2 onto stdio.
        unsafe {
            libc::dup2(f.as_raw_fd(), 1);
            libc::dup2(f.as_raw_fd(), 2);
        }
    }
    let bind = (libc::MS_BIND | libc::MS_REC) as libc::c_ulong;
    sys::mount(&root.to_string_lossy(), root, "", bind, "")?;
    let nsd = (libc::MS_NOSUID | libc::MS_NODEV) as libc::c_ulong;
    let dev = root.join("dev");
    std::fs::create_dir_all(&dev)?;
    sys::mount(
        "tmpfs",
        &dev,
        "tmpfs",
        libc::MS_NOSUID as libc::c_ulong,
        "mode=0755,size=65536k",
    )?;
    for (name, minor) in [
        ("null", 3),
        ("zero", 5),
        ("full", 7),
        ("random", 8),
        ("urandom", 9),
    ] {
        sys::mknod(&dev.join(name), libc::S_IFCHR, 0o666, 1, minor)?;
    }
    sys::mknod(&dev.join("tty"), libc::S_IFCHR, 0o666, 5, 0)?;
    sys::mknod(
        &dev.join("vda"),
        libc::S_IFBLK,
        0o660,
        safety::LOOP_MAJOR,
        plan.vda_minor,
    )?;
    sys::mknod(
        &dev.join("vdb"),
        libc::S_IFBLK,
        0o660,
        safety::LOOP_MAJOR,
        plan.vdb_minor,
    )?;
    std::fs::create_dir_all(dev.join("pts"))?;
    // Not nodev: the pts nodes must open.
    sys::mount(
        "devpts",
        &dev.join("pts"),
        "devpts",
        (libc::MS_NOSUID | libc::MS_NOEXEC) as libc::c_ulong,
        "newinstance,ptmxmode=0666,mode=0620",
    )?;
    std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"))?;
    std::fs::create_dir_all(dev.join("shm"))?;
    sys::mount("shm", &dev.join("shm"), "tmpfs", nsd, "mode=1777")?;
    let proc_ = root.join("proc");
    std::fs::create_dir_all(&proc_)?;
    // The end-to-end proof that the gate holds: a test asks for /proc to be
    // left out, and the agent must then never start.
    let omit_proc = std::env::var(OMIT_ENV).as_deref() == Ok("proc");
    if !omit_proc {
        sys::mount(
            "proc",
            &proc_,
            "proc",
            nsd | libc::MS_NOEXEC as libc::c_ulong,
            "",
        )?;
    }
    let sys_ = root.join("sys");
    std::fs::create_dir_all(&sys_)?;
    let ro = libc::MS_RDONLY as libc::c_ulong;
    sys::mount(
        "sysfs",
        &sys_,
        "sysfs",
        nsd | ro | libc::MS_NOEXEC as libc::c_ulong,
        "",
    )?;
    // crun refuses to run without cgroup2 even with --cgroup-manager disabled.
    sys::mount(
        "cgroup2",
        &sys_.join("fs/cgroup"),
        "cgroup2",
        nsd | ro | libc::MS_NOEXEC as libc::c_ulong,
        "",
    )?;
    // Let the supervisor start the registry in our network namespace, then
    // wait for it (and for its image push) before the agent can pull.
    sys::send_byte(&plan.net_ready, b'N');
    if sys::recv_byte(&plan.go) != Some(b'G') {
        return Err(io::Error::other("supervisor went away before go"));
    }
    // Pivot into the private root and drop the host's tree from view.
    std::env::set_current_dir(root)?;
    sys::pivot_root(Path::new("."), Path::new("."))?;
    sys::umount_detach(Path::new("."))?;
    std::env::set_current_dir("/")?;
    // stdin: /dev/null inside the guest.
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 onto stdin.
    unsafe { libc::dup2(null.as_raw_fd(), 0) };
    Ok(())
}

fn exec_agent(plan: &Plan) -> io::Error {
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let path = c(&plan.exec_path);
    let argv: Vec<CString> = plan.argv.iter().map(|a| c(a)).collect();
    let mut env: Vec<CString> = plan
        .env
        .iter()
        .filter(|e| !e.starts_with("LD_PRELOAD=") && !e.starts_with(SHIM_FD_ENV))
        .map(|e| c(e))
        .collect();
    env.push(c(&format!("LD_PRELOAD={SHIM_IN_GUEST}")));
    env.push(c(&format!("{SHIM_FD_ENV}={}", plan.listener)));
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    env_p.push(std::ptr::null());
    // SAFETY: NUL-terminated arrays of valid C strings.
    unsafe { libc::execve(path.as_ptr(), argv_p.as_ptr(), env_p.as_ptr()) };
    io::Error::last_os_error()
}
