//! Machine folders under the fake's home: metadata, agent pid, liveness.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fail::{fail, Res};
use crate::settings::ENV_HOME;

/// The fake's state directory (`FAKE_SMOLVM_HOME`).
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `FAKE_SMOLVM_HOME`, else `$XDG_STATE_HOME/fake-smolvm`, else `~/.local/state/fake-smolvm`.
    pub fn from_env() -> Home {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = var(ENV_HOME)
            .or_else(|| var("XDG_STATE_HOME").map(|p| p.join("fake-smolvm")))
            .or_else(|| var("HOME").map(|p| p.join(".local/state/fake-smolvm")))
            .unwrap_or_else(|| PathBuf::from("/tmp/fake-smolvm"));
        Home { root }
    }

    /// `<home>/vms`.
    pub fn vms(&self) -> PathBuf {
        self.root.join("vms")
    }

    /// `<home>/vms/<name>`.
    pub fn machine_dir(&self, name: &str) -> PathBuf {
        self.vms().join(name)
    }

    /// Creates `<home>/vms`, or fails naming the path.
    pub fn ensure(&self) -> Res<()> {
        let vms = self.vms();
        fs::create_dir_all(&vms).map_err(|e| {
            fail(format!(
                "cannot create state directory {}: {e}",
                vms.display()
            ))
        })?;
        // create_dir_all succeeds on an existing read-only folder: probe a write.
        let probe = vms.join(format!(".probe-{}", std::process::id()));
        fs::write(&probe, b"").map_err(|e| {
            fail(format!(
                "state directory {} is not writable: {e}",
                vms.display()
            ))
        })?;
        let _ = fs::remove_file(probe);
        Ok(())
    }
}

/// A machine name must be a plain folder name.
pub fn validate_name(name: &str) -> Res<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(fail(format!(
            "invalid machine name '{name}': use letters, digits, '-', '_' and '.'"
        )))
    }
}

/// `machine.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// Machine name.
    pub name: String,
    /// Recorded state: `created`, `running`, `stopped` or `failed`.
    pub state: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
}

/// Reads `machine.json`; `None` when the machine does not exist.
pub fn load(dir: &Path) -> Option<Meta> {
    let text = fs::read_to_string(dir.join("machine.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes `machine.json` (write to a temp file, then rename).
pub fn save(dir: &Path, meta: &Meta) -> Res<()> {
    let tmp = dir.join(format!(".machine.json.{}", std::process::id()));
    let text = serde_json::to_string_pretty(meta).expect("meta serializes");
    fs::write(&tmp, text)
        .and_then(|_| fs::rename(&tmp, dir.join("machine.json")))
        .map_err(|e| {
            fail(format!(
                "cannot write {}: {e}",
                dir.join("machine.json").display()
            ))
        })
}

/// Loads a machine or fails with smolvm's `vm not found: NAME`.
pub fn require(home: &Home, name: &str) -> Res<(PathBuf, Meta)> {
    let dir = home.machine_dir(name);
    match load(&dir) {
        Some(meta) => Ok((dir, meta)),
        None => Err(fail(format!("vm not found: {name}"))),
    }
}

/// `agent.pid`: the guest init's host pid.
pub fn agent_pid(dir: &Path) -> Option<i32> {
    fs::read_to_string(dir.join("agent.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` is a live (not zombie) fake-smolvm agent process.
/// Checking the command line guards against a recycled pid.
pub fn is_live_agent(pid: i32) -> bool {
    if has_exited(pid) {
        return false;
    }
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|arg| arg == b"__agent"))
        .unwrap_or(false)
}

/// Whether `pid` has finished exiting (gone, or a zombie). Why not "its
/// command line no longer says `__agent`": a pid-namespace init that is
/// being killed loses its memory (and command line) first, then waits in the
/// kernel until every process of its namespace is dead. Only after that is it
/// a zombie, and only then is the guest really gone.
pub fn has_exited(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // Field 3 (after the parenthesised comm) is the state letter.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some("Z") | Some("X") | None)
}

/// The state `ls`/`status` report, and the agent pid when running.
pub fn effective_state(dir: &Path, meta: &Meta) -> (String, Option<i32>) {
    if meta.state != "running" {
        return (meta.state.clone(), None);
    }
    match agent_pid(dir) {
        Some(pid) if is_live_agent(pid) => {
            if std::os::unix::net::UnixStream::connect(dir.join("agent.sock")).is_ok() {
                ("running".into(), Some(pid))
            } else {
                ("unreachable".into(), Some(pid))
            }
        }
        _ => ("stopped".into(), None),
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh `vm-<8 hex>` name.
pub fn generated_name() -> io::Result<String> {
    let mut bytes = [0u8; 4];
    io::Read::read_exact(&mut fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(format!(
        "vm-{:02x}{:02x}{:02x}{:02x}",
        bytes[0], bytes[1], bytes[2], bytes[3]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_folder_names() {
        for good in ["default", "vm-0a1b2c3d", "a.b_c"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "..", "sp ace"] {
            let e = validate_name(bad).unwrap_err();
            assert_eq!(e.code, 1);
            assert!(e.message.contains("invalid machine name"), "{bad}");
        }
    }

    #[test]
    fn generated_names_have_the_smolvm_shape() {
        let n = generated_name().unwrap();
        assert!(n.starts_with("vm-") && n.len() == 11, "{n}");
        assert!(n[3..].chars().all(|c| c.is_ascii_hexdigit()), "{n}");
    }

    #[test]
    fn dead_or_foreign_pids_are_not_agents() {
        assert!(!is_live_agent(std::process::id() as i32));
        assert!(!is_live_agent(i32::MAX));
    }
}
