//! The state machine's rules, each with a fake clock.

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
            Action::Log(e) => Some(e.name()),
            _ => None,
        })
        .collect()
}

fn ready_via(actions: &[Action]) -> Option<(&'static str, Duration)> {
    actions.iter().find_map(|a| match a {
        Action::Log(LogEvent::Ready { via, after }) => Some((*via, *after)),
        _ => None,
    })
}

fn cfg() -> Config {
    Config {
        settle: t(2000),
        fallback: t(3000),
        push_timeout: t(10_000),
        native: false,
        agent: None,
    }
}

fn agent_cfg() -> Config {
    Config {
        agent: Some(AgentTiming {
            poll: t(25),
            give_up: t(30_000),
        }),
        ..cfg()
    }
}

fn probes(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Probe { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

/// An agent session launched at 0 with the prologue at 100x30, raw seen at 300.
fn agent_machine() -> Machine {
    let mut m = Machine::new(agent_cfg());
    m.start(t(0), Some(S(100, 30)), true, Watch::Raw);
    m
}

fn machine() -> Machine {
    Machine::new(cfg())
}

/// A machine already ready at 2010 ms (raw seen at 10 ms), start size 80x24, no prologue.
fn ready_machine() -> (Machine, Vec<Action>) {
    let mut m = machine();
    m.start(t(0), Some(S(80, 24)), false, Watch::Raw);
    m.started(t(10), "raw");
    let a = m.tick(t(2010));
    (m, a)
}

#[test]
fn raw_mode_is_only_started_ready_comes_a_settle_margin_later() {
    let mut m = machine();
    m.start(t(5), Some(S(80, 24)), false, Watch::Raw);
    assert_eq!(m.watch(), Watch::Raw);
    assert_eq!(
        m.next_deadline(),
        None,
        "nothing to wait for before raw mode"
    );
    for now in (0..5000).step_by(250) {
        assert!(m.tick(t(now)).is_empty(), "acted at {now} ms");
    }
    assert!(!m.observed());
    let a = m.started(t(5005), "raw");
    assert!(m.observed());
    assert_eq!(
        a,
        [Action::Log(LogEvent::Started {
            via: "raw",
            after: t(5000)
        })]
    );
    assert!(pushes(&m.winch(t(5100), Ok(S(100, 30)))).is_empty());
    assert!(!m.is_ready());
    assert_eq!(m.next_deadline(), Some(t(7005)));
    assert!(m.tick(t(7004)).is_empty());
    let a = m.tick(t(7005));
    assert!(m.is_ready());
    assert_eq!(ready_via(&a), Some(("raw+settle", t(7000))));
    assert!(a.contains(&Action::Ready));
    assert_eq!(pushes(&a), [(1, S(100, 30))], "the newest size, once");
    // A second sighting changes nothing.
    assert!(m.started(t(7100), "raw").is_empty());
    assert!(m.tick(t(9000)).iter().all(|a| !matches!(a, Action::Ready)));
}

#[test]
fn only_the_first_sighting_counts() {
    let mut m = machine();
    m.start(t(0), None, false, Watch::Raw);
    m.started(t(100), "raw");
    assert!(m.started(t(900), "raw").is_empty());
    assert_eq!(m.next_deadline(), Some(t(2100)));
}

#[test]
fn already_raw_uses_the_fallback_timer_from_launch() {
    let mut m = machine();
    m.start(t(5), Some(S(80, 24)), false, Watch::Timer);
    assert_eq!(m.next_deadline(), Some(t(3005)));
    assert!(m.tick(t(3004)).is_empty());
    let a = m.tick(t(3005));
    assert_eq!(ready_via(&a), Some(("timer", t(3000))));
    assert_eq!(pushes(&a), [(1, S(80, 24))]);
    assert!(m.is_ready());
    assert_eq!(
        m.next_deadline(),
        Some(t(13_005)),
        "only the push timeout is left"
    );
}

#[test]
fn a_late_nonblock_sighting_pushes_readiness_back_never_forward() {
    // Seen at 2500 ms: 2500 + 2000 > 3000, so readiness waits until 4500.
    let mut m = machine();
    m.start(t(0), Some(S(80, 24)), false, Watch::Timer);
    m.started(t(2500), "nonblock");
    assert_eq!(m.next_deadline(), Some(t(4500)));
    assert!(m.tick(t(3000)).is_empty());
    assert_eq!(
        ready_via(&m.tick(t(4500))),
        Some(("nonblock+settle", t(4500)))
    );
    // Seen early at 500 ms: the timer (3000) is later and wins.
    let mut m = machine();
    m.start(t(0), Some(S(80, 24)), false, Watch::Timer);
    m.started(t(500), "nonblock");
    assert_eq!(m.next_deadline(), Some(t(3000)));
    assert_eq!(ready_via(&m.tick(t(3000))), Some(("timer", t(3000))));
    // Exactly equal: the timer's name.
    let mut m = machine();
    m.start(t(0), None, false, Watch::Timer);
    m.started(t(1000), "nonblock");
    assert_eq!(ready_via(&m.tick(t(3000))), Some(("timer", t(3000))));
}

#[test]
fn nothing_happens_before_start() {
    let mut m = machine();
    assert_eq!(m.next_deadline(), None);
    assert!(m.tick(t(100_000)).is_empty());
    assert!(!m.is_ready());
}

#[test]
fn prologue_applied_size_is_not_pushed_again_on_ready() {
    let mut m = machine();
    m.start(t(0), Some(S(120, 40)), true, Watch::Raw);
    m.started(t(100), "raw");
    let a = m.tick(t(2100));
    assert!(pushes(&a).is_empty());
    assert_eq!(events(&a), ["ready", "skip"]);
    // But a resize during bring-up is pushed on ready.
    let mut m = machine();
    m.start(t(0), Some(S(120, 40)), true, Watch::Raw);
    m.winch(t(50), Ok(S(100, 30)));
    m.started(t(100), "raw");
    assert_eq!(pushes(&m.tick(t(2100))), [(1, S(100, 30))]);
    // And a resize back to the prologue's size during bring-up is skipped.
    let mut m = machine();
    m.start(t(0), Some(S(120, 40)), true, Watch::Raw);
    m.winch(t(50), Ok(S(100, 30)));
    m.winch(t(60), Ok(S(120, 40)));
    m.started(t(100), "raw");
    assert!(pushes(&m.tick(t(2100))).is_empty());
}

#[test]
fn native_forwarding_never_pushes_and_nudges_only_on_a_change() {
    let native = Config {
        native: true,
        ..cfg()
    };
    // Unchanged since the prologue: nothing at all.
    let mut m = Machine::new(native);
    m.start(t(0), Some(S(100, 30)), true, Watch::Raw);
    m.started(t(10), "raw");
    let a = m.tick(t(2010));
    assert_eq!(events(&a), ["ready"]);
    assert!(!a.contains(&Action::Nudge));
    // Changed during start-up: one nudge, never a push, before or after.
    let mut m = Machine::new(native);
    m.start(t(0), Some(S(100, 30)), true, Watch::Raw);
    assert!(pushes(&m.winch(t(5), Ok(S(60, 20)))).is_empty());
    m.started(t(10), "raw");
    let a = m.tick(t(2010));
    assert!(a.contains(&Action::Nudge));
    assert!(a.contains(&Action::Log(LogEvent::Nudge {
        size: S(60, 20),
        prologue: Some(S(100, 30))
    })));
    assert!(pushes(&a).is_empty());
    let a = m.winch(t(3000), Ok(S(70, 20)));
    assert_eq!(events(&a), ["size"]);
    assert!(!m.in_flight());
    // No prologue: the size is nudged once (the client sends it then anyway).
    let mut m = Machine::new(native);
    m.start(t(0), Some(S(100, 30)), false, Watch::Raw);
    m.started(t(10), "raw");
    assert!(m.tick(t(2010)).contains(&Action::Nudge));
    // No size known: nothing to nudge.
    let mut m = Machine::new(native);
    m.start(t(0), None, false, Watch::Raw);
    m.started(t(10), "raw");
    assert!(!m.tick(t(2010)).contains(&Action::Nudge));
}

#[test]
fn no_valid_size_pushes_nothing_and_says_why() {
    let mut m = machine();
    m.start(t(0), None, false, Watch::Raw);
    m.started(t(0), "raw");
    assert!(pushes(&m.tick(t(2000))).is_empty());
    let a = m.winch(t(2100), Err(Invalid::OutOfRange(10_000, 10_000)));
    assert!(pushes(&a).is_empty());
    assert_eq!(
        a,
        [Action::Log(LogEvent::Size {
            size: None,
            at: "winch",
            invalid: Some("out-of-range-10000x10000".into())
        })]
    );
}

#[test]
fn burst_of_50_during_one_push_gives_one_follow_up_of_the_last_size() {
    let (mut m, a) = ready_machine();
    assert_eq!(pushes(&a), [(1, S(80, 24))]);
    assert!(m.in_flight());
    let mut all = Vec::new();
    for i in 0..50u16 {
        all.extend(m.winch(t(2020 + u64::from(i)), Ok(S(81 + i, 25))));
    }
    assert!(
        pushes(&all).is_empty(),
        "nothing starts while one is in flight"
    );
    assert_eq!(
        events(&all).iter().filter(|e| **e == "coalesce").count(),
        50
    );
    assert!(all.contains(&Action::Log(LogEvent::Coalesce {
        size: S(82, 25),
        in_flight: S(80, 24),
        replaces: Some(S(81, 25))
    })));
    let a = m.push_done(t(2500), 1, Outcome::Ok);
    assert_eq!(pushes(&a), [(2, S(130, 25))]);
    assert!(a.contains(&Action::Log(LogEvent::PushDone {
        id: 1,
        size: S(80, 24),
        took: t(490)
    })));
    let a = m.push_done(t(2900), 2, Outcome::Ok);
    assert!(pushes(&a).is_empty());
    assert!(!m.in_flight());
}

#[test]
fn equal_to_last_pushed_is_skipped() {
    let (mut m, _) = ready_machine();
    m.push_done(t(2020), 1, Outcome::Ok);
    let a = m.winch(t(2030), Ok(S(80, 24)));
    assert!(pushes(&a).is_empty());
    assert_eq!(events(&a), ["size", "skip"]);
    assert_eq!(pushes(&m.winch(t(2040), Ok(S(90, 24)))), [(2, S(90, 24))]);
    m.winch(t(2041), Ok(S(95, 24)));
    m.winch(t(2042), Ok(S(90, 24)));
    let a = m.push_done(t(2050), 2, Outcome::Ok);
    assert!(pushes(&a).is_empty());
    assert!(events(&a).contains(&"skip"));
}

#[test]
fn failed_push_keeps_session_and_next_winch_retries_same_size() {
    let (mut m, _) = ready_machine();
    let a = m.push_done(t(2020), 1, Outcome::Failed("exit-1".into()));
    assert_eq!(
        a,
        [Action::Log(LogEvent::PushFailed {
            id: 1,
            size: S(80, 24),
            took: t(10),
            reason: "exit-1".into(),
            retry: false
        })]
    );
    assert_eq!(pushes(&m.winch(t(2030), Ok(S(80, 24)))), [(2, S(80, 24))]);
}

#[test]
fn failed_push_with_pending_pushes_the_pending_size() {
    let (mut m, _) = ready_machine();
    m.winch(t(2015), Ok(S(100, 30)));
    let a = m.push_done(t(2020), 1, Outcome::Failed("exit-1".into()));
    assert_eq!(pushes(&a), [(2, S(100, 30))]);
}

#[test]
fn timeout_aborts_once_and_the_report_counts_as_a_timeout() {
    let (mut m, _) = ready_machine();
    assert_eq!(m.next_deadline(), Some(t(12_010)));
    assert!(m.tick(t(12_009)).is_empty());
    assert_eq!(m.tick(t(12_010)), [Action::Abort { id: 1 }]);
    assert!(m.tick(t(12_020)).is_empty(), "abort is issued once");
    assert_eq!(m.next_deadline(), None);
    m.winch(t(12_030), Ok(S(90, 30)));
    // Even an Ok that races the kill is a timeout: the size is unknown.
    let a = m.push_done(t(12_040), 1, Outcome::Ok);
    assert!(
        matches!(&a[0], Action::Log(LogEvent::PushFailed { reason, .. }) if reason == "timeout")
    );
    assert_eq!(pushes(&a), [(2, S(90, 30))]);
    // A late report about push 1 is ignored.
    assert!(m.push_done(t(12_050), 1, Outcome::Ok).is_empty());
    assert!(m.in_flight());
}

#[test]
fn transport_death_retries_at_once_with_the_newest_size() {
    let (mut m, _) = ready_machine();
    let a = m.transport_died(t(2020), "channel eof");
    assert_eq!(
        a[0],
        Action::Log(LogEvent::PushFailed {
            id: 1,
            size: S(80, 24),
            took: t(10),
            reason: "channel eof".into(),
            retry: true
        })
    );
    assert_eq!(pushes(&a), [(2, S(80, 24))]);
    m.winch(t(2025), Ok(S(70, 20)));
    let a = m.transport_died(t(2030), "again");
    assert_eq!(pushes(&a), [(3, S(70, 20))]);
    // Nothing in flight: nothing to retry.
    m.push_done(t(2040), 3, Outcome::Ok);
    assert!(m.transport_died(t(2050), "x").is_empty());
}

#[test]
fn deadline_is_the_earliest_of_readiness_and_push_timeout() {
    let mut m = Machine::new(Config {
        push_timeout: t(100),
        ..cfg()
    });
    m.start(t(0), Some(S(80, 24)), false, Watch::Timer);
    assert_eq!(m.next_deadline(), Some(t(3000)));
    m.tick(t(3000));
    assert_eq!(m.next_deadline(), Some(t(3100)));
    m.push_done(t(3050), 1, Outcome::Ok);
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn watch_names() {
    assert_eq!(Watch::Raw.as_str(), "raw");
    assert_eq!(Watch::Timer.as_str(), "timer");
}

#[test]
fn agent_probes_from_started_every_poll_and_is_ready_when_the_program_is_seen() {
    let mut m = agent_machine();
    assert_eq!(
        m.next_deadline(),
        Some(t(30_000)),
        "only the give-up before raw"
    );
    assert!(m.tick(t(200)).is_empty(), "no probe before `started`");
    m.started(t(300), "raw");
    assert_eq!(m.next_deadline(), Some(t(300)));
    let a = m.tick(t(300));
    assert_eq!(probes(&a), [1]);
    assert!(!a.contains(&Action::Ready));
    // One at a time: nothing while it is out, whatever the clock says.
    assert!(probes(&m.tick(t(400))).is_empty());
    // A resize now is kept for readiness (newest wins), never pushed.
    assert!(pushes(&m.winch(t(305), Ok(S(90, 25)))).is_empty());
    assert!(pushes(&m.winch(t(306), Ok(S(80, 20)))).is_empty());
    // Not there yet at 310: the next probe is due 25 ms after this one began.
    assert!(m.agent_done(t(310), 1, AgentOutcome::NotYet).is_empty());
    assert_eq!(m.next_deadline(), Some(t(325)));
    assert!(probes(&m.tick(t(324))).is_empty());
    assert_eq!(probes(&m.tick(t(325))), [2]);
    // A slow probe: the next one starts as soon as it is back.
    m.agent_done(t(380), 2, AgentOutcome::NotYet);
    assert_eq!(m.next_deadline(), Some(t(350)), "already due");
    // The probes since the resize carry the newest size.
    let a = m.tick(t(380));
    assert_eq!(
        a,
        [Action::Probe {
            id: 3,
            size: Some(S(80, 20))
        }]
    );
    // Seen (and sized): ready at once (no margin), the lock released, the
    // size counted as pushed: no second vm_exec for it.
    let a = m.agent_done(t(390), 3, AgentOutcome::Applied);
    assert!(m.is_ready());
    assert_eq!(ready_via(&a), Some(("marker", t(390))));
    assert!(a.contains(&Action::Ready));
    assert!(a.contains(&Action::Log(LogEvent::PushDone {
        id: 3,
        size: S(80, 20),
        took: t(10)
    })));
    assert!(pushes(&a).is_empty());
    assert!(probes(&m.tick(t(10_000))).is_empty(), "no probe once ready");
    // Steady state: one push per change, one in flight.
    assert_eq!(pushes(&m.winch(t(500), Ok(S(70, 20)))), [(4, S(70, 20))]);
    assert!(
        pushes(&m.winch(t(501), Ok(S(60, 20)))).is_empty(),
        "one in flight"
    );
    let a = m.agent_done(t(505), 4, AgentOutcome::Applied);
    assert_eq!(pushes(&a), [(5, S(60, 20))]);
    m.agent_done(t(510), 5, AgentOutcome::Applied);
    assert_eq!(events(&m.winch(t(520), Ok(S(60, 20)))), ["size", "skip"]);
}

#[test]
fn agent_session_never_resized_sends_nothing_after_readiness() {
    let mut m = agent_machine();
    m.started(t(10), "raw");
    assert_eq!(probes(&m.tick(t(10))), [1]);
    let a = m.agent_done(t(15), 1, AgentOutcome::Applied);
    assert!(a.contains(&Action::Ready));
    assert!(
        pushes(&a).is_empty(),
        "the prologue's size counts as pushed"
    );
    assert_eq!(m.next_deadline(), None);
    for now in (20..60_000).step_by(1000) {
        assert!(m.tick(t(now)).is_empty());
    }
    // A resize back to the prologue's size is skipped too.
    assert_eq!(
        events(&m.winch(t(61_000), Ok(S(100, 30)))),
        ["size", "skip"]
    );
}

#[test]
fn agent_with_a_terminal_already_raw_probes_from_launch() {
    let mut m = Machine::new(agent_cfg());
    m.start(t(0), Some(S(100, 30)), true, Watch::Timer);
    assert_eq!(probes(&m.tick(t(0))), [1]);
    // The fallback timer plays no part on this transport.
    m.agent_done(t(5), 1, AgentOutcome::NotYet);
    for now in (30..4000).step_by(30) {
        let a = m.tick(t(now));
        assert!(
            !a.contains(&Action::Ready),
            "ready at {now} without a sighting"
        );
        for id in probes(&a) {
            m.agent_done(t(now), id, AgentOutcome::NotYet);
        }
    }
    assert!(!m.is_ready());
}

#[test]
fn a_broken_probe_falls_back_once_to_raw_plus_settle() {
    let mut m = agent_machine();
    m.started(t(100), "raw");
    assert_eq!(probes(&m.tick(t(100))), [1]);
    m.winch(t(150), Ok(S(90, 25)));
    let a = m.agent_done(t(200), 1, AgentOutcome::Broken("socket: refused".into()));
    assert_eq!(
        a,
        [
            Action::Log(LogEvent::AgentFallback {
                reason: "socket: refused".into()
            }),
            Action::Fallback
        ]
    );
    assert!(!m.is_ready());
    // From now on: the CLI rules, ready at raw + settle, the newest size pushed.
    assert_eq!(m.next_deadline(), Some(t(2100)));
    assert!(probes(&m.tick(t(2000))).is_empty());
    let a = m.tick(t(2100));
    assert_eq!(ready_via(&a), Some(("raw+settle", t(2100))));
    assert_eq!(pushes(&a), [(2, S(90, 25))]);
    // A late report of the old probe changes nothing.
    assert!(m.agent_done(t(2200), 1, AgentOutcome::Applied).is_empty());
}

#[test]
fn a_broken_push_falls_back_and_is_retried_at_once_with_the_newest_size() {
    let mut m = agent_machine();
    m.started(t(10), "raw");
    m.tick(t(10));
    m.agent_done(t(20), 1, AgentOutcome::Applied);
    assert_eq!(pushes(&m.winch(t(100), Ok(S(90, 25)))), [(2, S(90, 25))]);
    m.winch(t(101), Ok(S(80, 24)));
    let a = m.agent_done(t(110), 2, AgentOutcome::Broken("vm_exec exit 1".into()));
    assert!(a.contains(&Action::Fallback));
    assert!(a.contains(&Action::Log(LogEvent::PushFailed {
        id: 2,
        size: S(90, 25),
        took: t(10),
        reason: "vm_exec exit 1".into(),
        retry: true
    })));
    assert_eq!(pushes(&a), [(3, S(80, 24))], "retried through the CLI");
    // Only once: a second failure is an ordinary failed push.
    let a = m.push_done(t(120), 3, Outcome::Failed("exit-1".into()));
    assert!(!a.contains(&Action::Fallback));
}

#[test]
fn a_push_whose_program_is_gone_fails_without_falling_back() {
    let mut m = agent_machine();
    m.started(t(10), "raw");
    m.tick(t(10));
    m.agent_done(t(20), 1, AgentOutcome::Applied);
    m.winch(t(30), Ok(S(90, 25)));
    let a = m.agent_done(t(40), 2, AgentOutcome::NotYet);
    assert!(!a.contains(&Action::Fallback));
    assert!(events(&a).contains(&"push-failed"));
    // The next resize tries the agent again.
    assert_eq!(pushes(&m.winch(t(50), Ok(S(90, 25)))), [(3, S(90, 25))]);
}

#[test]
fn a_program_never_seen_gives_the_agent_up_at_the_bound() {
    let mut m = agent_machine();
    m.started(t(100), "raw");
    let mut now = 100;
    let mut fell = None;
    while now <= 31_000 && fell.is_none() {
        let a = m.tick(t(now));
        if a.contains(&Action::Fallback) {
            fell = Some((now, a.clone()));
        }
        for id in probes(&a) {
            m.agent_done(t(now + 5), id, AgentOutcome::NotYet);
        }
        now += 5;
    }
    let (at, a) = fell.expect("no fall-back within 31 s");
    assert_eq!(at, 30_000);
    assert!(
        matches!(&a[0], Action::Log(LogEvent::AgentFallback { reason }) if reason.contains("30000 ms"))
    );
    // Raw was seen long ago: the CLI's readiness holds in the same tick.
    assert_eq!(ready_via(&a), Some(("raw+settle", t(30_000))));
}

#[test]
fn a_probe_past_the_push_timeout_counts_as_broken() {
    let mut m = Machine::new(Config {
        push_timeout: t(100),
        ..agent_cfg()
    });
    m.start(t(0), None, false, Watch::Raw);
    m.started(t(0), "raw");
    assert_eq!(probes(&m.tick(t(0))), [1]);
    assert_eq!(m.tick(t(100)), [Action::Abort { id: 1 }]);
    let a = m.agent_done(t(150), 1, AgentOutcome::NotYet);
    assert!(a.contains(&Action::Fallback));
}

#[test]
fn a_resize_while_the_sized_probe_is_out_is_pushed_once_ready() {
    let mut m = agent_machine();
    m.started(t(0), "raw");
    m.winch(t(1), Ok(S(90, 25)));
    assert_eq!(
        m.tick(t(2)),
        [Action::Probe {
            id: 1,
            size: Some(S(90, 25))
        }]
    );
    m.winch(t(3), Ok(S(70, 20)));
    let a = m.agent_done(t(10), 1, AgentOutcome::Applied);
    assert_eq!(pushes(&a), [(2, S(70, 20))]);
    // A sized probe that breaks: no push before the CLI's readiness.
    let mut m = agent_machine();
    m.started(t(0), "raw");
    m.winch(t(1), Ok(S(90, 25)));
    m.tick(t(2));
    let a = m.agent_done(t(10), 1, AgentOutcome::Broken("x".into()));
    assert!(pushes(&a).is_empty() && !m.in_flight());
    assert_eq!(pushes(&m.tick(t(2000))), [(2, S(90, 25))]);
}
