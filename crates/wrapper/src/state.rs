//! The wrapper's decisions as a pure state machine with an injected clock.
//!
//! Inputs are events with the time they happened (`Duration` since the
//! wrapper started); outputs are [`Action`]s for the caller to execute and the
//! next deadline at which [`Machine::tick`] must be called. No I/O, no sleeping:
//! every rule is unit-tested with a fake clock.
//!
//! Rules:
//! - No push before *ready*. Ready is readiness observed (smolvm switched the
//!   terminal to raw mode, which it does only after the main exec's bring-up),
//!   or — only when readiness is not observable — the fallback timer expired.
//!   When it is observable, the wrapper waits however long bring-up takes,
//!   because a side-channel during bring-up tears `config.json`.
//! - At most one push in flight. Sizes arriving meanwhile replace the pending
//!   one (latest wins; stale sizes are never pushed).
//! - A size equal to the last pushed one is skipped.
//! - A push that fails is logged; the session goes on and the next SIGWINCH
//!   retries (even with the same size, since the guest's size is unknown then).
//! - A push whose transport died (the persistent channel) is retried at once
//!   with the newest size: the caller has switched to one exec per push.
//! - A push that exceeds its timeout is aborted; the caller reports how.
//! - On ready, the current size is pushed unless the prologue already applied
//!   exactly it.

use std::time::Duration;

use crate::size::Size;

/// Tunables of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Delay after start after which the main exec is assumed ready, used only
    /// when readiness cannot be observed.
    pub fallback: Duration,
    /// How long one push may take before it is aborted.
    pub push_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            fallback: Duration::from_secs(2),
            push_timeout: Duration::from_secs(10),
        }
    }
}

/// How a push ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest PTY took the size.
    Ok,
    /// The push failed (non-zero exit, timeout, …); the reason is logged.
    Failed(String),
    /// The transport (the persistent channel) died; the caller now uses one
    /// exec per push, and the machine re-pushes the newest size at once.
    TransportDied(String),
}

/// A decision log entry: an event name from the contract and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// One of the events of `docs/contracts.md` (`push`, `skip`, …).
    pub event: &'static str,
    /// `key=value` fields, in order.
    pub fields: Vec<(&'static str, String)>,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The main exec's bring-up is over (side-channels are now safe).
    Ready,
    /// Push `size` into the guest; report the result with the same `id`.
    Push {
        /// Identifies this push in [`Machine::push_done`].
        id: u64,
        /// The size to apply.
        size: Size,
    },
    /// Abort push `id` (it timed out) and report it with [`Machine::push_done`].
    Abort {
        /// The push to abort.
        id: u64,
    },
    /// Record a decision.
    Log(LogEntry),
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    id: u64,
    size: Size,
    since: Duration,
    aborting: bool,
}

/// The state machine. Create with [`Machine::new`], then call [`Machine::start`].
#[derive(Debug)]
pub struct Machine {
    cfg: Config,
    started_at: Option<Duration>,
    observable: bool,
    ready: bool,
    /// The newest valid host size seen.
    current: Option<Size>,
    /// What the guest PTY is believed to have (`None`: unknown).
    last_pushed: Option<Size>,
    in_flight: Option<InFlight>,
    pending: Option<Size>,
    next_id: u64,
}

fn log(event: &'static str, fields: Vec<(&'static str, String)>) -> Action {
    Action::Log(LogEntry { event, fields })
}

