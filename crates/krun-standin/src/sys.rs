//! Thin, checked wrappers over the Linux calls the boot helper makes (mount,
//! mknod, pivot_root, clone, setns, pipes, the loopback interface). Each
//! returns an `io::Result` naming what failed.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::other("path with NUL"))
}

fn check(ret: libc::c_int, what: impl FnOnce() -> String) -> io::Result<()> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{}: {e}", what())))
    } else {
        Ok(())
    }
}

/// `mount(2)`; `src`/`fstype`/`data` may be empty (NULL).
pub fn mount(
    src: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let t = cpath(target)?;
    let opt = |s: &str| {
        if s.is_empty() {
            None
        } else {
            CString::new(s).ok()
        }
    };
    let (s, f, d) = (opt(src), opt(fstype), opt(data));
    let ptr = |o: &Option<CString>| o.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: valid C strings or NULL.
    let r = unsafe {
        libc::mount(
            ptr(&s),
            t.as_ptr(),
            ptr(&f),
            flags,
            ptr(&d) as *const libc::c_void,
        )
    };
    check(r, || {
        format!("mount {src:?} {fstype:?} on {}", target.display())
    })
}

/// `mknod(2)` of a character or block device.
pub fn mknod(
    path: &Path,
    kind: libc::mode_t,
    perm: libc::mode_t,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: valid path.
    let r = unsafe { libc::mknod(p.as_ptr(), kind | perm, libc::makedev(major, minor)) };
    check(r, || format!("mknod {}", path.display()))
}

/// `pivot_root(new, old)`.
pub fn pivot_root(new: &Path, old: &Path) -> io::Result<()> {
    let (n, o) = (cpath(new)?, cpath(old)?);
    // SAFETY: valid paths.
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) } as libc::c_int;
    check(r, || format!("pivot_root {}", new.display()))
}

/// `umount2(path, MNT_DETACH)`.
pub fn umount_detach(path: &Path) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: valid path.
    let r = unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
    check(r, || format!("umount {}", path.display()))
}

/// `fork`-like `clone(2)` into new namespaces (`flags` = CLONE_NEW*): the
/// child returns 0, the parent the child's pid. Only call from a
/// single-threaded process.
pub fn clone_into(flags: libc::c_int) -> io::Result<libc::pid_t> {
    // SAFETY: the raw clone with a NULL stack has fork semantics (the child
    // runs on a copy of the caller's stack); the caller is single-threaded.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if r < 0 {
        return Err(io::Error::new(
            io::Error::last_os_error().kind(),
            format!("clone into new namespaces: {}", io::Error::last_os_error()),
        ));
    }
    Ok(r as libc::pid_t)
}

/// `fork(2)`. Only call from a single-threaded process.
pub fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the callers are single-threaded.
    let r = unsafe { libc::fork() };
    check(r, || "fork".into())?;
    Ok(r)
}

/// Ask the kernel to send `sig` to this process when its parent dies.
pub fn die_with_parent(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain prctl.
    let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    check(r, || "prctl(PDEATHSIG)".into())
}

/// `setns(2)` into the namespace file `path` (e.g. `/proc/PID/ns/net`).
pub fn setns_path(path: &Path, nstype: libc::c_int) -> io::Result<()> {
    let f = std::fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    // SAFETY: valid fd.
    let r = unsafe { libc::setns(f.as_raw_fd(), nstype) };
    check(r, || format!("setns {}", path.display()))
}

/// A CLOEXEC pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    check(r, || "pipe2".into())?;
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Clears FD_CLOEXEC so `fd` survives exec.
pub fn keep_on_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we hold.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    check(r, || "fcntl(F_SETFD)".into())
}

/// Writes one byte; a closed reader is not an error.
pub fn send_byte(fd: &OwnedFd, b: u8) {
    // SAFETY: one byte from a valid buffer.
    let _ = unsafe { libc::write(fd.as_raw_fd(), [b].as_ptr() as *const libc::c_void, 1) };
}

/// Reads one byte; `None` on EOF or error.
pub fn recv_byte(fd: &OwnedFd) -> Option<u8> {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: one byte into a valid buffer.
        let r = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr() as *mut libc::c_void, 1) };
        if r == 1 {
            return Some(b[0]);
        }
        if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a datagram socket only used for two ioctls on "lo".
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(s, || "socket for lo".into())?;
        let s = OwnedFd::from_raw_fd(s);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        check(
            libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req),
            || "SIOCGIFFLAGS lo".into(),
        )?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req), || {
            "SIOCSIFFLAGS lo".into()
        })
    }
}

/// `waitpid(pid, WNOHANG)`: `Some(raw status)` when it has ended.
pub fn try_wait(pid: libc::pid_t) -> Option<libc::c_int> {
    let mut st = 0;
    // SAFETY: plain waitpid.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    if r == pid {
        Some(st)
    } else if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
        Some(0)
    } else {
        None
    }
}

/// Blocking `waitpid`; the raw status.
pub fn wait(pid: libc::pid_t) -> libc::c_int {
    let mut st = 0;
    loop {
        // SAFETY: plain waitpid.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid || (r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted) {
            return st;
        }
    }
}

/// `kill(pid, sig)`, errors ignored (the process may be gone).
pub fn kill(pid: libc::pid_t, sig: libc::c_int) {
    if pid > 0 {
        // SAFETY: plain kill of a positive pid.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Whether a process with this pid exists (in our pid namespace).
pub fn alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Describes a raw wait status: `exit N` or `signal N`.
pub fn describe_status(st: libc::c_int) -> String {
    if libc::WIFEXITED(st) {
        format!("exit {}", libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        format!("signal {}", libc::WTERMSIG(st))
    } else {
        format!("status {st}")
    }
}

/// `_exit(code)`: leaves a forked child without running the parent's
/// destructors or atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(code) }
}
