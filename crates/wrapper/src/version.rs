//! Does the smolvm in use forward the window size natively (0.8.1+)?
//!
//! The answer comes from `<smolvm> --version`. Spawning it costs a process
//! start on every session, so the parsed answer is cached in
//! `$XDG_CACHE_HOME/pty-resize/versions` (default `~/.cache/pty-resize/`),
//! keyed by the program's resolved path, device, inode, size and mtime: an
//! upgrade in place changes at least one of those, so a stale answer is never
//! used for a different binary. `PTY_RESIZE_NO_CACHE=1` disables the cache
//! (the fake smolvm's version depends on an environment variable, not on the
//! binary, so tests that vary it use their own `XDG_CACHE_HOME` or this).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `major.minor.patch` version.
pub type Version = (u64, u64, u64);

/// The first smolvm release that forwards the window size itself.
pub const NATIVE_SINCE: Version = (0, 8, 1);

/// How long `smolvm --version` may take before the answer counts as unknown.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(2);

/// Parses `smolvm 0.8.0` (or any output whose first `x.y.z` word is the version).
/// Pre-release and build suffixes (`0.8.1-rc.1`, `0.8.1+abc`) are ignored.
pub fn parse(output: &str) -> Option<Version> {
    output.split_whitespace().find_map(|word| {
        let word = word.trim_start_matches('v');
        let core = word.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some((major, minor, patch))
    })
}

/// Whether `version` forwards the window size natively.
pub fn is_native(version: Version) -> bool {
    version >= NATIVE_SINCE
}

/// Finds `program` the way `execvp` would: as is if it contains a `/`, else in `$PATH`.
/// Returns the path and whether it is an executable regular file.
pub fn resolve(program: &str) -> Result<PathBuf, String> {
    let check = |p: &Path| -> Result<PathBuf, String> {
        let meta = std::fs::metadata(p).map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_err() {
            return Err("permission denied (not executable)".into());
        }
        Ok(p.to_path_buf())
    };
    if program.is_empty() {
        return Err("empty program name".into());
    }
    if program.contains('/') {
        return check(Path::new(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut last = "not found in PATH".to_string();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        match check(&candidate) {
            Ok(p) => return Ok(p),
            Err(e) if candidate.exists() => last = e,
            Err(_) => {}
        }
    }
    Err(last)
}

/// The cache key of a program: path, device, inode, size, mtime (ns).
pub fn cache_key(path: &Path) -> Option<String> {
    let canonical = std::fs::canonicalize(path).ok()?;
    let m = std::fs::metadata(&canonical).ok()?;
    Some(format!(
        "{} {} {} {}.{:09} {}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        canonical.display()
    ))
}

/// Looks `key` up in the cache file's text (`<key>\t<version or "unknown">` lines).
pub fn cache_lookup(text: &str, key: &str) -> Option<Option<Version>> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('\t')?;
        (k == key).then(|| parse(v))
    })
}

/// The cache file's new text with `key` set to `version` (at most 32 entries, newest last).
pub fn cache_update(text: &str, key: &str, version: Option<Version>) -> String {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split_once('\t').is_some_and(|(k, _)| k != key))
        .collect();
    let skip = lines.len().saturating_sub(31);
    lines.drain(..skip);
    let value = version.map_or_else(|| "unknown".to_string(), |(a, b, c)| format!("{a}.{b}.{c}"));
    let mut out = String::new();
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!("{key}\t{value}\n"));
    out
}

fn cache_file() -> Option<PathBuf> {
    if std::env::var_os("PTY_RESIZE_NO_CACHE").is_some_and(|v| !v.is_empty() && v != "0") {
        return None;
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("pty-resize").join("versions"))
}

/// Runs `<program> --version` (stdin /dev/null, output captured, in its own
/// session so it cannot touch the terminal) with a timeout.
pub fn query(program: &Path, timeout: Duration) -> Result<String, String> {
    let mut cmd = Command::new(program);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let r = stdout.read_to_string(&mut s).map(|_| s);
        let _ = tx.send(r);
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => {
            let _ = child.wait();
            r.map_err(|e| e.to_string())
        }
        Err(_) => {
            // SAFETY-free: kill the whole session we created.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            Err(format!("no answer within {} ms", timeout.as_millis()))
        }
    }
}

