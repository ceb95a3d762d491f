//! Waiting on a condition with a deadline, never a fixed sleep.

use std::time::{Duration, Instant};

/// How often a condition that cannot be waited on directly is re-checked.
pub(crate) const POLL: Duration = Duration::from_millis(10);

/// Checks `ready` until it returns `Some` or `deadline` has passed.
pub(crate) fn poll_until<T>(deadline: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(POLL);
    }
}
