//! The safety gate in front of the real agent, which runs as root: if it
//! finds no `/proc` it mounts the host's devtmpfs and may `mkfs.ext4
//! /dev/vda` (smolvm v0.8.0 `crates/smolvm-agent/src/main.rs` 446-470, 830,
//! 1397) — the host's root disk on these machines. The guest's pid 1 gathers
//! [`Facts`] about where it stands, and [`check`] (pure) refuses unless each
//! one holds; only then is the agent exec'd.

use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The loop block devices' major number.
pub const LOOP_MAJOR: u32 = 7;

/// A device node as seen by `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevNode {
    /// true for a block device.
    pub block: bool,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

/// A file's identity: (st_dev, st_ino).
pub type FileId = (u64, u64);

/// What the guest's pid 1 sees, gathered just before exec'ing the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Its own pid.
    pub pid: i32,
    /// Inodes of `/proc/self/ns/{pid,mnt,net}`.
    pub pid_ns: u64,
    /// Mount namespace inode.
    pub mnt_ns: u64,
    /// Network namespace inode.
    pub net_ns: u64,
    /// `/proc/uptime` exists.
    pub proc_uptime: bool,
    /// `/dev/vda`, if present.
    pub vda: Option<DevNode>,
    /// `/dev/vdb`, if present.
    pub vdb: Option<DevNode>,
    /// Other block devices found in `/dev` (names).
    pub other_block_devices: Vec<String>,
    /// Network interfaces of its namespace (`/proc/net/dev`).
    pub net_devices: Vec<String>,
    /// Identity of `/`.
    pub root: FileId,
    /// `/dev` is a tmpfs (not the host's devtmpfs).
    pub dev_is_tmpfs: bool,
    /// `/dev/kmsg` exists.
    pub kmsg: bool,
}

/// What the host side knew before the namespaces were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The host's pid namespace inode.
    pub host_pid_ns: u64,
    /// The host's mount namespace inode.
    pub host_mnt_ns: u64,
    /// The host's network namespace inode.
    pub host_net_ns: u64,
    /// The host's `/`.
    pub host_root: FileId,
    /// The private root copy made for this boot.
    pub private_root: FileId,
    /// Minor of the loop device attached for storage (`/dev/vda`).
    pub vda_minor: u32,
    /// Minor of the loop device attached for the overlay (`/dev/vdb`).
    pub vdb_minor: u32,
}

/// Why the agent is not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not pid 1.
    NotPid1(i32),
    /// Still in the host's pid namespace.
    HostPidNamespace,
    /// Still in the host's mount namespace.
    HostMountNamespace,
    /// Still in the host's network namespace.
    HostNetNamespace,
    /// No `/proc/uptime`: the agent would mount devtmpfs.
    NoProc,
    /// `/dev/vdX` missing or not our loop device.
    DiskNotOurs {
        /// `vda` or `vdb`.
        name: &'static str,
        /// What was found.
        found: Option<DevNode>,
        /// The loop minor expected.
        expected_minor: u32,
    },
    /// A block device other than vda/vdb in `/dev`.
    OtherBlockDevice(String),
    /// A network device other than `lo`.
    NetDevice(String),
    /// `/` is the host's root.
    HostRoot,
    /// `/` is not the private copy made for this boot.
    NotPrivateRoot,
    /// `/dev` is not a tmpfs.
    DevNotTmpfs,
    /// `/dev/kmsg` exists.
    Kmsg,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotPid1(p) => write!(f, "not pid 1 of a new pid namespace (pid {p})"),
            Refusal::HostPidNamespace => write!(f, "in the host's pid namespace (or it cannot be read)"),
            Refusal::HostMountNamespace => write!(f, "in the host's mount namespace (or it cannot be read)"),
            Refusal::HostNetNamespace => write!(f, "in the host's network namespace (or it cannot be read)"),
            Refusal::NoProc => write!(f, "/proc is not mounted (/proc/uptime missing): the agent would mount the host's devtmpfs"),
            Refusal::DiskNotOurs { name, found, expected_minor } => write!(
                f,
                "/dev/{name} is not our loop device 7:{expected_minor} (found {found:?}): the agent may mkfs it"
            ),
            Refusal::OtherBlockDevice(n) => write!(f, "block device /dev/{n} besides vda/vdb"),
            Refusal::NetDevice(n) => write!(f, "network device {n} besides lo"),
            Refusal::HostRoot => write!(f, "/ is the host's root"),
            Refusal::NotPrivateRoot => write!(f, "/ is not this boot's private root copy"),
            Refusal::DevNotTmpfs => write!(f, "/dev is not a private tmpfs"),
            Refusal::Kmsg => write!(f, "/dev/kmsg exists (the host's kernel log)"),
        }
    }
}

