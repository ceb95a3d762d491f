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

use std::ffi::OsString;
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

/// Why a program cannot be run (the caller exits 127 with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The program name is empty.
    #[error("empty program name")]
    Empty,
    /// No such file (or not in `$PATH`).
    #[error("not found{}", if *.0 { " in PATH" } else { "" })]
    NotFound(bool),
    /// It exists but is not a regular file (a directory, a device…).
    #[error("not a regular file")]
    NotRegular,
    /// It is a regular file without execute permission for us.
    #[error("permission denied (not executable)")]
    NotExecutable,
}

/// Finds `program` the way `execvp` would: as is if it contains a `/`, else in
/// `$PATH`; it must be an executable regular file.
pub fn resolve(program: &str) -> Result<PathBuf, ResolveError> {
    let check = |p: &Path| -> Result<PathBuf, ResolveError> {
        let meta = std::fs::metadata(p).map_err(|_| ResolveError::NotFound(false))?;
        if !meta.is_file() {
            return Err(ResolveError::NotRegular);
        }
        if nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_err() {
            return Err(ResolveError::NotExecutable);
        }
        Ok(p.to_path_buf())
    };
    if program.is_empty() {
        return Err(ResolveError::Empty);
    }
    if program.contains('/') {
        return check(Path::new(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut last = ResolveError::NotFound(true);
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        match check(&candidate) {
            Ok(p) => return Ok(p),
            Err(ResolveError::NotFound(_)) => {}
            Err(e) => last = e,
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

/// The version cache file of this process's environment; see [`cache_path`].
pub fn cache_file() -> Option<PathBuf> {
    cache_path(
        std::env::var_os("PTY_RESIZE_NO_CACHE"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// The version cache file: `$XDG_CACHE_HOME/pty-resize/versions` (or
/// `~/.cache/…`); `None` when `PTY_RESIZE_NO_CACHE` is set (not empty, not
/// `0`) or no base directory is known. Pure, so every branch is tested.
pub fn cache_path(
    no_cache: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if no_cache.is_some_and(|v| !v.is_empty() && v != "0") {
        return None;
    }
    let base = xdg_cache_home
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            home.filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("pty-resize").join("versions"))
}

/// What `<program> --version` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// It printed a version.
    Version(Version),
    /// It ran but printed no `x.y.z` (treated as 0.8.0 behaviour).
    NoVersion,
    /// It gave no answer in time and was killed (treated as 0.8.0 behaviour).
    Timeout,
    /// It could not be run or read (treated as 0.8.0 behaviour, not cached).
    Failed(String),
}

impl Probe {
    /// The version, if one is known.
    pub fn version(&self) -> Option<Version> {
        match self {
            Self::Version(v) => Some(*v),
            _ => None,
        }
    }
}

/// Runs `<program> --version` (stdin /dev/null, output captured, in its own
/// session so it cannot touch the terminal and can be killed as a group),
/// waiting at most `timeout`.
pub fn query(program: &Path, timeout: Duration) -> Probe {
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
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Probe::Failed(e.to_string()),
    };
    let Some(mut stdout) = child.stdout.take() else {
        return Probe::Failed("no stdout".into());
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let r = stdout.read_to_string(&mut s).map(|_| s);
        let _ = tx.send(r);
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => {
            let _ = child.wait();
            match r {
                Ok(out) => parse(&out).map_or(Probe::NoVersion, Probe::Version),
                Err(e) => Probe::Failed(e.to_string()),
            }
        }
        Err(_) => {
            // Kill the whole session we created: a hung program and anything
            // it started; then reap it so nothing outlives the query.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            Probe::Timeout
        }
    }
}

/// Where a version answer came from, for the decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from the cache.
    Cache,
    /// `--version` was run.
    Query,
}

impl Source {
    /// The log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Query => "query",
        }
    }
}

/// The version of `program`, from `cache` when it holds an answer for this
/// exact binary, else by running it (bounded by `timeout`). Versions, "no
/// version" and timeouts are cached (a hung `--version` costs its timeout
/// once per binary, not once per session); spawn failures are not.
pub fn detect(program: &Path, cache: Option<&Path>, timeout: Duration) -> (Probe, Source) {
    let key = cache_key(program);
    if let (Some(key), Some(file)) = (&key, cache) {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Some(v) = cache_lookup(&text, key) {
                return (v.map_or(Probe::NoVersion, Probe::Version), Source::Cache);
            }
        }
    }
    let probe = query(program, timeout);
    if let (false, Some(key), Some(file)) = (matches!(probe, Probe::Failed(_)), &key, cache) {
        // A cache that cannot be written only costs the next session a query.
        let _ = write_cache(file, key, probe.version());
    }
    (probe, Source::Query)
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
        assert_eq!(
            resolve(f.to_str().unwrap()),
            Err(ResolveError::NotExecutable)
        );
        assert_eq!(
            resolve(dir.path().to_str().unwrap()),
            Err(ResolveError::NotRegular)
        );
        assert_eq!(resolve(""), Err(ResolveError::Empty));
        assert_eq!(
            resolve("/definitely/not/here"),
            Err(ResolveError::NotFound(false))
        );
        assert_eq!(
            ResolveError::NotFound(true).to_string(),
            "not found in PATH"
        );
    }

    /// A stub `smolvm` that counts its runs in `runs` and prints `answer`
    /// (or sleeps when `answer` is `None`).
    fn stub(dir: &Path, answer: Option<&str>) -> (PathBuf, PathBuf) {
        let runs = dir.join("runs");
        let prog = dir.join("smolvm");
        let body = match answer {
            Some(a) => format!("echo run >> {}; echo '{a}'", runs.display()),
            None => format!("echo run >> {}; exec sleep 30", runs.display()),
        };
        std::fs::write(&prog, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        (prog, runs)
    }

    fn runs(path: &Path) -> usize {
        std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
    }

    #[test]
    fn detect_queries_once_then_answers_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (prog, count) = stub(dir.path(), Some("smolvm 0.8.1"));
        let cache = dir.path().join("c/versions");
        let t = Duration::from_secs(5);
        assert_eq!(
            detect(&prog, Some(&cache), t),
            (Probe::Version((0, 8, 1)), Source::Query)
        );
        assert_eq!(
            detect(&prog, Some(&cache), t),
            (Probe::Version((0, 8, 1)), Source::Cache)
        );
        assert_eq!(runs(&count), 1, "the second answer came from the cache");
        // Without a cache every call runs the program.
        assert_eq!(
            detect(&prog, None, t),
            (Probe::Version((0, 8, 1)), Source::Query)
        );
        assert_eq!(runs(&count), 2);
    }

    #[test]
    fn a_hung_version_is_bounded_and_its_timeout_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let (prog, count) = stub(dir.path(), None);
        let cache = dir.path().join("versions");
        let started = std::time::Instant::now();
        let t = Duration::from_millis(300);
        assert_eq!(
            detect(&prog, Some(&cache), t),
            (Probe::Timeout, Source::Query)
        );
        assert!(started.elapsed() < Duration::from_secs(5), "bounded");
        assert_eq!(
            detect(&prog, Some(&cache), t),
            (Probe::NoVersion, Source::Cache)
        );
        assert_eq!(runs(&count), 1);
    }

    #[test]
    fn no_version_in_the_output_is_cached_as_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let (prog, _) = stub(dir.path(), Some("smolvm dev"));
        let cache = dir.path().join("versions");
        let t = Duration::from_secs(5);
        assert_eq!(detect(&prog, Some(&cache), t).0, Probe::NoVersion);
        let text = std::fs::read_to_string(&cache).unwrap();
        assert!(text.ends_with("\tunknown\n"), "{text:?}");
        assert_eq!(detect(&prog, Some(&cache), t).1, Source::Cache);
    }

    #[test]
    fn a_program_that_cannot_start_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("smolvm");
        // Executable, but its interpreter does not exist: spawn fails.
        std::fs::write(&prog, "#!/nonexistent/interpreter\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cache = dir.path().join("versions");
        let (p, s) = detect(&prog, Some(&cache), Duration::from_secs(5));
        assert!(matches!(p, Probe::Failed(_)), "{p:?}");
        assert_eq!(s, Source::Query);
        assert!(!cache.exists());
    }

    #[test]
    fn cache_path_rules() {
        let o = |s: &str| Some(OsString::from(s));
        let want = |p: &str| Some(PathBuf::from(p));
        assert_eq!(
            cache_path(None, o("/x"), o("/h")),
            want("/x/pty-resize/versions")
        );
        assert_eq!(
            cache_path(None, o(""), o("/h")),
            want("/h/.cache/pty-resize/versions")
        );
        assert_eq!(
            cache_path(None, None, o("/h")),
            want("/h/.cache/pty-resize/versions")
        );
        assert_eq!(cache_path(None, None, o("")), None);
        assert_eq!(cache_path(None, None, None), None);
        assert_eq!(cache_path(o("1"), o("/x"), o("/h")), None);
        assert_eq!(
            cache_path(o("0"), o("/x"), None),
            want("/x/pty-resize/versions")
        );
        assert_eq!(
            cache_path(o(""), o("/x"), None),
            want("/x/pty-resize/versions")
        );
    }

    #[test]
    fn probe_versions_and_source_names() {
        assert_eq!(Probe::Version((0, 8, 0)).version(), Some((0, 8, 0)));
        assert_eq!(Probe::Timeout.version(), None);
        assert_eq!(Probe::NoVersion.version(), None);
        assert_eq!(Source::Cache.as_str(), "cache");
        assert_eq!(Source::Query.as_str(), "query");
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
