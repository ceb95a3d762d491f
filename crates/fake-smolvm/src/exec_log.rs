//! The exec log: one JSON line per exec that reached the agent, written by
//! the agent, the harness's assertion surface.
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
    /// crun read this exec's `config.json` while another exec rewrote it: exit 1.
    ConfigRace,
    /// Another exec found this session's container recorded but not yet
    /// running and `crun delete -f`'d it as stale: exit 137.
    StaleKill,
    /// The seeds' first hypothesis (opt-in): a later exec shared this
    /// session's terminal as stdin.
    SharedStdin,
    /// This exec had joined the main container, whose command ended: exit 137.
    MainExited,
    /// `--timeout` expired.
    Timeout,
}

/// Which agent path served an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExecPath {
    /// `run`: an image machine (crun).
    #[default]
    Run,
    /// `vm_exec`: a bare machine, no container.
    VmExec,
}

/// Where an exec's command ran: in a container (`run`, crun) or at the VM
/// level, outside every container (`vm_exec`, smolvm v0.8.0 `main.rs`
/// `handle_vm_exec` 4383-4544: no `config.json`, no main container, no crun).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// In a container of the machine's image (`run`).
    #[default]
    Container,
    /// In the VM itself, outside every container (`vm_exec`).
    Vm,
}

impl From<ExecPath> for Level {
    fn from(path: ExecPath) -> Level {
        match path {
            ExecPath::Run => Level::Container,
            ExecPath::VmExec => Level::Vm,
        }
    }
}

/// One exec, as recorded in `exec.log` by the agent. See `docs/contracts.md`.
/// (`Default` is for tests that build records by hand.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecRecord {
    /// Host pid of the client process (`SO_PEERCRED`).
    pub pid: u32,
    /// The client program's file name (`smolvm`, `fake-smolvm`, …).
    pub program: String,
    /// The guest command.
    pub argv: Vec<String>,
    /// Whether `-t` was asked for.
    pub tty: bool,
    /// Whether the exec took the interactive path (`-i` or `-t`).
    pub interactive: bool,
    /// `run` or `vm_exec`.
    pub path: ExecPath,
    /// `container` or `vm`: a `vm_exec` runs at VM level, whatever the
    /// machine (lines written before this field read as `container`).
    #[serde(default)]
    pub level: Level,
    /// Whether it joined a running main container (`crun exec`).
    pub joined: bool,
    /// How the client's stdin was connected: `tty:<path>`, `devnull`, `pipe`,
    /// `file`, `closed` or `other`.
    pub stdin: String,
    /// Whether the client's environment had `TMUX`.
    pub tmux: bool,
    /// Monotonic ms when the client process started (10 ms resolution).
    pub start_ms: f64,
    /// Monotonic ms when the request reached the agent.
    pub bringup_start_ms: Option<f64>,
    /// Monotonic ms when it touched the machine: `config.json` written and/or
    /// the main container resolved.
    pub touched_ms: Option<f64>,
    /// Monotonic ms when `started` was sent (interactive only).
    pub started_ms: Option<f64>,
    /// The crun window (`config.json` written → container running), when
    /// this exec created a container.
    pub window_start_ms: Option<f64>,
    /// End of the crun window.
    pub window_end_ms: Option<f64>,
    /// Monotonic ms when the guest command started (`None`: it never did).
    pub bringup_end_ms: Option<f64>,
    /// Monotonic ms when the agent was done with the exec.
    pub end_ms: f64,
    /// The exit code the agent reported (1 for an `error` response).
    pub exit_code: i32,
    /// The signal that killed the guest command, if one did.
    pub signal: Option<i32>,
    /// The fault that fired for this exec, if any.
    pub fault: Option<Fault>,
    /// The `error` response's message, if the agent sent one.
    pub error: Option<String>,
    /// Whether the client hung up before the exec ended.
    pub client_gone: bool,
}

impl ExecRecord {
    /// Whether this exec touched the machine inside `other`'s crun window:
    /// the interaction that kills or tears a session.
    pub fn touched_inside_window_of(&self, other: &ExecRecord) -> bool {
        match (self.touched_ms, other.window_start_ms, other.window_end_ms) {
            (Some(t), Some(w0), Some(w1)) => w0 < t && t < w1,
            _ => false,
        }
    }

    /// Whether either exec touched the machine inside the other's crun window.
    pub fn bringup_overlaps(&self, other: &ExecRecord) -> bool {
        self.touched_inside_window_of(other) || other.touched_inside_window_of(self)
    }

    /// Whether the two execs' lives in the agent (request arrived → agent
    /// done) overlap. Why not the client's start: `/proc` gives it to 10 ms
    /// only, too coarse to order a client started right after another ended.
    pub fn lifetime_overlaps(&self, other: &ExecRecord) -> bool {
        self.arrived_ms() < other.end_ms && other.arrived_ms() < self.end_ms
    }

    /// When the request reached the agent (the client's start if unknown).
    pub fn arrived_ms(&self) -> f64 {
        self.bringup_start_ms.unwrap_or(self.start_ms)
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

    fn record(pid: u32, touched: f64, window: Option<(f64, f64)>) -> ExecRecord {
        ExecRecord {
            pid,
            program: "smolvm".into(),
            argv: vec!["true".into()],
            tty: false,
            interactive: false,
            path: ExecPath::Run,
            level: Level::Container,
            joined: false,
            stdin: "devnull".into(),
            tmux: false,
            start_ms: 0.0,
            bringup_start_ms: Some(0.0),
            touched_ms: Some(touched),
            started_ms: None,
            window_start_ms: window.map(|w| w.0),
            window_end_ms: window.map(|w| w.1),
            bringup_end_ms: None,
            end_ms: 10.0,
            exit_code: 0,
            signal: None,
            fault: None,
            error: None,
            client_gone: false,
        }
    }

    #[test]
    fn appended_records_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exec.log");
        append(&path, &record(1, 1.0, Some((1.0, 2.0)))).unwrap();
        append(&path, &record(2, 3.0, None)).unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.iter().map(|r| r.pid).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(records[0].window_end_ms, Some(2.0));
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
    fn touching_inside_a_window_is_strict() {
        let session = record(1, 0.0, Some((0.0, 250.0)));
        assert!(record(2, 249.0, None).bringup_overlaps(&session));
        assert!(session.bringup_overlaps(&record(2, 249.0, None)));
        assert!(!record(3, 250.0, None).bringup_overlaps(&session));
        assert!(!record(4, 300.0, Some((300.0, 400.0))).bringup_overlaps(&session));
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
