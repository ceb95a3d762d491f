//! testkit: the pieces every crate's tests need to run a program the way a
//! person would, and to wait for it without a fixed sleep.
//!
//! - [`pty`]: a PTY sized (and close-on-exec) before the program exists, and
//!   a command wired onto it as its controlling terminal;
//! - [`winsize`]: a terminal's size, read and set;
//! - [`output`]: a PTY's output read on a thread into a sink (a `vt100`
//!   emulator, or raw bytes only), with a condvar to wait on;
//! - [`term`]: the two together — a program on a PTY of a chosen size, read
//!   continuously, killed with its process group on drop;
//! - [`procs`] and [`proctree`]: has a process exited, which processes carry
//!   an argument, the tree under a pid;
//! - [`wait`]: deadline waits that say what they saw when they give up;
//! - [`bins`]: a workspace binary, rebuilt by cargo when stale.
//!
//! It knows nothing of smolvm, the fake or the wrapper: every crate's tests
//! use it (as a dev-dependency, or e2e as a dependency), so it sits below
//! them all and imports none of them.

pub mod bins;
pub mod output;
pub mod procs;
pub mod proctree;
pub mod pty;
pub mod term;
pub mod wait;
pub mod winsize;

pub use term::Term;
