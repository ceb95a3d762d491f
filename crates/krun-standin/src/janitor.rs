//! The cleanup owner outside the namespaces: a process forked from the
//! supervisor before the guest exists, in its own session (a signal to the
//! supervisor's process group does not reach it), holding nothing but the
//! read end of a pipe. The supervisor writes `D` when it has cleaned up
//! itself; EOF without `D` means it was killed (SIGKILL from `machine stop`
//! after its timeout, a killed test): then the janitor waits for the guest
//! to be gone (it dies with the supervisor, PDEATHSIG), detaches the loop
//! devices still serving our disks and removes the private root.

use crate::loopdev;
use crate::sys;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the janitor removes when the supervisor dies without cleaning up.
#[derive(Debug, Clone)]
pub struct Leftovers {
    /// (minor, backing file) of each attached loop device.
    pub loops: Vec<(u32, PathBuf)>,
    /// The private root copy.
    pub private_root: PathBuf,
    /// Files to remove (the ready marker copied to the client's rootfs).
    pub files: Vec<PathBuf>,
}

/// Removes what is left; Ok when nothing remains.
pub fn clean(l: &Leftovers, wait: Duration) -> Result<(), String> {
    let deadline = Instant::now() + wait;
    loop {
        let mut busy = Vec::new();
        for (minor, backing) in &l.loops {
            match loopdev::detach_if_ours(*minor, backing) {
                Ok(_) if !loopdev::is_ours(*minor, backing) => {}
                Ok(_) => busy.push(format!("loop{minor} busy")),
                Err(e) => busy.push(format!("loop{minor}: {e}")),
            }
        }
        if busy.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(busy.join(", "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for f in &l.files {
        let _ = std::fs::remove_file(f);
    }
    if l.private_root.exists() {
        std::fs::remove_dir_all(&l.private_root)
            .map_err(|e| format!("remove {}: {e}", l.private_root.display()))?;
    }
    Ok(())
}

/// Forks the janitor; returns the write end the supervisor keeps.
pub fn spawn(l: Leftovers) -> std::io::Result<OwnedFd> {
    let (r, w) = sys::pipe()?;
    let pid = sys::fork()?;
    if pid != 0 {
        drop(r);
        return Ok(w);
    }
    // Child: a session of its own, nothing open but the pipe's read end
    // (an inherited loop fd would keep the loop device attached).
    // SAFETY: setsid in a fresh child.
    unsafe { libc::setsid() };
    let keep = r.as_raw_fd();
    for fd in 0..1024 {
        if fd != keep && fd != 2 {
            // SAFETY: closing fds in a forked child we own entirely.
            unsafe { libc::close(fd) };
        }
    }
    std::mem::forget(w);
    let mut done = false;
    while let Some(b) = sys::recv_byte(&r) {
        if b == b'D' {
            done = true;
        }
    }
    if !done {
        eprintln!("krun-standin janitor: supervisor gone without cleaning up; cleaning");
        match clean(&l, Duration::from_secs(20)) {
            Ok(()) => eprintln!("krun-standin janitor: cleaned"),
            Err(e) => eprintln!("krun-standin janitor: left behind: {e}"),
        }
    }
    sys::exit_now(0)
}
