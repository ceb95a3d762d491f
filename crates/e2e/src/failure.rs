//! Failure messages: what was expected, what the screen shows, and the tails
//! of the logs the test registered, so a failing test explains itself.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Files whose tails are printed when a wait fails (e.g. `exec.log`, the
/// wrapper's log), in the order they were registered.
#[derive(Debug, Default, Clone)]
pub(crate) struct Context {
    files: Vec<(String, PathBuf)>,
}

/// How many lines of each context file a failure shows.
const TAIL_LINES: usize = 20;

/// How many of the last raw bytes a failure shows.
pub(crate) const RAW_TAIL: usize = 600;

impl Context {
    /// Registers a file to show on failure under `name`.
    pub(crate) fn add(&mut self, name: &str, path: &Path) {
        self.files.push((name.to_string(), path.to_path_buf()));
    }

    /// The tails of every registered file.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for (name, path) in &self.files {
            let _ = writeln!(
                out,
                "--- {name} ({}), last {TAIL_LINES} lines ---",
                path.display()
            );
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let lines: Vec<&str> = text.lines().collect();
                    for line in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
                        let _ = writeln!(out, "{line}");
                    }
                }
                Err(e) => {
                    let _ = writeln!(out, "(cannot read: {e})");
                }
            }
        }
        out
    }
}

/// The full message of a wait that timed out.
pub(crate) struct Report<'a> {
    /// What was being waited for.
    pub what: &'a str,
    /// How long it was waited for.
    pub deadline: Duration,
    /// What ran and how it is doing (`running`, `exit code 3`, …).
    pub program: String,
    /// The current screen, in snapshot format.
    pub screen: String,
    /// The last bytes the program wrote, if known.
    pub raw_tail: Option<&'a [u8]>,
    /// Registered log files.
    pub context: &'a Context,
}

impl Report<'_> {
    /// The message, ready for `panic!`.
    pub(crate) fn render(&self) -> String {
        let mut out = format!(
            "e2e: gave up after {:?} waiting for: {}\nprogram: {}\n--- screen ---\n{}",
            self.deadline, self.what, self.program, self.screen
        );
        if let Some(raw) = self.raw_tail {
            let _ = writeln!(
                out,
                "--- last {} bytes written, escaped ---\n{}",
                raw.len(),
                escape(raw)
            );
        }
        out.push_str(&self.context.render());
        out
    }
}

/// Bytes as printable text: control characters and invalid UTF-8 escaped,
/// newlines kept so the text stays readable.
pub(crate) fn escape(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split('\n')
        .map(|line| line.escape_debug().to_string())
        .collect::<Vec<_>>()
        .join("\\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_the_condition_screen_bytes_and_log_tails() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("exec.log");
        let text: String = (1..=30).map(|n| format!("line {n}\n")).collect();
        std::fs::write(&log, text).unwrap();
        let mut context = Context::default();
        context.add("exec.log", &log);
        context.add("missing", &dir.path().join("nope"));
        let message = Report {
            what: "\"ready\" on screen",
            deadline: Duration::from_secs(2),
            program: "sh (running)".into(),
            screen: "size 2x1 …\n|ab|\n".into(),
            raw_tail: Some(b"\x1b[Hab"),
            context: &context,
        }
        .render();
        assert!(
            message.contains("waiting for: \"ready\" on screen"),
            "{message}"
        );
        assert!(message.contains("|ab|"), "{message}");
        assert!(message.contains("\\u{1b}[Hab"), "{message}");
        assert!(
            message.contains("line 30") && !message.contains("line 10\n"),
            "{message}"
        );
        assert!(
            message.contains("--- missing") && message.contains("cannot read"),
            "{message}"
        );
    }
}
