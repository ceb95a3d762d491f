//! The machine's agent socket: where it is, and one `vm_exec` on it.
//!
//! smolvm 0.8.0 keeps each machine in `<cache>/smolvm/vms/<hex of the first 8
//! bytes of sha256(name)>/` with `name` (the exact name) and `agent.sock`
//! (`src/agent/manager.rs` 180-256, 367), `<cache>` being the `dirs` crate's
//! cache dir. The wrapper finds it the same way, and checks the folder's
//! `name` file, so a hash collision or a stale folder is never talked to.
//!
//! Rules from the agent's source (`crates/smolvm-agent/src/main.rs` at
//! v0.8.0): one short connection per request (the agent serves 8 at once,
//! 1431/1502; held connections block everyone); never half-close (a
//! zero-byte `MSG_PEEK` sees the peer gone and kills the running command,
//! 129, no answer: `process.rs` 56-83, `main.rs` 4484-4502), so the stream
//! is only ever dropped whole, after the answer or at the deadline.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::agent_wire::{self, Answer, Garbage};
use crate::state::AgentOutcome;

/// `<hex of sha256(name)[..8]>`: the machine folder's name (pure).
pub fn dir_key(name: &str) -> String {
    Sha256::digest(name.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// smolvm's cache dir, as the `dirs` crate computes it (pure): on Linux
/// `$XDG_CACHE_HOME` if absolute, else `$HOME/.cache`; on macOS
/// `$HOME/Library/Caches` (`XDG_CACHE_HOME` ignored). Written out rather
/// than pulled in: these three lines are all of `dirs::cache_dir` we need.
pub fn cache_dir_from(xdg_cache_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    let home = home.filter(|h| h.is_absolute());
    if cfg!(target_os = "macos") {
        return home.map(|h| h.join("Library/Caches"));
    }
    xdg_cache_home
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".cache")))
}

/// The machine folder of `name` under `cache` (pure).
pub fn machine_dir(cache: &Path, name: &str) -> PathBuf {
    cache.join("smolvm/vms").join(dir_key(name))
}

/// Why the agent transport cannot be used (logged once, then the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// No cache dir (neither `XDG_CACHE_HOME` nor `HOME`).
    NoCacheDir,
    /// The folder's `name` file is missing or names another machine.
    NameMismatch(PathBuf),
    /// No socket file.
    NoSocket(PathBuf),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoCacheDir => f.write_str("no cache dir (XDG_CACHE_HOME and HOME unset)"),
            Self::NameMismatch(p) => {
                write!(f, "{} is missing or names another machine", p.display())
            }
            Self::NoSocket(p) => write!(f, "no socket at {}", p.display()),
        }
    }
}

/// Overrides where the agent socket is (tests, and a smolvm whose state
/// lives elsewhere); the path is used as is, without the `name` check.
pub const SOCKET_ENV: &str = "PTY_RESIZE_AGENT_SOCKET";

/// The agent socket of machine `name` in this process's environment.
pub fn find_socket(name: &str) -> Result<PathBuf, Unusable> {
    if let Some(path) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.exists() {
            Ok(path)
        } else {
            Err(Unusable::NoSocket(path))
        };
    }
    find_socket_in(
        cache_dir_from(
            std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        ),
        name,
    )
}

/// [`find_socket`] under an explicit cache dir.
pub fn find_socket_in(cache: Option<PathBuf>, name: &str) -> Result<PathBuf, Unusable> {
    let cache = cache.ok_or(Unusable::NoCacheDir)?;
    let dir = machine_dir(&cache, name);
    let name_file = dir.join("name");
    match std::fs::read(&name_file) {
        Ok(found) if found == name.as_bytes() => {}
        _ => return Err(Unusable::NameMismatch(name_file)),
    }
    let sock = dir.join("agent.sock");
    if !sock.exists() {
        return Err(Unusable::NoSocket(sock));
    }
    Ok(sock)
}

/// How one `vm_exec` failed at the transport level.
#[derive(Debug)]
pub enum Failure {
    /// Connecting, writing or reading failed (refused, reset, deadline…).
    Io(std::io::Error),
    /// The answer is not 0.8.0's protocol.
    Garbage(Garbage),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "socket: {e}"),
            Self::Garbage(g) => write!(f, "not the 0.8.0 agent protocol: {g}"),
        }
    }
}