/// Every check, in order; the first failing one is the refusal.
pub fn check(f: &Facts, e: &Expected) -> Result<(), Refusal> {
    if f.pid != 1 {
        return Err(Refusal::NotPid1(f.pid));
    }
    // 0: the namespace file could not be read — unknown counts as the host's.
    if f.pid_ns == 0 || f.pid_ns == e.host_pid_ns {
        return Err(Refusal::HostPidNamespace);
    }
    if f.mnt_ns == 0 || f.mnt_ns == e.host_mnt_ns {
        return Err(Refusal::HostMountNamespace);
    }
    if f.net_ns == 0 || f.net_ns == e.host_net_ns {
        return Err(Refusal::HostNetNamespace);
    }
    if !f.proc_uptime {
        return Err(Refusal::NoProc);
    }
    if f.root == e.host_root {
        return Err(Refusal::HostRoot);
    }
    if f.root != e.private_root {
        return Err(Refusal::NotPrivateRoot);
    }
    if !f.dev_is_tmpfs {
        return Err(Refusal::DevNotTmpfs);
    }
    if f.kmsg {
        return Err(Refusal::Kmsg);
    }
    for (name, found, minor) in [("vda", f.vda, e.vda_minor), ("vdb", f.vdb, e.vdb_minor)] {
        let ours = DevNode {
            block: true,
            major: LOOP_MAJOR,
            minor,
        };
        if found != Some(ours) {
            return Err(Refusal::DiskNotOurs {
                name,
                found,
                expected_minor: minor,
            });
        }
    }
    if let Some(n) = f.other_block_devices.first() {
        return Err(Refusal::OtherBlockDevice(n.clone()));
    }
    if let Some(n) = f.net_devices.iter().find(|n| n.as_str() != "lo") {
        return Err(Refusal::NetDevice(n.clone()));
    }
    Ok(())
}

/// Interface names from the text of `/proc/net/dev` (two header lines, then
/// `  name: counters…`).
pub fn parse_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .filter(|n| !n.is_empty())
        .collect()
}

/// The inode of a namespace file (`/proc/self/ns/NAME`).
pub fn ns_inode(name: &str) -> std::io::Result<u64> {
    Ok(std::fs::metadata(format!("/proc/self/ns/{name}"))?.ino())
}

/// The identity of a path.
pub fn file_id(p: &Path) -> std::io::Result<FileId> {
    let m = std::fs::metadata(p)?;
    Ok((m.dev(), m.ino()))
}

fn dev_node(p: &Path) -> Option<DevNode> {
    let m = std::fs::symlink_metadata(p).ok()?;
    let ft = m.file_type();
    if !(ft.is_block_device() || ft.is_char_device()) {
        return None;
    }
    let rdev = m.rdev();
    Some(DevNode {
        block: ft.is_block_device(),
        major: libc::major(rdev),
        minor: libc::minor(rdev),
    })
}

