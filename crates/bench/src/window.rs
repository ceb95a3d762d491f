//! The crun-window row: a resize the moment the terminal goes raw — smolvm's
//! client got `started`, but the session's container is not running yet (the
//! fake's crun window, `FAKE_SMOLVM_CRUN_MS`, 300 ms by default). Any exec
//! touching the machine in that window loses the session (its config.json
//! torn: exit 1), so the question is twofold: is the session lost, and how
//! long after the window's end does the guest show the new size?

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use fake_smolvm::exec_log::monotonic_ms;
use serde::Serialize;

use crate::frames;
use crate::interactive::{quit, wait_frame, HOST, OTHER};
use crate::lab::{main_exec_of, Lab, Variant};
use crate::robust::{verdict, wait_until, Robust};

/// The long crun window of the second window row, ms: longer than the CLI
/// transports' 2 s settle margin (a slow disk, a loaded host or a cold
/// image is all it takes; issue 15).
pub const LONG_CRUN_MS: u64 = 2600;

/// What the launches of the row gave.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    /// Sessions lost, and which ended at the final size.
    pub robust: Robust,
    /// Resizes that landed inside the main exec's crun window (as its record
    /// says: `window_start_ms ≤ resize ≤ window_end_ms`).
    pub inside: usize,
    /// Per session whose guest showed the new size: that frame's time minus
    /// the crun window's end, ms.
    pub after_window_ms: Vec<f64>,
    /// Per such session: host resize → that frame, ms.
    pub resize_to_frame_ms: Vec<f64>,
}

/// The terminal a process has as stdin, opened without becoming its
/// controlling terminal, to read its mode.
fn open_stdin_tty(pid: u32) -> Option<File> {
    let path = std::fs::read_link(format!("/proc/{pid}/fd/0")).ok()?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .ok()
}

/// Whether the terminal is in raw mode (canonical mode and echo off): what
/// smolvm's client does when `started` arrives.
fn is_raw(tty: &File) -> bool {
    // SAFETY: termios is plain data; tcgetattr fills it or fails.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a valid pointer to a termios.
    let rc = unsafe { libc::tcgetattr(tty.as_raw_fd(), &mut t) };
    rc == 0 && t.c_lflag & (libc::ICANON | libc::ECHO) == 0
}

/// One launch: wait for raw mode, resize at once, wait for the guest.
pub fn launch(lab: &Lab, out: &mut Window) {
    let record = lab.fresh_path("frames.jsonl");
    let mut launch = lab.launch(HOST, &lab.guest_tui(&record));
    let term = &mut launch.term;
    let tty = open_stdin_tty(term.pid());
    let raw = tty
        .as_ref()
        .is_some_and(|tty| wait_until(Duration::from_secs(5), || is_raw(tty) || term_gone(term)));
    drop(tty);
    let resized_ms = monotonic_ms();
    term.resize(OTHER.0, OTHER.1);
    // smolvm alone never resizes the guest: no point waiting for it.
    let deadline = if lab.variant == Variant::Direct { 1 } else { 8 };
    let hit = wait_frame(
        &record,
        OTHER,
        resized_ms,
        Duration::from_secs(deadline),
        term,
    );
    quit(term, Duration::from_secs(5));
    let launch_ms = launch.launch_ms;
    drop(launch);
    lab.quiesce();
    let drew = !frames::read(&record).is_empty();
    let records = lab.records_since(launch_ms);
    let main = main_exec_of(&records, &record);
    out.robust.add(verdict(main, drew));
    out.robust.reached(hit.is_some());
    if !raw {
        eprintln!(
            "bench: window {}: the terminal never went raw",
            lab.variant.key()
        );
    }
    let window = main.and_then(|m| Some((m.window_start_ms?, m.window_end_ms?)));
    if let Some((start, end)) = window {
        if (start..=end).contains(&resized_ms) {
            out.inside += 1;
        }
        if let Some((frame, _)) = hit {
            out.after_window_ms.push(frame.ms - end);
            out.resize_to_frame_ms.push(frame.ms - resized_ms);
        }
    }
}

fn term_gone(term: &mut e2e::Term) -> bool {
    term.try_exit().is_some()
}