/// Runs `command` by `vm_exec` on the agent at `socket`: one connection,
/// one request with `timeout_ms`, one answer read by `deadline`, then the
/// whole connection is dropped (never half-closed).
pub fn vm_exec(
    socket: &Path,
    command: &[String],
    timeout_ms: u64,
    deadline: Duration,
) -> Result<Answer, Failure> {
    let body = round_trip(
        socket,
        &agent_wire::vm_exec_frame(command, timeout_ms),
        deadline,
    )?;
    agent_wire::parse_answer(&body).map_err(Failure::Garbage)
}

/// What a `vm_exec` of [`crate::script::find_and_size`] means for the
/// state machine (pure): exit 0 applied, [`crate::script::NOT_YET`] not yet,
/// anything else (another code, an `error` answer, a transport failure)
/// broken, with the reason the log will show.
pub fn outcome_of(result: Result<Answer, Failure>) -> AgentOutcome {
    match result {
        Ok(Answer::Completed { exit_code: 0, .. }) => AgentOutcome::Applied,
        Ok(Answer::Completed { exit_code, .. }) if exit_code == crate::script::NOT_YET => {
            AgentOutcome::NotYet
        }
        Ok(Answer::Completed {
            exit_code, stderr, ..
        }) => {
            let text = String::from_utf8_lossy(&stderr);
            let line = text.lines().map(str::trim).find(|l| !l.is_empty());
            AgentOutcome::Broken(match line {
                Some(l) => format!("vm_exec exit {exit_code}: {l}"),
                None => format!("vm_exec exit {exit_code}"),
            })
        }
        Ok(Answer::Error { message, code }) => AgentOutcome::Broken(format!(
            "vm_exec error {}: {message}",
            code.as_deref().unwrap_or("-")
        )),
        Err(f) => AgentOutcome::Broken(f.to_string()),
    }
}

/// Asks the agent at `socket` for `ping` (smolvm's liveness test: a
/// running machine answers `pong`); returns the protocol version. One
/// connection, dropped whole after the answer or at `deadline`. Used by
/// `pty-resize doctor`.
pub fn ping(socket: &Path, deadline: Duration) -> Result<u64, Failure> {
    let body = round_trip(socket, &agent_wire::ping_frame(), deadline)?;
    agent_wire::parse_pong(&body).map_err(Failure::Garbage)
}

/// One request on its own connection: `frame` written, one answer frame's
/// body read, everything by `deadline`; the connection is then dropped
/// whole (never half-closed: the agent would take a half-closed client
/// of a running `vm_exec` as gone).
fn round_trip(socket: &Path, frame: &[u8], deadline: Duration) -> Result<Vec<u8>, Failure> {
    let end = Instant::now() + deadline;
    let mut stream = UnixStream::connect(socket).map_err(Failure::Io)?;
    let left = |end: Instant| {
        end.checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Failure::Io(std::io::ErrorKind::TimedOut.into()))
    };
    stream
        .set_write_timeout(Some(left(end)?))
        .map_err(Failure::Io)?;
    stream.write_all(frame).map_err(Failure::Io)?;
    let mut header = [0u8; 4];
    read_exact_by(&mut stream, &mut header, end, &left)?;
    let len = agent_wire::frame_len(header).map_err(Failure::Garbage)?;
    let mut body = vec![0u8; len];
    read_exact_by(&mut stream, &mut body, end, &left)?;
    Ok(body)
}

