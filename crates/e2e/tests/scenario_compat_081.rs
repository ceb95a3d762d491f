//! A smolvm that forwards sizes itself (`FAKE_SMOLVM_COMPAT=0.8.1`: the
//! guest PTY starts at 80x24 and the client's `resize` frames reach it, but
//! only after `started`). The wrapper keeps its sizing prologue — so the
//! first frame is already at the host size — and starts no side channel at
//! all; a resize during start-up still ends at the host's final size (once
//! ready, the wrapper nudges smolvm with SIGWINCH, and the client re-sends).

use std::time::Duration;

use e2e::wait::wait_for;
use e2e::{bins, execs, guest, Exit, Machine, Term};

const DEADLINE: Duration = Duration::from_secs(20);

/// Whether this run can say anything: the wrapper decides by `smolvm
/// --version`, and the real 0.8.0 client says 0.8.0 whatever the fake does.
fn needs_a_0_8_1_client() -> bool {
    if bins::real_client() {
        e2e::note(&format!(
            "skipped: {} says 0.8.0; this scenario needs a client that reports 0.8.1",
            bins::smolvm_client().display()
        ));
        return false;
    }
    true
}

#[test]
fn against_smolvm_0_8_1_the_first_frame_is_right_and_no_side_channel_starts() {
    if e2e::backend::fake_only("FAKE_SMOLVM_COMPAT=0.8.1 (the agent here is 0.8.0)") {
        return;
    }
    if !needs_a_0_8_1_client() {
        return;
    }
    let machine = Machine::start("compat", &[("FAKE_SMOLVM_COMPAT", "0.8.1")]);
    let args = guest::tui_exec_args("compat", &[]);
    let mut term = Term::spawn(100, 30, machine.wrapped_command(&[], &args));
    term.watch(&machine);
    term.wait_for_text(&guest::first_frame(100, 30), DEADLINE);
    insta::assert_snapshot!(
        "compat_081_100x30",
        guest::mask_counters(&guest::mask_first_frame(&term.snapshot()))
    );

    term.resize(60, 20);
    term.wait_for_text(&guest::status_at("compat", 60, 20), DEADLINE);
    term.wait_for_text("believed 60x20", DEADLINE);
    insta::assert_snapshot!(
        "compat_081_resized_60x20",
        guest::mask_counters(&guest::mask_first_frame(&term.snapshot()))
    );
    term.send_keys("q");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));

    let log = machine.exec_log();
    assert_eq!(log.len(), 1, "no side channel at all: {log:#?}");
    let main = execs::main_exec(&log);
    assert_ne!(
        main.argv,
        args[2..],
        "the command runs through the prologue"
    );
    let start = Machine::wrapper_events(&machine.wrapper_log_path())
        .into_iter()
        .find(|r| r.event == "start");
    assert_eq!(
        start.as_ref().and_then(|r| r.get("transport")),
        Some("native"),
        "{}",
        machine.wrapper_log()
    );
}

#[test]
fn against_smolvm_0_8_1_a_resize_during_start_up_ends_at_the_final_size() {
    if e2e::backend::fake_only("FAKE_SMOLVM_COMPAT=0.8.1 (the agent here is 0.8.0)") {
        return;
    }
    if !needs_a_0_8_1_client() {
        return;
    }
    // A long crun window: the resize lands after `started`, before the
    // container runs — before the prologue's (stale) stty.
    let machine = Machine::start(
        "compat-startup",
        &[
            ("FAKE_SMOLVM_COMPAT", "0.8.1"),
            ("FAKE_SMOLVM_CRUN_MS", "800"),
        ],
    );
    let args = guest::tui_exec_args("compat", &[]);
    let mut term = Term::spawn(100, 30, machine.wrapped_command(&[], &args));
    term.watch(&machine);
    let log = machine.wrapper_log_path();
    wait_for(
        "smolvm's switch to raw mode",
        DEADLINE,
        || {
            Machine::wrapper_events(&log)
                .iter()
                .any(|r| r.event == "started")
        },
        || machine.wrapper_log(),
    );
    term.resize(90, 25);
    // Once ready, the wrapper nudges smolvm, whose client re-sends the size:
    // whatever order the prologue's stty and the client's first resize took,
    // the guest ends at the final size.
    wait_for(
        "the wrapper to nudge smolvm once ready",
        DEADLINE,
        || {
            Machine::wrapper_events(&log)
                .iter()
                .any(|r| r.event == "nudge")
        },
        || machine.wrapper_log(),
    );
    term.wait_for_text(&guest::status_at("compat", 90, 25), DEADLINE);
    term.wait_for_text("believed 90x25", DEADLINE);
    term.send_keys("q");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
    assert_eq!(machine.exec_log().len(), 1, "no side channel at all");
    let nudge = Machine::wrapper_events(&log)
        .into_iter()
        .find(|r| r.event == "nudge");
    assert_eq!(
        nudge.as_ref().and_then(|r| r.get("size")),
        Some("90x25"),
        "the wrapper nudged smolvm once ready:\n{}",
        machine.wrapper_log()
    );
}
