//! The exec log: one JSON line per `machine exec`, the harness's assertion surface.
//!
//! Every exec appends exactly one line to `<machine dir>/exec.log`. Lines from
//! concurrent execs never interleave: each is written with one `write(2)` on an
//! `O_APPEND` descriptor while holding an exclusive `flock`.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Which fault of smolvm 0.8.0 ended (or changed) an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Fault 2: the exec's `config.json` was torn by an overlapping bring-up.
    ConfigRace,
    /// Fault 3: a later exec shared this session's terminal as stdin.
    SharedStdin,
    /// `--timeout` expired.
    Timeout,
}

/// One exec, as recorded in `exec.log`. See `docs/contracts.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecRecord {
    /// Host pid of the `fake-smolvm machine exec` process.
    pub pid: u32,
    /// The guest command (what followed `--`).
    pub argv: Vec<String>,
    /// Whether `-t/--tty` was given.
    pub tty: bool,
    /// Whether the exec took the interactive path (`-i` or `-t`).
    pub interactive: bool,
    /// How stdin was connected: `tty:<path>`, `devnull`, `pipe`, `file`, `closed` or `other`.
    pub stdin: String,
    /// Whether the exec's environment had `TMUX`.
    pub tmux: bool,
    /// Monotonic ms when the exec process started.
    pub start_ms: f64,
    /// Monotonic ms when the guest began the exec's bring-up (`None`: never reached the guest).
    pub bringup_start_ms: Option<f64>,
    /// Monotonic ms when the bring-up ended and the guest process started.
    pub bringup_end_ms: Option<f64>,
    /// Monotonic ms when the exec process finished.
    pub end_ms: f64,
    /// The code the exec process exited with.
    pub exit_code: i32,
    /// The signal that killed the guest process, if one did.
    pub signal: Option<i32>,
    /// The fault that fired for this exec, if any.
    pub fault: Option<Fault>,
    /// The error message printed (without the `Error: ` prefix), if any.
    pub error: Option<String>,
}

impl ExecRecord {
    /// Whether this exec's bring-up window overlaps `other`'s (both must have one).
    pub fn bringup_overlaps(&self, other: &ExecRecord) -> bool {
        match (
            self.bringup_start_ms,
            self.bringup_end_ms,
            other.bringup_start_ms,
            other.bringup_end_ms,
        ) {
            (Some(a0), Some(a1), Some(b0), Some(b1)) => a0 < b1 && b0 < a1,
            _ => false,
        }
    }

    /// Whether the two execs' lifetimes (`start_ms..end_ms`) overlap.
    pub fn lifetime_overlaps(&self, other: &ExecRecord) -> bool {
        self.start_ms < other.end_ms && other.start_ms < self.end_ms
    }
}

/// The current `CLOCK_MONOTONIC` time in milliseconds (microsecond precision).
pub fn monotonic_ms() -> f64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available on Linux");
    let micros = ts.tv_sec() as i64 * 1_000_000 + ts.tv_nsec() as i64 / 1_000;
    micros as f64 / 1_000.0
}

/// Appends one record as a single line, atomically with respect to other writers.
pub fn append(path: &Path, record: &ExecRecord) -> io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    // Why flock as well as O_APPEND: O_APPEND makes each write land at the end,
    // the lock makes sure a reader never sees half a line from a short write.
    let lock = nix::fcntl::Flock::lock(file.try_clone()?, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::from(e))?;
    file.write_all(&line)?;
    drop(lock);
    Ok(())
}

/// Reads every record of an exec log. A missing file is an empty log.
/// A line that does not parse is an error that names its line number.
pub fn read(path: &Path) -> io::Result<Vec<ExecRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: {e}", path.display(), n + 1),
                )
            })
        })
        .collect()
}

/// Written by the guest agent to `agent.log`, followed by `<client pid>-<n>`,
/// when an exec reaches it.
pub const EXEC_OPEN: &str = "agent: exec open ";
/// Written by the guest agent to `agent.log`, followed by `<client pid>-<n>`,
/// once it is done with that exec, after any exec.log line it wrote for it.
pub const EXEC_CLOSED: &str = "agent: exec closed ";

