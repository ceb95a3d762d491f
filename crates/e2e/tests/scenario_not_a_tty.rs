//! Scenario 8: output piped. With stdout not a terminal there is nothing to
//! resize: the wrapper runs the argv as is (no prologue, no side-channel)
//! and the output arrives byte for byte as without it.

use std::time::Duration;

use e2e::{shell, Exit, Machine, Term};

const DEADLINE: Duration = Duration::from_secs(20);

/// A guest command whose output shows if any byte is lost or added.
const GUEST: [&str; 5] = [
    "-t",
    "--",
    "sh",
    "-c",
    "printf 'hello\\n'; printf 'tab\\there  spaces\\n'; printf 'no newline at the end'",
];

/// Runs `argv | cat > FILE` in a 100x30 terminal (stdin stays a terminal);
/// returns FILE's bytes.
fn piped_output(machine: &Machine, argv: &[String], name: &str) -> Vec<u8> {
    let out = machine.home().join(name);
    let line = format!(
        "{} | cat > {}",
        shell::join(argv),
        shell::quote(&out.to_string_lossy())
    );
    let mut cmd = e2e::hermetic::command("sh");
    cmd.arg("-c").arg(line).envs(machine.env());
    let mut term = Term::spawn(100, 30, cmd);
    term.watch(machine);
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
    std::fs::read(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}

#[test]
fn with_stdout_piped_there_is_no_side_channel_and_the_output_is_intact() {
    if e2e::backend::fake_only("exec.log (it counts the execs)") {
        return;
    }
    let machine = Machine::start("piped", &[]);
    let direct = piped_output(&machine, &machine.exec_argv(&GUEST), "direct.out");
    assert!(
        String::from_utf8_lossy(&direct).contains("hello"),
        "{direct:?}"
    );
    let before = machine.exec_log().len();

    let wrapped = piped_output(&machine, &machine.wrapped_argv(&[], &GUEST), "wrapped.out");
    assert_eq!(
        String::from_utf8_lossy(&wrapped),
        String::from_utf8_lossy(&direct),
        "the wrapper changed the output"
    );
    let log = machine.exec_log();
    assert_eq!(
        log.len(),
        before + 1,
        "exactly one exec (the command itself), no side-channel: {log:#?}"
    );
    assert_eq!(
        log[before].argv,
        GUEST[2..],
        "the argv must run as is (no prologue): {log:#?}"
    );
    let passthrough = Machine::wrapper_events(&machine.wrapper_log_path())
        .into_iter()
        .find(|r| r.event == "passthrough");
    assert_eq!(
        passthrough.as_ref().and_then(|r| r.get("reason")),
        Some("not-a-tty"),
        "{}",
        machine.wrapper_log()
    );
}
