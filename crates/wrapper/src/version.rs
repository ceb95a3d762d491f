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
    resolve_in(program, std::env::var_os("PATH"))
}

/// [`resolve`] with an explicit `PATH` (`None`: the `execvp` default).
pub fn resolve_in(program: &str, path: Option<OsString>) -> Result<PathBuf, ResolveError> {
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
    let path = path.unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
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
    // SAFETY: setsid and prctl are async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            // Its own session keeps the terminal's signals away from it, so
            // a wrapper killed mid-probe must take it along (Linux; elsewhere
            // the probe's own end, or its timeout's kill, bounds it).
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
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
mod tests;
