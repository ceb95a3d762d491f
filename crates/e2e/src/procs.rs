//! Finding live processes by their command line, to prove that nothing a
//! test started outlives what should have ended it: the workspace's one
//! definition, [`testkit::procs`], under e2e's name.

pub use testkit::procs::{has_exited, running_with_arg};
