//! `fake-smolvm __crun run|exec`: the fake's crun, run by the guest agent
//! for every container exec (smolvm v0.8.0 `main.rs` 3160-3215 spawns
//! `crun run`; a joined exec `crun exec`, 3118-3138).
//!
//! `run` makes the container: a new pid and mount namespace nested in the
//! machine's, with its **own devpts instance** (crun with `terminal: true`,
//! crun `container.c` 1197-1224) and its own `/proc`. The PTY of a `-t`
//! exec is made there, so it never shows in the VM level's `/dev/pts`. The
//! command is started only on `go` — the end of the crun window: before that
//! only crun's processes exist, with crun's environment, so a VM-level scan
//! of `/proc/*/environ` finds the `-e` values only once the container runs.
//!
//! `exec` joins a running container (`setns` into its mount and pid
//! namespaces: same devpts, same `/proc`, same `/tmp`).
//!
//! Process tree of `run` (VM view):
//! ```text
//! crun (this process, VM namespaces)       waits for the init; dies with the agent's kill
//!  └─ init (pid 1 of the container)        set-up; on `go` starts the command; reaps;
//!      └─ command (pid 2)                  exits with the command, which ends the container
//! ```
//! Why an init at pid 1 rather than the command itself (crun's way): a
//! namespace's pid 1 ignores every signal it has no handler for, Ctrl-C
//! included; with `sh` as pid 1 an interrupted session would go on. The
//! container still ends with its command.
//!
//! The agent and this process talk over fd 3, a `SOCK_SEQPACKET` socket, one
//! [`Msg`] per packet (a PTY master travels as `SCM_RIGHTS`).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};

/// The descriptor the agent hands over.
pub const CTL_FD: RawFd = 3;

/// What starts the command, sent by the agent on `go`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Go {
    /// The command.
    pub argv: Vec<String>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub workdir: String,
    /// `-t` on a joined exec: the size its new PTY starts at (`crun exec`
    /// copies the agent PTY's size); `None` for 0×0.
    pub pty_size: Option<(u16, u16)>,
}

/// One packet between the agent and its crun.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum Msg {
    /// crun → agent: the container's init (`run`).
    Init {
        /// Its pid in the VM's pid namespace.
        pid: i32,
    },
    /// crun → agent: the PTY master rides along as `SCM_RIGHTS`.
    Pty,
    /// crun → agent: ready for `go` (the container set up, or joined).
    Ready,
    /// crun → agent: the command runs as this VM-level pid (its own group).
    Command {
        /// Its pid in the VM's pid namespace (`exec` only; 0 if unknown).
        pid: i32,
    },
    /// crun → agent: the command ended (raw wait status).
    Status {
        /// The `waitpid` status word.
        raw: i32,
    },
    /// crun → agent: set-up failed.
    Error {
        /// Why.
        message: String,
    },
    /// agent → crun: start the command.
    Go(Go),
}

/// Sends one message, with `fd` as `SCM_RIGHTS` if given.
pub fn send(sock: BorrowedFd<'_>, msg: &Msg, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let fds = fd.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage> = fds
        .as_ref()
        .map(|f| vec![ControlMessage::ScmRights(f)])
        .unwrap_or_default();
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&body)],
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(|_| ())
    .map_err(io::Error::from)
}

/// Receives one message and the descriptor it carried. `Ok(None)`: the other
/// side is gone. With `dontwait`, `WouldBlock` when nothing is queued.
pub fn recv(sock: BorrowedFd<'_>, dontwait: bool) -> io::Result<Option<(Msg, Option<OwnedFd>)>> {
    let mut body = vec![0u8; 256 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let flags = if dontwait {
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT
    } else {
        MsgFlags::MSG_CMSG_CLOEXEC
    };
    let (len, fd) = loop {
        let mut iov = [IoSliceMut::new(&mut body)];
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
            Ok(msg) => {
                let mut fd = None;
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for raw in fds {
                            // SAFETY: the kernel just installed this descriptor for us.
                            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                            fd.get_or_insert(owned);
                        }
                    }
                }
                break (msg.bytes, fd);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if len == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&body[..len]).map_err(io::Error::other)?;
    Ok(Some((msg, fd)))
}

/// Entry point of `fake-smolvm __crun run [--pty COLSxROWS|0x0]` and
/// `fake-smolvm __crun exec --target PID [--tty]`. Exits with the
/// command's code (128+N for signal N), 1 when set-up failed.
pub fn main(args: &[OsString]) -> i32 {
    // SAFETY: fd 3 was put there by the agent for this process alone.
    let ctl = unsafe { OwnedFd::from_raw_fd(CTL_FD) };
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&ctl, pty_arg(&args)),
        Some("exec") => exec(&ctl, &args),
        _ => Err("usage: __crun run|exec …".into()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            let _ = send(ctl_fd(&ctl), &Msg::Error { message }, None);
            1
        }
    }
}