/// Gathers the [`Facts`] from where the calling process stands. A fact that
/// cannot be read is recorded as its unsafe value (so [`check`] refuses).
pub fn gather() -> Facts {
    let other_block_devices = std::fs::read_dir("/dev")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_block_device()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "vda" && n != "vdb")
                .collect()
        })
        .unwrap_or_default();
    // SAFETY: statfs into a zeroed struct.
    let dev_is_tmpfs = unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        libc::statfs(c"/dev".as_ptr(), &mut s) == 0 && s.f_type == libc::TMPFS_MAGIC
    };
    Facts {
        // SAFETY: getpid cannot fail.
        pid: unsafe { libc::getpid() },
        pid_ns: ns_inode("pid").unwrap_or(0),
        mnt_ns: ns_inode("mnt").unwrap_or(0),
        net_ns: ns_inode("net").unwrap_or(0),
        proc_uptime: Path::new("/proc/uptime").exists(),
        vda: dev_node(Path::new("/dev/vda")),
        vdb: dev_node(Path::new("/dev/vdb")),
        other_block_devices,
        net_devices: std::fs::read_to_string("/proc/net/dev")
            .map(|t| parse_net_dev(&t))
            .unwrap_or_else(|_| vec!["<unreadable /proc/net/dev>".into()]),
        root: file_id(Path::new("/")).unwrap_or((0, 0)),
        dev_is_tmpfs,
        kmsg: Path::new("/dev/kmsg").exists(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Expected {
        Expected {
            host_pid_ns: 10,
            host_mnt_ns: 11,
            host_net_ns: 12,
            host_root: (1, 2),
            private_root: (1, 500),
            vda_minor: 3,
            vdb_minor: 4,
        }
    }

    fn safe() -> Facts {
        Facts {
            pid: 1,
            pid_ns: 20,
            mnt_ns: 21,
            net_ns: 22,
            proc_uptime: true,
            vda: Some(DevNode {
                block: true,
                major: 7,
                minor: 3,
            }),
            vdb: Some(DevNode {
                block: true,
                major: 7,
                minor: 4,
            }),
            other_block_devices: vec![],
            net_devices: vec!["lo".into()],
            root: (1, 500),
            dev_is_tmpfs: true,
            kmsg: false,
        }
    }

    fn refusal(change: impl FnOnce(&mut Facts)) -> Refusal {
        let mut f = safe();
        change(&mut f);
        check(&f, &expected()).expect_err("must refuse")
    }

    #[test]
    fn safe_facts_pass() {
        assert_eq!(check(&safe(), &expected()), Ok(()));
    }

    #[test]
    fn refuses_when_not_pid_1() {
        assert_eq!(refusal(|f| f.pid = 4242), Refusal::NotPid1(4242));
    }

    #[test]
    fn refuses_the_host_pid_namespace() {
        assert_eq!(refusal(|f| f.pid_ns = 10), Refusal::HostPidNamespace);
    }

    #[test]
    fn refuses_the_host_mount_namespace() {
        assert_eq!(refusal(|f| f.mnt_ns = 11), Refusal::HostMountNamespace);
    }

    #[test]
    fn refuses_the_host_network_namespace() {
        assert_eq!(refusal(|f| f.net_ns = 12), Refusal::HostNetNamespace);
    }

    #[test]
    fn refuses_unreadable_namespaces() {
        assert_eq!(refusal(|f| f.pid_ns = 0), Refusal::HostPidNamespace);
        assert_eq!(refusal(|f| f.mnt_ns = 0), Refusal::HostMountNamespace);
        assert_eq!(refusal(|f| f.net_ns = 0), Refusal::HostNetNamespace);
    }

    #[test]
    fn refuses_without_proc() {
        assert_eq!(refusal(|f| f.proc_uptime = false), Refusal::NoProc);
    }

    #[test]
    fn refuses_the_host_root() {
        assert_eq!(refusal(|f| f.root = (1, 2)), Refusal::HostRoot);
    }

    #[test]
    fn refuses_a_root_that_is_not_the_private_copy() {
        assert_eq!(refusal(|f| f.root = (1, 501)), Refusal::NotPrivateRoot);
    }

    #[test]
    fn refuses_a_dev_that_is_not_tmpfs() {
        assert_eq!(refusal(|f| f.dev_is_tmpfs = false), Refusal::DevNotTmpfs);
    }

    #[test]
    fn refuses_kmsg() {
        assert_eq!(refusal(|f| f.kmsg = true), Refusal::Kmsg);
    }

    #[test]
    fn refuses_a_missing_vda() {
        assert!(matches!(
            refusal(|f| f.vda = None),
            Refusal::DiskNotOurs {
                name: "vda",
                found: None,
                ..
            }
        ));
    }

    #[test]
    fn refuses_a_vda_that_is_a_real_disk() {
        // /dev/vda of the host: virtio-blk, major 253 minor 0.
        let host_disk = DevNode {
            block: true,
            major: 253,
            minor: 0,
        };
        assert!(matches!(
            refusal(|f| f.vda = Some(host_disk)),
            Refusal::DiskNotOurs { name: "vda", .. }
        ));
    }

    #[test]
    fn refuses_someone_elses_loop_device() {
        let other = DevNode {
            block: true,
            major: 7,
            minor: 9,
        };
        assert!(matches!(
            refusal(|f| f.vdb = Some(other)),
            Refusal::DiskNotOurs { name: "vdb", .. }
        ));
    }

    #[test]
    fn refuses_a_character_device_as_disk() {
        let chr = DevNode {
            block: false,
            major: 7,
            minor: 4,
        };
        assert!(matches!(
            refusal(|f| f.vdb = Some(chr)),
            Refusal::DiskNotOurs { name: "vdb", .. }
        ));
    }

    #[test]
    fn refuses_another_block_device() {
        assert_eq!(
            refusal(|f| f.other_block_devices = vec!["sda".into()]),
            Refusal::OtherBlockDevice("sda".into())
        );
    }

    #[test]
    fn refuses_a_network_device() {
        assert_eq!(
            refusal(|f| f.net_devices.push("eth0".into())),
            Refusal::NetDevice("eth0".into())
        );
    }

    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes    packets\n    lo:       0       0 0 0\n  eth0: 1 2 3\n";
        assert_eq!(
            parse_net_dev(text),
            vec!["lo".to_string(), "eth0".to_string()]
        );
    }

    #[test]
    fn refusals_read_as_one_line() {
        let r = Refusal::DiskNotOurs {
            name: "vda",
            found: None,
            expected_minor: 3,
        };
        assert!(!r.to_string().contains('\n'));
        assert!(r.to_string().contains("7:3"));
    }
}
