//! The guest server: takes each connection the front hands over and serves
//! its requests — `ping`, `query`, then one `run` or `vm_exec`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use super::exec;
use super::handoff;
use super::peer::Peer;
use super::state::Machine;
use super::vm_exec;
use crate::exec_log::ExecPath;
use crate::wire::{self, Request, Response, PROTOCOL_VERSION};

/// Serves until the front is gone. Each connection, once served, is
/// reported back to the front (which serves at most
/// [`handoff::MAX_CONNECTIONS`] at once).
pub fn serve(machine: Machine, channel: OwnedFd) {
    let machine = Arc::new(machine);
    let channel = Arc::new(channel);
    loop {
        match handoff::recv(channel.as_fd()) {
            Ok(Some((fd, peer))) => {
                let machine = machine.clone();
                let channel = channel.clone();
                std::thread::spawn(move || {
                    connection(&machine, UnixStream::from(fd), &peer);
                    handoff::done(channel.as_fd());
                });
            }
            Ok(None) => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => eprintln!("agent: cannot take a connection from the front: {e}"),
        }
    }
}

/// One connection: any number of `ping`/`query` and non-interactive
/// `vm_exec`, then at most one other exec.
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
            Request::VmExec(req) if !req.interactive => {
                if vm_exec::serve(machine, peer, &req, &stream) {
                    continue;
                }
                return;
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
