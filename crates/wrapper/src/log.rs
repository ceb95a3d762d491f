//! The decision log: one logfmt line per decision, never on the terminal.
//!
//! `t_ms=12.345 event=push size=100x30 mode=channel` — `t_ms` is milliseconds
//! since the wrapper started. Enabled by `--log FILE` or `PTY_RESIZE_LOG=FILE`;
//! otherwise every call is a no-op.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Formats one logfmt line (with its newline). Values containing spaces,
/// quotes, `=` or control characters are quoted with Rust-style escapes.
pub fn format_line(t: Duration, event: &str, fields: &[(&str, String)]) -> String {
    let mut line = format!("t_ms={:.3} event={}", t.as_secs_f64() * 1000.0, event);
    for (k, v) in fields {
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(&quote(v));
    }
    line.push('\n');
    line
}

fn quote(v: &str) -> String {
    let plain = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c == '\\' || c.is_control());
    if plain {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}

/// The decision log sink.
#[derive(Debug)]
pub struct Log {
    file: Option<File>,
    start: Instant,
}

impl Log {
    /// A log that writes nothing.
    pub fn disabled(start: Instant) -> Self {
        Self { file: None, start }
    }

    /// A log appending to `path` (created if missing).
    pub fn open(path: &Path, start: Instant) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Some(file),
            start,
        })
    }

    /// Whether lines are written anywhere.
    pub fn enabled(&self) -> bool {
        self.file.is_some()
    }

    /// Records one decision. Write errors are ignored: the log must never end
    /// or disturb the session, and there is nowhere else to report them.
    pub fn event(&mut self, event: &str, fields: &[(&str, String)]) {
        if let Some(f) = self.file.as_mut() {
            let line = format_line(self.start.elapsed(), event, fields);
            // One write per line on an O_APPEND fd: lines never interleave.
            let _ = f.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_lines() {
        assert_eq!(
            format_line(
                Duration::from_micros(12_345),
                "push",
                &[("size", "100x30".into()), ("mode", "channel".into())]
            ),
            "t_ms=12.345 event=push size=100x30 mode=channel\n"
        );
        assert_eq!(
            format_line(
                Duration::ZERO,
                "push-failed",
                &[
                    ("reason", "Error: vm not found".into()),
                    ("x", String::new())
                ]
            ),
            "t_ms=0.000 event=push-failed reason=\"Error: vm not found\" x=\"\"\n"
        );
        assert_eq!(
            format_line(Duration::ZERO, "e", &[("k", "a=b\n".into())]),
            "t_ms=0.000 event=e k=\"a=b\\n\"\n"
        );
    }

    #[test]
    fn file_log_appends_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut l = Log::open(&p, Instant::now()).unwrap();
        l.event("start", &[]);
        l.event("exit", &[("code", "0".into())]);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with("event=exit code=0"), "{text}");
        let mut d = Log::disabled(Instant::now());
        d.event("x", &[]);
        assert!(!d.enabled());
    }
}
