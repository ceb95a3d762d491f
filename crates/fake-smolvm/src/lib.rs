//! fake-smolvm: a stand-in for smolvm 0.8.0 that reproduces its terminal bugs.
//!
//! The library holds what other crates need to read the fake's output (the
//! exec log) as well as the fake's own modules.

pub mod exec_log;
