//! Bytes between the client's connection and the guest command: output as
//! `stdout`/`stderr` frames (or collected for `completed`), the client's
//! `stdin` and `resize` frames into the command's stdin and PTY.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::guest::{self, Ctl, GuestReader, Output, StdinSink};
use crate::wire::{self, Bytes, Request, Response};

/// Writes frames to the client; remembers whether the client is gone, and
/// whether it was already gone when the exec's final response was due.
pub struct Out {
    stream: Mutex<UnixStream>,
    gone: AtomicBool,
    /// Set when the final response (`exited`, `completed`, `error`) was sent or due.
    ended: AtomicBool,
    /// Whether the client was gone at that moment.
    gone_at_end: AtomicBool,
}

impl Out {
    /// Wraps the connection's writing side.
    pub fn new(stream: UnixStream) -> Out {
        Out {
            stream: Mutex::new(stream),
            gone: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            gone_at_end: AtomicBool::new(false),
        }
    }

    /// Sends one frame; false (and marked gone) if the client cannot take it.
    pub fn send(&self, msg: &Response) -> bool {
        let sent = self.write(msg);
        let last = matches!(
            msg,
            Response::Exited { .. } | Response::Completed { .. } | Response::Error { .. }
        );
        if last && !self.ended.swap(true, Ordering::SeqCst) {
            self.gone_at_end.store(!sent, Ordering::SeqCst);
        }
        sent
    }

    fn write(&self, msg: &Response) -> bool {
        if self.is_gone() {
            return false;
        }
        let mut s = self.stream.lock().unwrap();
        match wire::write_frame(&mut *s, msg) {
            Ok(()) => true,
            Err(_) => {
                self.gone.store(true, Ordering::SeqCst);
                false
            }
        }
    }

    /// Whether the client hung up before the exec ended (exec.log's
    /// `client_gone`). Why not [`Out::is_gone`]: a client that got its final
    /// response closes the connection at once, often before the record is
    /// built.
    pub fn gone_before_end(&self) -> bool {
        if self.ended.load(Ordering::SeqCst) {
            self.gone_at_end.load(Ordering::SeqCst)
        } else {
            self.is_gone()
        }
    }

    /// Whether the client hung up.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    fn mark_gone(&self) {
        self.gone.store(true, Ordering::SeqCst);
    }

    /// Ends the connection both ways (wakes a reader blocked on it).
    pub fn shutdown(&self) {
        let _ = self
            .stream
            .lock()
            .unwrap()
            .shutdown(std::net::Shutdown::Both);
    }
}

/// Output relays or collectors, running.
pub struct Relays {
    handles: Vec<JoinHandle<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

/// Starts relaying (or collecting) the guest's output.
pub fn start_output(output: Output, out: &Arc<Out>) -> Relays {
    let stop = Arc::new(AtomicBool::new(false));
    let handles = match output {
        Output::Pty(master) => {
            let (out, stop) = (out.clone(), stop.clone());
            vec![thread::spawn(move || {
                relay_pty(master, &out, &stop);
                Vec::new()
            })]
        }
        Output::Streams(o, e) => [(o, true), (e, false)]
            .into_iter()
            .filter_map(|(r, is_out)| r.map(|r| (r, is_out)))
            .map(|(r, is_out)| {
                let out = out.clone();
                thread::spawn(move || {
                    relay_stream(r, &out, is_out);
                    Vec::new()
                })
            })
            .collect(),
        Output::Buffered(o, e) => [o, e]
            .into_iter()
            .map(|r| {
                thread::spawn(move || {
                    let mut all = Vec::new();
                    if let Some(mut r) = r {
                        let _ = r.read_to_end(&mut all);
                    }
                    all
                })
            })
            .collect(),
    };
    Relays { handles, stop }
}

impl Relays {
    /// Waits for the relays (the group is dead by now, so they end); returns
    /// collected stdout and stderr (empty when relayed).
    pub fn finish(self) -> (Vec<u8>, Vec<u8>) {
        // A PTY relay ends on EIO once every slave fd is closed; the stop flag
        // is the backstop if a descendant escaped the process group.
        let stop = self.stop.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_secs(2));
            stop.store(true, Ordering::SeqCst);
        });
        let mut results = self
            .handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default());
        let o = results.next().unwrap_or_default();
        let e = results.next().unwrap_or_default();
        (o, e)
    }
}

