//! An interrupted start-up (issue 16, bug 1). Killing smolvm's client does
//! not stop its exec's bring-up in the VM: the agent goes on writing
//! `config.json` and setting the container up. A wrapper that ends during
//! the start-up (Ctrl-C while the terminal is still cooked) must therefore
//! keep the machine's lock until that bring-up is over — here, until the
//! VM shows the session's program at VM level — or the next session's
//! bring-up races it and is lost (`load config.json: … trailing garbage`,
//! exit 1).

use std::time::Duration;

use e2e::wait::wait_for;
use e2e::{backend, guest, hermetic, Exit, Machine, Term};

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn a_start_up_interrupted_by_ctrl_c_keeps_the_machine_until_its_bring_up_is_over() {
    if backend::fake_only("per-exec bring-up lengths (FAKE_SMOLVM_BRINGUP_MS) and exec.log") {
        return;
    }
    // The first bring-up (3 s) ends in the middle of the second's crun
    // window (from 2.7 s to 3.5 s after it starts, right after the first).
    let machine = Machine::start("interrupted", &[("FAKE_SMOLVM_CRUN_MS", "800")]);
    let home = machine.home().to_path_buf();
    let session = |label: &str, bringup_ms: &str| {
        let log = home.join(format!("{label}.log"));
        let argv = machine.wrapped_argv_logging_to(&log, &[], &guest::tui_exec_args(label, &[]));
        let mut cmd = hermetic::command(&argv[0]);
        cmd.args(&argv[1..])
            .envs(machine.env())
            .env("FAKE_SMOLVM_BRINGUP_MS", bringup_ms);
        let mut term = Term::spawn(100, 30, cmd);
        term.watch(&machine);
        (term, log)
    };
    // The first session: a 3 s bring-up, interrupted as soon as its smolvm
    // runs (the terminal is still cooked: Ctrl-C is a
    // SIGINT to the foreground group, smolvm's client included).
    let (mut first, first_log) = session("first", "3000");
    // Its exec has reached the agent (the fake's agent.log opens it), so its
    // bring-up is under way in the VM.
    let agent_log = machine.agent_log_path();
    wait_for(
        "the first session's exec to reach the agent",
        DEADLINE,
        || {
            std::fs::read_to_string(&agent_log)
                .is_ok_and(|t| t.contains(fake_smolvm::exec_log::EXEC_OPEN))
        },
        || std::fs::read_to_string(&first_log).unwrap_or_default(),
    );
    first.send_keys("\x03");
    assert_eq!(first.wait_exit(DEADLINE), Exit::Signal(libc::SIGINT));
    // At once, a second session with a shorter bring-up: without the lock it
    // would write config.json inside the first one's crun window.
    let (mut second, second_log) = session("second", "2700");
    second.wait_for_text(&guest::first_frame(100, 30), DEADLINE);
    let log = machine.exec_log();
    let mains: Vec<_> = log.iter().filter(|r| r.tty).collect();
    assert!(
        mains.iter().all(|r| r.fault.is_none()),
        "a session was lost: {mains:#?}\nfirst:\n{}\nsecond:\n{}",
        std::fs::read_to_string(&first_log).unwrap_or_default(),
        std::fs::read_to_string(&second_log).unwrap_or_default()
    );
    // The first wrapper left its lock to a keeper (which let go when the VM
    // showed the program, or at the bound: here the fake ends an exec whose
    // client is gone before its program runs), and the second waited for it.
    let first_events = Machine::wrapper_events(&first_log);
    assert!(
        first_events.iter().any(|r| r.event == "hold")
            && first_events.iter().any(|r| r.event == "hold-done"),
        "{}",
        std::fs::read_to_string(&first_log).unwrap_or_default()
    );
    assert!(
        Machine::wrapper_events(&second_log)
            .iter()
            .any(|r| r.event == "lock-wait"),
        "{}",
        std::fs::read_to_string(&second_log).unwrap_or_default()
    );
    second.send_keys("q");
    assert_eq!(second.wait_exit(DEADLINE), Exit::Code(0));
}
