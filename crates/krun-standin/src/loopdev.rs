//! Loop devices for the guest's `/dev/vda` and `/dev/vdb`: attached with
//! `LOOP_CONFIGURE` and `LO_FLAGS_AUTOCLEAR`, so the kernel detaches them by
//! itself once the last opener (our supervisor) and the last mount (the
//! agent's, inside the guest's mount namespace) are gone — even when every
//! process of ours is SIGKILLed. [`detach_if_ours`] is the explicit path,
//! which first checks the backing file (a minor may be reused by others).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// An attached loop device; keeping it open keeps it attached.
#[derive(Debug)]
pub struct Loop {
    /// The open `/dev/loopN`.
    pub file: File,
    /// N.
    pub minor: u32,
}

/// Where the device node of loop `minor` is on the host.
pub fn node(minor: u32) -> PathBuf {
    PathBuf::from(format!("/dev/loop{minor}"))
}

/// Attaches `backing` to a free loop device (auto-clear).
pub fn attach(backing: &Path) -> io::Result<Loop> {
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    let back = OpenOptions::new().read(true).write(true).open(backing)?;
    for _ in 0..20 {
        // SAFETY: ioctl without argument.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let minor = n as u32;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(node(minor))?;
        // SAFETY: a zeroed plain-data struct.
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = back.as_raw_fd() as u32;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        let name = backing.as_os_str().as_encoded_bytes();
        let len = name.len().min(63);
        cfg.info.lo_file_name[..len].copy_from_slice(&name[..len]);
        // SAFETY: a valid loop_config.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), LOOP_CONFIGURE, &cfg) };
        if r == 0 {
            return Ok(Loop { file, minor });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(io::Error::new(
                e.kind(),
                format!("LOOP_CONFIGURE loop{minor}: {e}"),
            ));
        }
        // Raced with another user for that minor: take the next free one.
    }
    Err(io::Error::other("no free loop device after 20 tries"))
}

/// The backing file of loop `minor`, from sysfs (None when detached).
pub fn backing_file(minor: u32) -> Option<PathBuf> {
    let t = std::fs::read_to_string(format!("/sys/block/loop{minor}/loop/backing_file")).ok()?;
    let t = t.trim_end_matches('\n');
    (!t.is_empty()).then(|| PathBuf::from(t))
}

/// Whether sysfs names `backing` as what loop `minor` serves.
pub fn is_ours(minor: u32, backing: &Path) -> bool {
    match backing_file(minor) {
        Some(b) => {
            b == backing
                || std::fs::canonicalize(backing)
                    .map(|c| c == b)
                    .unwrap_or(false)
        }
        None => false,
    }
}

/// Detaches loop `minor` if it still serves `backing`. Ok(true) when it is
/// detached (or was already gone), Ok(false) when busy (still mounted).
pub fn detach_if_ours(minor: u32, backing: &Path) -> io::Result<bool> {
    if !is_ours(minor, backing) {
        return Ok(true);
    }
    let f = OpenOptions::new().read(true).open(node(minor))?;
    // SAFETY: ioctl without argument.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), LOOP_CLR_FD, 0) };
    drop(f);
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EBUSY) {
        return Ok(false);
    }
    if e.raw_os_error() == Some(libc::ENXIO) {
        return Ok(true);
    }
    Err(e)
}
