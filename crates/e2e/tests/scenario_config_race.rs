//! Scenario 5: the config.json race (seed 2). Every exec's bring-up writes
//! the machine's one `config.json`; two overlapping bring-ups tear it and
//! smolvm dies with ``load `config.json`: parse error: trailing garbage``.
//!
//! A naive side-channel fired right after the main exec starts always
//! overlaps its bring-up. `pty-resize` waits for readiness (smolvm's switch
//! of the terminal to raw mode) however long bring-up takes — so a resize
//! during bring-up is held back, never raced — over repeated launches,
//! including a bring-up longer than its fallback timer.

use std::time::Duration;

use e2e::wait::wait_for;
use e2e::{execs, guest, Exit, Machine, Term};
use fake_smolvm::exec_log::Fault;

const DEADLINE: Duration = Duration::from_secs(20);

const TRAILING_GARBAGE: &str = "load `config.json`: parse error: trailing garbage";

/// One wrapped session on `machine`: resized to 90x25 while the main exec
/// is still in its bring-up, then quit once the guest shows 90x25.
fn launch_with_a_resize_during_bring_up(machine: &Machine, opts: &[&str], n: usize) {
    let label = format!("race-{n}");
    // Counted before the spawn: the wrapper starts logging at once.
    let lines_before = machine.wrapper_log().lines().count();
    let mut term = Term::spawn(
        100,
        30,
        machine.wrapped_command(opts, &guest::tui_exec_args(&label, &[])),
    );
    term.watch(machine);
    let new_log = || -> String {
        let log = machine.wrapper_log();
        log.lines()
            .skip(lines_before)
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The wrapper has started the main exec (and handles SIGWINCH).
    wait_for(
        "the wrapper to log its start",
        DEADLINE,
        || new_log().contains("event=start "),
        || machine.wrapper_log(),
    );
    term.resize(90, 25);
    term.wait_for_text(&guest::status_at(&label, 90, 25), DEADLINE);
    term.send_keys("q");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));

    // The resize really came during bring-up: seen before `ready`, and the
    // readiness was smolvm's raw-mode switch, not the fallback timer.
    let log = new_log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in the wrapper log:\n{log}"))
    };
    assert!(
        at("event=size size=90x25") < at("event=ready "),
        "the resize must come before ready:\n{log}"
    );
    assert!(log.contains("event=ready via=raw-mode"), "{log}");
}

/// No exec's bring-up overlapped another's, and no fault fired.
fn assert_never_raced(machine: &Machine, sessions: usize) {
    let log = machine.exec_log();
    assert_eq!(
        log.iter().filter(|r| r.tty).count(),
        sessions,
        "one main exec per launch: {log:#?}"
    );
    assert!(
        execs::overlapping_bringups(&log).is_empty(),
        "overlapping bring-ups: {:?}\n{log:#?}",
        execs::overlapping_bringups(&log)
    );
    assert!(execs::faulted(&log).is_empty(), "{log:#?}");
    assert!(log.iter().all(|r| r.exit_code == 0), "{log:#?}");
}

#[test]
fn pty_resize_never_races_config_json_over_5_launches_with_a_resize_during_bring_up() {
    let machine = Machine::start("wrapped-race", &[]);
    for n in 0..5 {
        launch_with_a_resize_during_bring_up(&machine, &[], n);
    }
    assert_never_raced(&machine, 5);
}

#[test]
fn pty_resize_never_races_config_json_with_a_bring_up_longer_than_its_fallback_timer() {
    // 2.5 s bring-up, 0.5 s fallback timer: readiness is observed, so the
    // timer is never used and nothing is pushed before bring-up ends.
    let machine = Machine::start("wrapped-slow", &[("FAKE_SMOLVM_BRINGUP_MS", "2500")]);
    for n in 0..3 {
        launch_with_a_resize_during_bring_up(&machine, &["--fallback-ms", "500"], n);
    }
    assert_never_raced(&machine, 3);
}
