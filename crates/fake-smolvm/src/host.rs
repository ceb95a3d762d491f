//! Where smolvm 0.8.0 keeps a machine's host state, so the real client and
//! the fake agree on every path.
//!
//! Modelled on smolvm v0.8.0 `src/agent/manager.rs:357-372` (the machine's
//! runtime folder is `vm_data_dir(name)`) and `src/db.rs` (the registry):
//! - machine folder: `$XDG_CACHE_HOME|~/.cache` `/smolvm/vms/<hex of sha256(name)[..8]>/`
//!   holding `name`, `agent.sock`, `agent.pid`, `agent.config.json`;
//! - registry: `$XDG_DATA_HOME|~/.local/share` `/smolvm/server/smolvm.db`.
//!
//! The fake adds its own files to the machine folder: `exec.log`,
//! `agent.log`, `guest.pid` and `bundle/config.json` (the OCI bundle that, in
//! a real VM, lives inside the guest).

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::fail::{fail, Res};

/// The two roots smolvm resolves from the environment.
#[derive(Debug, Clone)]
pub struct Host {
    cache: PathBuf,
    data: PathBuf,
}

/// `agent.config.json`: what the real client reads back at every exec
/// (`manager.rs:685`); without it, it prints a `WARN could not restore
/// running VM config` line on stderr.
pub const AGENT_CONFIG: &str = r#"{"version":1,"mounts":[],"ports":[],"resources":{"cpus":1,"memory_mib":512,"network":false,"storage_gib":null,"overlay_gib":null}}"#;

impl Host {
    /// Resolves the roots as smolvm does (the `dirs` crate): `XDG_CACHE_HOME`
    /// else `~/.cache`; `XDG_DATA_HOME` else `~/.local/share`. Only absolute
    /// XDG values count, as in `dirs`.
    pub fn from_env() -> Res<Host> {
        let var = |k: &str| {
            std::env::var_os(k)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let home = var("HOME");
        let pick = |xdg: &str, under_home: &str| {
            var(xdg)
                .or_else(|| home.as_ref().map(|h| h.join(under_home)))
                .ok_or_else(|| {
                    fail(format!(
                        "cannot find the smolvm state folders: neither {xdg} nor HOME is set"
                    ))
                })
        };
        Ok(Host {
            cache: pick("XDG_CACHE_HOME", ".cache")?,
            data: pick("XDG_DATA_HOME", ".local/share")?,
        })
    }

    /// A host rooted at explicit folders (tests).
    pub fn at(cache: PathBuf, data: PathBuf) -> Host {
        Host { cache, data }
    }

    /// The machine folder of `name`.
    pub fn machine_dir(&self, name: &str) -> PathBuf {
        self.cache.join("smolvm/vms").join(dir_key(name))
    }

    /// The registry database.
    pub fn registry_path(&self) -> PathBuf {
        self.data.join("smolvm/server/smolvm.db")
    }

    /// Creates the machine folder with its `name` and `agent.config.json`.
    pub fn ensure_machine_dir(&self, name: &str) -> Res<PathBuf> {
        let dir = self.machine_dir(name);
        fs::create_dir_all(&dir).map_err(|e| {
            fail(format!(
                "cannot create state directory {}: {e}",
                dir.display()
            ))
        })?;
        let write = |file: &str, text: &str| {
            let path = dir.join(file);
            fs::write(&path, text)
                .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))
        };
        write("name", name)?;
        write("agent.config.json", AGENT_CONFIG)?;
        Ok(dir)
    }
}

/// The folder key: hex of the first 8 bytes of sha256(name)
/// (smolvm v0.8.0 `src/data/storage.rs`, `vm_data_dir`).
pub fn dir_key(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The machine folder's files the fake reads and writes.
#[derive(Debug, Clone)]
pub struct MachineDir(pub PathBuf);

impl MachineDir {
    /// `agent.sock`.
    pub fn socket(&self) -> PathBuf {
        self.0.join("agent.sock")
    }
    /// `agent.pid`: the agent front's pid and start time (`pid\nstarttime`).
    pub fn agent_pid(&self) -> PathBuf {
        self.0.join("agent.pid")
    }
    /// `guest.pid`: the guest init's host pid.
    pub fn guest_pid(&self) -> PathBuf {
        self.0.join("guest.pid")
    }
    /// `exec.log`.
    pub fn exec_log(&self) -> PathBuf {
        self.0.join("exec.log")
    }
    /// `agent.log`.
    pub fn agent_log(&self) -> PathBuf {
        self.0.join("agent.log")
    }
    /// `tmp/`: the guest's own `/tmp`.
    pub fn tmp(&self) -> PathBuf {
        self.0.join("tmp")
    }
    /// `bundle/config.json`.
    pub fn config_json(&self) -> PathBuf {
        self.0.join("bundle/config.json")
    }
    /// The folder itself.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// Where a file a guest wrote at `guest` (a path under `/tmp`) is on the
/// host: the machine's own `/tmp` layer, `<machine dir>/tmp/…` (the guest's
/// `/tmp` is an overlay over the host's, its writes land there). `None` for
/// a path outside `/tmp`, which the guest shares with the host.
pub fn guest_tmp_on_host(machine_dir: &Path, guest: &Path) -> Option<PathBuf> {
    let rel = guest.strip_prefix("/tmp").ok()?;
    Some(machine_dir.join("tmp").join(rel))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_guest_tmp_path_maps_into_the_machines_layer() {
        use super::*;
        let dir = Path::new("/c/smolvm/vms/ab");
        assert_eq!(
            guest_tmp_on_host(dir, Path::new("/tmp/x/y")),
            Some(PathBuf::from("/c/smolvm/vms/ab/tmp/x/y"))
        );
        assert_eq!(guest_tmp_on_host(dir, Path::new("/tmpx")), None);
        assert_eq!(guest_tmp_on_host(dir, Path::new("/home/u")), None);
    }

    use super::*;

    #[test]
    fn the_folder_key_is_the_real_clients() {
        // Read off the real 0.8.0 client: `machine exec --name m` made
        // `vms/62c66a7a5dd70c31/`.
        assert_eq!(dir_key("m"), "62c66a7a5dd70c31");
        assert_eq!(dir_key("m").len(), 16);
        assert_ne!(dir_key("m"), dir_key("n"));
    }

    #[test]
    fn agent_config_is_what_the_client_parses() {
        let v: serde_json::Value = serde_json::from_str(AGENT_CONFIG).unwrap();
        assert_eq!(v["version"], 1);
        assert!(v["resources"]["cpus"].is_u64());
    }
}
