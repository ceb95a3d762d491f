//! Which machine the scenarios run against: the fake (`fake-smolvm`, the
//! default) or smolvm's own 0.8.0 agent and crun in Linux namespaces behind
//! a stand-in libkrun (`E2E_BACKEND=real-agent`, made and ended by
//! `scripts/real-machine`).
//!
//! A scenario that needs what only the fake has (its `exec.log`, a forced
//! race outcome, a bare machine, the 0.8.1 mode) asks [`fake_only`] first
//! and returns when it says so; one that runs on both asks [`skipped`]
//! (true when the real-agent backend cannot run on this machine). Either
//! prints `skipped: <reason>`, never silently.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The variable that picks the backend: unset, empty or `fake` → the fake;
/// `real-agent` → the real 0.8.0 agent.
pub const BACKEND_VAR: &str = "E2E_BACKEND";

/// The machines the scenarios can run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `fake-smolvm`: the fake's agent, timeline and `exec.log`.
    Fake,
    /// smolvm 0.8.0's own agent and crun in namespaces (`scripts/real-machine`).
    RealAgent,
}

/// Parses the value of [`BACKEND_VAR`]; `Err` names the bad value.
pub fn parse(value: &str) -> Result<Backend, String> {
    match value.trim() {
        "" | "fake" => Ok(Backend::Fake),
        "real-agent" => Ok(Backend::RealAgent),
        other => Err(format!(
            "e2e: {BACKEND_VAR}={other:?} is not a backend (fake or real-agent)"
        )),
    }
}

/// The backend this test process runs against; panics on a bad
/// [`BACKEND_VAR`] (a typo must not fall back to the fake silently).
pub fn current() -> Backend {
    static CURRENT: OnceLock<Backend> = OnceLock::new();
    *CURRENT.get_or_init(|| {
        let value = std::env::var(BACKEND_VAR).unwrap_or_default();
        parse(&value).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// Whether the scenarios run against the real 0.8.0 agent.
pub fn real_agent() -> bool {
    current() == Backend::RealAgent
}

/// Path of `scripts/real-machine` (A1's: `check`, `up`, `down`).
pub fn real_machine_script() -> PathBuf {
    testkit::bins::workspace_root().join("scripts/real-machine")
}

/// Why the real-agent backend cannot run here (`scripts/real-machine
/// check`'s `cannot: …`), or `None` when it can. Asked once per process.
pub fn unavailable() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            let script = real_machine_script();
            if !script.is_file() {
                return Some(format!("no {} in this tree", script.display()));
            }
            match Command::new(&script).arg("check").output() {
                Err(e) => Some(format!("cannot run {}: {e}", script.display())),
                Ok(out) => check_verdict(
                    out.status.code(),
                    &String::from_utf8_lossy(&out.stdout),
                    &String::from_utf8_lossy(&out.stderr),
                ),
            }
        })
        .clone()
}

/// The reason in `scripts/real-machine check`'s answer (exit 0 `ok`: none;
/// exit 3 `cannot: <reason>`; anything else is reported as it came).
pub fn check_verdict(code: Option<i32>, stdout: &str, stderr: &str) -> Option<String> {
    if code == Some(0) {
        return None;
    }
    let said = format!("{}\n{}", stdout.trim(), stderr.trim());
    let reason = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("cannot:"))
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|| {
            format!(
                "scripts/real-machine check exited {}: {}",
                code.map_or("by a signal".to_string(), |c| c.to_string()),
                said.trim().replace('\n', " | ")
            )
        });
    Some(reason)
}

/// True (after printing `skipped: <reason>`) when the test must not run:
/// on the real-agent backend where `scripts/real-machine check` fails.
/// Call first in every scenario that runs on both backends.
pub fn skipped() -> bool {
    if !real_agent() {
        return false;
    }
    match unavailable() {
        Some(reason) => {
            crate::note(&format!("skipped: real-agent backend: {reason}"));
            true
        }
        None => false,
    }
}

/// True (after printing `skipped: <why>`) on the real-agent backend: for
/// a scenario that needs what only the fake has (`why` says what).
pub fn fake_only(why: &str) -> bool {
    if !real_agent() {
        return false;
    }
    crate::note(&format!(
        "skipped: not on the real-agent backend: {why} (only the fake has it)"
    ));
    true
}

/// True (after printing `skipped: <why>`) unless the test runs on a usable
/// real-agent backend: for the scenarios only the real agent can run.
pub fn real_agent_only() -> bool {
    if !real_agent() {
        crate::note(&format!(
            "skipped: needs the real 0.8.0 agent ({BACKEND_VAR}=real-agent; scripts/test's third round)"
        ));
        return true;
    }
    skipped()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_parsed_and_a_typo_is_an_error() {
        assert_eq!(parse(""), Ok(Backend::Fake));
        assert_eq!(parse("fake"), Ok(Backend::Fake));
        assert_eq!(parse("real-agent"), Ok(Backend::RealAgent));
        assert!(parse("real").unwrap_err().contains("real-agent"));
    }

    #[test]
    fn the_check_verdict_is_its_reason() {
        assert_eq!(check_verdict(Some(0), "ok\n", ""), None);
        assert_eq!(
            check_verdict(Some(3), "cannot: no loop devices\n", "").as_deref(),
            Some("no loop devices")
        );
        let odd = check_verdict(Some(2), "", "usage\n").unwrap();
        assert!(odd.contains("exited 2") && odd.contains("usage"), "{odd}");
    }
}
