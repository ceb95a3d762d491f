//! Scenario 3: with `pty-resize`, the guest follows every resize of the
//! host terminal, through the persistent channel (default) and with one
//! exec per resize.

use std::time::Duration;

use e2e::{execs, guest, Exit, Machine, Term};

const DEADLINE: Duration = Duration::from_secs(20);

/// 100x30 → 60x20 → 132x40; returns the screens after each step.
fn follow_each_step(mode: &str) -> Vec<String> {
    let label = format!("resize-{mode}");
    let machine = Machine::start("resize", &[]);
    let mut term = Term::spawn(
        100,
        30,
        machine.wrapped_command(&["--mode", mode], &guest::tui_exec_args(&label, &[])),
    );
    term.watch(&machine);
    let mut screens = Vec::new();
    term.wait_for_text(&guest::status_at(&label, 100, 30), DEADLINE);
    screens.push(term.snapshot());
    for (cols, rows) in [(60, 20), (132, 40)] {
        term.resize(cols, rows);
        term.wait_for_text(&guest::status_at(&label, cols, rows), DEADLINE);
        // One push may reach the guest as one SIGWINCH or two (see
        // guest::mask_counters): the counters are masked, the size is not.
        screens.push(guest::mask_counters(&term.snapshot()));
    }
    term.send_keys("q");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
    if !machine.is_real_agent() {
        let log = machine.exec_log();
        assert!(execs::faulted(&log).is_empty(), "{log:#?}");
    }
    screens
}

#[test]
fn the_guest_follows_each_resize_100x30_60x20_132x40_through_the_channel() {
    if e2e::backend::skipped() {
        return;
    }
    let screens = follow_each_step("channel");
    insta::assert_snapshot!("resize_channel_1_100x30", screens[0]);
    insta::assert_snapshot!("resize_channel_2_60x20", screens[1]);
    insta::assert_snapshot!("resize_channel_3_132x40", screens[2]);
}

#[test]
fn the_guest_follows_each_resize_100x30_60x20_132x40_with_one_exec_per_resize() {
    if e2e::backend::skipped() {
        return;
    }
    let screens = follow_each_step("exec");
    insta::assert_snapshot!("resize_exec_1_100x30", screens[0]);
    insta::assert_snapshot!("resize_exec_2_60x20", screens[1]);
    insta::assert_snapshot!("resize_exec_3_132x40", screens[2]);
}
