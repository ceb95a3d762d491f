//! How the client's stdin is connected (the exec log's `stdin` field), and the
//! terminal's identity used by the shared-stdin fault.

use std::os::fd::BorrowedFd;

use nix::sys::stat::{fstat, stat, SFlag};

use crate::wire::StdinInfo;

/// What `fstat(0)` (and `isatty`) said about stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// fd 0 is not open (EBADF).
    Closed,
    /// A terminal, with its path and `st_rdev`.
    Tty {
        /// `ttyname(0)`, or `?` when it has none.
        path: String,
        /// Device number: the terminal's identity.
        rdev: u64,
    },
    /// A character device that is not a terminal.
    CharDevice {
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

/// Turns a probe into the exec log's `stdin` value and the terminal identity.
/// `devnull_rdev` is `st_rdev` of `/dev/null`, if it could be read.
pub fn classify(probe: &Probe, devnull_rdev: Option<u64>) -> StdinInfo {
    let (kind, tty_rdev) = match probe {
        Probe::Closed => ("closed".to_string(), None),
        Probe::Tty { path, rdev } => (format!("tty:{path}"), Some(*rdev)),
        Probe::CharDevice { rdev } if Some(*rdev) == devnull_rdev => ("devnull".into(), None),
        Probe::CharDevice { .. } | Probe::Other => ("other".into(), None),
        Probe::Fifo | Probe::Socket => ("pipe".into(), None),
        Probe::Regular => ("file".into(), None),
    };
    StdinInfo { kind, tty_rdev }
}

/// Probes this process's fd 0.
pub fn probe_stdin() -> Probe {
    // SAFETY: fd 0 is only borrowed for the duration of these calls; if it is
    // closed, fstat reports EBADF, which is what we want to detect.
    let fd = unsafe { BorrowedFd::borrow_raw(0) };
    let st = match fstat(fd) {
        Ok(st) => st,
        Err(_) => return Probe::Closed,
    };
    let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let rdev = st.st_rdev;
    match fmt {
        SFlag::S_IFCHR if nix::unistd::isatty(fd).unwrap_or(false) => Probe::Tty {
            path: nix::unistd::ttyname(fd)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "?".into()),
            rdev,
        },
        SFlag::S_IFCHR => Probe::CharDevice { rdev },
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

/// Probes and classifies this process's stdin.
pub fn stdin_info() -> StdinInfo {
    classify(&probe_stdin(), devnull_rdev())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_classifies() {
        let null = Some(259);
        let k = |p: Probe| classify(&p, null).kind;
        assert_eq!(k(Probe::Closed), "closed");
        assert_eq!(k(Probe::CharDevice { rdev: 259 }), "devnull");
        assert_eq!(k(Probe::CharDevice { rdev: 1 }), "other");
        assert_eq!(k(Probe::Fifo), "pipe");
        assert_eq!(k(Probe::Socket), "pipe");
        assert_eq!(k(Probe::Regular), "file");
        assert_eq!(k(Probe::Other), "other");
    }

    #[test]
    fn tty_carries_path_and_identity() {
        let info = classify(
            &Probe::Tty {
                path: "/dev/pts/4".into(),
                rdev: 34820,
            },
            None,
        );
        assert_eq!(info.kind, "tty:/dev/pts/4");
        assert_eq!(info.tty_rdev, Some(34820));
    }

    #[test]
    fn this_process_stdin_probes_without_panicking() {
        // Whatever cargo gave us, the probe must produce a known kind.
        let info = stdin_info();
        assert!(
            ["closed", "devnull", "pipe", "file", "other"].contains(&info.kind.as_str())
                || info.kind.starts_with("tty:"),
            "{info:?}"
        );
    }
}
