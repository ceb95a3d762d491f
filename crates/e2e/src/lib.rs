//! e2e: the end-to-end harness. Real PTYs ([`Term`]), a real tmux ([`Tmux`]),
//! the fake smolvm ([`Machine`]), and screen snapshots a person can read in a
//! diff ([`snapshot`]).
//!
//! Every helper is hermetic and parallel-safe: its own temp dirs, an
//! environment built from scratch ([`hermetic`]), and no process left behind
//! when it is dropped, whether the test passed or panicked.
//!
//! Snapshots are checked with insta: `insta::assert_snapshot!("name",
//! term.snapshot())`. insta never accepts a snapshot by itself here: CI runs
//! with `CI=true INSTA_UPDATE=no` (see `.ci/run`), so a missing or changed
//! snapshot fails; a developer reviews `.snap.new` files with `cargo insta
//! review` or by reading them.

pub mod bins;
pub mod execs;
mod exit;
mod failure;
pub mod guest;
pub mod hermetic;
pub mod machine;
pub mod procs;
pub mod shell;
pub mod snapshot;
pub mod term;
pub mod tmux;
pub mod wait;

pub use exit::Exit;
pub use machine::Machine;
pub use term::Term;
pub use tmux::Tmux;
