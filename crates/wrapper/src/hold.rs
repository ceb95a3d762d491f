//! Keeping the machine's lock for a start-up the session abandoned.
//!
//! Killing smolvm's client does not stop its exec's bring-up in the VM: the
//! agent goes on writing `config.json` and setting the container up. A
//! session that ends before it was ready (Ctrl-C while the terminal is still
//! cooked, a killed client) would otherwise release the machine lock at once,
//! and the next session's bring-up would race the abandoned one (a torn
//! `config.json`, exit 1; issue 16, bug 1). So the lock goes to a keeper,
//! `pty-resize __hold …` (a hidden internal subcommand, in a session of its
//! own, the lock and the log inherited), which lets go when the VM shows the
//! bring-up over — the session's program seen at VM level by its marker, on
//! the agent transport — or at the deadline that bounds any bring-up the
//! wrapper waits for (`--push-timeout-ms`), logs `hold-done`, and exits.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::agent;
use crate::handoff;
use crate::log::format_line;
use crate::log_event::LogEvent;
use crate::script;

/// The hidden subcommand's name (never shown in `--help`).
pub const SUBCOMMAND: &str = "__hold";

/// How often the keeper asks the VM whether the program runs.
const PROBE_EVERY: Duration = Duration::from_millis(50);

/// What the wrapper hands to the keeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The machine lock's fd.
    pub lock_fd: RawFd,
    /// The decision log's fd.
    pub log_fd: Option<RawFd>,
    /// How long the abandoned bring-up may still take.
    pub deadline: Duration,
    /// The wrapper's log clock at the hand-over.
    pub t0: Duration,
    /// The agent socket and the session's marker, when the VM can be asked.
    pub probe: Option<(PathBuf, String)>,
}

impl Hold {
    /// The keeper's arguments after the subcommand.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            self.lock_fd.to_string(),
            self.log_fd.map_or_else(|| "-".into(), |f| f.to_string()),
            self.deadline.as_millis().to_string(),
            self.t0.as_micros().to_string(),
        ];
        if let Some((socket, marker)) = &self.probe {
            a.push(marker.clone());
            a.push(socket.to_string_lossy().into_owned());
        }
        a
    }

    /// Parses [`Hold::args`]; `None` for anything else.
    pub fn parse(args: &[String]) -> Option<Self> {
        let (base, probe) = match args {
            [l, g, d, t] => ([l, g, d, t], None),
            [l, g, d, t, m, s] if script::valid_marker(m) => {
                ([l, g, d, t], Some((PathBuf::from(s), m.clone())))
            }
            _ => return None,
        };
        let [lock, log, deadline, t0] = base;
        Some(Self {
            lock_fd: lock.parse().ok()?,
            log_fd: match log.as_str() {
                "-" => None,
                f => Some(f.parse().ok()?),
            },
            deadline: Duration::from_millis(deadline.parse().ok()?),
            t0: Duration::from_micros(t0.parse().ok()?),
            probe,
        })
    }

    /// Starts the keeper. Errors mean the caller releases the lock at once.
    pub fn spawn(&self) -> std::io::Result<()> {
        let keep = std::iter::once(self.lock_fd).chain(self.log_fd).collect();
        handoff::spawn_detached(SUBCOMMAND, &self.args(), keep)
    }
}

/// Whether the VM shows the session's program (its bring-up is over).
fn program_seen(socket: &std::path::Path, marker: &str) -> bool {
    let command = script::agent_command(marker, None);
    matches!(
        agent::vm_exec(socket, &command, 1000, Duration::from_millis(1500)),
        Ok(crate::agent_wire::Answer::Completed { exit_code: 0, .. })
    )
}

/// The keeper's body (`pty-resize __hold …`); returns its exit code.
pub fn keep(args: &[String]) -> i32 {
    let Some(h) = Hold::parse(args) else {
        eprintln!("pty-resize: {SUBCOMMAND} is internal");
        return 2;
    };
    let caught = handoff::note_and_ignore_stop_signals();
    let start = Instant::now();
    let end = start + h.deadline;
    let outcome = loop {
        if let Some((socket, marker)) = &h.probe {
            if program_seen(socket, marker) {
                break "seen";
            }
            // The machine stopped (its socket went with it): no bring-up
            // is left to wait for.
            if !socket.exists() {
                break "machine-gone";
            }
        }
        let now = Instant::now();
        if now >= end {
            break "deadline";
        }
        // Nothing else to wait on: the VM is only known by asking it.
        std::thread::sleep(PROBE_EVERY.min(end - now));
    };
    if let Some(fd) = h.log_fd {
        let ev = LogEvent::HoldDone {
            outcome,
            after: start.elapsed(),
            ignored: handoff::noted(&caught),
        };
        let line = format_line(h.t0 + start.elapsed(), ev.name(), &ev.fields());
        // SAFETY: a write of a valid buffer to an inherited fd.
        unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
    }
    // The lock fd closes with this process: the next bring-up may start.
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip_and_refuse_anything_else() {
        let h = Hold {
            lock_fd: 5,
            log_fd: Some(3),
            deadline: Duration::from_millis(10_000),
            t0: Duration::from_micros(1_234),
            probe: Some(("/s/agent.sock".into(), "0123456789abcdef".into())),
        };
        assert_eq!(Hold::parse(&h.args()), Some(h.clone()));
        let bare = Hold {
            log_fd: None,
            probe: None,
            ..h.clone()
        };
        assert_eq!(bare.args(), ["5", "-", "10000", "1234"]);
        assert_eq!(Hold::parse(&bare.args()), Some(bare));
        let mut bad = h.args();
        bad[4] = "x;y".into();
        assert_eq!(Hold::parse(&bad), None, "a marker is hex only");
        assert_eq!(Hold::parse(&["1".to_string()]), None);
        assert_eq!(keep(&["x".to_string()]), 2);
    }

    #[test]
    fn without_a_probe_the_keeper_holds_until_its_deadline_and_logs_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        use std::os::fd::AsRawFd;
        let h = Hold {
            lock_fd: -1,
            log_fd: Some(log.as_raw_fd()),
            deadline: Duration::from_millis(120),
            t0: Duration::from_millis(5),
            probe: None,
        };
        assert_eq!(keep(&h.args()), 0);
        let recs = crate::log::read(&dir.path().join("log")).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].event, "hold-done");
        assert_eq!(recs[0].get("outcome"), Some("deadline"));
        assert!(recs[0].t_ms >= 125.0, "{}", recs[0].t_ms);
    }
}
