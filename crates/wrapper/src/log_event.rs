//! Every decision the wrapper logs, as one typed enum (the log's contract).
//!
//! Each variant is one `event=` name; its fields are written in the order
//! listed. Times are milliseconds with three decimals; sizes are `COLSxROWS`;
//! an absent size is `none`.

use std::time::Duration;

use crate::size::Size;

/// One decision-log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// `open pid= wrapper=`: first line of every wrapper run.
    Open {
        /// The wrapper's pid.
        pid: u32,
        /// The wrapper's version.
        wrapper: &'static str,
    },
    /// `version version=X.Y.Z|unknown source=cache|query probe=…` (`probe`:
    /// `version`, `no-version`, `timeout`, `failed`; `error` when failed).
    Version {
        /// The version, if one is known.
        version: Option<(u64, u64, u64)>,
        /// `cache` or `query`.
        source: &'static str,
        /// What the probe saw.
        probe: &'static str,
        /// The failure, for `probe=failed`.
        error: Option<String>,
    },
    /// `passthrough reason=`: the argv is exec'd unchanged (`not-a-tty`,
    /// `no-tty-exec`).
    Passthrough {
        /// Why no bridge is needed.
        reason: &'static str,
    },
    /// `size size= at=start|winch` (+ `invalid=` when `size=none`).
    Size {
        /// The valid size read, if any.
        size: Option<Size>,
        /// When it was read.
        at: &'static str,
        /// Why there is no valid size (`no-terminal`, `unsized`, `out-of-range-CxR`).
        invalid: Option<String>,
    },
    /// `prologue applied=true size=` or `prologue applied=false reason=`
    /// (nothing is recorded in the guest: the session is found by its marker).
    Prologue {
        /// The size, when applied.
        applied: Option<Size>,
        /// Why not (`disabled`, `no-size`, `no-command`).
        reason: Option<&'static str>,
    },
    /// `no-resize reason=`: no SIGWINCH can reach the wrapper (e.g.
    /// `no-controlling-terminal`), so only the prologue's size will apply.
    NoResize {
        /// Why.
        reason: String,
    },
    /// `lock-wait for=main|side path=`: another session holds the machine's
    /// bring-up lock; this one waits.
    LockWait {
        /// Which bring-up waits.
        purpose: &'static str,
        /// The lock file.
        path: String,
    },
    /// `lock for=main|side waited_ms= path=`: the lock is held.
    Lock {
        /// Which bring-up holds it.
        purpose: &'static str,
        /// How long the wait took.
        waited: Duration,
        /// The lock file.
        path: String,
    },
    /// `lock-unavailable for= reason=`: the lock file cannot be used; the
    /// session goes on uncoordinated.
    LockUnavailable {
        /// Which bring-up wanted it.
        purpose: &'static str,
        /// Why.
        reason: String,
    },
    /// `unlock for=main|side held_ms=`.
    Unlock {
        /// Which bring-up released it.
        purpose: &'static str,
        /// How long it was held.
        held: Duration,
    },
    /// `start pid= size= prologue= readiness=raw|nonblock|timer settle_ms=
    /// fallback_ms= transport=agent|channel|exec|native`: the main exec was spawned.
    Start {
        /// The child's pid.
        pid: u32,
        /// The host size at start.
        size: Option<Size>,
        /// Whether the prologue sizes the guest PTY.
        prologue: bool,
        /// How readiness is detected.
        readiness: &'static str,
        /// Margin after the observed start.
        settle: Duration,
        /// Timer from launch when nothing can be observed.
        fallback: Duration,
        /// How sizes reach the guest.
        transport: &'static str,
    },
    /// `started via=raw|nonblock after_ms=`: smolvm's client switched the
    /// terminal (it got `started`); the container is not running yet.
    Started {
        /// What was observed.
        via: &'static str,
        /// Since launch.
        after: Duration,
    },
    /// `ready via=marker|raw+settle|nonblock+settle|timer after_ms=`: side channels are safe now
    /// (`marker`: the agent transport saw the session's program).
    Ready {
        /// Why readiness was declared.
        via: &'static str,
        /// Since launch.
        after: Duration,
    },
    /// `nudge size= prologue=`: native forwarding (0.8.1+); SIGWINCH sent to
    /// smolvm so it re-sends a size that changed since the prologue's.
    Nudge {
        /// The host size now.
        size: Size,
        /// The prologue's size (`none`: no prologue).
        prologue: Option<Size>,
    },
    /// `push id= size= transport=agent|channel|exec`.
    Push {
        /// Push id.
        id: u64,
        /// Size pushed.
        size: Size,
        /// How.
        transport: &'static str,
    },
    /// `push-done id= size= took_ms=`.
    PushDone {
        /// Push id.
        id: u64,
        /// Size pushed.
        size: Size,
        /// Duration of the push.
        took: Duration,
    },
    /// `push-failed id= size= took_ms= reason=` (+ `retry=now` when the
    /// transport died and the size is pushed again at once).
    PushFailed {
        /// Push id.
        id: u64,
        /// Size pushed.
        size: Size,
        /// Duration of the push.
        took: Duration,
        /// Why.
        reason: String,
        /// Retried at once.
        retry: bool,
    },
    /// `coalesce size= in_flight=` (+ `replaces=`): queued behind the push in flight.
    Coalesce {
        /// The new size.
        size: Size,
        /// The size in flight.
        in_flight: Size,
        /// The queued size it replaces.
        replaces: Option<Size>,
    },
    /// `skip size= reason=unchanged`.
    Skip {
        /// The size not pushed.
        size: Size,
    },
    /// `channel-open pid=`: the persistent channel was spawned (its bring-up begins).
    ChannelOpen {
        /// The channel client's pid.
        pid: u32,
    },
    /// `channel-running pid= after_ms=`: its first answer arrived (bring-up over).
    ChannelRunning {
        /// The channel client's pid.
        pid: u32,
        /// Since it was opened.
        after: Duration,
    },
    /// `channel-dead reason=` (+ `status=`, `stderr=`): the channel is gone;
    /// later pushes use one exec each.
    ChannelDead {
        /// Why.
        reason: String,
        /// Its exit status, if reaped.
        status: Option<String>,
        /// Its last stderr line.
        stderr: Option<String>,
    },
    /// `channel-closed reason=session-ended` (+ `status=`): the channel
    /// ended with the session (smolvm kills it when the main command ends,
    /// 137): the normal end of a channel, not a failure.
    ChannelClosed {
        /// Why.
        reason: String,
        /// Its exit status, if reaped.
        status: Option<String>,
    },
    /// `agent socket= marker=`: pushes go through the machine's agent
    /// socket (`vm_exec` at VM level); the main exec carries the marker.
    Agent {
        /// The agent socket.
        socket: String,
        /// The session's marker (`PTY_RESIZE_SESSION`).
        marker: String,
    },
    /// `agent-fallback reason=`: the agent transport is given up (once);
    /// the CLI transports (raw + settle) take over.
    AgentFallback {
        /// Why.
        reason: String,
    },
    /// `signal signal= action=forwarded|ignored` (+ `ok=` when forwarded).
    Signal {
        /// Signal name.
        signal: String,
        /// What the wrapper did.
        action: &'static str,
        /// Whether forwarding worked.
        ok: Option<bool>,
    },
    /// `restore termios=restored|unchanged|failed flags=…`: the terminal
    /// after a session that ended by a signal.
    Restore {
        /// The terminal mode.
        termios: &'static str,
        /// fd 0's status flags (O_NONBLOCK).
        flags: &'static str,
    },
    /// `guardian pid=` or `guardian reason=`: the process that hands the
    /// terminal back should the wrapper be SIGKILLed, or why there is none.
    Guardian {
        /// Its pid, when it runs.
        pid: Option<u32>,
        /// Why it does not.
        reason: Option<String>,
    },
    /// `hold deadline_ms= until=program|deadline`: the session ended before
    /// it was ready; its bring-up may go on in the VM, so the machine lock
    /// goes to a keeper until the VM shows the program, or the deadline.
    Hold {
        /// The longest the keeper holds the lock.
        deadline: Duration,
        /// `program` (the agent transport can see it) or `deadline`.
        until: &'static str,
    },
    /// `hold-done outcome=seen|machine-gone|deadline after_ms [ignored=…]`
    /// (written by the keeper, after the wrapper's `exit`).
    HoldDone {
        /// `seen` (the VM shows the program), `machine-gone` (its agent
        /// socket went away: stopped) or `deadline`.
        outcome: &'static str,
        /// Since the hand-over.
        after: Duration,
        /// Termination signals the keeper got and ignored, comma-separated.
        ignored: Option<String>,
    },
    /// `handoff pid= deadline_ms=`: a side channel still in its bring-up is
    /// left to finish under a supervisor.
    Handoff {
        /// The side channel's pid.
        pid: u32,
        /// How long it may take before it is killed.
        deadline: Duration,
    },
    /// `handoff-done pid= outcome=exited|killed after_ms=` (written by the supervisor).
    HandoffDone {
        /// The side channel's pid.
        pid: u32,
        /// `exited` (by itself) or `killed` (deadline).
        outcome: &'static str,
        /// Since the hand-off.
        after: Duration,
        /// Termination signals the supervisor received and ignored (the
        /// bring-up must finish: its deadline bounds it), comma-separated.
        ignored: Option<String>,
    },
    /// `exit code= status=`: the wrapper's exit (status: `exit-N`, `signal-N`, or a reason).
    Exit {
        /// The wrapper's exit code.
        code: i32,
        /// What ended the session.
        status: String,
    },
}

/// Milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn opt(size: Option<Size>) -> String {
    size.map_or_else(|| "none".to_string(), |s| s.to_string())
}

impl LogEvent {
    /// The `event=` name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Open { .. } => "open",
            Self::Version { .. } => "version",
            Self::Passthrough { .. } => "passthrough",
            Self::Size { .. } => "size",
            Self::Prologue { .. } => "prologue",
            Self::NoResize { .. } => "no-resize",
            Self::LockWait { .. } => "lock-wait",
            Self::Lock { .. } => "lock",
            Self::LockUnavailable { .. } => "lock-unavailable",
            Self::Unlock { .. } => "unlock",
            Self::Start { .. } => "start",
            Self::Started { .. } => "started",
            Self::Ready { .. } => "ready",
            Self::Nudge { .. } => "nudge",
            Self::Push { .. } => "push",
            Self::PushDone { .. } => "push-done",
            Self::PushFailed { .. } => "push-failed",
            Self::Coalesce { .. } => "coalesce",
            Self::Skip { .. } => "skip",
            Self::ChannelOpen { .. } => "channel-open",
            Self::ChannelRunning { .. } => "channel-running",
            Self::ChannelDead { .. } => "channel-dead",
            Self::ChannelClosed { .. } => "channel-closed",
            Self::Agent { .. } => "agent",
            Self::AgentFallback { .. } => "agent-fallback",
            Self::Signal { .. } => "signal",
            Self::Restore { .. } => "restore",
            Self::Guardian { .. } => "guardian",
            Self::Hold { .. } => "hold",
            Self::HoldDone { .. } => "hold-done",
            Self::Handoff { .. } => "handoff",
            Self::HandoffDone { .. } => "handoff-done",
            Self::Exit { .. } => "exit",
        }
    }

    /// The fields after `event=`, in order.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        fn s(v: &str) -> String {
            v.to_string()
        }
        let mut f = Vec::new();
        match self {
            Self::Open { pid, wrapper } => {
                f.push(("pid", pid.to_string()));
                f.push(("wrapper", s(wrapper)));
            }
            Self::Version {
                version,
                source,
                probe,
                error,
            } => {
                let v =
                    version.map_or_else(|| "unknown".into(), |(a, b, c)| format!("{a}.{b}.{c}"));
                f.push(("version", v));
                f.push(("source", s(source)));
                f.push(("probe", s(probe)));
                f.extend(error.clone().map(|e| ("error", e)));
            }
            Self::Passthrough { reason } => f.push(("reason", s(reason))),
            Self::Size { size, at, invalid } => {
                f.push(("size", opt(*size)));
                f.push(("at", s(at)));
                f.extend(invalid.clone().map(|e| ("invalid", e)));
            }
            Self::Prologue { applied, reason } => {
                f.push(("applied", applied.is_some().to_string()));
                if let Some(size) = applied {
                    f.push(("size", size.to_string()));
                }
                f.extend(reason.map(|r| ("reason", s(r))));
            }
            Self::NoResize { reason } => f.push(("reason", reason.clone())),
            Self::LockWait { purpose, path } => {
                f.push(("for", s(purpose)));
                f.push(("path", path.clone()));
            }
            Self::Lock {
                purpose,
                waited,
                path,
            } => {
                f.push(("for", s(purpose)));
                f.push(("waited_ms", ms(*waited)));
                f.push(("path", path.clone()));
            }
            Self::LockUnavailable { purpose, reason } => {
                f.push(("for", s(purpose)));
                f.push(("reason", reason.clone()));
            }
            Self::Unlock { purpose, held } => {
                f.push(("for", s(purpose)));
                f.push(("held_ms", ms(*held)));
            }
            Self::Start {
                pid,
                size,
                prologue,
                readiness,
                settle,
                fallback,
                transport,
            } => {
                f.push(("pid", pid.to_string()));
                f.push(("size", opt(*size)));
                f.push(("prologue", prologue.to_string()));
                f.push(("readiness", s(readiness)));
                f.push(("settle_ms", settle.as_millis().to_string()));
                f.push(("fallback_ms", fallback.as_millis().to_string()));
                f.push(("transport", s(transport)));
            }
            Self::Started { via, after } | Self::Ready { via, after } => {
                f.push(("via", s(via)));
                f.push(("after_ms", ms(*after)));
            }
            Self::Nudge { size, prologue } => {
                f.push(("size", size.to_string()));
                f.push(("prologue", opt(*prologue)));
            }
            Self::Push {
                id,
                size,
                transport,
            } => {
                f.push(("id", id.to_string()));
                f.push(("size", size.to_string()));
                f.push(("transport", s(transport)));
            }
            Self::PushDone { id, size, took } => {
                f.push(("id", id.to_string()));
                f.push(("size", size.to_string()));
                f.push(("took_ms", ms(*took)));
            }
            Self::PushFailed {
                id,
                size,
                took,
                reason,
                retry,
            } => {
                f.push(("id", id.to_string()));
                f.push(("size", size.to_string()));
                f.push(("took_ms", ms(*took)));
                f.push(("reason", reason.clone()));
                if *retry {
                    f.push(("retry", s("now")));
                }
            }
            Self::Coalesce {
                size,
                in_flight,
                replaces,
            } => {
                f.push(("size", size.to_string()));
                f.push(("in_flight", in_flight.to_string()));
                f.extend(replaces.map(|r| ("replaces", r.to_string())));
            }
            Self::Skip { size } => {
                f.push(("size", size.to_string()));
                f.push(("reason", s("unchanged")));
            }
            Self::ChannelOpen { pid } => f.push(("pid", pid.to_string())),
            Self::ChannelRunning { pid, after } => {
                f.push(("pid", pid.to_string()));
                f.push(("after_ms", ms(*after)));
            }
            Self::ChannelDead {
                reason,
                status,
                stderr,
            } => {
                f.push(("reason", reason.clone()));
                f.extend(status.clone().map(|v| ("status", v)));
                f.extend(stderr.clone().map(|v| ("stderr", v)));
            }
            Self::ChannelClosed { reason, status } => {
                f.push(("reason", reason.clone()));
                f.extend(status.clone().map(|v| ("status", v)));
            }
            Self::Agent { socket, marker } => {
                f.push(("socket", socket.clone()));
                f.push(("marker", marker.clone()));
            }
            Self::AgentFallback { reason } => f.push(("reason", reason.clone())),
            Self::Signal { signal, action, ok } => {
                f.push(("signal", signal.clone()));
                f.push(("action", s(action)));
                f.extend(ok.map(|v| ("ok", v.to_string())));
            }
            Self::Restore { termios, flags } => {
                f.push(("termios", s(termios)));
                f.push(("flags", s(flags)));
            }
            Self::Guardian { pid, reason } => {
                f.extend(pid.map(|p| ("pid", p.to_string())));
                f.extend(reason.as_deref().map(|r| ("reason", s(r))));
            }
            Self::Hold { deadline, until } => {
                f.push(("deadline_ms", deadline.as_millis().to_string()));
                f.push(("until", s(until)));
            }
            Self::HoldDone {
                outcome,
                after,
                ignored,
            } => {
                f.push(("outcome", s(outcome)));
                f.push(("after_ms", ms(*after)));
                f.extend(ignored.clone().map(|v| ("ignored", v)));
            }
            Self::Handoff { pid, deadline } => {
                f.push(("pid", pid.to_string()));
                f.push(("deadline_ms", deadline.as_millis().to_string()));
            }
            Self::HandoffDone {
                pid,
                outcome,
                after,
                ignored,
            } => {
                f.push(("pid", pid.to_string()));
                f.push(("outcome", s(outcome)));
                f.push(("after_ms", ms(*after)));
                f.extend(ignored.clone().map(|v| ("ignored", v)));
            }
            Self::Exit { code, status } => {
                f.push(("code", code.to_string()));
                f.push(("status", status.clone()));
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_fields_follow_the_contract() {
        let e = LogEvent::Ready {
            via: "raw+settle",
            after: Duration::from_micros(2_250_500),
        };
        assert_eq!(e.name(), "ready");
        assert_eq!(
            e.fields(),
            [
                ("via", "raw+settle".into()),
                ("after_ms", "2250.500".into())
            ]
        );
        let e = LogEvent::PushFailed {
            id: 2,
            size: Size::new(90, 25),
            took: Duration::from_millis(3),
            reason: "x".into(),
            retry: true,
        };
        assert_eq!(e.fields().last().unwrap(), &("retry", "now".to_string()));
        let e = LogEvent::Prologue {
            applied: None,
            reason: Some("no-size"),
        };
        assert_eq!(
            e.fields(),
            [("applied", "false".into()), ("reason", "no-size".into())]
        );
        let e = LogEvent::Version {
            version: None,
            source: "query",
            probe: "timeout",
            error: None,
        };
        assert_eq!(e.fields()[0], ("version", "unknown".into()));
    }
}
