//! guest-tui: the full-screen program that runs inside the fake guest.
//!
//! It shows its own view of its terminal: the size the PTY reports (0x0
//! included), the size of its first frame, how many frames it drew and how
//! many SIGWINCH it got, above a box drawn at the size it believes in. A
//! screen snapshot thus shows at a glance whether the size was right from the
//! first frame and whether resizes arrive. Contract: docs/contracts.md.

mod app;
mod record;
mod tty;
mod view;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// A full-screen test program that shows the terminal size it sees.
///
/// Row 1 reads `guest-tui [LABEL] size COLSxROWS first COLSxROWS frames N
/// winch N`; below it a box is drawn at the believed size. It redraws on every
/// SIGWINCH and whenever the size changes.
///
/// Keys: `q` (or Ctrl-C) quits with --exit-code.
///
/// Exit status: --exit-code on `q` or --exit-after; 128+N when ended by
/// SIGTERM, SIGHUP or SIGINT (after restoring the terminal); 1 on an error
/// (no terminal, record file not writable); 2 on a usage error.
#[derive(Debug, Parser)]
#[command(name = "guest-tui", version)]
struct Args {
    /// Text shown after `guest-tui` on the status line, to tell sessions apart.
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,

    /// Quit by itself after this many milliseconds, with --exit-code.
    #[arg(long, value_name = "MS")]
    exit_after: Option<u64>,

    /// The exit status to quit with on `q` or --exit-after.
    #[arg(long, value_name = "N", default_value_t = 0)]
    exit_code: u8,

    /// Append one JSON line per frame drawn to FILE:
    /// {"frame":N,"cols":C,"rows":R,"ms":<CLOCK_MONOTONIC ms>}.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let config = app::Config {
        label: args.label,
        exit_after: args.exit_after.map(Duration::from_millis),
        exit_code: i32::from(args.exit_code),
        record: args.record,
    };
    match app::run(&config) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(1);
        }
    }
}
