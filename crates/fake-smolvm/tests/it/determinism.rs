//! The crun window, deterministically: a second exec that touches the
//! machine inside a `-t` session's window always loses the session (exit 1
//! with crun's message in-band under `exit1`, 137 under `sigkill`); one that
//! touches after the window never does. 20 repetitions each, on several
//! machines at once, both clients taking turns as session and side channel.

use fake_smolvm::exec_log::Fault;

use crate::common::*;

/// The session's bring-up and crun window: the side channel, started the
/// moment the terminal goes raw, touches ~BRINGUP_MS (plus its own start)
/// into a window of CRUN_MS.
const BRINGUP_MS: &str = "50";
const CRUN_MS: &str = "500";
const REPS: usize = 20;
const WORKERS: usize = 4;

/// The session: prints `ready` once its command runs, then waits for a line.
const SESSION: &str = "echo ready; read line; echo got:$line";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// Start the side channel as the terminal goes raw (inside the window).
    Inside,
    /// Start it once the session's command runs (after the window).
    After,
}

fn timings(race: &str) -> [(&'static str, String); 3] {
    [
        ("FAKE_SMOLVM_BRINGUP_MS", BRINGUP_MS.into()),
        ("FAKE_SMOLVM_CRUN_MS", CRUN_MS.into()),
        ("FAKE_SMOLVM_RACE", race.into()),
    ]
}

fn trial(
    m: &Machine<'_>,
    rep: usize,
    session_by: &Client,
    side_by: &Client,
    when: When,
    race: &str,
) {
    let what = format!("rep {rep} {when:?} race={race} session={session_by:?} side={side_by:?}");
    let ctx = || format!("{what}\n{}", m.context());
    let mut c = m.exec_by(session_by, ["-t", "--", "sh", "-c", SESSION]);
    c.envs(timings(race));
    let mut s = Term::spawn(c, 80, 24);
    match when {
        When::Inside => s.wait_raw(30, ctx),
        When::After => s.wait_output(30, |o| o.contains("ready"), ctx),
    }
    let mut side = m.exec_by(side_by, ["--", "echo", "side"]);
    side.envs(timings(race)).env("FAKE_SMOLVM_CRUN_MS", "30");
    let side = run_output(side);
    assert!(
        side.status.success(),
        "{what}: {:?} {:?} {}\n{}",
        side.status,
        text(&side.stdout),
        text(&side.stderr),
        ctx()
    );
    assert_eq!(text(&side.stdout), "side\n", "{what}");

    if when == When::After {
        s.write(b"ok\r");
    }
    let status = s.wait_exit(30, ctx);
    let log = m.log();
    let session = log.iter().find(|r| r.pid == s.pid()).cloned();
    let session = session.unwrap_or_else(|| panic!("no session record\n{}", ctx()));
    let side_rec = log
        .iter()
        .rev()
        .find(|r| r.argv == ["echo", "side"])
        .cloned()
        .unwrap();
    let inside = side_rec.touched_inside_window_of(&session);
    match when {
        When::Inside => {
            assert!(
                inside,
                "{what}: the side channel touched outside the window\n{}",
                ctx()
            );
            if race == "sigkill" {
                assert_eq!(
                    status.code(),
                    Some(137),
                    "{what}: {:?}\n{}",
                    s.output(),
                    ctx()
                );
                assert_eq!(session.fault, Some(Fault::StaleKill), "{what}");
            } else {
                assert_eq!(
                    status.code(),
                    Some(1),
                    "{what}: {:?}\n{}",
                    s.output(),
                    ctx()
                );
                assert!(s.output().contains(TORN), "{what}: {:?}", s.output());
                assert!(!s.output().contains("Error:"), "{what}: {:?}", s.output());
                assert_eq!(session.fault, Some(Fault::ConfigRace), "{what}");
            }
            assert!(!s.output().contains("ready"), "{what}: the command ran");
        }
        When::After => {
            assert!(!inside, "{what}\n{}", ctx());
            assert!(side_rec.joined, "{what}: {side_rec:?}");
            assert_eq!(
                status.code(),
                Some(0),
                "{what}: {:?}\n{}",
                s.output(),
                ctx()
            );
            assert!(s.output().contains("got:ok"), "{what}: {:?}", s.output());
            assert_eq!(session.fault, None, "{what}");
        }
    }
    // The session's terminal is restored after every ending the agent reports.
    assert_eq!(s.after.as_ref(), Some(&s.before), "{what}");
}

/// REPS trials spread over WORKERS machines; clients take turns.
fn repeat(when: When, races: &[&str]) {
    let home = Home::new();
    let both = clients();
    std::thread::scope(|scope| {
        for w in 0..WORKERS {
            let (home, both) = (&home, &both);
            scope.spawn(move || {
                let m = home.machine(&format!("d{w}"), true);
                for rep in (w..REPS).step_by(WORKERS) {
                    let session_by = &both[rep % both.len()];
                    let side_by = &both[(rep / 2) % both.len()];
                    let race = races[rep % races.len()];
                    trial(&m, rep, session_by, side_by, when, race);
                }
                m.stop_and_check();
            });
        }
    });
}

#[test]
fn inside_the_window_exit1_always_tears_the_session() {
    repeat(When::Inside, &["exit1"]);
}

#[test]
fn inside_the_window_sigkill_always_kills_the_session() {
    repeat(When::Inside, &["sigkill"]);
}

#[test]
fn after_the_window_the_session_always_survives() {
    repeat(When::After, &["exit1", "sigkill"]);
}

#[test]
fn race_off_tolerates_a_touch_inside_the_window() {
    let home = Home::new();
    let m = home.machine("off", true);
    let mut c = m.exec(["-t", "--", "sh", "-c", SESSION]);
    c.envs(timings("off"));
    let mut s = Term::spawn(c, 80, 24);
    s.wait_raw(30, || m.context());
    let mut side = m.exec(["--", "echo", "side"]);
    side.envs(timings("off"));
    assert!(run_output(side).status.success());
    s.wait_output(30, |o| o.contains("ready"), || m.context());
    s.write(b"ok\r");
    assert_eq!(
        s.wait_exit(30, || m.context()).code(),
        Some(0),
        "{:?}",
        s.output()
    );
    let log = m.log();
    let session = log.iter().find(|r| r.pid == s.pid()).unwrap();
    let side = log.iter().find(|r| r.pid != s.pid()).unwrap();
    assert!(side.touched_inside_window_of(session), "{}", m.context());
    assert!(log.iter().all(|r| r.fault.is_none()), "{}", m.context());
}
