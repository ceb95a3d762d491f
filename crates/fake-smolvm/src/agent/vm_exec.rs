//! A non-interactive `vm_exec`, as smolvm 0.8.0's `handle_vm_exec` runs it
//! (`crates/smolvm-agent/src/main.rs` 4383-4544): the command at VM level
//! (stdin `/dev/null`, its own session, stdout/stderr collected up to
//! 11 MiB each, `process.rs` 17), its end noticed on a 10 ms `try_wait`
//! poll (`PROCESS_POLL_INTERVAL_MS`, `main.rs` 115), the client checked at
//! each poll with a zero-byte `MSG_PEEK` (`process.rs` 56-83): a client that
//! has half-closed counts as gone — the command is killed, 129, and no
//! answer is sent (`main.rs` 4484-4502, and 1739: the answer is dropped for
//! a closed peer). `timeout_ms` → 124. A command killed by a signal
//! reports -1 (`status.code().unwrap_or(-1)`, 0.8.0; 128+N from 0.8.1 on).
//! The connection then carries the next request, if any.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use super::guest::{self, Output, Spec};
use super::peer::Peer;
use super::record::{self, Ending, Progress};
use super::state::Machine;
use crate::exec_log::{self, monotonic_ms, ExecPath, Fault};
use crate::settings::Compat;
use crate::wire::{self, Bytes, ExecRequest, Response};

/// `PROCESS_POLL_INTERVAL_MS` (`main.rs` 115).
const POLL: Duration = Duration::from_millis(10);

/// `MAX_EXEC_OUTPUT` (`process.rs` 17): per stream.
const MAX_OUTPUT: u64 = 11 * 1024 * 1024;

/// The code a command ended with, as this agent version reports it.
pub fn exit_code(status: std::process::ExitStatus, compat: Compat) -> i32 {
    match (status.code(), status.signal(), compat) {
        (Some(code), _, _) => code,
        (None, Some(sig), Compat::V081) => 128 + sig,
        _ => -1,
    }
}

/// `is_peer_closed`: a zero-byte read ahead says the peer shut its side.
pub fn peer_closed(stream: &UnixStream) -> bool {
    let mut buf = [0u8; 1];
    // SAFETY: `buf` is a valid one-byte target; MSG_PEEK consumes nothing.
    let rc = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if rc == 0 {
        return true;
    }
    if rc < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return !matches!(errno, libc::EAGAIN);
    }
    false
}

/// Serves one non-interactive `vm_exec` on `stream`; true if the connection
/// may carry another request.
pub fn serve(machine: &Machine, peer: &Peer, req: &ExecRequest, stream: &UnixStream) -> bool {
    let id = machine.next_id();
    let mark = format!("{}-{id}", peer.pid);
    eprintln!("{}{mark}", exec_log::EXEC_OPEN);
    let cfg = peer.switches.or(&machine.defaults).resolve();
    let mut progress = Progress {
        bringup_start: Some(monotonic_ms()),
        ..Progress::default()
    };
    let spec = Spec {
        argv: &req.command,
        env: &req.env,
        workdir: req.workdir.as_deref(),
        hostname: &machine.name,
        term: None,
        interactive: false,
        tty: None,
    };
    let (ending, answer, gone) = match guest::spawn(&spec) {
        Err(e) => {
            // `main.rs` 4434-4442: std's spawn error, as it prints; a
            // missing working directory fails the same way (`current_dir`).
            let os = match e.code {
                127 => Some(libc::ENOENT),
                126 => Some(libc::EACCES),
                _ if e.message.contains("workdir") => Some(libc::ENOENT),
                _ => None,
            };
            let message = match os {
                Some(errno) => format!(
                    "failed to spawn command: {}",
                    std::io::Error::from_raw_os_error(errno)
                ),
                None => e.message,
            };
            let ending = Ending {
                error: Some(message.clone()),
                ..Ending::code(1, None, None)
            };
            (ending, Response::error(message, "SPAWN_FAILED"), false)
        }
        Ok(mut spawned) => {
            progress.running = Some(monotonic_ms());
            let (o, e) = match std::mem::replace(&mut spawned.output, Output::Buffered(None, None))
            {
                Output::Buffered(o, e) => (o, e),
                _ => (None, None),
            };
            let collect = |r: Option<guest::GuestReader>| {
                std::thread::spawn(move || {
                    let mut all = Vec::new();
                    if let Some(r) = r {
                        let _ = r.take(MAX_OUTPUT).read_to_end(&mut all);
                    }
                    all
                })
            };
            let (out_t, err_t) = (collect(o), collect(e));
            let mut child = spawned.child;
            let pgid = child.id() as i32;
            let kill_all = |child: &mut std::process::Child| {
                // SAFETY: killpg with a pid of ours; no memory involved.
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
                let _ = child.kill();
                let _ = child.wait();
            };
            let deadline = req
                .timeout_ms
                .map(|ms| Instant::now() + Duration::from_millis(ms));
            let (code, signal, fault, gone) = loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        break (exit_code(status, cfg.compat), status.signal(), None, false)
                    }
                    Ok(None) => {}
                    Err(_) => break (1, None, None, false),
                }
                if peer_closed(stream) {
                    kill_all(&mut child);
                    break (129, Some(libc::SIGKILL), None, true);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    kill_all(&mut child);
                    break (124, Some(libc::SIGKILL), Some(Fault::Timeout), false);
                }
                std::thread::sleep(POLL);
            };
            // The group's leftovers would hold the pipes open.
            // SAFETY: as above.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
            let stdout = out_t.join().unwrap_or_default();
            let stderr = err_t.join().unwrap_or_default();
            let answer = Response::Completed {
                exit_code: code,
                stdout: Bytes(stdout),
                stderr: Bytes(stderr),
            };
            (Ending::code(code, signal, fault), answer, gone)
        }
    };
    // `main.rs` 1739: a peer that is gone gets no answer.
    let gone = gone || peer_closed(stream);
    // Stamped before the answer goes out: the client may send its next
    // request the moment it reads this one, and that one must not seem to
    // have arrived before this one ended.
    let mut rec = record::build(peer, req, ExecPath::VmExec, &progress, &ending, gone);
    let sent = !gone && wire::write_frame(&mut &*stream, &answer).is_ok();
    rec.client_gone = !sent;
    if let Err(e) = exec_log::append(&machine.dir.exec_log(), &rec) {
        eprintln!("agent: exec {mark}: cannot append exec.log: {e}");
    }
    eprintln!("agent: exec {mark}: exit {}", rec.exit_code);
    eprintln!("{}{mark}", exec_log::EXEC_CLOSED);
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_minus_one_in_0_8_0_and_128_plus_n_from_0_8_1() {
        let killed = std::process::ExitStatus::from_raw(libc::SIGKILL);
        assert_eq!(exit_code(killed, Compat::V080), -1);
        assert_eq!(exit_code(killed, Compat::V081), 137);
        let three = std::process::ExitStatus::from_raw(3 << 8);
        assert_eq!(exit_code(three, Compat::V080), 3);
    }

    #[test]
    fn a_half_closed_peer_is_gone_and_pending_data_is_not() {
        let (a, b) = UnixStream::pair().unwrap();
        assert!(!peer_closed(&a), "open, nothing sent");
        use std::io::Write;
        (&b).write_all(b"x").unwrap();
        assert!(!peer_closed(&a), "data waiting");
        let mut one = [0u8; 1];
        (&a).read_exact(&mut one).unwrap();
        b.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(peer_closed(&a), "half-closed");
    }
}
