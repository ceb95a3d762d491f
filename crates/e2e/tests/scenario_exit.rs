//! Scenario 7: exit codes and signals pass through the wrapper: the guest's
//! code, 128+N for a guest killed by signal N, SIGTERM to the wrapper ends
//! the guest session, and a guest that exits at once ends the wrapper at
//! once (even while its fallback timer is armed).

use std::time::Duration;

use e2e::wait::wait_for;
use e2e::{execs, guest, hermetic, procs, Exit, Machine, Term};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const DEADLINE: Duration = Duration::from_secs(20);

fn wrapped_term(machine: &Machine, opts: &[&str], exec_args: &[String]) -> Term {
    let mut term = Term::spawn(100, 30, machine.wrapped_command(opts, exec_args));
    term.watch(machine);
    term
}

fn sh_exec_args(script: &str) -> Vec<String> {
    ["-t", "--", "sh", "-c", script]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn a_guest_exiting_with_7_makes_the_wrapper_exit_7() {
    if e2e::backend::fake_only("exec.log (the main exec's code and side channels)") {
        return;
    }
    let machine = Machine::start("exit7", &[]);
    let mut term = wrapped_term(
        &machine,
        &[],
        &guest::tui_exec_args("exit7", &["--exit-after", "300", "--exit-code", "7"]),
    );
    term.wait_for_text("guest-tui exit7 size 100x30", DEADLINE);
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(7));
    assert_eq!(execs::main_exec(&machine.exec_log()).exit_code, 7);
}

#[test]
fn a_guest_killed_by_sigkill_makes_the_wrapper_exit_137() {
    if e2e::backend::fake_only("exec.log (the main exec's code and side channels)") {
        return;
    }
    let machine = Machine::start("killed", &[]);
    let mut term = wrapped_term(&machine, &[], &sh_exec_args("kill -KILL $$"));
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(128 + 9));
    let log = machine.exec_log();
    assert_eq!(execs::main_exec(&log).signal, Some(9), "{log:#?}");
}

#[test]
fn ctrl_c_during_start_up_stops_an_enclosing_shell_loop_as_plain_smolvm_does() {
    if e2e::backend::fake_only("exec.log (the main exec's code and side channels)") {
        return;
    }
    // The audit's reproduction: a loop of sessions in a shell script, Ctrl-C
    // while the first one still starts (the terminal is cooked: Ctrl-C is a
    // SIGINT to the foreground group). Plain smolvm dies of it and bash, seeing
    // a child killed by SIGINT, stops; the wrapper must die of it too.
    let machine = Machine::start("ctrl-c-loop", &[("FAKE_SMOLVM_BRINGUP_MS", "3000")]);
    let argv = machine.wrapped_argv(&[], &guest::tui_exec_args("ctrl-c-loop", &[]));
    let script = format!(
        "for i in 1 2 3; do {}; echo \"ITER $i rc=$?\"; done; echo LOOP-DONE",
        e2e::shell::join(&argv)
    );
    let mut cmd = hermetic::command("bash");
    cmd.arg("-c").arg(script).envs(machine.env());
    let mut term = Term::spawn(100, 30, cmd);
    term.watch(&machine);
    let log = machine.wrapper_log_path();
    wait_for(
        "the first session's smolvm to start",
        DEADLINE,
        || {
            Machine::wrapper_events(&log)
                .iter()
                .any(|r| r.event == "start")
        },
        || machine.wrapper_log(),
    );
    term.send_keys("\x03");
    assert_eq!(
        term.wait_exit(DEADLINE),
        Exit::Signal(libc::SIGINT),
        "screen:\n{}\nwrapper log:\n{}",
        term.contents(),
        machine.wrapper_log()
    );
    assert!(!term.contents().contains("ITER"), "{}", term.contents());
}

#[test]
fn sigterm_to_the_wrapper_ends_the_session_and_the_wrapper_dies_of_it() {
    if e2e::backend::fake_only("exec.log (the main exec's code and side channels)") {
        return;
    }
    let machine = Machine::start("sigterm", &[]);
    // The record file's path is unique to this test: it finds the guest.
    let record = machine.home().join("sigterm-frames.jsonl");
    let record = record.to_string_lossy().into_owned();
    let mut term = wrapped_term(
        &machine,
        &[],
        &guest::tui_exec_args("sigterm", &["--record", &record]),
    );
    term.wait_for_text("guest-tui sigterm size 100x30", DEADLINE);
    assert!(
        !procs::running_with_arg(&record).is_empty(),
        "guest not found"
    );

    // The Term's program is the wrapper itself.
    kill(Pid::from_raw(term.pid() as i32), Signal::SIGTERM).unwrap();
    // The wrapper forwards SIGTERM to smolvm, which dies of it; the wrapper
    // then dies of SIGTERM too, as plain smolvm would (its log says 143).
    assert_eq!(term.wait_exit(DEADLINE), Exit::Signal(libc::SIGTERM));
    assert!(
        machine
            .wrapper_log()
            .contains("event=signal signal=SIGTERM action=forwarded ok=true"),
        "{}",
        machine.wrapper_log()
    );
    // The guest program is not ended by this: smolvm 0.8.0's agent kills
    // crun when its client dies, and the `-t` session's container goes on as
    // the machine's main container (smolvm-0.8.0.md, last section; the fake
    // does the same) — as with plain smolvm.
    wait_for(
        "the main exec's exec.log record",
        DEADLINE,
        || machine.exec_log().iter().any(|r| r.tty),
        || format!("{:#?}", machine.exec_log()),
    );
}

#[test]
fn a_guest_that_exits_at_once_ends_the_wrapper_at_once_even_with_the_fallback_timer_armed() {
    if e2e::backend::fake_only("exec.log (the main exec's code and side channels)") {
        return;
    }
    let machine = Machine::start("at-once", &[]);
    // The terminal is raw before the wrapper starts, so readiness cannot be
    // observed and its 5 s fallback timer is armed.
    let mut argv = vec![
        "sh".to_string(),
        "-c".into(),
        "stty raw -echo; exec \"$@\"".into(),
        "sh".into(),
    ];
    argv.extend(machine.wrapped_argv(&["--fallback-ms", "5000"], &sh_exec_args("exit 3")));
    let mut cmd = hermetic::command(&argv[0]);
    cmd.args(&argv[1..]).envs(machine.env());
    let mut term = Term::spawn(100, 30, cmd);
    term.watch(&machine);
    // Well before the timer would fire: the wrapper does not wait for it.
    assert_eq!(term.wait_exit(Duration::from_secs(3)), Exit::Code(3));
    let log = machine.wrapper_log();
    assert!(log.contains("readiness=timer"), "{log}");
    assert!(!log.contains("event=ready "), "{log}");
    // The agent transport probes from launch here (raw mode cannot be
    // seen): VM-level `vm_exec`s, harmless; no side channel into the machine.
    assert!(execs::container_side_channels(&machine.exec_log()).is_empty());
}
