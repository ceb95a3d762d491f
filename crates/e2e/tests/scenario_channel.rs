//! The persistent channel's failure paths and the wrapper's signal
//! manners, end to end: a channel that dies or hangs falls back to one exec
//! per resize and the guest still follows; SIGINT/SIGQUIT to the wrapper
//! alone (the terminal delivers Ctrl-C to the child itself) do not end the
//! session; a machine name full of shell syntax never reaches a shell.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::wait::wait_for;
use e2e::{bins, execs, guest, Exit, Machine, Term};

const DEADLINE: Duration = Duration::from_secs(30);

/// A `--smolvm` that breaks the persistent channel (`-i` execs) in `how`
/// and passes every other call to the chosen client.
fn broken_channel_smolvm(dir: &Path, how: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("smolvm-broken-channel");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" -i \"*) {how};; esac\nexec {} \"$@\"\n",
            bins::smolvm_client().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn events(machine: &Machine) -> Vec<pty_resize::log::Record> {
    Machine::wrapper_events(&machine.wrapper_log_path())
}

/// `reasons`: what the wrapper may log for this death (a channel that exits
/// at once is seen either at its EOF or by a write into its closed stdin,
/// whichever comes first).
fn channel_failure_falls_back_to_exec(how: &str, extra: &[&str], reasons: &[&str]) {
    let machine = Machine::start("chan", &[]);
    let smolvm = broken_channel_smolvm(machine.home(), how);
    let mut opts = vec!["--mode", "channel", "--smolvm", smolvm.to_str().unwrap()];
    opts.extend_from_slice(extra);
    let mut term = Term::spawn(
        100,
        30,
        machine.wrapped_command(&opts, &guest::tui_exec_args("chan", &[])),
    );
    term.watch(&machine);
    term.wait_for_text(&guest::first_frame(100, 30), DEADLINE);
    term.resize(120, 40);
    term.wait_for_text(&guest::status_at("chan", 120, 40), DEADLINE);
    let dead = events(&machine)
        .into_iter()
        .find(|r| r.event == "channel-dead");
    let reason = dead
        .as_ref()
        .and_then(|r| r.get("reason"))
        .unwrap_or("none");
    assert!(
        reasons.contains(&reason),
        "channel-dead reason={reason}, expected one of {reasons:?}:\n{}",
        machine.wrapper_log()
    );
    assert!(
        events(&machine)
            .iter()
            .any(|r| r.event == "push" && r.get("transport") == Some("exec")),
        "{}",
        machine.wrapper_log()
    );
    term.resize(90, 20);
    term.wait_for_text(&guest::status_at("chan", 90, 20), DEADLINE);
    term.send_keys("q");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
    let log = machine.exec_log();
    assert!(execs::faulted(&log).is_empty(), "{log:#?}");
    assert!(
        execs::side_channels(&log)
            .iter()
            .all(|r| r.stdin == "devnull"),
        "{log:#?}"
    );
}

#[test]
fn a_channel_that_dies_falls_back_to_one_exec_per_resize() {
    if e2e::backend::fake_only("exec.log and stub clients around the fake") {
        return;
    }
    channel_failure_falls_back_to_exec("echo 'Error: broken' >&2; exit 1", &[], &["eof", "write"]);
}

#[test]
fn a_channel_that_hangs_times_out_and_falls_back() {
    if e2e::backend::fake_only("exec.log and stub clients around the fake") {
        return;
    }
    channel_failure_falls_back_to_exec(
        "exec sleep 600",
        &["--push-timeout-ms", "500"],
        &["timeout"],
    );
}

#[test]
fn sigint_and_sigquit_to_the_wrapper_alone_do_not_end_the_session() {
    if e2e::backend::fake_only("exec.log and stub clients around the fake") {
        return;
    }
    let machine = Machine::start("sigint", &[]);
    let mut term = Term::spawn(
        100,
        30,
        machine.wrapped_command(&[], &guest::tui_exec_args("sigint", &[])),
    );
    term.watch(&machine);
    term.wait_for_text(&guest::first_frame(100, 30), DEADLINE);
    let wrapper = nix::unistd::Pid::from_raw(term.pid() as i32);
    nix::sys::signal::kill(wrapper, nix::sys::signal::Signal::SIGINT).unwrap();
    nix::sys::signal::kill(wrapper, nix::sys::signal::Signal::SIGQUIT).unwrap();
    wait_for(
        "the wrapper to log SIGQUIT",
        DEADLINE,
        || {
            events(&machine)
                .iter()
                .any(|r| r.event == "signal" && r.get("signal") == Some("SIGQUIT"))
        },
        || machine.wrapper_log(),
    );
    assert_eq!(term.try_exit(), None, "the wrapper died of SIGINT/SIGQUIT");
    term.resize(101, 31);
    term.wait_for_text(&guest::status_at("sigint", 101, 31), DEADLINE);
    term.send_keys("q");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
}

#[test]
fn a_machine_name_full_of_shell_syntax_never_reaches_a_shell() {
    if e2e::backend::fake_only("exec.log and stub clients around the fake") {
        return;
    }
    let machine = Machine::start("plain", &[]);
    let pwned = machine.home().join("pwned");
    let evil = format!("$(touch {})", pwned.display());
    let mut argv = vec![
        bins::pty_resize().to_string_lossy().into_owned(),
        "--log".into(),
        machine.wrapper_log_path().to_string_lossy().into_owned(),
        "--mode".into(),
        "exec".into(),
        evil.clone(),
        "--".into(),
        bins::smolvm_client().to_string_lossy().into_owned(),
        "machine".into(),
        "exec".into(),
        "--name".into(),
        evil,
    ];
    argv.extend(guest::tui_exec_args("evil", &[]));
    let mut cmd = e2e::hermetic::command(&argv[0]);
    cmd.args(&argv[1..]).envs(machine.env());
    let mut term = Term::spawn(100, 30, cmd);
    term.watch(&machine);
    // smolvm refuses the name; nothing ran a shell on it.
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(1));
    assert!(
        term.contents().contains("validate machine name"),
        "{}",
        term.contents()
    );
    assert!(!pwned.exists(), "a shell ran the machine name");
}