/// Whether exec.log of `machine_dir` is final for every exec whose client is
/// gone: no exec the agent opened for a client that has exited lacks its
/// closing mark. Execs of live clients (a session still running) do not count.
pub fn is_settled(machine_dir: &Path) -> bool {
    let text = std::fs::read_to_string(machine_dir.join("agent.log")).unwrap_or_default();
    pending_execs(&text).iter().all(|pid| client_alive(*pid))
}

/// The client pids of execs opened but not closed in an agent.log text.
fn pending_execs(agent_log: &str) -> Vec<u32> {
    let marks = |prefix: &str| -> Vec<&str> {
        agent_log
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .collect()
    };
    let closed = marks(EXEC_CLOSED);
    marks(EXEC_OPEN)
        .into_iter()
        .filter(|m| !closed.contains(m))
        .filter_map(|m| m.split('-').next()?.parse().ok())
        .collect()
}

/// Whether `pid` runs (a zombie has exited: its record is due).
fn client_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z")
        })
        .unwrap_or(false)
}

/// Reads `exec.log` of `machine_dir` once [`is_settled`] holds, or at
/// `deadline` whatever is there. Why: a client killed right after its final
/// answer (a side channel killed as its wrapper exits) has its line written
/// by the agent a moment later; a test that read at once could miss it.
pub fn read_settled(
    machine_dir: &Path,
    deadline: std::time::Duration,
) -> io::Result<Vec<ExecRecord>> {
    let end = std::time::Instant::now() + deadline;
    while !is_settled(machine_dir) && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    read(&machine_dir.join("exec.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: u32, window: Option<(f64, f64)>) -> ExecRecord {
        ExecRecord {
            pid,
            argv: vec!["true".into()],
            tty: false,
            interactive: false,
            stdin: "devnull".into(),
            tmux: false,
            start_ms: 0.0,
            bringup_start_ms: window.map(|w| w.0),
            bringup_end_ms: window.map(|w| w.1),
            end_ms: 10.0,
            exit_code: 0,
            signal: None,
            fault: None,
            error: None,
        }
    }

    #[test]
    fn appended_records_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exec.log");
        append(&path, &record(1, Some((1.0, 2.0)))).unwrap();
        append(&path, &record(2, None)).unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.iter().map(|r| r.pid).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(records[0].bringup_end_ms, Some(2.0));
    }

    #[test]
    fn missing_log_is_empty_and_garbage_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exec.log");
        assert!(read(&path).unwrap().is_empty());
        std::fs::write(&path, "{}\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("exec.log:1"), "{err}");
    }

    #[test]
    fn overlap_is_strict() {
        let a = record(1, Some((0.0, 250.0)));
        assert!(a.bringup_overlaps(&record(2, Some((249.0, 500.0)))));
        assert!(!a.bringup_overlaps(&record(3, Some((250.0, 500.0)))));
        assert!(!a.bringup_overlaps(&record(4, None)));
    }

    #[test]
    fn pending_execs_are_opened_and_not_closed() {
        let text = format!(
            "{EXEC_OPEN}10-1\nagent: exec 10-1: note\n{EXEC_CLOSED}10-1\n{EXEC_OPEN}11-2\n{EXEC_OPEN}12-3\n{EXEC_CLOSED}12-3\n"
        );
        assert_eq!(pending_execs(&text), [11]);
        assert!(pending_execs("").is_empty());
    }

    #[test]
    fn a_live_client_does_not_hold_up_a_read_but_a_dead_one_does() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        std::fs::write(dir.path().join("agent.log"), format!("{EXEC_OPEN}{me}-1\n")).unwrap();
        assert!(is_settled(dir.path()), "our own pid is alive");
        // A pid above the kernel's maximum never runs.
        std::fs::write(
            dir.path().join("agent.log"),
            format!("{EXEC_OPEN}4194305-1\n"),
        )
        .unwrap();
        assert!(!is_settled(dir.path()));
    }
}
