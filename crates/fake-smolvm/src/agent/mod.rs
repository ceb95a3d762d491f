//! The machine: an agent front in the host's namespaces and a guest living in
//! its own user, mount and pid namespace with a private devpts, so
//! `/dev/pts/*` inside lists only guest PTYs.
//!
//! Process tree (host view):
//! ```text
//! fake-smolvm __agent DIR NAME   front: listens on DIR/agent.sock, asks the kernel who
//!  │                             connected (SO_PEERCRED, /proc), hands each connection on
//!  └─ keeper                     unshares the namespaces; dies with the front (PDEATHSIG)
//!      └─ init (pid 1)           reaps orphans; dies with the keeper; its death ends the guest
//!          └─ server (pid 2)     serves each connection on its own thread
//!              └─ guest commands
//! ```
//! Why a front outside: inside a pid namespace `SO_PEERCRED` reports 0 for a
//! host process, and inside a user namespace the host client's `/proc` is not
//! readable, yet the agent must learn everything about its clients from the
//! kernel (the real client sends nothing about itself).

mod container;
mod exec;
mod front;
mod guest;
mod handoff;
mod peer;
mod record;
mod relay;
mod server;
mod state;
mod timeline;
mod vm_exec;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::host::MachineDir;
use crate::settings::Switches;

/// Hint shown when the kernel refuses the namespaces.
const USERNS_HINT: &str = "unprivileged user namespaces are disabled \
(kernel.unprivileged_userns_clone / user.max_user_namespaces) or blocked by a seccomp profile";

/// Entry point of `fake-smolvm __agent DIR NAME`. stdout is the pipe
/// `machine start` reads: exactly one line, `ready <front pid>` or
/// `error <message>`. On success this process goes on as the front until
/// the guest is gone.
pub fn run_agent(dir: PathBuf, name: String) -> i32 {
    reset_signal_dispositions();
    let dir = MachineDir(dir);
    match start(&dir, name) {
        Ok((listener, channel)) => {
            silence_stdout();
            front::serve(&listener, &channel);
            eprintln!("agent: the guest is gone; front exits");
            let _ = fs::remove_file(dir.socket());
            0
        }
        Err(msg) => {
            report(&format!("error {msg}"));
            1
        }
    }
}

/// Binds the socket, brings the guest up, and reports `ready`.
fn start(dir: &MachineDir, name: String) -> Result<(UnixListener, OwnedFd), String> {
    let defaults = Switches::from_env().map_err(|e| e.to_string())?;
    let _ = fs::remove_file(dir.socket());
    let listener = UnixListener::bind(dir.socket())
        .map_err(|e| format!("bind {}: {e}", dir.socket().display()))?;
    let (front_end, guest_end) = handoff::pair().map_err(|e| format!("socketpair: {e}"))?;
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: this process is single-threaded (nothing has spawned a thread yet).
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop((listener, front_end, ready_r));
            let code = keeper(dir, name, defaults, guest_end, ready_w);
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop((guest_end, ready_w));
            // The keeper reports the init's pid and the server `ok`, in
            // either order: wait for both (or an error, or the pipe's end).
            let mut init_pid = None;
            let mut answer = String::from("guest init exited before it was ready");
            for line in BufReader::new(fs::File::from(ready_r)).lines() {
                let Ok(line) = line else { break };
                if let Some(pid) = line.strip_prefix("init ") {
                    init_pid = pid.trim().parse::<i32>().ok().filter(|p| *p > 1);
                } else {
                    let failed = line != "ok";
                    answer = line;
                    if failed {
                        break;
                    }
                }
                if answer == "ok" && init_pid.is_some() {
                    break;
                }
            }
            if answer == "ok" && init_pid.is_none() {
                answer = "error the guest init's pid was not reported".into();
            }
            if answer != "ok" {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                let _ = fs::remove_file(dir.socket());
                return Err(answer.strip_prefix("error ").unwrap_or(&answer).to_string());
            }
            let me = std::process::id();
            let pidfile = format!(
                "{me}\n{}\n",
                crate::machine::process_start_ticks(me).unwrap_or(0)
            );
            let written = fs::write(dir.agent_pid(), pidfile)
                .and_then(|_| fs::write(dir.guest_pid(), format!("{}\n", init_pid.unwrap_or(0))));
            if let Err(e) = written {
                let _ = kill(child, Signal::SIGKILL);
                return Err(format!("cannot write agent.pid: {e}"));
            }
            report(&format!("ready {me}"));
            Ok((listener, front_end))
        }
    }
}

