//! Machine names and the liveness of the agent's processes.

use std::fs;
use std::io;

use crate::fail::{fail, Res};

/// Longest machine name smolvm accepts (`MAX_VM_NAME_LENGTH`).
const MAX_NAME: usize = 128;

/// A machine name as smolvm 0.8.0 checks it (`src/data/mod.rs:54-98`,
/// `validate_vm_name`, wrapped by `manager.rs:343` as a config error), with
/// its messages: the real client refuses such a name before anything else.
pub fn validate_name(name: &str) -> Res<()> {
    name_problem(name).map_or(Ok(()), |why| {
        Err(fail(format!(
            "config operation failed: validate machine name: {why}"
        )))
    })
}

fn name_problem(name: &str) -> Option<String> {
    let label = "machine name";
    let Some(first) = name.chars().next() else {
        return Some(format!("{label} cannot be empty"));
    };
    if name.len() > MAX_NAME {
        return Some(format!(
            "{label} too long: {} characters (max {MAX_NAME})",
            name.len()
        ));
    }
    if !first.is_ascii_alphanumeric() {
        return Some(format!(
            "{label} must start with a letter or digit (got: {name:?})"
        ));
    }
    if name.ends_with('-') {
        return Some(format!("{label} cannot end with a hyphen (got: {name:?})"));
    }
    if name.contains("--") {
        return Some(format!("{label} cannot contain consecutive hyphens"));
    }
    match name
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && *c != '-' && *c != '_')
    {
        Some('/' | '\\') => Some(format!("{label} cannot contain path separators")),
        Some(c) => Some(format!("{label} contains invalid character: '{c}'")),
        None => None,
    }
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

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Clock ticks since boot at which `pid` started (`agent.pid`'s second line,
/// as smolvm writes it to guard against pid reuse).
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Reads a pid file's first line.
/// Never 0 or 1 nor negative: `kill(0, …)` would hit our own process group.
pub fn read_pid(path: &std::path::Path) -> Option<i32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
        .filter(|p: &i32| *p > 1)
}

/// Whether `pid` is a live (not zombie) fake-smolvm agent process started
/// at `start_ticks` (guards against a recycled pid, as smolvm's `agent.pid`
/// does).
pub fn is_live_agent(pid: i32, start_ticks: Option<u64>) -> bool {
    if has_exited(pid) {
        return false;
    }
    let ours = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|arg| arg == b"__agent"))
        .unwrap_or(false);
    ours && start_ticks.is_none_or(|t| process_start_ticks(pid as u32) == Some(t))
}

/// Whether `pid` has finished exiting (gone, or a zombie). Why not "its
/// command line is gone": a pid-namespace init that is being killed loses
/// its memory (and command line) first, then waits in the kernel until
/// every process of its namespace is dead. Only after that is it a zombie,
/// and only then is the guest really gone.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_smolvms_rules_and_messages() {
        for good in ["default", "vm-0a1b2c3d", "a_b-c", "9lives"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        let why = |name: &str| validate_name(name).unwrap_err().message;
        // Read off the real 0.8.0 client: `machine exec --name '$(touch /tmp/x)'`.
        assert_eq!(
            why("$(touch /tmp/x)"),
            "config operation failed: validate machine name: machine name must start with a letter or digit (got: \"$(touch /tmp/x)\")"
        );
        assert!(why("").ends_with("machine name cannot be empty"));
        assert!(why("a-").ends_with("cannot end with a hyphen (got: \"a-\")"));
        assert!(why("a--b").ends_with("cannot contain consecutive hyphens"));
        assert!(why("a/b").ends_with("cannot contain path separators"));
        assert!(why("a.b").ends_with("contains invalid character: '.'"));
        assert!(why(&"a".repeat(129)).contains("too long: 129 characters (max 128)"));
        assert_eq!(validate_name("").unwrap_err().code, 1);
    }

    #[test]
    fn generated_names_have_the_smolvm_shape() {
        let n = generated_name().unwrap();
        assert!(n.starts_with("vm-") && n.len() == 11, "{n}");
        assert!(n[3..].chars().all(|c| c.is_ascii_hexdigit()), "{n}");
    }

    #[test]
    fn dead_or_foreign_pids_are_not_agents() {
        assert!(!is_live_agent(std::process::id() as i32, None));
        assert!(!is_live_agent(i32::MAX, None));
        assert!(has_exited(i32::MAX));
        assert!(!has_exited(std::process::id() as i32));
    }
}
