//! Commands with an environment built from scratch.
//!
//! A test inherits whatever the developer's shell or CI has: `TMUX` (which
//! changes the fake's shared-stdin behaviour), `COLUMNS`/`LINES` (which some
//! programs trust over the PTY), `COLORTERM`, a locale. None of it may leak
//! into what a test runs, so every command starts from an empty environment.

use std::ffi::OsStr;
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
    cmd
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
}
