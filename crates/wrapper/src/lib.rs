//! pty-resize: keeps a smolvm guest's PTY at the host terminal's size.
//!
//! `pty-resize [OPTIONS] <MACHINE> -- <SMOLVM ARGV…>` runs the smolvm command
//! as a child on the same terminal and bridges the window size into the
//! guest. The decisions are a pure state machine ([`state`]); the modules
//! around it each do one job. See the crate README for the design.

pub mod channel;
pub mod cli;
pub mod log;
pub mod readiness;
pub mod run;
pub mod script;
pub mod size;
pub mod smolvm_argv;
pub mod state;
pub mod version;
