//! The wrapper's decisions as a pure state machine with an injected clock.
//!
//! Inputs are events with the time they happened (`Duration` since the
//! wrapper started); outputs are [`Action`]s for the caller to execute and the
//! next deadline at which [`Machine::tick`] must be called. No I/O, no
//! sleeping: every rule is unit-tested with a fake clock. This is the one
//! owner of "which push is in flight".
//!
//! Rules:
//! - *Ready* means the session's container is running. Nothing on the host
//!   shows that, so it is a margin: `settle` after smolvm's client was seen
//!   switching the terminal (`started`, [`Watch::Raw`]); when that switch
//!   cannot be seen ([`Watch::Timer`]), `fallback` after launch, pushed back
//!   to `settle` after a late `O_NONBLOCK` sighting if there is one.
//! - No push before ready: sizes seen before are kept (the newest wins) and
//!   pushed once it holds, unless the prologue already applied exactly it.
//! - Native forwarding (smolvm 0.8.1+): never a push; once ready, one
//!   [`Action::Nudge`] if the host size differs from the prologue's.
//! - At most one push in flight; sizes arriving meanwhile replace the queued
//!   one; a size equal to the last pushed one is skipped.
//! - A failed push is logged and the next SIGWINCH retries (even the same
//!   size: the guest's size is unknown then). A push whose transport died
//!   (the channel) is retried at once with the newest size.
//! - A push past its timeout is aborted once; its report then counts as a
//!   timeout.
//!
//! On the agent transport ([`Config::agent`]) readiness is no margin but a
//! fact: the session's program, found at VM level by its marker. From
//! `started` (or from launch when that cannot be seen) one
//! [`Action::Probe`] at a time, each `poll` after the previous one began,
//! carrying the newest size if it differs from the prologue's (so a
//! start-up resize lands in the `vm_exec` that finds the program); the first
//! [`AgentOutcome::Applied`] makes the session ready (the lock is released
//! then; a size that changed meanwhile is pushed at once).
//! A probe or push that fails for any reason but [`AgentOutcome::NotYet`],
//! or no sighting within `give_up` of launch, falls back to the CLI
//! transports once ([`Action::Fallback`]): readiness is then raw + settle
//! again, and a push in flight is retried at once.

use std::time::Duration;

use crate::log_event::LogEvent;
use crate::size::{Invalid, Size};

/// How the start of the main exec can be seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// The terminal was canonical at start: its switch to raw mode is `started`.
    Raw,
    /// The terminal was already raw: the fallback timer from launch applies.
    Timer,
}

impl Watch {
    /// The log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Timer => "timer",
        }
    }
}

/// Tunables of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Margin after `started` was seen before the session counts as ready.
    pub settle: Duration,
    /// Delay after launch before the session counts as ready, when `started`
    /// cannot be seen ([`Watch::Timer`]).
    pub fallback: Duration,
    /// How long one push may take before it is aborted.
    pub push_timeout: Duration,
    /// smolvm forwards sizes itself (0.8.1+): nudge, never push.
    pub native: bool,
    /// The agent transport's timings (`None`: the CLI transports).
    pub agent: Option<AgentTiming>,
}

/// The agent transport's timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentTiming {
    /// From the start of one readiness probe to the next (at most 50 ms).
    pub poll: Duration,
    /// From launch, how long the session's program may stay unseen before
    /// the CLI transports take over.
    pub give_up: Duration,
}

/// How a `vm_exec` (probe or push) on the agent transport ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentOutcome {
    /// The session's program was found (and sized, for a push).
    Applied,
    /// It is not there yet (its container does not run yet).
    NotYet,
    /// Anything else (no socket, not 0.8.0's protocol, an error answer, a
    /// failed `stty`…): the agent transport is given up.
    Broken(String),
}

