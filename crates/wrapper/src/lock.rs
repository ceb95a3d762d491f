//! One bring-up at a time per machine, host-wide: a `flock` on a per-machine
//! file that every pty-resize on the host agrees on.
//!
//! smolvm 0.8.0 breaks a session when another exec on the same machine
//! arrives between the session's `config.json` write and its container
//! running. Wrappers coordinate by holding this lock across each bring-up
//! (their main exec until readiness, each side-channel exec until it is known
//! to run). Sessions not started through pty-resize do not take it and cannot
//! be coordinated.
//!
//! Each acquisition opens its own file description, so two holders in one
//! process exclude each other like two processes do; the lock is released
//! when that description's last fd closes (also when a process dies).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::Instant;

use crate::event::{Event, Purpose};

/// The directories lock files may live in, best first:
/// `$XDG_RUNTIME_DIR/pty-resize`, `$XDG_CACHE_HOME/pty-resize`,
/// `~/.cache/pty-resize`. Pure. Empty and relative values are ignored, as the
/// XDG Base Directory spec says: a relative one would put the lock in the
/// current directory, where sessions started elsewhere never see it.
pub fn dir_candidates(
    runtime_dir: Option<OsString>,
    cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Vec<PathBuf> {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    [
        absolute(runtime_dir),
        absolute(cache_home),
        absolute(home).map(|h| h.join(".cache")),
    ]
    .into_iter()
    .flatten()
    .map(|base| base.join("pty-resize"))
    .collect()
}

/// The lock directory of this process's environment: the first candidate
/// that exists or can be made (mode 0700). An unusable `XDG_RUNTIME_DIR` (a
/// file, a directory not ours) falls back to the cache dir rather than
/// leaving the session uncoordinated.
pub fn dir() -> Option<PathBuf> {
    dir_candidates(
        std::env::var_os("XDG_RUNTIME_DIR"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
    .into_iter()
    .find(|d| usable(d))
}

/// Whether lock files can be made in `dir` (creating it if need be).
fn usable(dir: &Path) -> bool {
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    // SAFETY: access() only reads the path, a valid C string.
    made.is_ok()
        && std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0)
}

/// The lock file's name for `machine`: a readable prefix of its safe
/// characters plus a hash of the whole name, so no name (`../x`, `a/b`,
/// 4 KiB long, non-UTF-8-looking) can escape the directory or collide by
/// sanitising. A hash collision would only make two machines share a lock.
pub fn file_name(machine: &str) -> String {
    let readable: String = machine
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect();
    // FNV-1a 64: stable across builds and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in machine.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("machine-{readable}-{h:016x}.lock")
}

/// Opens (creating it and its directory, mode 0700) the lock file at `path`.
pub fn open(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

fn flock(file: &File, nonblocking: bool) -> std::io::Result<bool> {
    let op = libc::LOCK_EX | if nonblocking { libc::LOCK_NB } else { 0 };
    loop {
        // SAFETY: flock on an fd we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if nonblocking => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Takes the lock at `path` if it is free: `Ok(Some(file))` holds it,
/// `Ok(None)` means another holder has it.
pub fn try_lock(path: &Path) -> std::io::Result<Option<File>> {
    let file = open(path)?;
    Ok(flock(&file, true)?.then_some(file))
}

/// Waits for the lock on a thread of its own and reports
/// [`Event::Locked`]; the caller's loop stays responsive meanwhile (the
/// child may exit, a signal may arrive). If the lock cannot be taken at all
/// the thread reports nothing: the caller logged the wait and treats a lock
/// error at `try_lock` time as "uncoordinated".
pub fn wait_in_background(path: PathBuf, purpose: Purpose, tx: Sender<Event>) {
    let since = Instant::now();
    std::thread::spawn(move || {
        let Ok(file) = open(&path) else { return };
        if let Ok(true) = flock(&file, false) {
            let _ = tx.send(Event::Locked {
                purpose,
                file,
                waited: since.elapsed(),
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn directory_preference() {
        let o = |s: &str| Some(OsString::from(s));
        let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            dir_candidates(o("/run/u"), o("/c"), o("/h")),
            p(&["/run/u/pty-resize", "/c/pty-resize", "/h/.cache/pty-resize"])
        );
        assert_eq!(dir_candidates(o(""), o("/c"), None), p(&["/c/pty-resize"]));
        assert_eq!(
            dir_candidates(None, None, o("/h")),
            p(&["/h/.cache/pty-resize"])
        );
        assert_eq!(dir_candidates(None, o(""), o("")), p(&[]));
    }

    #[test]
    fn relative_directories_are_ignored() {
        let o = |s: &str| Some(OsString::from(s));
        assert_eq!(
            dir_candidates(o("run"), o("./c"), o("h")),
            Vec::<PathBuf>::new()
        );
        assert_eq!(
            dir_candidates(o("rel"), o("/c"), None),
            vec![PathBuf::from("/c/pty-resize")]
        );
    }

    #[test]
    fn a_file_or_a_foreign_directory_is_not_usable() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(!usable(&file.join("pty-resize")));
        assert!(usable(&tmp.path().join("ok").join("pty-resize")));
        // /proc/1 takes no new directory, even for root.
        assert!(!usable(Path::new("/proc/1/pty-resize")));
    }

    #[test]
    fn names_cannot_escape_and_differ() {
        for evil in ["../../etc/passwd", "a/b", "..", "", "x\0y", "é/è"] {
            let n = file_name(evil);
            assert!(
                !n.contains('/') && !n.contains('\0') && n != ".." && n.len() < 100,
                "{n}"
            );
            assert!(n.starts_with("machine-") && n.ends_with(".lock"), "{n}");
        }
        assert_eq!(file_name("bottle"), file_name("bottle"));
        assert_ne!(file_name("a/b"), file_name("ab"));
        assert!(file_name("bottle").starts_with("machine-bottle-"));
        assert!(file_name(&"x".repeat(5000)).len() < 80);
    }

    #[test]
    fn a_second_holder_waits_until_the_first_releases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/m.lock");
        let first = try_lock(&path).unwrap().expect("free lock");
        assert!(
            try_lock(&path).unwrap().is_none(),
            "held in this process too"
        );
        let (tx, rx) = std::sync::mpsc::channel();
        wait_in_background(path.clone(), Purpose::Side, tx);
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "no lock while the first holds it"
        );
        drop(first);
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::Locked { purpose, .. }) => assert_eq!(purpose, Purpose::Side),
            other => panic!("expected Locked, got {other:?}"),
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
