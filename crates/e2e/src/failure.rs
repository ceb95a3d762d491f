//! Failure messages: what was expected, what the screen shows, and the tails
//! of the logs the test registered, so a failing test explains itself; and
//! the failure folder, `target/e2e-failures/<test>/`, with what a person
//! needs to see what happened (see [`Evidence`]).

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

    /// The registered files, as (name, path).
    pub(crate) fn files(&self) -> &[(String, PathBuf)] {
        &self.files
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

/// How many lines of each log the failure folder keeps.
const FOLDER_TAIL_LINES: usize = 2000;

/// What a failure folder holds besides the report and the logs.
pub(crate) struct Evidence {
    /// The session's asciicast v2 recording (`session.cast`).
    pub cast: String,
    /// The last settled screens and the failing one (`screens.txt`).
    pub screens: String,
    /// The failing screen as a picture (`screen.svg`).
    pub svg: String,
    /// The session's process tree (`processes.txt`).
    pub processes: String,
}

/// The files every failure folder holds (besides `logs/`), in the order
/// they are written.
pub const FOLDER_FILES: [&str; 5] = [
    "report.txt",
    "session.cast",
    "screens.txt",
    "screen.svg",
    "processes.txt",
];

/// `<target>/e2e-failures`: next to the profile folders, found from the
/// test executable's path the way [`crate::bins`] finds the binaries.
pub fn failures_root() -> PathBuf {
    let profile = crate::bins::profile_dir();
    profile.parent().unwrap_or(&profile).join("e2e-failures")
}

/// Keeps `[A-Za-z0-9_.-]`, so a name is one safe path component.
fn path_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The folder name of a failure in the running test: `<test file>.<test>`,
/// e.g. `scenario_resize.the_guest_follows_each_resize`. The test file (the
/// test executable's name without cargo's hash) keeps two files' tests of
/// the same name apart; the test is libtest's name for the test's thread
/// (`mod::test` becomes `mod__test`).
pub fn folder_name() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(|p| p.file_stem())
        .and_then(|s| s.to_str())
        .unwrap_or("e2e");
    // cargo names test executables `<name>-<16 hex digits>`.
    let bin = match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name
        }
        _ => stem,
    };
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => name.replace("::", "__"),
        _ => "unnamed-thread".to_string(),
    };
    format!("{}.{}", path_safe(bin), path_safe(&test))
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    out.push('\n');
    out
}

/// Writes the failure folder `dir`, replacing what an earlier failure of the
/// same test left there: `report.txt` (the panic message), `session.cast`,
/// `screens.txt`, `screen.svg`, `processes.txt`, and `logs/<name>` (the
/// last [`FOLDER_TAIL_LINES`] lines of each registered log).
pub(crate) fn write_folder(
    dir: &Path,
    report: &str,
    evidence: &Evidence,
    context: &Context,
) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::write(dir.join("report.txt"), report)?;
    std::fs::write(dir.join("session.cast"), &evidence.cast)?;
    std::fs::write(dir.join("screens.txt"), &evidence.screens)?;
    std::fs::write(dir.join("screen.svg"), &evidence.svg)?;
    std::fs::write(dir.join("processes.txt"), &evidence.processes)?;
    for (name, path) in context.files() {
        let text = match std::fs::read(path) {
            Ok(bytes) => tail(&String::from_utf8_lossy(&bytes), FOLDER_TAIL_LINES),
            Err(e) => format!("(cannot read {}: {e})\n", path.display()),
        };
        std::fs::write(dir.join("logs").join(path_safe(name)), text)?;
    }
    Ok(())
}

/// Writes the running test's failure folder and returns the panic message:
/// `report` with, as its second line, where the folder is (or why it could
/// not be written; the failure itself must still be reported).
pub(crate) fn report_with_folder(report: &str, evidence: &Evidence, context: &Context) -> String {
    let dir = failures_root().join(folder_name());
    let line = match write_folder(&dir, report, evidence, context) {
        Ok(()) => format!(
            "failure folder: {} (replay: asciinema play {})",
            dir.display(),
            dir.join("session.cast").display()
        ),
        Err(e) => format!("failure folder {} not written: {e}", dir.display()),
    };
    match report.split_once('\n') {
        Some((first, rest)) => format!("{first}\n{line}\n{rest}"),
        None => format!("{report}\n{line}"),
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
    fn folder_names_are_one_safe_component() {
        assert_eq!(path_safe("a::b c/d"), "a__b_c_d");
        let name = folder_name();
        // Unit tests run in `e2e-<hash>`, on a thread named after the test.
        assert_eq!(
            name,
            "e2e.failure__tests__folder_names_are_one_safe_component"
        );
    }

    #[test]
    fn the_folder_replaces_an_earlier_one_and_keeps_log_tails() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("t");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("stale"), "old").unwrap();
        let log = dir.path().join("wrapper.log");
        let text: String = (1..=2500).map(|n| format!("line {n}\n")).collect();
        std::fs::write(&log, text).unwrap();
        let mut context = Context::default();
        context.add("pty-resize.log", &log);
        let evidence = Evidence {
            cast: "{}\n".into(),
            screens: "s\n".into(),
            svg: "<svg/>".into(),
            processes: "p\n".into(),
        };
        write_folder(&folder, "report", &evidence, &context).unwrap();
        assert!(!folder.join("stale").exists());
        for file in FOLDER_FILES {
            assert!(folder.join(file).is_file(), "{file}");
        }
        let tail = std::fs::read_to_string(folder.join("logs/pty-resize.log")).unwrap();
        assert!(tail.starts_with("line 501\n") && tail.ends_with("line 2500\n"));
    }

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