/// How a push ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest PTY took the size.
    Ok,
    /// The push failed (non-zero exit, wrong answer…); the reason is logged.
    Failed(String),
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The session's container is taken to be running: release the main
    /// exec's machine lock; side channels are safe from now on.
    Ready,
    /// Push `size` into the guest; report the result with the same `id`.
    Push {
        /// Identifies this push in [`Machine::push_done`].
        id: u64,
        /// The size to apply.
        size: Size,
    },
    /// Abort push `id` (it timed out); its report follows as usual.
    Abort {
        /// The push to abort.
        id: u64,
    },
    /// Send SIGWINCH to smolvm (native forwarding re-sends the size).
    Nudge,
    /// Agent transport: look for the session's program (a `vm_exec`), and
    /// size its PTY if `size` is given (a resize made during start-up lands
    /// in the same `vm_exec` that finds the program); report with
    /// [`Machine::agent_done`] and `id`.
    Probe {
        /// Identifies this probe.
        id: u64,
        /// The size to apply once found (`None`: the prologue's is current).
        size: Option<Size>,
    },
    /// Give the agent transport up: later pushes go through the CLI ones.
    Fallback,
    /// Record a decision.
    Log(LogEvent),
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    id: u64,
    /// `None`: a readiness probe that sizes nothing.
    size: Option<Size>,
    /// A readiness probe (agent transport), not a push.
    probe: bool,
    since: Duration,
    aborting: bool,
}

