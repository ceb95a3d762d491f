//! Commands with an environment built from scratch.
//!
//! A test inherits whatever the developer's shell or CI has: `TMUX` (which
//! changes the fake's shared-stdin behaviour), `COLUMNS`/`LINES` (which some
//! programs trust over the PTY), `COLORTERM`, a locale. None of it may leak
//! into what a test runs, so every command starts from an empty environment.
//! Signal dispositions are inherited too: a test run started in the
//! background by a non-interactive shell (`cargo test &`, nohup, some CI
//! runners) ignores SIGINT and SIGQUIT, and exec keeps that; every command
//! starts with default dispositions instead, as in a fresh terminal.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The `TERM` every test program sees (outside tmux).
pub const TERM: &str = "xterm-256color";

/// The locale every test program sees: UTF-8 so box drawing renders, and
/// available on any Linux without generated locales.
pub const LANG: &str = "C.UTF-8";

/// The environment every hermetic command starts with: `PATH` and `HOME`
/// from the test process (to find tools), then fixed `TERM` and `LANG`.
pub fn base_env() -> Vec<(String, String)> {
    let inherit =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
    vec![
        (
            "PATH".into(),
            inherit("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ),
        ("HOME".into(), inherit("HOME", "/")),
        ("TERM".into(), TERM.into()),
        ("LANG".into(), LANG.into()),
    ]
}

/// A [`Command`] for `program` with only [`base_env`] set; add what the test
/// needs with `.env(…)`. Its stdin is `/dev/null`, so a test run from a
/// developer's terminal never lets a child read (or change the mode of) that
/// terminal; [`crate::Term`] replaces it with its own PTY.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().envs(base_env()).stdin(Stdio::null());
    // SAFETY: signal(2) is async-signal-safe, and it is all this hook calls.
    unsafe {
        cmd.pre_exec(|| {
            default_signal_dispositions();
            Ok(())
        });
    }
    cmd
}

/// Resets every catchable signal to its default action (std already clears
/// the signal mask and SIGPIPE in a spawned child).
fn default_signal_dispositions() {
    for sig in 1..32 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: installing SIG_DFL has no preconditions.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_env_is_only_the_base() {
        let cmd = command("true");
        let mut names: Vec<String> = cmd
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["HOME", "LANG", "PATH", "TERM"]);
    }

    #[test]
    fn command_starts_with_default_signal_dispositions_even_when_the_test_ignores_sigint() {
        // As if the test run had been started as a background job (`cargo test &`).
        // SAFETY: swapping a disposition; restored below. Nothing in this
        // process relies on SIGINT being caught.
        let previous = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
        let out = command("sh")
            .args(["-c", "grep SigIgn /proc/self/status"])
            .output();
        // SAFETY: as above.
        unsafe { libc::signal(libc::SIGINT, previous) };
        let out = out.unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        let mask = u64::from_str_radix(line.trim().trim_start_matches("SigIgn:").trim(), 16)
            .unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(mask & (1 << (libc::SIGINT - 1)), 0, "SigIgn {line}");
    }
}