/// Where a version answer came from, for the decision log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Read from the cache.
    Cache,
    /// `--version` was run.
    Query,
}

/// The version of `program` (`Ok(None)`: it ran but printed no version),
/// using the cache when possible.
pub fn detect(program: &Path) -> (Result<Option<Version>, String>, Source) {
    let key = cache_key(program);
    let file = cache_file();
    if let (Some(key), Some(file)) = (&key, &file) {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Some(v) = cache_lookup(&text, key) {
                return (Ok(v), Source::Cache);
            }
        }
    }
    let answer = query(program, VERSION_TIMEOUT).map(|out| parse(&out));
    if let (Ok(v), Some(key), Some(file)) = (&answer, &key, &file) {
        // A cache that cannot be written only costs the next session a query.
        let _ = write_cache(file, key, *v);
    }
    (answer, Source::Query)
}

fn write_cache(file: &Path, key: &str, version: Option<Version>) -> std::io::Result<()> {
    let dir = file
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent"))?;
    std::fs::create_dir_all(dir)?;
    let old = std::fs::read_to_string(file).unwrap_or_default();
    let tmp = dir.join(format!(".versions.{}", std::process::id()));
    std::fs::write(&tmp, cache_update(&old, key, version))?;
    // rename is atomic: concurrent sessions never read a half-written cache.
    std::fs::rename(tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_smolvm_style_output() {
        assert_eq!(parse("smolvm 0.8.0\n"), Some((0, 8, 0)));
        assert_eq!(parse("smolvm 0.8.1"), Some((0, 8, 1)));
        assert_eq!(parse("smolvm v1.4.0 (abc123)"), Some((1, 4, 0)));
        assert_eq!(parse("smolvm 0.8.1-rc.1"), Some((0, 8, 1)));
        assert_eq!(parse("smolvm 0.10.0+build"), Some((0, 10, 0)));
        assert_eq!(parse("smolvm"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("version 1.2"), None);
        assert_eq!(parse("1.2.3.4"), None);
    }

    #[test]
    fn native_from_0_8_1() {
        assert!(!is_native((0, 8, 0)));
        assert!(!is_native((0, 7, 99)));
        assert!(is_native((0, 8, 1)));
        assert!(is_native((0, 9, 0)));
        assert!(is_native((1, 0, 0)));
    }

    #[test]
    fn cache_roundtrip_replaces_and_bounds() {
        let t = cache_update("", "k1", Some((0, 8, 0)));
        assert_eq!(cache_lookup(&t, "k1"), Some(Some((0, 8, 0))));
        assert_eq!(cache_lookup(&t, "k2"), None);
        let t = cache_update(&t, "k2", None);
        assert_eq!(cache_lookup(&t, "k2"), Some(None));
        let t = cache_update(&t, "k1", Some((0, 8, 1)));
        assert_eq!(cache_lookup(&t, "k1"), Some(Some((0, 8, 1))));
        assert_eq!(t.lines().count(), 2);
        let mut t = t;
        for i in 0..100 {
            t = cache_update(&t, &format!("x{i}"), None);
        }
        assert_eq!(t.lines().count(), 32);
        assert!(cache_lookup(&t, "x99").is_some());
    }

    #[test]
    fn resolve_reports_missing_and_non_executable() {
        assert!(resolve("sh").is_ok());
        assert!(resolve("/definitely/not/here").is_err());
        assert!(resolve("no-such-program-pty-resize").is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("plain");
        std::fs::write(&f, "x").unwrap();
        // Root may execute-check differently only for files with an x bit; this has none.
        let e = resolve(f.to_str().unwrap()).unwrap_err();
        assert!(e.contains("not executable"), "{e}");
        assert!(resolve(dir.path().to_str().unwrap()).is_err());
    }

    #[test]
    fn cache_key_changes_with_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("prog");
        std::fs::write(&f, "a").unwrap();
        let k1 = cache_key(&f).unwrap();
        std::fs::write(&f, "ab").unwrap();
        let k2 = cache_key(&f).unwrap();
        assert_ne!(k1, k2);
    }
}
