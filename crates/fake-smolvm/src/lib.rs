//! fake-smolvm: a stand-in for smolvm 0.8.0 that reproduces its terminal bugs.
//!
//! The library holds what other crates need to read the fake's output (the
//! exec log, where a machine's folder is) as well as the fake's own modules.
//! See the crate README.

mod agent;
pub mod cli;
mod client;
mod crun;
pub mod exec_log;
pub mod fail;
pub mod host;
mod lifecycle;
mod machine;
pub mod oci;
pub mod registry;
pub mod settings;
pub mod stdin_kind;
pub mod wire;