/// The state machine. Create with [`Machine::new`], then call [`Machine::start`].
#[derive(Debug)]
pub struct Machine {
    cfg: Config,
    launched: Option<Duration>,
    watch: Watch,
    /// When and how `started` was seen.
    observed: Option<(Duration, &'static str)>,
    ready: bool,
    /// The newest valid host size seen.
    current: Option<Size>,
    /// The size the prologue applied, if it ran.
    prologue: Option<Size>,
    /// What the guest PTY is believed to have (`None`: unknown).
    last_pushed: Option<Size>,
    in_flight: Option<InFlight>,
    pending: Option<Size>,
    next_id: u64,
    /// The agent transport, while it is in use.
    agent: Option<AgentTiming>,
    /// When the last probe began.
    last_probe: Option<Duration>,
}

impl Machine {
    /// A machine with the given tunables, not started yet.
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            launched: None,
            watch: Watch::Timer,
            observed: None,
            ready: false,
            current: None,
            prologue: None,
            last_pushed: None,
            in_flight: None,
            pending: None,
            next_id: 1,
            agent: cfg.agent,
            last_probe: None,
        }
    }

    /// Whether the session counts as ready.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// How `started` is watched for.
    pub fn watch(&self) -> Watch {
        self.watch
    }

    /// Whether `started` was seen (the terminal need not be watched any more).
    pub fn observed(&self) -> bool {
        self.observed.is_some()
    }

    /// Whether a push is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The main exec was spawned at `now` with the host at `initial`;
    /// `prologue_applied`: the guest command sets its own PTY to `initial`.
    pub fn start(
        &mut self,
        now: Duration,
        initial: Option<Size>,
        prologue_applied: bool,
        watch: Watch,
    ) {
        self.launched = Some(now);
        self.watch = watch;
        self.current = initial;
        if prologue_applied {
            self.prologue = initial;
            self.last_pushed = initial;
        }
    }

    /// smolvm's client was seen switching the terminal (`via`: `raw` or
    /// `nonblock`). Only the first sighting counts.
    pub fn started(&mut self, now: Duration, via: &'static str) -> Vec<Action> {
        if self.observed.is_some() || self.ready {
            return Vec::new();
        }
        self.observed = Some((now, via));
        vec![Action::Log(LogEvent::Started {
            via,
            after: now.saturating_sub(self.launched.unwrap_or_default()),
        })]
    }

    /// When readiness is due and why (`None`: not before an observation, or already ready).
    fn ready_due(&self) -> Option<(Duration, &'static str)> {
        if self.ready || self.agent.is_some() {
            return None;
        }
        let launched = self.launched?;
        let settled = self.observed.map(|(t, _)| t + self.cfg.settle);
        match self.watch {
            Watch::Raw => settled.map(|t| (t, "raw+settle")),
            Watch::Timer => {
                let timer = launched + self.cfg.fallback;
                match settled {
                    Some(t) if t > timer => Some((t, "nonblock+settle")),
                    _ => Some((timer, "timer")),
                }
            }
        }
    }

    /// When the next readiness probe is due (agent transport, not ready,
    /// nothing in flight): from `started` (or launch, when that cannot be
    /// seen), then `poll` after the previous probe began.
    fn probe_due(&self) -> Option<Duration> {
        let a = self.agent?;
        if self.ready || self.in_flight.is_some() {
            return None;
        }
        let launched = self.launched?;
        let from = match self.watch {
            Watch::Raw => self.observed.map(|(t, _)| t)?,
            Watch::Timer => launched,
        };
        Some(self.last_probe.map_or(from, |t| (t + a.poll).max(from)))
    }

    /// When the agent transport is given up if the program is still unseen.
    fn give_up_due(&self) -> Option<Duration> {
        let a = self.agent?;
        (!self.ready).then_some(self.launched? + a.give_up)
    }

    /// Gives the agent transport up (once): readiness is raw + settle from
    /// now on, and a push in flight is retried at once through the CLI.
    fn fallback(&mut self, now: Duration, reason: &str) -> Vec<Action> {
        if self.agent.take().is_none() {
            return Vec::new();
        }
        let mut out = vec![
            Action::Log(LogEvent::AgentFallback {
                reason: reason.to_string(),
            }),
            Action::Fallback,
        ];
        if let Some(fl) = self.in_flight.take() {
            // A probe's size waits for the CLI's readiness like any other;
            // a push (the session is ready) is retried at once.
            if let (Some(size), false) = (fl.size, fl.probe) {
                self.last_pushed = None;
                out.push(Action::Log(LogEvent::PushFailed {
                    id: fl.id,
                    size,
                    took: now.saturating_sub(fl.since),
                    reason: reason.to_string(),
                    retry: true,
                }));
                let next = self.pending.take().unwrap_or(size);
                self.request(now, next, &mut out);
            }
        }
        out
    }

    /// A `vm_exec` of the agent transport (probe or push) `id` ended.
    /// Reports about anything no longer in flight are ignored.
    pub fn agent_done(&mut self, now: Duration, id: u64, outcome: AgentOutcome) -> Vec<Action> {
        let Some(fl) = self.in_flight.filter(|fl| fl.id == id) else {
            return Vec::new();
        };
        let outcome = if fl.aborting {
            AgentOutcome::Broken("timeout".into())
        } else {
            outcome
        };
        match (fl.probe, outcome) {
            (_, AgentOutcome::Broken(reason)) => self.fallback(now, &reason),
            (true, AgentOutcome::NotYet) => {
                self.in_flight = None;
                Vec::new()
            }
            (true, AgentOutcome::Applied) => {
                self.in_flight = None;
                let mut out = Vec::new();
                if let Some(size) = fl.size {
                    self.last_pushed = Some(size);
                    out.push(Action::Log(LogEvent::PushDone {
                        id,
                        size,
                        took: now.saturating_sub(fl.since),
                    }));
                }
                out.extend(self.become_ready(now, "marker"));
                out
            }
            (false, AgentOutcome::Applied) => self.push_done(now, id, Outcome::Ok),
            (false, AgentOutcome::NotYet) => self.push_done(
                now,
                id,
                Outcome::Failed("the session's program is gone".into()),
            ),
        }
    }

    fn become_ready(&mut self, now: Duration, via: &'static str) -> Vec<Action> {
        self.ready = true;
        // The log line comes first so the decision log reads in causal order.
        let mut out = vec![
            Action::Log(LogEvent::Ready {
                via,
                after: now.saturating_sub(self.launched.unwrap_or_default()),
            }),
            Action::Ready,
        ];
        match (self.cfg.native, self.current) {
            (true, Some(size)) if Some(size) != self.prologue => {
                out.push(Action::Log(LogEvent::Nudge {
                    size,
                    prologue: self.prologue,
                }));
                out.push(Action::Nudge);
            }
            (false, Some(size)) => self.request(now, size, &mut out),
            _ => {}
        }
        out
    }

    /// A SIGWINCH arrived; `size` is the host size read then.
    pub fn winch(&mut self, now: Duration, size: Result<Size, Invalid>) -> Vec<Action> {
        let mut out = vec![Action::Log(LogEvent::Size {
            size: size.ok(),
            at: "winch",
            invalid: size.err().map(|e| e.to_string()),
        })];
        let Ok(size) = size else {
            return out;
        };
        self.current = Some(size);
        // Native forwarding: smolvm got the same SIGWINCH and sends it itself.
        if self.ready && !self.cfg.native {
            self.request(now, size, &mut out);
        }
        out
    }

    /// Time passed; fires readiness and push timeouts that are due.
    pub fn tick(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(due) = self.give_up_due() {
            if now >= due {
                let waited = due.saturating_sub(self.launched.unwrap_or_default());
                let reason = format!(
                    "the session's program was not seen within {} ms",
                    waited.as_millis()
                );
                out.extend(self.fallback(now, &reason));
            }
        }
        if let Some(due) = self.probe_due() {
            if now >= due {
                let id = self.next_id;
                self.next_id += 1;
                self.last_probe = Some(now);
                let size = self.current.filter(|c| Some(*c) != self.last_pushed);
                self.in_flight = Some(InFlight {
                    id,
                    size,
                    probe: true,
                    since: now,
                    aborting: false,
                });
                out.push(Action::Probe { id, size });
            }
        }
        if let Some((due, via)) = self.ready_due() {
            if now >= due {
                out.extend(self.become_ready(now, via));
            }
        }
        if let Some(fl) = self.in_flight.as_mut() {
            if !fl.aborting && now >= fl.since + self.cfg.push_timeout {
                fl.aborting = true;
                out.push(Action::Abort { id: fl.id });
            }
        }
        out
    }

    /// Push `id` ended with `outcome`. Reports about pushes no longer in
    /// flight are ignored.
    pub fn push_done(&mut self, now: Duration, id: u64, outcome: Outcome) -> Vec<Action> {
        let Some(fl) = self.in_flight.filter(|fl| fl.id == id) else {
            return Vec::new();
        };
        let (Some(size), false) = (fl.size, fl.probe) else {
            // A probe reported as a push: its transport's words for it.
            let outcome = match outcome {
                Outcome::Ok => AgentOutcome::Applied,
                Outcome::Failed(r) => AgentOutcome::Broken(r),
            };
            return self.agent_done(now, id, outcome);
        };
        self.in_flight = None;
        let took = now.saturating_sub(fl.since);
        let mut out = Vec::new();
        match (outcome, fl.aborting) {
            (Outcome::Ok, false) => {
                self.last_pushed = Some(size);
                out.push(Action::Log(LogEvent::PushDone { id, size, took }));
            }
            (outcome, aborting) => {
                // The guest's size is unknown now: the next SIGWINCH retries
                // even if it carries the same size.
                self.last_pushed = None;
                let reason = match (outcome, aborting) {
                    (_, true) => "timeout".to_string(),
                    (Outcome::Failed(r), false) => r,
                    (Outcome::Ok, false) => unreachable!("handled above"),
                };
                out.push(Action::Log(LogEvent::PushFailed {
                    id,
                    size,
                    took,
                    reason,
                    retry: false,
                }));
            }
        }
        if let Some(next) = self.pending.take() {
            self.request(now, next, &mut out);
        }
        out
    }

    /// The transport carrying the push in flight died (the channel): that
    /// push failed, and the newest size is pushed again at once (the caller
    /// now uses one exec per push).
    pub fn transport_died(&mut self, now: Duration, reason: &str) -> Vec<Action> {
        let Some(fl) = self.in_flight.filter(|fl| !fl.probe) else {
            return Vec::new();
        };
        self.in_flight = None;
        let Some(size) = fl.size else {
            return Vec::new();
        };
        self.last_pushed = None;
        let mut out = vec![Action::Log(LogEvent::PushFailed {
            id: fl.id,
            size,
            took: now.saturating_sub(fl.since),
            reason: reason.to_string(),
            retry: true,
        })];
        let next = self.pending.take().unwrap_or(size);
        self.request(now, next, &mut out);
        out
    }

    /// When [`Machine::tick`] must be called next (`None`: only on events).
    pub fn next_deadline(&self) -> Option<Duration> {
        let push = self
            .in_flight
            .filter(|fl| !fl.aborting)
            .map(|fl| fl.since + self.cfg.push_timeout);
        [
            self.ready_due().map(|(t, _)| t),
            push,
            self.probe_due(),
            self.give_up_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Pushes `size` now, queues it behind the push in flight, or skips it.
    fn request(&mut self, now: Duration, size: Size, out: &mut Vec<Action>) {
        if let Some(fl) = self.in_flight {
            let replaces = self.pending.replace(size);
            if let (Some(in_flight), false) = (fl.size, fl.probe) {
                out.push(Action::Log(LogEvent::Coalesce {
                    size,
                    in_flight,
                    replaces,
                }));
            }
            return;
        }
        if self.last_pushed == Some(size) {
            out.push(Action::Log(LogEvent::Skip { size }));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight = Some(InFlight {
            id,
            size: Some(size),
            probe: false,
            since: now,
            aborting: false,
        });
        out.push(Action::Push { id, size });
    }
}

#[cfg(test)]
mod tests;