/// `read_exact` that gives up at `end` (each read's timeout is what is left).
fn read_exact_by(
    stream: &mut UnixStream,
    buf: &mut [u8],
    end: Instant,
    left: &dyn Fn(Instant) -> Result<Duration, Failure>,
) -> Result<(), Failure> {
    let mut got = 0;
    while got < buf.len() {
        stream
            .set_read_timeout(Some(left(end)?))
            .map_err(Failure::Io)?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(Failure::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before a whole answer",
                )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_folder_key_is_smolvms() {
        // sha256("default") = 37a8eec1ce19687d…; the fake uses the same rule.
        assert_eq!(dir_key("default"), "37a8eec1ce19687d");
        assert_eq!(dir_key("default").len(), 16);
        assert_ne!(dir_key("a"), dir_key("b"));
    }

    #[test]
    fn the_cache_dir_follows_dirs() {
        let p = |s: &str| Some(PathBuf::from(s));
        if cfg!(target_os = "macos") {
            assert_eq!(cache_dir_from(p("/x"), p("/h")), p("/h/Library/Caches"));
        } else {
            assert_eq!(cache_dir_from(p("/x"), p("/h")), p("/x"));
            // A relative XDG_CACHE_HOME is ignored, as `dirs` does.
            assert_eq!(cache_dir_from(p("rel"), p("/h")), p("/h/.cache"));
            assert_eq!(cache_dir_from(None, p("/h")), p("/h/.cache"));
        }
        assert_eq!(cache_dir_from(None, None), None);
    }

    /// A one-shot agent: reads one frame, answers `answer` (raw bytes).
    fn agent(answer: Vec<u8>) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).unwrap();
            s.write_all(&answer).unwrap();
            // Wait for the client's close: it must not half-close first.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            body
        });
        (dir, path, h)
    }

    fn framed(body: &str) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body.as_bytes());
        v
    }

    #[test]
    fn one_request_one_answer_on_a_real_socket() {
        let (_d, path, h) = agent(framed(
            r#"{"status":"completed","exit_code":0,"stdout":"b2s=","stderr":""}"#,
        ));
        let cmd = vec!["true".to_string()];
        let a = vm_exec(&path, &cmd, 1500, Duration::from_secs(5)).unwrap();
        assert_eq!(
            a,
            Answer::Completed {
                exit_code: 0,
                stdout: b"ok".to_vec(),
                stderr: vec![]
            }
        );
        let sent: serde_json::Value = serde_json::from_slice(&h.join().unwrap()).unwrap();
        assert_eq!(sent["method"], "vm_exec");
        assert_eq!(sent["timeout_ms"], 1500);
    }

    #[test]
    fn garbage_silence_and_no_socket_are_failures() {
        let (_d, path, _h) = agent(b"HTTP/1.1 200 OK\r\n\r\n".to_vec());
        let e = vm_exec(&path, &["x".into()], 100, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, Failure::Garbage(_)), "{e}");
        let (_d, path, _h) = agent(framed("[1,2]"));
        let e = vm_exec(&path, &["x".into()], 100, Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("no `status`"), "{e}");
        // Silence: the deadline ends the wait.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let t = Instant::now();
        let e = vm_exec(&path, &["x".into()], 100, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, Failure::Io(_)), "{e}");
        assert!(t.elapsed() < Duration::from_secs(3));
        let e = vm_exec(
            &dir.path().join("none"),
            &["x".into()],
            100,
            Duration::from_secs(1),
        );
        assert!(matches!(e, Err(Failure::Io(_))));
    }

    #[test]
    fn outcomes_are_read_from_the_exit_code() {
        let done = |code: i32, err: &str| {
            outcome_of(Ok(Answer::Completed {
                exit_code: code,
                stdout: vec![],
                stderr: err.as_bytes().to_vec(),
            }))
        };
        assert_eq!(done(0, ""), AgentOutcome::Applied);
        assert_eq!(done(crate::script::NOT_YET, ""), AgentOutcome::NotYet);
        assert_eq!(
            done(11, "\nstty: /proc/9/fd/0: I/O error\n"),
            AgentOutcome::Broken("vm_exec exit 11: stty: /proc/9/fd/0: I/O error".into())
        );
        assert_eq!(
            done(124, ""),
            AgentOutcome::Broken("vm_exec exit 124".into())
        );
        assert_eq!(
            outcome_of(Ok(Answer::Error {
                message: "spawn".into(),
                code: Some("SPAWN_FAILED".into())
            })),
            AgentOutcome::Broken("vm_exec error SPAWN_FAILED: spawn".into())
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            outcome_of(Err(Failure::Io(refused))),
            AgentOutcome::Broken(r) if r.starts_with("socket: ")
        ));
    }

    #[test]
    fn the_socket_is_found_only_under_the_right_name() {
        let home = tempfile::tempdir().unwrap();
        let cache = home.path().join("cache");
        let name = "a'$(x);b";
        let dir = machine_dir(&cache, name);
        std::fs::create_dir_all(&dir).unwrap();
        let find = || find_socket_in(Some(cache.clone()), name);
        assert!(
            matches!(find(), Err(Unusable::NameMismatch(_))),
            "no name file"
        );
        std::fs::write(dir.join("name"), "other").unwrap();
        assert!(
            matches!(find(), Err(Unusable::NameMismatch(_))),
            "another name"
        );
        std::fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        assert!(
            matches!(find(), Err(Unusable::NameMismatch(_))),
            "exact bytes only"
        );
        std::fs::write(dir.join("name"), name).unwrap();
        assert!(matches!(find(), Err(Unusable::NoSocket(_))));
        let _l = UnixListener::bind(dir.join("agent.sock")).unwrap();
        assert_eq!(find(), Ok(dir.join("agent.sock")));
        assert_eq!(find_socket_in(None, name), Err(Unusable::NoCacheDir));
    }
}
