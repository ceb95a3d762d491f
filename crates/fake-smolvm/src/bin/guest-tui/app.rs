//! The event loop: draw, then wait for a key, a signal, a size change or the
//! --exit-after deadline, and redraw or quit.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossterm::{cursor, queue, style, terminal};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGWINCH};

use crate::record::Recorder;
use crate::tty::{self, FullScreen};
use crate::view::{self, Size, View};

/// What the command line asked for.
pub struct Config {
    /// `--label`.
    pub label: Option<String>,
    /// `--exit-after`.
    pub exit_after: Option<Duration>,
    /// `--exit-code`.
    pub exit_code: i32,
    /// `--record`.
    pub record: Option<PathBuf>,
}

/// How often the size is re-read even without a SIGWINCH: a backstop for a
/// size change whose signal went to another process group.
const SIZE_POLL: Duration = Duration::from_millis(100);

/// Signals that end guest-tui (after restoring the terminal) with 128+N.
const STOP_SIGNALS: [i32; 3] = [SIGTERM, SIGHUP, SIGINT];

/// Counters shown on the status line.
struct State {
    first: Option<Size>,
    frames: u64,
    winch: u64,
    drawn: Option<Size>,
}

/// Runs guest-tui until it quits; returns the exit status.
pub fn run(config: &Config) -> Result<i32> {
    // Handlers first, size second: a SIGWINCH that lands between the two is
    // then counted and redrawn instead of lost.
    let winch = signal_pipe(SIGWINCH)?;
    let stops = STOP_SIGNALS
        .iter()
        .map(|&sig| Ok((sig, signal_pipe(sig)?)))
        .collect::<Result<Vec<_>>>()?;
    let Some(start_size) = tty::size() else {
        bail!("not a terminal: neither stdout nor stdin is a TTY");
    };
    let mut recorder = match &config.record {
        Some(path) => {
            Some(Recorder::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        }
        None => None,
    };
    let deadline = config.exit_after.map(|d| Instant::now() + d);

    let _screen = FullScreen::enter().context("cannot set up the terminal")?;
    let mut state = State {
        first: None,
        frames: 0,
        winch: 0,
        drawn: None,
    };
    draw(config, &mut state, start_size, recorder.as_mut())?;

    let mut stdin = io::stdin();
    let mut stdin_open = true;
    loop {
        let wait = match deadline {
            Some(d) => SIZE_POLL.min(d.saturating_duration_since(Instant::now())),
            None => SIZE_POLL,
        };
        let mut fds = vec![PollFd::new(winch.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            stops
                .iter()
                .map(|(_, s)| PollFd::new(s.as_fd(), PollFlags::POLLIN)),
        );
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        let timeout =
            PollTimeout::try_from(wait.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::ZERO);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);

        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(config.exit_code);
        }
        // The signal pipes are drained whatever poll said: a signal that
        // interrupts poll (EINTR) leaves every revents empty although its
        // byte is already in the pipe, and the size it announces is already
        // readable, so it must be counted before the size is compared.
        for (sig, pipe) in &stops {
            if drain(pipe) > 0 {
                return Ok(128 + sig);
            }
        }
        let n = drain(&winch);
        state.winch += n;
        let redraw = n > 0;
        if stdin_open && ready[1 + stops.len()] {
            let mut buf = [0u8; 256];
            match stdin.read(&mut buf) {
                // EOF (stdin is not a terminal, or was closed): keep running
                // until a signal or --exit-after, just stop reading keys.
                Ok(0) => stdin_open = false,
                Ok(n) if buf[..n].iter().any(|&b| b == b'q' || b == 0x03) => {
                    return Ok(config.exit_code)
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EIO: the terminal hung up; end as a SIGHUP would.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(128 + SIGHUP),
                Err(e) => return Err(e).context("reading stdin"),
            }
        }
        let size = tty::size().or(state.drawn).unwrap_or(start_size);
        if redraw || state.drawn != Some(size) {
            draw(config, &mut state, size, recorder.as_mut())?;
        }
    }
}

/// Draws one full frame at `size` and records it.
fn draw(
    config: &Config,
    state: &mut State,
    size: Size,
    recorder: Option<&mut Recorder>,
) -> Result<()> {
    state.frames += 1;
    let first = *state.first.get_or_insert(size);
    let lines = view::screen_lines(&View {
        label: config.label.as_deref(),
        size,
        first,
        frames: state.frames,
        winch: state.winch,
    });
    // Build the whole frame first and write it at once, so a reader never
    // sees half a frame for longer than the kernel's buffering makes it.
    let mut out = Vec::new();
    queue!(out, terminal::Clear(terminal::ClearType::All))?;
    for (row, line) in lines.iter().enumerate() {
        queue!(out, cursor::MoveTo(0, row as u16), style::Print(line))?;
    }
    let mut stdout = io::stdout().lock();
    stdout.write_all(&out).context("writing the frame")?;
    stdout.flush().context("writing the frame")?;
    state.drawn = Some(size);
    if let Some(recorder) = recorder {
        recorder
            .frame(state.frames, size)
            .context("writing the record file")?;
    }
    Ok(())
}

/// A socket that receives one byte each time `signal` is delivered.
fn signal_pipe(signal: i32) -> Result<UnixStream> {
    let (read, write) = UnixStream::pair().context("socketpair")?;
    read.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(signal, write)
        .with_context(|| format!("cannot handle signal {signal}"))?;
    Ok(read)
}

/// Reads every pending byte of a signal pipe; returns how many (= signals).
fn drain(mut pipe: &UnixStream) -> u64 {
    let mut total = 0;
    let mut buf = [0u8; 64];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total
}
