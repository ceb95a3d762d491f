//! Who is on the other end of a connection, asked of the kernel: the real
//! smolvm client tells the agent nothing about itself (smolvm-0.8.0.md,
//! "Wire"), so everything comes from `SO_PEERCRED` and `/proc/<pid>/…`,
//! read in the host's namespaces by the agent's front.

use std::collections::HashMap;
use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use serde::{Deserialize, Serialize};

use crate::exec_log::monotonic_ms;
use crate::settings::Switches;
use crate::stdin_kind::{self, StdinInfo};

/// What the agent knows about a client.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    /// Host pid of the connecting process (0 if unknown).
    pub pid: u32,
    /// The program's file name (`smolvm`, `fake-smolvm`, …).
    pub program: String,
    /// How its stdin is connected.
    pub stdin: Option<StdinInfo>,
    /// Whether its environment has `TMUX`.
    pub tmux: bool,
    /// Its `TERM`, given to a `-t` guest command.
    pub term: Option<String>,
    /// Its `FAKE_SMOLVM_*` switches.
    pub switches: Switches,
    /// Why its switches could not be used, if they could not.
    pub switch_error: Option<String>,
    /// Monotonic ms when the process started (10 ms resolution).
    pub start_ms: f64,
}

impl Peer {
    /// Reads everything about the process connected on `sock`. A process
    /// that is already gone gives what could still be read.
    pub fn of<F: AsFd>(sock: &F) -> Peer {
        let Ok(cred) = getsockopt(sock, PeerCredentials) else {
            return Peer::default();
        };
        Peer::of_pid(cred.pid() as u32)
    }

    /// Reads everything about process `pid`.
    pub fn of_pid(pid: u32) -> Peer {
        let env = environ(pid);
        let (switches, switch_error) = match Switches::from_lookup(|k| env.get(k).cloned()) {
            Ok(s) => (s, None),
            Err(e) => (Switches::default(), Some(e.to_string())),
        };
        Peer {
            pid,
            program: std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default(),
            stdin: Some(stdin_kind::of_pid(pid)),
            tmux: env.contains_key("TMUX"),
            term: env.get("TERM").cloned(),
            switches,
            switch_error,
            start_ms: start_ms(pid).unwrap_or_else(monotonic_ms),
        }
    }
}

/// `/proc/<pid>/environ` as a map (empty if unreadable).
fn environ(pid: u32) -> HashMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// The process's start time (`/proc/<pid>/stat` field 22, clock ticks since
/// boot) in the monotonic clock's milliseconds.
fn start_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat).map(|ticks| ticks as f64 * 1000.0 / clock_ticks_per_second())
}

/// Field 22 of a `/proc/<pid>/stat` line (counted after the parenthesised name,
/// which may itself hold spaces and parentheses).
fn parse_start_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts at field 3 (state): field 22 is the 20th after it.
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_survive_odd_process_names() {
        let stat = "42 (a b) c)) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        assert_eq!(parse_start_ticks(stat), Some(98765));
        assert_eq!(parse_start_ticks("garbage"), None);
    }

    #[test]
    fn our_own_process_reads_back() {
        let me = Peer::of_pid(std::process::id());
        assert_eq!(me.pid, std::process::id());
        assert!(!me.program.is_empty());
        assert!(me.start_ms > 0.0 && me.start_ms <= monotonic_ms() + 20.0);
        assert_eq!(me.tmux, std::env::var_os("TMUX").is_some());
    }
}
