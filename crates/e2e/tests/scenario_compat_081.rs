//! Scenario 9: a smolvm that forwards sizes itself (`FAKE_SMOLVM_COMPAT=
//! 0.8.1`). The wrapper sees the version and steps aside (no prologue, no
//! side-channel), so it never fights the native forwarding; the guest ends
//! at the right size and follows a resize.

use std::time::Duration;

use e2e::{execs, guest, Exit, Machine, Term};

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn against_smolvm_0_8_1_the_wrapper_steps_aside_and_the_guest_follows_resizes() {
    let machine = Machine::start("compat", &[("FAKE_SMOLVM_COMPAT", "0.8.1")]);
    let args = guest::tui_exec_args("compat", &[]);
    let mut term = Term::spawn(100, 30, machine.wrapped_command(&[], &args));
    term.watch(&machine);
    term.wait_for_text(&guest::status_at("compat", 100, 30), DEADLINE);
    term.wait_for_text("believed 100x30", DEADLINE);
    // 0.8.1 starts the guest PTY at 80x24 and sends the host size right
    // after: the first frame may be either, so `first` is not snapshotted.
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
    assert_eq!(log.len(), 1, "no side-channel at all: {log:#?}");
    let main = execs::main_exec(&log);
    assert_eq!(main.argv, args[2..], "the argv runs as is: {log:#?}");
    let wlog = machine.wrapper_log();
    assert!(
        wlog.contains("event=start bridge=off reason=native-0.8.1"),
        "{wlog}"
    );
}
