//! The guest: a detached agent living in its own user, mount and pid namespace
//! with a private devpts, so `/dev/pts/*` inside lists only guest PTYs.
//!
//! Process tree (host view):
//! ```text
//! fake-smolvm __agent DIR NAME        outer: sets up namespaces, forks, reports, exits
//!  └─ init (pid 1 in the guest)       reaps orphans; its death kills the whole guest
//!      └─ server (pid 2)              listens on DIR/agent.sock, one thread per exec
//!          └─ guest commands
//! ```

mod session;

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::settings::Switches;

/// Hint shown when the kernel refuses the namespaces.
const USERNS_HINT: &str = "unprivileged user namespaces are disabled \
(kernel.unprivileged_userns_clone / user.max_user_namespaces) or blocked by a seccomp profile";

/// Entry point of `fake-smolvm __agent DIR NAME`. stdout is the pipe `machine
/// start` reads: exactly one line, `ready <init pid>` or `error <message>`.
pub fn run_agent(dir: PathBuf, name: String) -> i32 {
    reset_signal_dispositions();
    match setup_namespaces() {
        Ok(()) => {}
        Err(msg) => {
            report(&format!("error {msg}"));
            return 1;
        }
    }
    let (ready_r, ready_w) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => {
            report(&format!("error pipe: {e}"));
            return 1;
        }
    };
    // SAFETY: this process is single-threaded (nothing has spawned a thread yet).
    match unsafe { fork() } {
        Err(e) => {
            report(&format!("error fork into the guest pid namespace: {e}"));
            1
        }
        Ok(ForkResult::Child) => {
            drop(ready_r);
            silence_stdout();
            guest_init(&dir, name, ready_w)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(ready_w);
            let mut answer = String::new();
            let _ = fs::File::from(ready_r).read_to_string(&mut answer);
            let answer = answer.trim();
            if answer == "ok" {
                if let Err(e) = fs::write(dir.join("agent.pid"), format!("{child}\n")) {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    report(&format!("error cannot write agent.pid: {e}"));
                    return 1;
                }
                report(&format!("ready {child}"));
                0
            } else {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let msg = answer
                    .strip_prefix("error ")
                    .unwrap_or("guest init exited before it was ready");
                report(&format!("error {msg}"));
                1
            }
        }
    }
}

fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn silence_stdout() {
    if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 1 of this process; both fds are valid.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

/// unshare + id maps + private devpts; every failure says which step and why.
fn setup_namespaces() -> Result<(), String> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)
        .map_err(|e| {
            format!("unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID) failed: {e}; {USERNS_HINT}")
        })?;
    let write = |path: &str, text: String| {
        fs::write(path, text).map_err(|e| format!("write {path} failed: {e}; {USERNS_HINT}"))
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    // Why rprivate: our devpts mount must not propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("mount --make-rprivate / failed: {e}"))?;
    mount(
        Some("devpts"),
        "/dev/pts",
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(|e| {
        format!("mount of a private devpts on /dev/pts failed: {e}; the kernel must allow devpts in a user namespace")
    })?;
    mount(
        Some("/dev/pts/ptmx"),
        "/dev/ptmx",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("bind mount /dev/pts/ptmx over /dev/ptmx failed: {e}"))?;
    // Never run on the host's PTYs: a fresh instance holds nothing but ptmx.
    let entries: Vec<String> = fs::read_dir("/dev/pts")
        .map_err(|e| format!("cannot list the private /dev/pts: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    if entries != ["ptmx"] {
        return Err(format!(
            "the new /dev/pts is not a private instance (it lists {entries:?}); refusing to use the host's PTYs"
        ));
    }
    Ok(())
}

/// PID 1 of the guest: forks the server, then reaps every process until the server ends.
fn guest_init(dir: &Path, name: String, ready_w: OwnedFd) -> i32 {
    // SAFETY: still single-threaded.
    match unsafe { fork() } {
        Err(e) => {
            let _ =
                fs::File::from(ready_w).write_all(format!("error fork server: {e}\n").as_bytes());
            1
        }
        Ok(ForkResult::Child) => server(dir, name, ready_w),
        Ok(ForkResult::Parent { child }) => {
            drop(ready_w);
            loop {
                match waitpid(Pid::from_raw(-1), None) {
                    Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _))
                        if pid == child =>
                    {
                        // The server is gone: exiting kills every guest process.
                        return 0;
                    }
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(_) => return 0,
                }
            }
        }
    }
}

fn server(dir: &Path, name: String, ready_w: OwnedFd) -> i32 {
    let mut ready = fs::File::from(ready_w);
    let _ = std::env::set_current_dir("/");
    let sock = dir.join("agent.sock");
    let _ = fs::remove_file(&sock);
    let listener = match UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(ready, "error bind {}: {e}", sock.display());
            return 1;
        }
    };
    let defaults = match Switches::from_env() {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(ready, "error {e}");
            return 1;
        }
    };
    let agent = Arc::new(session::Agent::new(name, dir.to_path_buf(), defaults));
    let _ = writeln!(ready, "ok");
    drop(ready);
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let agent = agent.clone();
                std::thread::spawn(move || agent.handle(stream));
            }
            Err(e) => eprintln!("agent: accept failed: {e}"),
        }
    }
    0
}

/// Gives the guest default signal dispositions and an empty signal mask.
///
/// Why: a real VM's processes inherit nothing from the host shell that ran
/// `smolvm machine start`. A host started in the background by a
/// non-interactive shell (`cmd &`, `nohup`, some CI runners) ignores SIGINT
/// and SIGQUIT, and an ignored signal survives fork and exec: without this,
/// Ctrl-C typed into a guest session would never interrupt the guest.
/// SIGPIPE stays as the Rust runtime set it for the agent itself (ignored, so
/// a vanished client is an error, not a death); `Command` resets it to the
/// default for every guest command.
fn reset_signal_dispositions() {
    for sig in 1..libc::SIGRTMIN() {
        if matches!(sig, libc::SIGKILL | libc::SIGSTOP | libc::SIGPIPE) {
            continue;
        }
        // SAFETY: installing SIG_DFL has no preconditions; the agent is still
        // single-threaded and has installed no handler of its own yet.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
}
