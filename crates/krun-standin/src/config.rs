//! The configuration the client hands to libkrun, as recorded by [`crate::ffi`]
//! and read back by the boot helper. Pure data: (de)serialised as JSON.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The guest vsock port of the agent's control channel (smolvm `ports::AGENT_CONTROL`).
pub const AGENT_CONTROL_PORT: u32 = 6000;

/// One `krun_add_disk2` call: the block id, the host image path and read-only flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// The block id (`storage`, `overlay`, `extraN`).
    pub block_id: String,
    /// The host path of the raw disk image.
    pub path: PathBuf,
    /// Whether the disk was added read-only.
    pub read_only: bool,
}

/// One `krun_add_vsock_port2` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockPort {
    /// The guest vsock port.
    pub port: u32,
    /// The host unix socket path.
    pub path: PathBuf,
    /// true: the host listens (the guest's listener is reached through it).
    pub listen: bool,
}

/// Everything recorded for one libkrun context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// Every call in order, `name(args)`, for the record.
    pub calls: Vec<String>,
    /// `krun_set_vm_config`: vcpus and MiB.
    pub vcpus: u8,
    /// `krun_set_vm_config`: memory in MiB.
    pub ram_mib: u32,
    /// `krun_set_root`: the host directory that is the guest's root.
    pub root: Option<PathBuf>,
    /// `krun_add_disk2`, in order (the first is `/dev/vda`).
    pub disks: Vec<Disk>,
    /// `krun_add_vsock_port2`.
    pub vsock_ports: Vec<VsockPort>,
    /// `krun_add_vsock` features (0: no network; TSI otherwise).
    pub vsock_features: Option<u32>,
    /// `krun_set_port_map` entries.
    pub port_map: Vec<String>,
    /// `krun_add_virtiofs` (tag, host path): refused at start (not modelled).
    pub virtiofs: Vec<(String, PathBuf)>,
    /// `krun_set_console_output`.
    pub console_output: Option<PathBuf>,
    /// `krun_set_workdir`.
    pub workdir: Option<String>,
    /// `krun_set_exec`: the path.
    pub exec_path: Option<String>,
    /// `krun_set_exec`: argv.
    pub argv: Vec<String>,
    /// `krun_set_exec`: the environment, `K=V`.
    pub env: Vec<String>,
}

impl VmConfig {
    /// The host socket bridged to the agent's control port (6000), if any.
    pub fn agent_socket(&self) -> Option<&Path> {
        self.vsock_ports
            .iter()
            .find(|p| p.port == AGENT_CONTROL_PORT && p.listen)
            .map(|p| p.path.as_path())
    }

    /// The machine's directory: the folder of the agent socket (smolvm's
    /// `vms/<hash>/`, `manager.rs` 180-256).
    pub fn vm_dir(&self) -> Option<&Path> {
        self.agent_socket().and_then(Path::parent)
    }

    /// What is missing or unsupported for a boot, as a one-line reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.root.is_none() {
            return Err("no root set (krun_set_root)".into());
        }
        if self.agent_socket().is_none() {
            return Err("no listening vsock port 6000 (krun_add_vsock_port2)".into());
        }
        if self.disks.len() != 2 {
            return Err(format!(
                "expected exactly 2 disks (storage, overlay), got {}",
                self.disks.len()
            ));
        }
        if !self.virtiofs.is_empty() {
            return Err("virtiofs mounts (-v) are not modelled by the stand-in".into());
        }
        if self.exec_path.is_none() {
            return Err("no exec set (krun_set_exec)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> VmConfig {
        VmConfig {
            root: Some("/r".into()),
            disks: vec![
                Disk {
                    block_id: "storage".into(),
                    path: "/v/storage.raw".into(),
                    read_only: false,
                },
                Disk {
                    block_id: "overlay".into(),
                    path: "/v/overlay.raw".into(),
                    read_only: false,
                },
            ],
            vsock_ports: vec![VsockPort {
                port: 6000,
                path: "/v/agent.sock".into(),
                listen: true,
            }],
            exec_path: Some("/sbin/init".into()),
            ..Default::default()
        }
    }

    #[test]
    fn vm_dir_is_the_agent_socket_folder() {
        assert_eq!(full().vm_dir(), Some(Path::new("/v")));
        assert!(full().validate().is_ok());
    }

    #[test]
    fn validate_names_what_is_missing() {
        let mut c = full();
        c.disks.pop();
        assert!(c.validate().unwrap_err().contains("2 disks"));
        let mut c = full();
        c.vsock_ports[0].listen = false;
        assert!(c.validate().unwrap_err().contains("6000"));
        let mut c = full();
        c.virtiofs.push(("smolvm0".into(), "/h".into()));
        assert!(c.validate().unwrap_err().contains("virtiofs"));
    }
}
