//! The one error type of the CLI: a message printed as `Error: …` and an exit code.

use std::fmt;

/// A failure the CLI reports as `Error: <message>` and exits with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    /// Exit code (1 for every runtime error, as smolvm does).
    pub code: i32,
    /// The message, without the `Error: ` prefix.
    pub message: String,
}

/// Result of a CLI step.
pub type Res<T> = Result<T, Fail>;

/// A runtime error: exit 1.
pub fn fail(message: impl Into<String>) -> Fail {
    Fail {
        code: 1,
        message: message.into(),
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error: {}", self.message)
    }
}
