//! The errors that end the wrapper before the command starts, and the one
//! mapping from an error to an exit code.

use crate::log::OpenError;
use crate::version::ResolveError;

/// Exit code for usage errors.
pub const EXIT_USAGE: i32 = 2;
/// Exit code when the program cannot be run.
pub const EXIT_CANNOT_RUN: i32 = 127;
/// Exit code for an internal error before the child started.
pub const EXIT_INTERNAL: i32 = 1;

/// Why the wrapper stops before (or instead of) running the command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line: the one-line message (clap's hints folded in).
    #[error("error: {0} (try 'pty-resize --help')")]
    Usage(String),
    /// The program (or `--smolvm`) cannot be run.
    #[error("cannot run '{program}': {reason}")]
    CannotRun {
        /// As given.
        program: String,
        /// Why.
        reason: String,
    },
    /// `--log` cannot be used.
    #[error(transparent)]
    Log(#[from] OpenError),
    /// Anything else before the command started.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The documented exit code of this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::CannotRun { .. } => EXIT_CANNOT_RUN,
            Self::Log(_) | Self::Internal(_) => EXIT_INTERNAL,
        }
    }

    /// A program that did not resolve.
    pub fn cannot_run(program: &str, e: &ResolveError) -> Self {
        Self::CannotRun {
            program: program.to_string(),
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_lines() {
        let e = Error::Usage("x".into());
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.to_string(), "error: x (try 'pty-resize --help')");
        let e = Error::cannot_run("smolvm", &ResolveError::NotExecutable);
        assert_eq!(e.exit_code(), 127);
        assert_eq!(
            e.to_string(),
            "cannot run 'smolvm': permission denied (not executable)"
        );
        assert_eq!(Error::Internal("y".into()).exit_code(), 1);
        let e = Error::from(OpenError::FifoWithoutReader("f".into()));
        assert_eq!(e.exit_code(), 1);
        assert_eq!(e.to_string(), "cannot open log 'f': a FIFO with no reader");
    }
}
