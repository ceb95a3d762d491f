//! The byte stream of a tmux pane, for its recording and screen history.
//!
//! tmux shows a pane's screen, not the bytes that drew it. `pipe-pane -O`
//! copies every byte the pane's program writes to a command; here that
//! command writes into a FIFO this module reads, so each chunk gets its real
//! arrival time (a file written by `cat` would have none), and quiet spells
//! in the stream tell when the pane has settled, without polling tmux.
//!
//! Why the stream and not periodic `capture-pane`s: captures miss what is
//! drawn between two of them and flatten timing to the capture period; the
//! stream is exactly what the program wrote, so `asciinema play` replays
//! the session as a terminal showed it (tmux translates nothing on the
//! way in; the program's escape sequences are for `TERM=screen`, which
//! players that emulate xterm render).

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::cast::Recorder;
use crate::screens::Screens;

/// What the reader thread shares with the [`crate::Tmux`].
pub(crate) struct StreamState {
    /// The recording.
    pub cast: Recorder,
    /// The last settled screens, as tmux showed them.
    pub screens: Screens,
    last_byte: Option<Instant>,
    unsettled: bool,
}

impl StreamState {
    /// Marks the screen as changed (a resize changes it without a byte).
    pub fn changed(&mut self) {
        self.unsettled = true;
        self.last_byte = Some(Instant::now());
    }
}

/// Reads the pane's output from a FIFO until dropped.
pub(crate) struct PaneStream {
    state: Arc<Mutex<StreamState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PaneStream {
    /// Creates the FIFO `path` and starts reading it. `capture` renders the
    /// pane (snapshot format) once it has been quiet for `quiet`; it runs on
    /// the reader thread and returns `None` if tmux cannot answer (the
    /// server is going away).
    pub fn open(
        path: &Path,
        recorder: Recorder,
        quiet: Duration,
        capture: impl Fn() -> Option<String> + Send + 'static,
    ) -> std::io::Result<PaneStream> {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
        // Read-write: the open does not wait for a writer, and the FIFO never
        // reports end-of-file when `pipe-pane`'s writer goes, so the loop
        // ends only when told to.
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let state = Arc::new(Mutex::new(StreamState {
            cast: recorder,
            screens: Screens::default(),
            last_byte: None,
            unsettled: true,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || read_loop(fifo, &state, &stop, quiet, &capture))
        };
        Ok(PaneStream {
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The shared state.
    pub fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn read_loop(
    mut fifo: File,
    state: &Mutex<StreamState>,
    stop: &AtomicBool,
    quiet: Duration,
    capture: &dyn Fn() -> Option<String>,
) {
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    let mut buf = [0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(50u8)) {
            Ok(0) => {
                let due = {
                    let s = lock();
                    s.unsettled && s.last_byte.is_none_or(|t| t.elapsed() >= quiet)
                };
                // Captured outside the lock: it runs tmux.
                if due {
                    if let Some(screen) = capture() {
                        let mut s = lock();
                        s.unsettled = false;
                        let at = s.cast.elapsed();
                        s.screens.push(at, screen);
                    }
                }
                continue;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        match fifo.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut s = lock();
                s.cast.output(&buf[..n]);
                s.changed();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

impl Drop for PaneStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
