//! `machine exec`: the fake's own client, an ordinary client of smolvm
//! 0.8.0's protocol that behaves on the terminal like the real one
//! (`src/cli/machine.rs` `ExecCmd::run`, `src/agent/client.rs`).

mod terminal;

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::fail::{fail, Res};
use crate::host::Host;
use crate::registry::Registry;
use crate::wire::{self, Bytes, ExecRequest, Request, Response};

/// Everything `machine exec` was asked to do (validated by the CLI).
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Machine name.
    pub name: String,
    /// `-i`.
    pub interactive: bool,
    /// `-t`.
    pub tty: bool,
    /// `-e` entries that had a `=`.
    pub env: Vec<(String, String)>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `--timeout`, ms.
    pub timeout_ms: Option<u64>,
    /// The guest command.
    pub argv: Vec<String>,
}

/// Splits `-e` values: `KEY=VALUE` kept (split at the first `=`), anything
/// without `=` (or with an empty key) dropped silently, as smolvm 0.8.0 does.
pub fn parse_env(entries: &[String]) -> Vec<(String, String)> {
    entries
        .iter()
        .filter_map(|e| e.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs `machine exec`; returns the exit code (output already printed).
pub fn exec(opts: ExecOptions) -> Res<i32> {
    // The real client checks the name before it looks anything up.
    crate::machine::validate_name(&opts.name)?;
    let host = Host::from_env()?;
    let record = Registry::open(&host.registry_path())?.require(&opts.name)?;
    let sock = host.machine_dir(&opts.name).join("agent.sock");
    let not_running = || {
        fail(format!(
            "agent operation failed: connect: machine '{0}' is not running. Use 'smolvm machine start --name {0}' first.",
            opts.name
        ))
    };
    // Liveness: a connection that answers `ping`, then a fresh one for the exec.
    if !crate::wire::answers_ping(&sock) {
        return Err(not_running());
    }
    let mut stream = UnixStream::connect(&sock).map_err(|_| not_running())?;
    let req = ExecRequest {
        image: record.image.clone(),
        command: opts.argv.clone(),
        env: opts.env.clone(),
        workdir: opts.workdir.clone(),
        timeout_ms: opts.timeout_ms,
        interactive: opts.interactive || opts.tty,
        tty: opts.tty,
        persistent_overlay_id: record.image.as_ref().map(|_| opts.name.clone()),
    };
    let request = match &record.image {
        Some(image) => {
            // The real client asks and ignores any failure.
            let _ = wire::write_frame(
                &mut stream,
                &Request::Query {
                    image: image.clone(),
                },
            );
            let _ = wire::read_frame::<_, Response>(&mut stream);
            Request::Run(req)
        }
        None => Request::VmExec(req),
    };
    let what = match (&request, opts.interactive || opts.tty) {
        (Request::Run(_), true) => "run interactive",
        (Request::Run(_), false) => "run command",
        (_, true) => "vm exec interactive",
        (_, false) => "vm exec",
    };
    wire::write_frame(&mut stream, &request).map_err(io_failed)?;
    if opts.interactive || opts.tty {
        interactive(stream, opts.tty, what)
    } else {
        completed(stream, what)
    }
}

fn io_failed(e: io::Error) -> crate::fail::Fail {
    fail(format!("io operation failed: {e}"))
}

fn closed() -> crate::fail::Fail {
    fail("io operation failed: connection closed")
}

fn agent_failed(what: &str, message: String) -> crate::fail::Fail {
    fail(format!("agent operation failed: {what}: {message}"))
}

/// Non-interactive: one `completed`, printed stdout then stderr.
fn completed(mut stream: UnixStream, what: &str) -> Res<i32> {
    loop {
        match wire::read_frame::<_, Response>(&mut stream).map_err(io_failed)? {
            Some(Response::Completed {
                exit_code,
                stdout,
                stderr,
            }) => {
                let _ = io::stdout().write_all(&stdout.0);
                let _ = io::stdout().flush();
                let _ = io::stderr().write_all(&stderr.0);
                return Ok(exit_code);
            }
            Some(Response::Error { message, .. }) => return Err(agent_failed(what, message)),
            Some(_) => {}
            None => return Err(closed()),
        }
    }
}

/// Interactive: wait for `started`, then raw mode (with `-t` on a terminal),
/// the size, `O_NONBLOCK`, and a 100 ms poll loop relaying both ways.
fn interactive(mut stream: UnixStream, tty: bool, what: &str) -> Res<i32> {
    loop {
        match wire::read_frame::<_, Response>(&mut stream).map_err(io_failed)? {
            Some(Response::Started) => break,
            Some(Response::Error { message, .. }) => return Err(agent_failed(what, message)),
            Some(_) => {}
            None => return Err(closed()),
        }
    }
    let mut saved = terminal::Saved::default();
    let on_tty = tty && terminal::stdin_is_tty();
    let winch = Arc::new(AtomicBool::new(false));
    if on_tty {
        terminal::enter_raw(&mut saved);
        let _ = signal_hook::flag::register(signal_hook::consts::SIGWINCH, winch.clone());
        send_size(&mut stream)?;
    }
    terminal::set_nonblocking(&mut saved);
    let result = relay(&mut stream, on_tty, &winch);
    terminal::restore(saved);
    result
}

fn send_size(stream: &mut UnixStream) -> Res<()> {
    let (cols, rows) = terminal::size().unwrap_or((0, 0));
    wire::write_frame(stream, &Request::Resize { cols, rows }).map_err(io_failed)
}

fn relay(stream: &mut UnixStream, on_tty: bool, winch: &AtomicBool) -> Res<i32> {
    // SAFETY: fd 0 stays open for the life of the process.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    let mut stdin_open = true;
    let mut reader = stream.try_clone().map_err(io_failed)?;
    let mut buf = [0u8; 4096];
    loop {
        if on_tty && winch.swap(false, Ordering::SeqCst) {
            // A failed send is not the end: the agent may have finished and
            // closed its side with `exited` still unread (see below).
            let _ = send_size(stream);
        }
        let sock = reader.try_clone().map_err(io_failed)?;
        let mut fds = vec![PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io_failed(e.into())),
        }
        let sock_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let stdin_ready = stdin_open && fds[1].revents().is_some_and(|r| !r.is_empty());
        drop(fds);
        if stdin_ready {
            match io::stdin().lock().read(&mut buf) {
                Ok(0) => {
                    stdin_open = false;
                    let eof = Request::Stdin {
                        data: Bytes::default(),
                    };
                    let _ = wire::write_frame(stream, &eof);
                }
                Ok(n) => {
                    let data = Request::Stdin {
                        data: Bytes(buf[..n].to_vec()),
                    };
                    // Why not fatal: a command that ended at once has its
                    // `exited` waiting in the socket while the agent's side
                    // is already shut (EPIPE here); read it, stop forwarding.
                    if wire::write_frame(stream, &data).is_err() {
                        stdin_open = false;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => stdin_open = false,
            }
        }
        if sock_ready {
            match wire::read_frame::<_, Response>(&mut reader).map_err(io_failed)? {
                Some(Response::Stdout { data }) => write_all(1, &data.0),
                Some(Response::Stderr { data }) => write_all(2, &data.0),
                Some(Response::Exited { exit_code }) => return Ok(exit_code),
                Some(Response::Error { message, .. }) => {
                    return Err(fail(format!("agent operation failed: {message}")))
                }
                Some(_) => {}
                None => return Err(closed()),
            }
        }
    }
}

/// Writes all of `data` to `fd`, waiting out `EAGAIN`: stdout often shares
/// its open file description with stdin, which is now `O_NONBLOCK`.
fn write_all(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writing from a live buffer to an fd this process owns.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
            continue;
        }
        match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock => {
                // SAFETY: the fd stays open while we wait on it.
                let out = unsafe { BorrowedFd::borrow_raw(fd) };
                let _ = poll(
                    &mut [PollFd::new(out, PollFlags::POLLOUT)],
                    PollTimeout::from(100u16),
                );
            }
            io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_entries_without_equals_are_dropped() {
        let got = parse_env(&[
            "A=1".into(),
            "NOEQ".into(),
            "B=x=y".into(),
            "=v".into(),
            "C=".into(),
        ]);
        assert_eq!(
            got,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("C".into(), String::new())
            ]
        );
    }
}
