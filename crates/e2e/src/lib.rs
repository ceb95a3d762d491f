//! e2e: the end-to-end harness. Real PTYs ([`Term`]), a real tmux ([`Tmux`]),
//! the fake smolvm ([`Machine`]), and screen snapshots a person can read in a
//! diff ([`snapshot`]).
//!
//! Every helper is hermetic and parallel-safe: its own temp dirs, an
//! environment built from scratch ([`hermetic`]), and no process left behind
//! when it is dropped, whether the test passed or panicked.
//!
//! A wait that times out also writes `target/e2e-failures/<test file>.<test>/`
//! (the session as an asciicast, the last screens, the failing screen as
//! SVG, the log tails and the process tree; see [`failure`]) and prints
//! its path.
//!
//! Snapshots are checked with insta: `insta::assert_snapshot!("name",
//! term.snapshot())`. insta never accepts a snapshot by itself here: CI runs
//! with `CI=true INSTA_UPDATE=no` (see `.ci/run`), so a missing or changed
//! snapshot fails; a developer reviews `.snap.new` files with `cargo insta
//! review` or by reading them.

pub mod answer;
pub mod backend;
pub mod bins;
pub mod cast;
pub mod execs;
mod exit;
pub mod failure;
pub mod guest;
pub mod hermetic;
pub mod machine;
pub mod place;
pub mod procs;
pub mod proctree;
pub mod real_machine;
pub mod screens;
pub mod shell;
pub mod snapshot;
pub mod style;
pub mod svg;
pub mod term;
pub mod tmux;
mod tmux_server;
mod tmux_stream;
mod tmux_wait;
pub mod vm_exec;
pub mod wait;

pub use exit::Exit;

/// Says something in the test output even when the test passes (libtest
/// captures `eprintln!`, not direct writes to stderr): for a check that
/// could not run here, which must never pass silently.
pub fn note(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "NOTE: {message}");
}
pub use machine::Machine;
pub use term::Term;
pub use tmux::Tmux;
