//! Scenario 2: with `pty-resize`, the guest's very first frame is drawn at
//! the host's size (the sizing prologue), not at 0x0 and not after a redraw.

use std::time::Duration;

use e2e::{execs, guest, Exit, Machine, Term};

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn with_pty_resize_the_guests_first_frame_is_already_100x30() {
    if e2e::backend::skipped() {
        return;
    }
    let machine = Machine::start("first", &[]);
    let mut term = Term::spawn(
        100,
        30,
        machine.wrapped_command(&[], &guest::tui_exec_args("first", &[])),
    );
    term.watch(&machine);
    term.wait_for_text(
        "guest-tui first size 100x30 first 100x30 frames 1",
        DEADLINE,
    );
    // frames 1 winch 0: drawn once, at the right size, never corrected.
    insta::assert_snapshot!("wrapped_first_frame_100x30", term.snapshot());

    term.send_keys("q");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
    if machine.is_real_agent() {
        return; // no exec.log there: the screen and the exit are the evidence
    }
    let log = machine.exec_log();
    let main = execs::main_exec(&log);
    assert_eq!(main.fault, None, "{log:#?}");
    assert_eq!(main.exit_code, 0, "{log:#?}");
}