impl Machine {
    /// A machine with the given tunables, not started yet.
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            started_at: None,
            observable: false,
            ready: false,
            current: None,
            last_pushed: None,
            in_flight: None,
            pending: None,
            next_id: 1,
        }
    }

    /// Whether the main exec is considered past its bring-up.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Whether a push is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The main exec was spawned at `now` with the host at `initial`.
    /// `prologue_applied`: the guest command sets its own PTY to `initial`.
    /// `readiness_observable`: the terminal's switch to raw mode can be watched.
    pub fn start(
        &mut self,
        now: Duration,
        initial: Option<Size>,
        prologue_applied: bool,
        readiness_observable: bool,
    ) -> Vec<Action> {
        self.started_at = Some(now);
        self.observable = readiness_observable;
        self.current = initial;
        if prologue_applied {
            self.last_pushed = initial;
        }
        vec![log(
            "start",
            vec![
                ("size", opt(initial)),
                ("prologue", prologue_applied.to_string()),
                (
                    "readiness",
                    if readiness_observable {
                        "raw-mode"
                    } else {
                        "timer"
                    }
                    .into(),
                ),
                ("fallback_ms", self.cfg.fallback.as_millis().to_string()),
            ],
        )]
    }

    /// The main exec's bring-up is over (the terminal went raw).
    pub fn ready(&mut self, now: Duration) -> Vec<Action> {
        self.become_ready(now, "raw-mode")
    }

    fn become_ready(&mut self, now: Duration, how: &str) -> Vec<Action> {
        if self.ready {
            return Vec::new();
        }
        self.ready = true;
        // The log line comes first so the decision log reads in causal order.
        let mut out = vec![
            log(
                "ready",
                vec![
                    ("via", how.to_string()),
                    ("after_ms", ms(now - self.started_at.unwrap_or_default())),
                ],
            ),
            Action::Ready,
        ];
        if let Some(size) = self.current {
            self.request(now, size, &mut out);
        }
        out
    }

    /// A SIGWINCH arrived; `size` is the host size read then (`None`: no valid size).
    pub fn winch(&mut self, now: Duration, size: Option<Size>) -> Vec<Action> {
        let mut out = vec![log("size", vec![("size", opt(size))])];
        let Some(size) = size else {
            return out;
        };
        self.current = Some(size);
        if self.ready {
            self.request(now, size, &mut out);
        }
        out
    }

    /// Time passed; fires the fallback timer and push timeouts that are due.
    pub fn tick(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(f) = self.fallback_deadline() {
            if now >= f {
                out.extend(self.become_ready(now, "timer"));
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

    /// Push `id` ended with `outcome`. Reports about pushes that are no longer
    /// in flight (already aborted and reported) are ignored.
    pub fn push_done(&mut self, now: Duration, id: u64, outcome: Outcome) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(fl) = self.in_flight.filter(|fl| fl.id == id) else {
            return out;
        };
        self.in_flight = None;
        let took = ms(now - fl.since);
        let mut retry = None;
        let mut fields = vec![
            ("id", id.to_string()),
            ("size", fl.size.to_string()),
            ("took_ms", took),
        ];
        let event = match outcome {
            Outcome::Ok => {
                self.last_pushed = Some(fl.size);
                "push-done"
            }
            Outcome::Failed(reason) => {
                // The guest's size is unknown now: let the next SIGWINCH retry
                // even if it carries the same size.
                self.last_pushed = None;
                fields.push(("reason", reason));
                "push-failed"
            }
            Outcome::TransportDied(reason) => {
                self.last_pushed = None;
                fields.push(("reason", reason));
                fields.push(("retry", "now".into()));
                retry = Some(fl.size);
                "push-failed"
            }
        };
        out.push(log(event, fields));
        if let Some(next) = self.pending.take().or(retry) {
            self.request(now, next, &mut out);
        }
        out
    }

    /// When [`Machine::tick`] must be called next (`None`: only on events).
    pub fn next_deadline(&self) -> Option<Duration> {
        let push = self
            .in_flight
            .filter(|fl| !fl.aborting)
            .map(|fl| fl.since + self.cfg.push_timeout);
        match (self.fallback_deadline(), push) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn fallback_deadline(&self) -> Option<Duration> {
        match (self.ready, self.observable, self.started_at) {
            (false, false, Some(t)) => Some(t + self.cfg.fallback),
            _ => None,
        }
    }

    /// Pushes `size` now, queues it behind the push in flight, or skips it.
    fn request(&mut self, now: Duration, size: Size, out: &mut Vec<Action>) {
        if let Some(fl) = self.in_flight {
            let mut fields = vec![
                ("size", size.to_string()),
                ("in_flight", fl.size.to_string()),
            ];
            if let Some(old) = self.pending.replace(size) {
                fields.push(("replaces", old.to_string()));
            }
            out.push(log("coalesce", fields));
            return;
        }
        if self.last_pushed == Some(size) {
            out.push(log(
                "skip",
                vec![("size", size.to_string()), ("reason", "unchanged".into())],
            ));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight = Some(InFlight {
            id,
            size,
            since: now,
            aborting: false,
        });
        out.push(Action::Push { id, size });
    }
}

fn opt(size: Option<Size>) -> String {
    size.map_or_else(|| "none".to_string(), |s| s.to_string())
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u16, u16) -> Size = Size::new;

    fn t(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn pushes(actions: &[Action]) -> Vec<(u64, Size)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Push { id, size } => Some((*id, *size)),
                _ => None,
            })
            .collect()
    }

    fn events(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Log(e) => Some(e.event),
                _ => None,
            })
            .collect()
    }

    fn machine() -> Machine {
        Machine::new(Config {
            fallback: t(2000),
            push_timeout: t(10_000),
        })
    }

    #[test]
    fn no_push_before_ready_even_on_winch() {
        let mut m = machine();
        assert!(pushes(&m.start(t(0), Some(S(80, 24)), false, true)).is_empty());
        assert!(pushes(&m.winch(t(10), Some(S(100, 30)))).is_empty());
        assert!(pushes(&m.tick(t(1000))).is_empty());
        let a = m.ready(t(1200));
        assert!(a.contains(&Action::Ready));
        // The newest size, not the start size.
        assert_eq!(pushes(&a), [(1, S(100, 30))]);
    }

    #[test]
    fn observable_readiness_never_fires_on_the_timer() {
        // Bring-up takes 3 s, longer than the 2 s fallback timer.
        let mut m = machine();
        m.start(t(0), Some(S(80, 24)), false, true);
        assert_eq!(
            m.next_deadline(),
            None,
            "no timer when readiness is observable"
        );
        for now in (0..3000).step_by(100) {
            assert!(m.tick(t(now)).is_empty(), "acted at {now} ms");
        }
        assert!(!m.is_ready());
        assert_eq!(pushes(&m.ready(t(3000))), [(1, S(80, 24))]);
    }

    #[test]
    fn fallback_timer_when_readiness_is_not_observable() {
        let mut m = machine();
        m.start(t(5), Some(S(80, 24)), false, false);
        assert_eq!(m.next_deadline(), Some(t(2005)));
        assert!(m.tick(t(2004)).is_empty());
        let a = m.tick(t(2005));
        assert!(a.contains(&Action::Ready));
        assert_eq!(pushes(&a), [(1, S(80, 24))]);
        assert!(m.is_ready());
        // A late raw-mode observation changes nothing.
        assert!(m.ready(t(2100)).is_empty());
    }

    #[test]
    fn prologue_applied_size_is_not_pushed_again_on_ready() {
        let mut m = machine();
        m.start(t(0), Some(S(120, 40)), true, true);
        let a = m.ready(t(300));
        assert!(pushes(&a).is_empty());
        assert!(events(&a).contains(&"skip"));
        // But a resize during bring-up is pushed on ready.
        let mut m = machine();
        m.start(t(0), Some(S(120, 40)), true, true);
        m.winch(t(100), Some(S(100, 30)));
        assert_eq!(pushes(&m.ready(t(300))), [(1, S(100, 30))]);
        // And a resize back to the prologue's size during bring-up is skipped.
        let mut m = machine();
        m.start(t(0), Some(S(120, 40)), true, true);
        m.winch(t(100), Some(S(100, 30)));
        m.winch(t(150), Some(S(120, 40)));
        assert!(pushes(&m.ready(t(300))).is_empty());
    }

    #[test]
    fn no_valid_size_pushes_nothing() {
        let mut m = machine();
        m.start(t(0), None, false, true);
        assert!(pushes(&m.ready(t(10))).is_empty());
        let a = m.winch(t(20), None);
        assert!(pushes(&a).is_empty());
        assert_eq!(events(&a), ["size"]);
    }

    #[test]
    fn burst_of_50_during_one_push_gives_one_follow_up_of_the_last_size() {
        let mut m = machine();
        m.start(t(0), Some(S(80, 24)), false, true);
        let first = pushes(&m.ready(t(10)));
        assert_eq!(first, [(1, S(80, 24))]);
        let mut all = Vec::new();
        for i in 0..50u16 {
            all.extend(m.winch(t(20 + u64::from(i)), Some(S(81 + i, 25))));
        }
        assert!(
            pushes(&all).is_empty(),
            "nothing starts while one is in flight"
        );
        assert_eq!(
            events(&all).iter().filter(|e| **e == "coalesce").count(),
            50
        );
        let a = m.push_done(t(500), 1, Outcome::Ok);
        assert_eq!(pushes(&a), [(2, S(130, 25))]);
        let a = m.push_done(t(900), 2, Outcome::Ok);
        assert!(pushes(&a).is_empty());
        assert!(!m.in_flight());
    }

    #[test]
    fn equal_to_last_pushed_is_skipped() {
        let mut m = machine();
        m.start(t(0), Some(S(80, 24)), false, true);
        m.ready(t(10));
        m.push_done(t(20), 1, Outcome::Ok);
        let a = m.winch(t(30), Some(S(80, 24)));
        assert!(pushes(&a).is_empty());
        assert_eq!(events(&a), ["size", "skip"]);
        // A pending size that ends equal to what was pushed is skipped too.
        assert_eq!(pushes(&m.winch(t(40), Some(S(90, 24)))), [(2, S(90, 24))]);
        m.winch(t(41), Some(S(95, 24)));
        m.winch(t(42), Some(S(90, 24)));
        let a = m.push_done(t(50), 2, Outcome::Ok);
        assert!(pushes(&a).is_empty());
        assert!(events(&a).contains(&"skip"));
    }

    #[test]
    fn failed_push_keeps_session_and_next_winch_retries_same_size() {
        let mut m = machine();
        m.start(t(0), Some(S(80, 24)), false, true);
        m.ready(t(10));
        let a = m.push_done(t(20), 1, Outcome::Failed("exit 1".into()));
        assert_eq!(events(&a), ["push-failed"]);
        assert!(pushes(&a).is_empty(), "no automatic retry storm");
        assert_eq!(pushes(&m.winch(t(30), Some(S(80, 24)))), [(2, S(80, 24))]);
    }

    #[test]
    fn failed_push_with_pending_pushes_the_pending_size() {
        let mut m = machine();
        m.start(t(0), Some(S(80, 24)), false, true);
        m.ready(t(10));
        m.winch(t(15), Some(S(100, 30)));
        let a = m.push_done(t(20), 1, Outcome::Failed("exit 1".into()));
        assert_eq!(pushes(&a), [(2, S(100, 30))]);
    }

    #[test]
    fn timeout_aborts_then_reported_failure_frees_the_slot() {
        let mut m = machine();
        m.start(t(0), Some(S(80, 24)), false, true);
        m.ready(t(10));
        assert_eq!(m.next_deadline(), Some(t(10_010)));
        assert!(m.tick(t(10_009)).is_empty());
        assert_eq!(m.tick(t(10_010)), [Action::Abort { id: 1 }]);
        assert!(m.tick(t(10_020)).is_empty(), "abort is issued once");
        assert_eq!(m.next_deadline(), None);
        m.winch(t(10_030), Some(S(90, 30)));
        let a = m.push_done(t(10_040), 1, Outcome::Failed("timeout".into()));
        assert_eq!(pushes(&a), [(2, S(90, 30))]);
        // The late real completion of push 1 is ignored.
        assert!(m.push_done(t(10_050), 1, Outcome::Ok).is_empty());
        assert!(m.in_flight());
    }

    #[test]
    fn transport_death_retries_at_once_with_the_newest_size() {
        let mut m = machine();
        m.start(t(0), Some(S(80, 24)), false, true);
        m.ready(t(10));
        let a = m.push_done(t(20), 1, Outcome::TransportDied("channel eof".into()));
        assert_eq!(pushes(&a), [(2, S(80, 24))]);
        m.winch(t(25), Some(S(70, 20)));
        let a = m.push_done(t(30), 2, Outcome::TransportDied("again".into()));
        assert_eq!(pushes(&a), [(3, S(70, 20))]);
    }

    #[test]
    fn deadline_is_the_earliest_of_fallback_and_push_timeout() {
        let mut m = Machine::new(Config {
            fallback: t(2000),
            push_timeout: t(100),
        });
        m.start(t(0), Some(S(80, 24)), false, false);
        assert_eq!(m.next_deadline(), Some(t(2000)));
        m.tick(t(2000));
        assert_eq!(m.next_deadline(), Some(t(2100)));
        m.push_done(t(2050), 1, Outcome::Ok);
        assert_eq!(m.next_deadline(), None);
    }
}
