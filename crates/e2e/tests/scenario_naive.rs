//! Scenario 1: the bug itself. Without the wrapper, `smolvm 0.8.0 machine
//! exec -t` gives the guest a PTY that is 0x0, whatever the host's size.

use std::time::Duration;

use e2e::{guest, Exit, Machine, Term};

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn without_the_wrapper_the_guest_sees_a_0x0_terminal_in_a_100x30_pty() {
    if e2e::backend::skipped() {
        return;
    }
    let machine = Machine::start("naive", &[]);
    let mut term = Term::spawn(
        100,
        30,
        machine.exec_command(&guest::tui_exec_args("naive", &[])),
    );
    term.watch(&machine);
    term.wait_for_text("guest-tui naive size 0x0 first 0x0", DEADLINE);
    term.wait_for_text("no size: cannot draw", DEADLINE);
    insta::assert_snapshot!("naive_guest_at_0x0_in_100x30", term.snapshot());

    term.send_keys("q");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
    if machine.is_real_agent() {
        return; // no exec.log there: the screen above is the evidence
    }
    let log = machine.exec_log();
    assert_eq!(log.len(), 1, "no bridge, so no side-channel: {log:#?}");
    assert_eq!(log[0].fault, None, "{log:#?}");
}