fn ctl_fd(ctl: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    ctl.as_fd()
}

/// `--pty COLSxROWS` (a `-t` run; `0x0` leaves it unsized).
fn pty_arg(args: &[String]) -> Option<Option<(u16, u16)>> {
    let i = args.iter().position(|a| a == "--pty")?;
    let (c, r) = args.get(i + 1)?.split_once('x')?;
    let size = (c.parse().ok()?, r.parse().ok()?);
    Some((size != (0, 0)).then_some(size))
}

fn errno(what: &str) -> impl Fn(nix::errno::Errno) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// `crun run`: the namespaces, the devpts, the init; waits for it.
fn run(ctl: &OwnedFd, pty: Option<Option<(u16, u16)>>) -> Result<i32, String> {
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)
        .map_err(errno("unshare(CLONE_NEWNS|CLONE_NEWPID)"))?;
    // The container's own devpts instance (the machine's mounts are private
    // already, so nothing propagates back to the VM level).
    mount(
        Some("devpts"),
        "/dev/pts",
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(errno("mount devpts"))?;
    mount(
        Some("/dev/pts/ptmx"),
        "/dev/ptmx",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(errno("bind /dev/pts/ptmx"))?;
    // SAFETY: this process is single-threaded (a fresh exec, no thread spawned).
    match unsafe { fork() }.map_err(errno("fork"))? {
        ForkResult::Child => {
            let code = match container_init(ctl, pty) {
                Ok(code) => code,
                Err(message) => {
                    let _ = send(ctl_fd(ctl), &Msg::Error { message }, None);
                    1
                }
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            send(
                ctl_fd(ctl),
                &Msg::Init {
                    pid: child.as_raw(),
                },
                None,
            )
            .map_err(|e| format!("report the init: {e}"))?;
            // Only the container holds the command's stdio now.
            detach_stdio();
            Ok(exit_code(wait_for(child)))
        }
    }
}

/// Pid 1 of the container: `/proc`, the PTY, `ready`, then on `go` the command.
fn container_init(ctl: &OwnedFd, pty: Option<Option<(u16, u16)>>) -> Result<i32, String> {
    nix::unistd::setsid().map_err(errno("setsid"))?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(errno("mount /proc"))?;
    let slave = match pty {
        Some(size) => Some(make_pty(ctl, size)?),
        None => None,
    };
    send(ctl_fd(ctl), &Msg::Ready, None).map_err(|e| format!("ready: {e}"))?;
    let Some(go) = wait_go(ctl)? else {
        return Ok(1);
    };
    let child = start(&go, slave)?;
    detach_stdio();
    let pid = Pid::from_raw(child as i32);
    // Reap everything; the container ends with its command.
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => {
                return Ok(report(ctl, ExitStatus::from_raw(code << 8)));
            }
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => {
                return Ok(report(ctl, ExitStatus::from_raw(sig as i32)));
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("waitpid: {e}")),
        }
    }
}

/// `crun exec`: into the running container's namespaces, then the command.
fn exec(ctl: &OwnedFd, args: &[String]) -> Result<i32, String> {
    let target = args
        .iter()
        .position(|a| a == "--target")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse::<i32>().ok())
        .ok_or("exec: --target PID missing")?;
    let open = |ns: &str| {
        File::open(format!("/proc/{target}/ns/{ns}"))
            .map_err(|e| format!("container {target} is gone: {ns}: {e}"))
    };
    let (pid_ns, mnt_ns) = (open("pid")?, open("mnt")?);
    setns(&pid_ns, CloneFlags::CLONE_NEWPID).map_err(errno("setns pid"))?;
    setns(&mnt_ns, CloneFlags::CLONE_NEWNS).map_err(errno("setns mnt"))?;
    send(ctl_fd(ctl), &Msg::Ready, None).map_err(|e| format!("ready: {e}"))?;
    let Some(go) = wait_go(ctl)? else {
        return Ok(1);
    };
    let slave = if args.iter().any(|a| a == "--tty") {
        Some(make_pty(ctl, go.pty_size)?)
    } else {
        None
    };
    let child = start(&go, slave)?;
    let _ = send(ctl_fd(ctl), &Msg::Command { pid: child as i32 }, None);
    detach_stdio();
    let status = wait_for(Pid::from_raw(child as i32));
    Ok(report(ctl, status))
}