/// The keeper: unshares the namespaces, forks the guest init and waits for it.
/// Dies with the front, and the init dies with it, so killing the front ends
/// the whole machine.
fn keeper(
    dir: &MachineDir,
    name: String,
    defaults: Switches,
    guest_end: OwnedFd,
    ready_w: OwnedFd,
) -> i32 {
    let mut ready = fs::File::from(ready_w);
    if let Err(e) = die_with_parent() {
        say(&mut ready, &format!("error {e}"));
        return 1;
    }
    let dir = match setup_namespaces(dir) {
        Ok(d) => d,
        Err(msg) => {
            say(&mut ready, &format!("error {msg}"));
            return 1;
        }
    };
    let dir = &dir;
    // SAFETY: still single-threaded.
    match unsafe { fork() } {
        Err(e) => {
            say(
                &mut ready,
                &format!("error fork into the guest pid namespace: {e}"),
            );
            1
        }
        Ok(ForkResult::Child) => {
            if let Err(e) = die_with_parent() {
                say(&mut ready, &format!("error {e}"));
                return 1;
            }
            silence_stdout();
            guest_init(dir, name, defaults, guest_end, ready)
        }
        Ok(ForkResult::Parent { child }) => {
            say(&mut ready, &format!("init {child}"));
            drop((ready, guest_end));
            loop {
                match waitpid(child, None) {
                    Err(Errno::EINTR) => {}
                    _ => return 0,
                }
            }
        }
    }
}

/// PR_SET_PDEATHSIG(SIGKILL), then a check that the parent did not die first.
fn die_with_parent() -> Result<(), String> {
    let parent = nix::unistd::getppid();
    // SAFETY: prctl with an integer argument; no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(format!(
            "prctl(PR_SET_PDEATHSIG): {}",
            std::io::Error::last_os_error()
        ));
    }
    if nix::unistd::getppid() != parent {
        return Err("the agent front died during start-up".into());
    }
    Ok(())
}

/// One line to the start-up pipe in one `write(2)`: the keeper and the
/// server share the pipe, and `writeln!` on a `File` would write the pieces
/// of a formatted line separately, letting the other's line land in between.
fn say(pipe: &mut fs::File, line: &str) {
    let _ = pipe.write_all(format!("{line}\n").as_bytes());
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

/// unshare + id maps + private devpts + private `/tmp`; every failure says
/// which step and why. Returns the machine folder as the guest reaches it.
fn setup_namespaces(dir: &MachineDir) -> Result<MachineDir, String> {
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
    // The guest reaches the machine folder through a descriptor opened
    // before its own /tmp hides the host's: a machine folder under the
    // host's /tmp (a test's) would otherwise resolve inside the private one.
    // (Opened in this mount namespace: a bind from another one is EINVAL.)
    let folder =
        fs::File::open(dir.path()).map_err(|e| format!("open {}: {e}", dir.path().display()))?;
    private_tmp(dir)?;
    use std::os::fd::IntoRawFd;
    Ok(MachineDir(PathBuf::from(format!(
        "/proc/self/fd/{}",
        folder.into_raw_fd()
    ))))
}

/// The machine's own `/tmp` (VM level and containers alike): an overlay
/// whose upper layer is the machine folder's `tmp/` — every file a guest
/// writes under `/tmp` lands there, gone with `machine delete` — over the
/// host's `/tmp`, read-only through it. Why: a VM never writes into the
/// host's `/tmp`; why the host's below at all: a path a test hands the guest
/// (a record file in the test's temp folder) still exists in the guest, so
/// the guest can write it — into the machine's layer. If the kernel refuses
/// the overlay, the folder alone is bind-mounted.
fn private_tmp(dir: &MachineDir) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let upper = dir.tmp();
    let work = dir.path().join("tmp.work");
    for d in [&upper, &work] {
        fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    fs::set_permissions(&upper, fs::Permissions::from_mode(0o1777))
        .map_err(|e| format!("chmod {}: {e}", upper.display()))?;
    let options = format!(
        "lowerdir=/tmp,upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    let overlay = mount(
        Some("overlay"),
        "/tmp",
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    );
    if let Err(e) = overlay {
        eprintln!("agent: overlay on /tmp refused ({e}); the machine's tmp/ alone is its /tmp");
        mount(
            Some(&upper),
            "/tmp",
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind mount {} over /tmp failed: {e}", upper.display()))?;
    }
    Ok(())
}

/// The guest's own `/proc`, mounted by its pid 1: VM root sees the machine's
/// processes (containers' included, as their pid namespaces are nested),
/// numbered as the guest numbers them — not the host's.
fn guest_proc() -> Result<(), String> {
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| format!("mount the guest's /proc failed: {e}"))
}

/// PID 1 of the guest: forks the server, then reaps every process until the server ends.
fn guest_init(
    dir: &MachineDir,
    name: String,
    defaults: Switches,
    guest_end: OwnedFd,
    mut ready: fs::File,
) -> i32 {
    if let Err(e) = guest_proc() {
        say(&mut ready, &format!("error {e}"));
        return 1;
    }
    // SAFETY: still single-threaded.
    match unsafe { fork() } {
        Err(e) => {
            say(&mut ready, &format!("error fork server: {e}"));
            1
        }
        Ok(ForkResult::Child) => {
            let _ = std::env::set_current_dir("/");
            say(&mut ready, "ok");
            drop(ready);
            server::serve(state::Machine::new(name, dir.clone(), defaults), guest_end);
            0
        }
        Ok(ForkResult::Parent { child }) => {
            drop((ready, guest_end));
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
