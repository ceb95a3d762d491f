//! Shared helpers: hermetic state folders, machines that stop on drop, the
//! two clients, PTYs the test owns (with a handle on the client's stdin open
//! file description, to read its termios and O_NONBLOCK), and waits with
//! deadlines whose panics show what was seen.
//!
//! This file is the one import of every test module (`use crate::common::*`)
//! and nothing else; each job lives in its own module: [`crate::machine`]
//! (the binary, clients, homes, machines), [`crate::evidence`] (exec.log and
//! what a machine leaves behind), [`crate::pty`] (PTY sessions) and
//! [`crate::procs`] (processes and waits).

pub use crate::machine::*;
pub use crate::procs::*;
pub use crate::pty::*;
