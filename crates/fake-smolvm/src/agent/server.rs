//! The guest server: takes each connection the front hands over and serves
//! its requests — `ping`, `query`, then one `run` or `vm_exec`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::exec;
use super::guest::Ctl;
use super::handoff;
use super::peer::Peer;
use super::timeline::{ExecId, Timeline};
use crate::exec_log::{ExecPath, Fault};
use crate::host::MachineDir;
use crate::settings::{Resolved, Switches};
use crate::wire::{self, Request, Response, PROTOCOL_VERSION};

/// The machine as its execs share it.
pub struct Machine {
    /// The machine name.
    pub name: String,
    /// Its folder on the host.
    pub dir: MachineDir,
    /// The switches `machine start` saw.
    pub defaults: Switches,
    /// `config.json` and the main container.
    pub timeline: Mutex<Timeline<Arc<Ctl>>>,
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
            timeline: Mutex::new(Timeline::default()),
            next_id: AtomicU64::new(1),
            ttys: Mutex::new(HashMap::new()),
        }
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

/// Serves until the front is gone.
pub fn serve(machine: Machine, channel: OwnedFd) {
    let machine = Arc::new(machine);
    loop {
        match handoff::recv(channel.as_fd()) {
            Ok(Some((fd, peer))) => {
                let machine = machine.clone();
                std::thread::spawn(move || connection(&machine, UnixStream::from(fd), &peer));
            }
            Ok(None) => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => eprintln!("agent: cannot take a connection from the front: {e}"),
        }
    }
}

/// One connection: any number of `ping`/`query`, then at most one exec.
/// Garbage, a frame over the limit, a half frame or an unknown method is
/// logged; the connection gets an `error` where it can still read one, and
/// nothing else on the machine is affected.
fn connection(machine: &Machine, stream: UnixStream, peer: &Peer) {
    let Ok(mut reader) = stream.try_clone() else {
        return;
    };
    let mut writer = &stream;
    let who = format!("pid {} ({})", peer.pid, peer.program);
    loop {
        let request = match wire::read_frame::<_, Request>(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                eprintln!("agent: connection from {who}: {e}; dropped");
                if e.kind() == io::ErrorKind::InvalidData {
                    let _ = wire::write_frame(
                        &mut writer,
                        &Response::error(format!("invalid request: {e}"), "INVALID_REQUEST"),
                    );
                }
                return;
            }
        };
        let answer = match request {
            Request::Ping => Response::Pong {
                version: PROTOCOL_VERSION,
            },
            Request::Query { image } => Response::Ok {
                data: Some(image_info(&image)),
            },
            Request::Run(req) => {
                let Ok(w) = stream.try_clone() else { return };
                return exec::run(machine, peer, ExecPath::Run, &req, w, reader);
            }
            Request::VmExec(req) => {
                let Ok(w) = stream.try_clone() else { return };
                return exec::run(machine, peer, ExecPath::VmExec, &req, w, reader);
            }
            Request::Stdin { .. } | Request::Resize { .. } => {
                eprintln!("agent: connection from {who}: stdin/resize before any exec; ignored");
                Response::error("no exec on this connection", "INVALID_REQUEST")
            }
            Request::Unknown => {
                eprintln!("agent: connection from {who}: unknown method");
                Response::error("unknown or unsupported method", "INVALID_REQUEST")
            }
        };
        if wire::write_frame(&mut writer, &answer).is_err() {
            return;
        }
    }
}

/// `query`'s answer: smolvm's `ImageInfo` for an image that is "present".
fn image_info(image: &str) -> serde_json::Value {
    serde_json::json!({
        "reference": image,
        "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "size": 0,
        "created": null,
        "architecture": std::env::consts::ARCH,
        "os": "linux",
        "layer_count": 0,
        "layers": [],
    })
}
