//! The machine as its execs share it: its name and folder, the switches it
//! started with, the timeline of its main container, and the live terminals
//! the opt-in shared-stdin fault watches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::guest::Ctl;
use super::peer::Peer;
use super::timeline::{ExecId, Timeline};
use crate::exec_log::Fault;
use crate::host::MachineDir;
use crate::settings::{Resolved, Switches};

/// The machine as its execs share it.
pub struct Machine {
    /// The machine name.
    pub name: String,
    /// Its folder on the host.
    pub dir: MachineDir,
    /// The switches `machine start` saw.
    pub defaults: Switches,
    /// `config.json` and the main container.
    pub timeline: Arc<Mutex<Timeline<Arc<Ctl>>>>,
    next_id: AtomicU64,
    /// Live interactive execs with a terminal as stdin: id -> (st_rdev, control).
    /// Only for the opt-in shared-stdin fault.
    ttys: Mutex<HashMap<ExecId, (u64, Arc<Ctl>)>>,
}

impl Machine {
    /// A machine with nothing running.
    pub fn new(name: String, dir: MachineDir, defaults: Switches) -> Machine {
        Machine {
            name,
            dir,
            defaults,
            timeline: Arc::new(Mutex::new(Timeline::default())),
            next_id: AtomicU64::new(1),
            ttys: Mutex::new(HashMap::new()),
        }
    }

    /// The timeline, for a thread that outlives an exec.
    pub fn timeline_handle(&self) -> Arc<Mutex<Timeline<Arc<Ctl>>>> {
        self.timeline.clone()
    }

    /// A fresh exec id.
    pub fn next_id(&self) -> ExecId {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// The seeds' first hypothesis, opt-in (`FAKE_SMOLVM_SHARED_STDIN`): an
    /// exec whose stdin is the terminal of a live interactive session kills
    /// that session after the configured delay.
    pub fn watch_tty(
        &self,
        id: ExecId,
        peer: &Peer,
        cfg: &Resolved,
        ctl: &Arc<Ctl>,
        interactive: bool,
    ) {
        let Some(rdev) = peer.stdin.as_ref().and_then(|s| s.tty_rdev) else {
            return;
        };
        let mut ttys = self.ttys.lock().unwrap();
        if cfg.shared_stdin.fires(peer.tmux) {
            let delay = Duration::from_millis(cfg.shared_stdin_delay_ms);
            for (other_rdev, other) in ttys.values() {
                if *other_rdev == rdev {
                    let other = other.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        other.kill(Some(Fault::SharedStdin));
                    });
                }
            }
        }
        if interactive {
            ttys.insert(id, (rdev, ctl.clone()));
        }
    }

    /// The exec is over: it no longer counts for the shared-stdin fault.
    pub fn forget_tty(&self, id: ExecId) {
        self.ttys.lock().unwrap().remove(&id);
    }
}
