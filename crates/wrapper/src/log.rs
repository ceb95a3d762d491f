//! The decision log: typed events written as logfmt, and a reader for tests.
//!
//! `t_ms=12.345 event=push id=1 size=100x30 transport=channel` — `t_ms` is
//! milliseconds since the wrapper started. Written to `--log FILE`, else a
//! non-empty `PTY_RESIZE_LOG`, else the default log ([`default_path`],
//! size-bounded); `--no-log` or an empty `PTY_RESIZE_LOG` turn it off (every
//! call is then a no-op). The events and
//! their fields are [`LogEvent`]; [`read`] parses a log back into [`Record`]s.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

pub use crate::log_event::LogEvent;

/// Formats one logfmt line (with its newline). Values containing spaces,
/// quotes, `=`, backslashes or control characters are quoted with Rust-style
/// escapes (which [`parse_line`] undoes).
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

/// Why `--log` cannot be used; the wrapper exits 1 with this, before the
/// command starts (a log that silently records nothing would mislead).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `open(2)` failed (missing directory, a directory, permissions…).
    #[error("cannot open log '{path}': {source}")]
    Open {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A FIFO nobody reads: opening it for writing would block forever.
    #[error("cannot open log '{0}': a FIFO with no reader")]
    FifoWithoutReader(String),
    /// A socket, block device or other file that is not a log.
    #[error("cannot open log '{0}': not a regular file, FIFO or character device")]
    WrongType(String),
    /// The first line could not be written (`/dev/full`, a full disk).
    #[error("cannot write log '{path}': {source}")]
    Write {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The decision log sink.
#[derive(Debug)]
pub struct Log {
    file: Option<File>,
    start: Instant,
}

fn is_fifo(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

impl Log {
    /// A log that writes nothing.
    pub fn disabled(start: Instant) -> Self {
        Self { file: None, start }
    }

    /// A log appending to `path` (created if missing), checked by writing its
    /// first line ([`LogEvent::Open`]).
    ///
    /// Never blocks: the file is opened `O_NONBLOCK`, so a FIFO without a
    /// reader fails at once (`ENXIO`) instead of hanging, and a FIFO whose
    /// reader stalls drops lines rather than stalling the session.
    pub fn open(path: &Path, start: Instant) -> Result<Self, OpenError> {
        let shown = path.display().to_string();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                // open(2) says ENXIO for a unix socket too: only a FIFO is
                // "without a reader".
                Some(libc::ENXIO) if is_fifo(path) => OpenError::FifoWithoutReader(shown.clone()),
                Some(libc::ENXIO) => OpenError::WrongType(shown.clone()),
                _ => OpenError::Open {
                    path: shown.clone(),
                    source: e,
                },
            })?;
        let kind = file
            .metadata()
            .map_err(|e| OpenError::Open {
                path: shown.clone(),
                source: e,
            })?
            .file_type();
        if !(kind.is_file() || kind.is_fifo() || kind.is_char_device()) {
            return Err(OpenError::WrongType(shown));
        }
        let mut log = Self {
            file: Some(file),
            start,
        };
        let line = log.line(&LogEvent::Open {
            pid: std::process::id(),
            wrapper: env!("CARGO_PKG_VERSION"),
        });
        if let Some(f) = log.file.as_mut() {
            f.write_all(line.as_bytes()).map_err(|e| OpenError::Write {
                path: shown,
                source: e,
            })?;
        }
        Ok(log)
    }

    /// Whether lines are written anywhere.
    pub fn enabled(&self) -> bool {
        self.file.is_some()
    }

    /// The raw fd of the log file, for the hand-off supervisor to inherit.
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.file.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Milliseconds since the wrapper started (the log's clock).
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn line(&self, ev: &LogEvent) -> String {
        format_line(self.start.elapsed(), ev.name(), &ev.fields())
    }

    /// Records one decision. Write errors are ignored: the log must never end
    /// or disturb the session, and there is nowhere else to report them.
    pub fn event(&mut self, ev: &LogEvent) {
        if self.file.is_some() {
            let line = self.line(ev);
            if let Some(f) = self.file.as_mut() {
                // One write per line on an O_APPEND fd: lines never interleave.
                let _ = f.write_all(line.as_bytes());
            }
        }
    }
}

/// The default log's file name, in [`default_dir`].
pub const DEFAULT_NAME: &str = "pty-resize.log";

/// Past this size the default log is moved to `pty-resize.log.1` (replacing
/// the previous one) when a wrapper opens it: at most ~2 MiB on disk.
pub const DEFAULT_MAX: u64 = 1024 * 1024;

/// Where the log goes when neither `--log` nor `PTY_RESIZE_LOG` says (pure):
/// `$XDG_STATE_HOME/pty-resize/`, else `~/.local/state/pty-resize/`; empty
/// and relative values are ignored (the XDG spec's rule: a relative one
/// would put the log wherever the session happened to start).
pub fn default_dir(
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<std::path::PathBuf> {
    let absolute =
        |v: Option<std::ffi::OsString>| v.map(std::path::PathBuf::from).filter(|p| p.is_absolute());
    absolute(xdg_state_home)
        .or_else(|| absolute(home).map(|h| h.join(".local/state")))
        .map(|base| base.join("pty-resize"))
}

/// The default log file of this process's environment, if a base is known.
pub fn default_path() -> Option<std::path::PathBuf> {
    default_dir(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
        .map(|d| d.join(DEFAULT_NAME))
}

/// Opens the default log at `path`: its folder is made (0700), a file past
/// `max` bytes is first moved to `<path>.1`. `None` if it cannot be used:
/// the default log is a convenience, never a reason to stop a session
/// (unlike an explicit `--log`).
pub fn open_default(path: &Path, max: u64, start: Instant) -> Option<Log> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .ok()?;
    let meta = std::fs::symlink_metadata(path).ok();
    if meta.as_ref().is_some_and(|m| !m.file_type().is_file()) {
        // Only a regular file is the default log (a FIFO or socket someone
        // put there is theirs; an explicit --log may name one).
        return None;
    }
    if meta.is_some_and(|m| m.len() > max) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        // rename is atomic: a wrapper still appending keeps writing into
        // the moved file, and the next one starts a fresh log.
        let _ = std::fs::rename(path, old);
    }
    Log::open(path, start).ok()
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Milliseconds since that wrapper started.
    pub t_ms: f64,
    /// The event name ([`LogEvent::name`]).
    pub event: String,
    /// The other fields, in order.
    pub fields: Vec<(String, String)>,
}

impl Record {
    /// The value of field `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a whole log file; lines that do not parse are skipped (a log shared
/// by a reader may end in a partial line).
pub fn read(path: &Path) -> std::io::Result<Vec<Record>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(parse_line)
        .collect())
}

/// Parses one logfmt line written by [`format_line`].
pub fn parse_line(line: &str) -> Option<Record> {
    let mut pairs = Vec::new();
    let mut rest = line.trim_end_matches('\n');
    while !rest.is_empty() {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        let eq = rest.find('=')?;
        let key = &rest[..eq];
        if key.is_empty() || key.contains(' ') {
            return None;
        }
        rest = &rest[eq + 1..];
        let (value, tail) = if rest.starts_with('"') {
            unquote(rest)?
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        };
        pairs.push((key.to_string(), value));
        rest = tail;
    }
    let mut it = pairs.into_iter();
    let (k0, t) = it.next()?;
    let (k1, event) = it.next()?;
    if k0 != "t_ms" || k1 != "event" {
        return None;
    }
    Some(Record {
        t_ms: t.parse().ok()?,
        event,
        fields: it.collect(),
    })
}

/// Undoes Rust's `{:?}` quoting of a string; returns the value and the rest.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                'u' => {
                    let mut hex = String::new();
                    chars.next().filter(|(_, c)| *c == '{')?;
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            break;
                        }
                        hex.push(c);
                    }
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
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
    fn lines_parse_back_to_what_was_written() {
        let tricky = "say \"hi\"\\ a=b\t\u{1b}[0m é";
        let line = format_line(
            Duration::from_micros(1_500),
            "push-failed",
            &[
                ("id", "3".into()),
                ("reason", tricky.into()),
                ("empty", String::new()),
            ],
        );
        let r = parse_line(&line).unwrap();
        assert_eq!(r.t_ms, 1.5);
        assert_eq!(r.event, "push-failed");
        assert_eq!(r.get("id"), Some("3"));
        assert_eq!(r.get("reason"), Some(tricky));
        assert_eq!(r.get("empty"), Some(""));
        assert_eq!(r.get("missing"), None);
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line("event=x t_ms=1"), None);
        assert_eq!(parse_line("t_ms=1 event=x k=\"unterminated"), None);
    }

    #[test]
    fn file_log_starts_with_open_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut l = Log::open(&p, Instant::now()).unwrap();
        assert!(l.enabled());
        l.event(&LogEvent::Exit {
            code: 0,
            status: "exit-0".into(),
        });
        let recs = read(&p).unwrap();
        let names: Vec<_> = recs.iter().map(|r| r.event.as_str()).collect();
        assert_eq!(names, ["open", "exit"]);
        assert_eq!(
            recs[0].get("pid"),
            Some(std::process::id().to_string().as_str())
        );
        assert_eq!(recs[1].get("code"), Some("0"));
        let mut d = Log::disabled(Instant::now());
        d.event(&LogEvent::Exit {
            code: 0,
            status: "exit-0".into(),
        });
        assert!(!d.enabled());
        assert_eq!(d.raw_fd(), None);
    }

    #[test]
    fn the_default_dir_follows_xdg_state_home_and_ignores_relative_values() {
        let o = |s: &str| Some(std::ffi::OsString::from(s));
        let p = |s: &str| Some(std::path::PathBuf::from(s));
        assert_eq!(default_dir(o("/s"), o("/h")), p("/s/pty-resize"));
        assert_eq!(default_dir(None, o("/h")), p("/h/.local/state/pty-resize"));
        assert_eq!(
            default_dir(o("rel"), o("/h")),
            p("/h/.local/state/pty-resize")
        );
        assert_eq!(default_dir(o(""), o("h")), None);
        assert_eq!(default_dir(None, None), None);
    }

    #[test]
    fn the_default_log_is_bounded_by_one_move_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/pty-resize").join(DEFAULT_NAME);
        let l = open_default(&path, 100, Instant::now()).unwrap();
        drop(l);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(&path, "x".repeat(101)).unwrap();
        let mut l = open_default(&path, 100, Instant::now()).unwrap();
        l.event(&LogEvent::Exit {
            code: 0,
            status: "exit-0".into(),
        });
        let old = dir.path().join("state/pty-resize/pty-resize.log.1");
        assert_eq!(std::fs::read_to_string(&old).unwrap().len(), 101);
        let names: Vec<_> = read(&path).unwrap().into_iter().map(|r| r.event).collect();
        assert_eq!(names, ["open", "exit"]);
        // Under the bound: appended, not moved.
        std::fs::remove_file(&old).unwrap();
        drop(open_default(&path, 100, Instant::now()).unwrap());
        assert!(!old.exists());
        assert_eq!(read(&path).unwrap().len(), 3);
        // Not a regular file, or a folder that cannot be made: no log, no error.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(open_default(&fifo, 100, Instant::now()).is_none());
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(open_default(&file.join("x/log"), 100, Instant::now()).is_none());
    }

    #[test]
    fn unusable_logs_fail_at_once_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let e = Log::open(dir.path(), Instant::now()).unwrap_err();
        assert!(matches!(e, OpenError::Open { .. }), "{e}");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = Log::open(&fifo, Instant::now()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot open log '{}': a FIFO with no reader",
                fifo.display()
            )
        );
        let sock = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = Log::open(&sock, Instant::now()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot open log '{}': not a regular file, FIFO or character device",
                sock.display()
            )
        );
        let e = Log::open(Path::new("/dev/full"), Instant::now()).unwrap_err();
        assert!(matches!(e, OpenError::Write { .. }), "{e}");
        assert!(Log::open(Path::new("/dev/null"), Instant::now()).is_ok());
    }
}
