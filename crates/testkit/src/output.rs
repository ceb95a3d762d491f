//! A PTY's output, read on its own thread into a [`Sink`], with a condvar a
//! test waits on (woken by every chunk, so a wait ends the moment its
//! condition holds, not at the next poll).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Raw output kept; older bytes are dropped (a failure message shows a tail).
pub const RAW_KEEP: usize = 1 << 20;

/// What the program's output goes into besides the raw bytes.
pub trait Sink: Send + 'static {
    /// Takes one chunk as read; returns the bytes to write back to the
    /// program (a terminal's answers to its queries), usually none.
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8>;

    /// Called when no byte came for a poll interval (about 50 ms), with the
    /// time of the last byte: for a sink that keeps screens once settled.
    fn idle(&mut self, _last_byte: Option<Instant>) {}
}

/// Raw bytes only.
impl Sink for () {
    fn feed(&mut self, _chunk: &[u8]) -> Vec<u8> {
        Vec::new()
    }
}

/// A terminal emulator that answers nothing.
impl<C: vt100::Callbacks + Send + 'static> Sink for vt100::Parser<C> {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.process(chunk);
        Vec::new()
    }
}

/// What the reader thread shares with the test.
pub struct State<S> {
    /// The sink every chunk went into.
    pub sink: S,
    /// Every byte read so far (the last [`RAW_KEEP`] of them).
    pub raw: Vec<u8>,
    /// When the last chunk arrived.
    pub last_byte: Option<Instant>,
    /// Whether the output has ended: every slave fd closed (or the reader
    /// was stopped), so nothing on screen can change any more.
    pub eof: bool,
}

/// The reader of one PTY master, stopped and joined on drop.
pub struct Output<S> {
    shared: Arc<(Mutex<State<S>>, Condvar)>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl<S: Sink> Output<S> {
    /// Starts reading `master` into `sink`.
    pub fn start(master: File, sink: S) -> Output<S> {
        let shared = Arc::new((
            Mutex::new(State {
                sink,
                raw: Vec::new(),
                last_byte: None,
                eof: false,
            }),
            Condvar::new(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || read_loop(master, &shared, &stop))
        };
        Output {
            shared,
            stop,
            reader: Some(reader),
        }
    }

    /// The shared state, locked (a panic elsewhere does not poison it for
    /// the failure report).
    pub fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The raw output so far as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock().raw).into_owned()
    }

    /// Waits until `pred` holds, at most `deadline`; gives up early once the
    /// output has ended, since then it can no longer come to hold. Whether
    /// it holds.
    pub fn wait_until(&self, deadline: Duration, mut pred: impl FnMut(&State<S>) -> bool) -> bool {
        let end = Instant::now() + deadline;
        let (lock, cvar) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if pred(&state) {
                return true;
            }
            let now = Instant::now();
            if now >= end || state.eof {
                return false;
            }
            // Woken by every chunk; the timeout re-checks the deadline and
            // conditions that change without output (the clock).
            state = cvar
                .wait_timeout(state, (end - now).min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until no byte has arrived for `quiet` (or the output ended), at
    /// most `deadline`. Whether it settled.
    pub fn settle(&self, quiet: Duration, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        let (lock, cvar) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let since = state.last_byte.map_or(quiet, |t| t.elapsed());
            if state.eof || since >= quiet {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            state = cvar
                .wait_timeout(state, (quiet - since).min(end - now))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for the end of the output, at most `deadline`. Whether it came.
    pub fn wait_eof(&self, deadline: Duration) -> bool {
        self.wait_until(deadline, |s| s.eof)
    }
}

impl<S> Drop for Output<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Drains the master into the sink until EOF/EIO (every slave closed) or
/// `stop`, writing the sink's answers back. Polls with a timeout so that
/// drop can stop it even while a stray process still holds the slave open,
/// and so that an idle sink hears of the quiet.
fn read_loop<S: Sink>(mut master: File, shared: &(Mutex<State<S>>, Condvar), stop: &AtomicBool) {
    let mut buf = [0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(50u8)) {
            Ok(0) => {
                let mut s = shared.0.lock().unwrap_or_else(|e| e.into_inner());
                let last = s.last_byte;
                s.sink.idle(last);
                continue;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        let n = match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break, // EIO: the last slave fd was closed
        };
        let (lock, cvar) = shared;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        let replies = s.sink.feed(&buf[..n]);
        s.raw.extend_from_slice(&buf[..n]);
        if s.raw.len() > RAW_KEEP {
            let cut = s.raw.len() - RAW_KEEP;
            s.raw.drain(..cut);
        }
        s.last_byte = Some(Instant::now());
        cvar.notify_all();
        drop(s);
        // Outside the lock: the answer is already computed from the screen
        // at the query, and a program slow to read must not stall the test.
        if !replies.is_empty() {
            let _ = master.write_all(&replies);
        }
    }
    let (lock, cvar) = shared;
    lock.lock().unwrap_or_else(|e| e.into_inner()).eof = true;
    cvar.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pty::Pty;

    /// A sink that answers every chunk with `ack`.
    struct Echo(usize);

    impl Sink for Echo {
        fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
            self.0 += chunk.len();
            b"ack\n".to_vec()
        }
    }

    #[test]
    fn reads_until_every_slave_is_closed() {
        let pty = Pty::open(80, 24).unwrap();
        let out = Output::start(File::from(pty.master), ());
        let mut slave = File::from(pty.slave);
        slave.write_all(b"hello").unwrap();
        assert!(out.wait_until(Duration::from_secs(5), |s| s.raw == b"hello"));
        assert!(!out.lock().eof);
        drop(slave);
        assert!(out.wait_eof(Duration::from_secs(5)));
        // Over: a condition that does not hold gives up at once.
        let start = Instant::now();
        assert!(!out.wait_until(Duration::from_secs(30), |s| s.raw.is_empty()));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn answers_go_back_to_the_program_and_settle_sees_the_quiet() {
        let pty = Pty::open(80, 24).unwrap();
        // Raw, or the slave's echo of each answer would be answered again.
        let mut mode = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
        nix::sys::termios::cfmakeraw(&mut mode);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &mode)
            .unwrap();
        let out = Output::start(File::from(pty.master), Echo(0));
        let mut slave = File::from(pty.slave);
        slave.write_all(b"query\n").unwrap();
        assert!(out.wait_until(Duration::from_secs(5), |s| s.sink.0 > 0));
        let mut answer = [0u8; 4];
        slave.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"ack\n");
        assert!(out.settle(Duration::from_millis(100), Duration::from_secs(5)));
        assert!(!out.lock().eof);
    }

    #[test]
    fn a_vt100_sink_shows_the_screen() {
        let pty = Pty::open(20, 4).unwrap();
        let out = Output::start(File::from(pty.master), crate::term::parser(20, 4));
        File::from(pty.slave).write_all(b"\x1b[2;3Hhi").unwrap();
        assert!(out.wait_eof(Duration::from_secs(5)));
        assert_eq!(out.lock().sink.screen().contents(), "\n  hi");
        assert_eq!(out.text(), "\x1b[2;3Hhi");
    }
}
