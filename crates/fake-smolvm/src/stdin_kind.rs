//! How a client's stdin is connected (the exec log's `stdin` field) and the
//! terminal's identity, read from `/proc/<pid>/fd/0` without opening it.
//!
//! Why without opening: the agent must never touch a host terminal; the
//! link's target and `stat` say all it needs.

use std::path::Path;

use nix::sys::stat::{stat, SFlag};
use serde::{Deserialize, Serialize};

/// How the client's stdin is connected, and which terminal it is if it is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdinInfo {
    /// `tty:<path>`, `devnull`, `pipe`, `file`, `closed` or `other`.
    pub kind: String,
    /// `st_rdev` of the terminal, when stdin is one: the terminal's identity.
    pub tty_rdev: Option<u64>,
}

/// What `stat` said about the file behind fd 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// fd 0 is not open (or the process is gone).
    Closed,
    /// A character device, with the link's target.
    CharDevice {
        /// Where `/proc/<pid>/fd/0` points.
        path: String,
        /// Device number.
        rdev: u64,
    },
    /// A FIFO.
    Fifo,
    /// A socket.
    Socket,
    /// A regular file.
    Regular,
    /// Anything else (directory, block device, …).
    Other,
}

/// Whether a character device number is a terminal: Unix98 PTY slaves
/// (majors 136–143), virtual consoles and serial ports (4), `/dev/tty` and
/// `/dev/console` (5).
fn is_terminal_device(rdev: u64) -> bool {
    let major = nix::sys::stat::major(rdev);
    (136..=143).contains(&major) || major == 4 || major == 5
}

/// Turns a probe into the exec log's `stdin` value and the terminal identity.
/// `devnull_rdev` is `st_rdev` of `/dev/null`, if it could be read.
pub fn classify(probe: &Probe, devnull_rdev: Option<u64>) -> StdinInfo {
    let (kind, tty_rdev) = match probe {
        Probe::Closed => ("closed".to_string(), None),
        Probe::CharDevice { rdev, .. } if Some(*rdev) == devnull_rdev => ("devnull".into(), None),
        Probe::CharDevice { path, rdev } if is_terminal_device(*rdev) => {
            (format!("tty:{path}"), Some(*rdev))
        }
        Probe::CharDevice { .. } | Probe::Other => ("other".into(), None),
        Probe::Fifo | Probe::Socket => ("pipe".into(), None),
        Probe::Regular => ("file".into(), None),
    };
    StdinInfo { kind, tty_rdev }
}

/// Probes what `fd_link` (e.g. `/proc/<pid>/fd/0`) refers to.
pub fn probe(fd_link: &Path) -> Probe {
    let Ok(st) = stat(fd_link) else {
        return Probe::Closed;
    };
    let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    match fmt {
        SFlag::S_IFCHR => Probe::CharDevice {
            path: std::fs::read_link(fd_link)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "?".into()),
            rdev: st.st_rdev,
        },
        SFlag::S_IFIFO => Probe::Fifo,
        SFlag::S_IFSOCK => Probe::Socket,
        SFlag::S_IFREG => Probe::Regular,
        _ => Probe::Other,
    }
}

/// `st_rdev` of `/dev/null`.
pub fn devnull_rdev() -> Option<u64> {
    stat("/dev/null").ok().map(|st| st.st_rdev)
}

/// Probes and classifies the stdin of process `pid`.
pub fn of_pid(pid: u32) -> StdinInfo {
    classify(
        &probe(Path::new(&format!("/proc/{pid}/fd/0"))),
        devnull_rdev(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_classifies() {
        let null = Some(nix::sys::stat::makedev(1, 3));
        let k = |p: Probe| classify(&p, null).kind;
        assert_eq!(k(Probe::Closed), "closed");
        let dev = |major, minor| Probe::CharDevice {
            path: "/dev/x".into(),
            rdev: nix::sys::stat::makedev(major, minor),
        };
        assert_eq!(k(dev(1, 3)), "devnull");
        assert_eq!(k(dev(1, 5)), "other");
        assert_eq!(k(Probe::Fifo), "pipe");
        assert_eq!(k(Probe::Socket), "pipe");
        assert_eq!(k(Probe::Regular), "file");
        assert_eq!(k(Probe::Other), "other");
    }

    #[test]
    fn a_pty_slave_carries_path_and_identity() {
        let rdev = nix::sys::stat::makedev(136, 4);
        let info = classify(
            &Probe::CharDevice {
                path: "/dev/pts/4".into(),
                rdev,
            },
            None,
        );
        assert_eq!(info.kind, "tty:/dev/pts/4");
        assert_eq!(info.tty_rdev, Some(rdev));
    }

    #[test]
    fn our_own_stdin_and_a_dead_pid_probe_without_panicking() {
        let info = of_pid(std::process::id());
        assert!(
            ["closed", "devnull", "pipe", "file", "other"].contains(&info.kind.as_str())
                || info.kind.starts_with("tty:"),
            "{info:?}"
        );
        assert_eq!(of_pid(u32::MAX).kind, "closed");
    }
}
