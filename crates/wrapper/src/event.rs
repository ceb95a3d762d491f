//! What the session's routing loop reacts to. Below every module that
//! produces or consumes events (the pusher, the side processes, the lock,
//! the session), so nothing imports upward.

use std::fs::File;
use std::process::ExitStatus;
use std::time::Duration;

/// A signal the wrapper catches, typed where it is caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// The terminal was resized.
    Winch,
    /// Termination request: forwarded to the child.
    Term,
    /// Hang-up: forwarded to the child.
    Hup,
    /// Ctrl-C: the terminal sends it to the child too; the wrapper ignores it.
    Int,
    /// Ctrl-\: as for `Int`.
    Quit,
}

impl Sig {
    /// The signals the wrapper installs handlers for, with their numbers.
    pub const ALL: [(i32, Sig); 5] = [
        (libc::SIGWINCH, Sig::Winch),
        (libc::SIGTERM, Sig::Term),
        (libc::SIGHUP, Sig::Hup),
        (libc::SIGINT, Sig::Int),
        (libc::SIGQUIT, Sig::Quit),
    ];

    /// The typed signal of a caught number.
    pub fn from_raw(n: i32) -> Option<Sig> {
        Self::ALL.iter().find(|(r, _)| *r == n).map(|(_, s)| *s)
    }

    /// The signal number.
    pub fn raw(self) -> i32 {
        Self::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or(0, |(r, _)| *r)
    }

    /// The conventional name (`SIGTERM`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Winch => "SIGWINCH",
            Self::Term => "SIGTERM",
            Self::Hup => "SIGHUP",
            Self::Int => "SIGINT",
            Self::Quit => "SIGQUIT",
        }
    }
}

/// Which bring-up a machine lock is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The session's own `machine exec -t`.
    Main,
    /// A side channel (the persistent channel or one push exec).
    Side,
}

impl Purpose {
    /// The log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Side => "side",
        }
    }
}

/// What a side process reports (read by threads, routed to the pusher).
#[derive(Debug)]
pub enum SideReport {
    /// A one-exec push ended.
    ExecDone {
        /// The push id.
        id: u64,
        /// Its exit status (`None`: it could not be waited for).
        status: Option<ExitStatus>,
        /// The first non-empty line of its stderr, else of its stdout.
        message: String,
    },
    /// A line from the persistent channel's stdout.
    ChannelLine(String),
    /// A line from the persistent channel's stderr.
    ChannelStderr(String),
    /// The persistent channel's stdout closed.
    ChannelEof,
    /// [`crate::pusher::EOF_GRACE`] passed since the channel's end and the
    /// session is still on: the channel died (not the session's end).
    ChannelEofSettled,
    /// A `vm_exec` of the agent transport (probe or push) ended.
    Agent {
        /// The probe or push id.
        id: u64,
        /// How it ended.
        outcome: crate::state::AgentOutcome,
    },
}

/// What the pusher tells the session about a push (routed to the state machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushReport {
    /// Push `id` ended.
    Done {
        /// The push.
        id: u64,
        /// How it ended.
        outcome: crate::state::Outcome,
    },
    /// The transport carrying the push in flight died; later pushes use exec.
    TransportDied {
        /// Why.
        reason: String,
    },
    /// Probe or push `id` of the agent transport ended.
    Agent {
        /// The probe or push.
        id: u64,
        /// How it ended.
        outcome: crate::state::AgentOutcome,
    },
}

/// Everything the routing loop reacts to.
#[derive(Debug)]
pub enum Event {
    /// A signal caught by the signal thread.
    Signal(Sig),
    /// The wrapped command ended.
    ChildExited(ExitStatus),
    /// A machine lock waited for in the background is now held.
    Locked {
        /// Which bring-up it is for.
        purpose: Purpose,
        /// The open file description that holds the `flock`.
        file: File,
        /// How long the wait took.
        waited: Duration,
    },
    /// Something a side process said.
    Side(SideReport),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip() {
        for (n, s) in Sig::ALL {
            assert_eq!(Sig::from_raw(n), Some(s));
            assert_eq!(s.raw(), n);
            assert!(s.name().starts_with("SIG"));
        }
        assert_eq!(Sig::from_raw(libc::SIGUSR1), None);
        assert_eq!(Sig::Term.name(), "SIGTERM");
        assert_eq!(Purpose::Main.as_str(), "main");
        assert_eq!(Purpose::Side.as_str(), "side");
    }
}