/// A PTY in this mount namespace's devpts; the master goes to the agent.
fn make_pty(ctl: &OwnedFd, size: Option<(u16, u16)>) -> Result<OwnedFd, String> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(errno("open /dev/ptmx"))?;
    nix::pty::grantpt(&master).map_err(errno("grantpt"))?;
    nix::pty::unlockpt(&master).map_err(errno("unlockpt"))?;
    let name = nix::pty::ptsname_r(&master).map_err(errno("ptsname"))?;
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&name)
        .map_err(|e| format!("open {name}: {e}"))?
        .into();
    if let Some((cols, rows)) = size {
        let ws = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&slave, ws).map_err(|e| format!("size the PTY: {e}"))?;
    }
    use std::os::fd::AsFd;
    send(ctl_fd(ctl), &Msg::Pty, Some(master.as_fd())).map_err(|e| format!("hand the PTY: {e}"))?;
    Ok(slave)
}

/// Waits for the agent's `go`; `None` if the agent is gone first.
fn wait_go(ctl: &OwnedFd) -> Result<Option<Go>, String> {
    loop {
        match recv(ctl_fd(ctl), false) {
            Ok(Some((Msg::Go(go), _))) => return Ok(Some(go)),
            Ok(Some(_)) => {}
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("wait for go: {e}")),
        }
    }
}

/// Starts the command: its own session, on the PTY (`-t`) or this
/// process's stdio. A command that cannot start is reported as crun does:
/// the message on its stderr, 127 (not found) / 126 (not runnable) / 1.
fn start(go: &Go, slave: Option<OwnedFd>) -> Result<u32, String> {
    let Some(program) = go.argv.first() else {
        return Err("empty command".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(&go.argv[1..])
        .env_clear()
        .envs(go.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&go.workdir);
    let tty = slave.is_some();
    let mut err_sink: Box<dyn Write> = Box::new(io::stderr());
    if let Some(slave) = &slave {
        let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
        cmd.stdin(dup(slave).map_err(|e| e.to_string())?)
            .stdout(dup(slave).map_err(|e| e.to_string())?)
            .stderr(dup(slave).map_err(|e| e.to_string())?);
        err_sink = Box::new(File::from(slave.try_clone().map_err(|e| e.to_string())?));
    }
    // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if tty && libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(child) => Ok(child.id()),
        Err(e) => {
            let (code, msg) = match e.kind() {
                io::ErrorKind::NotFound => (
                    127,
                    format!("exec: \"{program}\": executable file not found in $PATH"),
                ),
                io::ErrorKind::PermissionDenied => {
                    (126, format!("exec: \"{program}\": permission denied"))
                }
                _ => (1, format!("exec failed: {e}")),
            };
            let _ = writeln!(err_sink, "{msg}");
            let _ = err_sink.flush();
            std::process::exit(code);
        }
    }
}

/// Points fds 0-2 at /dev/null, so only the command holds its stdio (the
/// agent sees EOF when the command and its children are done).
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto a standard descriptor of this process.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

fn wait_for(pid: Pid) -> ExitStatus {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return ExitStatus::from_raw(code << 8),
            Ok(WaitStatus::Signaled(_, sig, _)) => return ExitStatus::from_raw(sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return ExitStatus::from_raw(libc::SIGKILL),
        }
    }
}

/// Tells the agent how the command ended; returns crun's exit code.
fn report(ctl: &OwnedFd, status: ExitStatus) -> i32 {
    let _ = send(
        ctl_fd(ctl),
        &Msg::Status {
            raw: status.into_raw(),
        },
        None,
    );
    exit_code(status)
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_pty_argument_reads_both_sizes() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pty_arg(&a(&["run", "--pty", "80x24"])),
            Some(Some((80, 24)))
        );
        assert_eq!(pty_arg(&a(&["run", "--pty", "0x0"])), Some(None));
        assert_eq!(pty_arg(&a(&["run"])), None);
        assert_eq!(pty_arg(&a(&["run", "--pty", "wide"])), None);
    }

    #[test]
    fn messages_and_a_descriptor_cross_a_seqpacket_pair() {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let file = File::open("/dev/null").unwrap();
        let fd: OwnedFd = file.into();
        send(a.as_fd(), &Msg::Pty, Some(fd.as_fd())).unwrap();
        send(a.as_fd(), &Msg::Status { raw: 256 }, None).unwrap();
        let (m, got) = recv(b.as_fd(), false).unwrap().unwrap();
        assert!(matches!(m, Msg::Pty) && got.is_some());
        let (m, got) = recv(b.as_fd(), true).unwrap().unwrap();
        assert!(matches!(m, Msg::Status { raw: 256 }) && got.is_none());
        assert_eq!(
            recv(b.as_fd(), true).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(a);
        assert!(recv(b.as_fd(), false).unwrap().is_none());
    }
}
