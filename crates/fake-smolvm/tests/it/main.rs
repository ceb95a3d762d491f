//! fake-smolvm's integration tests: one binary (one link) with a module per
//! subject. Every test has its own state folders (`common::Home`), stops its
//! machines with a guard, waits for conditions with deadlines (never a fixed
//! sleep) and, on a timeout, shows the PTY output, exec.log and agent.log.
//!
//! Clients: the fake's own `machine exec`, and the real smolvm 0.8.0 client
//! from `../shared/smolvm-0.8.0/smolvm` when it is there (a test that needs
//! it says "skipped: no real client at <path>" otherwise).

mod agent_limits;
mod bad_input;
mod clients;
mod common;
mod compat_081;
mod determinism;
mod evidence;
mod exec_log;
mod faults;
mod guest_tui;
mod isolation;
mod lifecycle;
mod machine;
mod main_container;
mod procs;
mod pty;
mod vm_level;
