//! Waiting on a condition with a deadline, never a fixed sleep: the
//! workspace's one definition, [`testkit::wait`], under e2e's name.

pub use testkit::wait::{poll_until, wait_for, POLL};