fn relay_stream(mut r: GuestReader, out: &Out, is_out: bool) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        let data = Bytes(buf[..n].to_vec());
        out.send(&if is_out {
            Response::Stdout { data }
        } else {
            Response::Stderr { data }
        });
    }
}

fn relay_pty(mut master: File, out: &Out, stop: &AtomicBool) {
    let mut buf = [0u8; 8192];
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.send(&Response::Stdout {
                    data: Bytes(buf[..n].to_vec()),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break, // EIO: every slave fd is closed
        }
    }
}

/// Where the client's frames go once the command runs.
pub struct Input {
    /// The command's stdin.
    pub sink: StdinSink,
    /// The PTY `resize` frames apply to, if they reach the command's PTY at
    /// all (0.8.0's image path applies them to the agent's own PTY instead).
    pub resize: Option<File>,
}

/// Where the client's `stdin` frames go: the command once it runs; before
/// that, a queue. Why a queue: the client relays stdin from `started` on, and
/// on the image path `started` comes before crun has started the command;
/// in smolvm those bytes wait in crun's stdin pipe, they are not lost.
#[derive(Default)]
pub struct InputSlot {
    input: Option<Input>,
    pending: Vec<Vec<u8>>,
    /// The last `resize` that came before the command's PTY existed.
    held_size: Option<(u16, u16)>,
}

impl InputSlot {
    /// Hands the running command over; queued bytes (an EOF included) go
    /// first, and the last size sent before its PTY existed applies now.
    pub fn attach(&mut self, mut input: Input) {
        for bytes in self.pending.drain(..) {
            feed(&mut input.sink, &bytes);
        }
        if let (Some((cols, rows)), Some(m)) = (self.held_size.take(), input.resize.as_ref()) {
            guest::set_winsize(m, cols, rows);
        }
        self.input = Some(input);
    }

    /// The last size the client sent while no PTY took it.
    pub fn held_size(&self) -> Option<(u16, u16)> {
        self.held_size
    }

    fn resize(&mut self, cols: u16, rows: u16) {
        match self.input.as_ref() {
            Some(Input {
                resize: Some(m), ..
            }) => guest::set_winsize(m, cols, rows),
            Some(_) => {}
            None => self.held_size = Some((cols, rows)),
        }
    }

    fn stdin(&mut self, bytes: Vec<u8>) {
        match self.input.as_mut() {
            Some(input) => feed(&mut input.sink, &bytes),
            None => self.pending.push(bytes),
        }
    }
}

/// Reads the client's frames until it hangs up, then marks it gone and kills
/// the command. Before the command exists, `stdin` frames are queued and the
/// last `resize` is held (applied when the PTY exists, if it takes them);
/// `InputSlot::attach` hands the command over.
pub fn spawn_input(mut reader: UnixStream, ctl: Arc<Ctl>, out: Arc<Out>) -> Arc<Mutex<InputSlot>> {
    let slot: Arc<Mutex<InputSlot>> = Arc::new(Mutex::new(InputSlot::default()));
    let target = slot.clone();
    thread::spawn(move || loop {
        match wire::read_frame::<_, Request>(&mut reader) {
            Ok(Some(Request::Stdin { data })) => target.lock().unwrap().stdin(data.0),
            Ok(Some(Request::Resize { cols, rows })) => target.lock().unwrap().resize(cols, rows),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                out.mark_gone();
                ctl.kill(None);
                return;
            }
        }
    });
    slot
}

fn feed(sink: &mut StdinSink, bytes: &[u8]) {
    match sink {
        StdinSink::Pty(m) if bytes.is_empty() => {
            // EOF on a terminal is the VEOF character, as typed.
            let _ = m.write_all(b"\x04");
        }
        StdinSink::Pty(m) => {
            let _ = m.write_all(bytes);
        }
        StdinSink::Pipe(p) if bytes.is_empty() => *p = None,
        StdinSink::Pipe(Some(p)) => {
            let _ = p.write_all(bytes);
        }
        _ => {}
    }
}
