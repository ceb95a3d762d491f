//! Bad input: clear one-line errors and documented exit codes (no PTY needed).

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str]) -> Output {
    run_env(args, None)
}

/// Runs the wrapper with no terminal, bounded: bad input must never hang.
/// Its default log goes to a folder of its own (never the user's).
fn run_env(args: &[&str], log_env: Option<&str>) -> Output {
    let state = tempfile::tempdir().unwrap();
    run_in(args, log_env, state.path())
}

/// [`run_env`] with `XDG_STATE_HOME` (the default log's base) at `state`.
fn run_in(args: &[&str], log_env: Option<&str>, state: &std::path::Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pty-resize"));
    cmd.args(args)
        .env("XDG_STATE_HOME", state)
        .env_remove("PTY_RESIZE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(v) = log_env {
        cmd.env("PTY_RESIZE_LOG", v);
    }
    let mut child = cmd.spawn().unwrap();
    if testkit::wait::child_exit(&mut child, std::time::Duration::from_secs(20)).is_none() {
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        panic!("pty-resize {args:?} hung: {out:?}");
    }
    child.wait_with_output().unwrap()
}

const EXEC: [&str; 6] = ["--", "smolvm", "machine", "exec", "--name", "m"];

fn with_exec<'a>(before: &[&'a str]) -> Vec<&'a str> {
    before.iter().copied().chain(EXEC).collect()
}

#[test]
fn unsafe_timings_are_usage_errors() {
    assert_one_line_error(
        &run(&with_exec(&["--fallback-ms", "0", "m"])),
        2,
        "pty-resize: error: --fallback-ms 0 is below --settle-ms 2000",
    );
    assert_one_line_error(
        &run(&with_exec(&[
            "--settle-ms",
            "100",
            "--fallback-ms",
            "3000",
            "m",
        ])),
        2,
        "pty-resize: error: --settle-ms 100 is below the minimum 500",
    );
    assert_one_line_error(
        &run(&with_exec(&["--push-timeout-ms", "0", "m"])),
        2,
        "pty-resize: error:",
    );
}

#[test]
fn a_machine_other_than_the_commands_name_is_a_usage_error_naming_both() {
    assert_one_line_error(
        &run(&[
            "other", "--", "smolvm", "machine", "exec", "--name", "m", "-t",
        ]),
        2,
        "pty-resize: error: the machine 'other' differs from the command's --name 'm'",
    );
}

#[test]
fn clap_hints_are_kept_in_the_one_line() {
    let out = run(&["m", "smolvm", "machine"]);
    assert_one_line_error(
        &out,
        2,
        "pty-resize: error: unexpected argument 'smolvm' found",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("goes after '--'"));
    let out = run(&["--mode", "fast", "m", "--", "true"]);
    assert_one_line_error(&out, 2, "pty-resize: error: invalid value 'fast'");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[possible values: agent, channel, exec]")
    );
}

#[test]
fn an_empty_pty_resize_log_is_no_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_env(&["m", "--", "sh", "-c", "exit 4"], Some(""));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    // A non-empty one is used.
    let log = dir.path().join("l.log");
    let out = run_env(&["m", "--", "true"], Some(log.to_str().unwrap()));
    assert_eq!(out.status.code(), Some(0));
    let recs = pty_resize::log::read(&log).unwrap();
    assert_eq!(recs[0].event, "open");
    assert_eq!(recs[1].event, "passthrough");
    assert_eq!(recs[1].get("reason"), Some("not-a-tty"));
}

/// Issue 16: without --log or PTY_RESIZE_LOG the log has a default place,
/// `$XDG_STATE_HOME/pty-resize/pty-resize.log`; `--no-log` and an empty
/// PTY_RESIZE_LOG turn it off.
#[test]
fn the_log_has_a_default_place_and_can_be_turned_off() {
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("pty-resize/pty-resize.log");
    let out = run_in(&["--", "sh", "-c", "exit 3"], None, state.path());
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let recs = pty_resize::log::read(&log).unwrap();
    let names: Vec<_> = recs.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(names, ["open", "passthrough"]);
    std::fs::remove_file(&log).unwrap();
    let out = run_in(&["--no-log", "--", "true"], None, state.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = run_in(&["--", "true"], Some(""), state.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!log.exists(), "no log when it is turned off");
    // A default place that cannot be used costs the log, not the session.
    let file = state.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = run_in(&["--", "sh", "-c", "exit 4"], None, &file);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn unusable_logs_fail_at_once_with_one_line_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert_one_line_error(
        &run(&["--log", fifo.to_str().unwrap(), "m", "--", "true"]),
        1,
        &format!(
            "pty-resize: cannot open log '{}': a FIFO with no reader",
            fifo.display()
        ),
    );
    assert_one_line_error(
        &run(&["--log", dir.path().to_str().unwrap(), "m", "--", "true"]),
        1,
        "pty-resize: cannot open log",
    );
    assert_one_line_error(
        &run(&["--log", "/dev/full", "m", "--", "true"]),
        1,
        "pty-resize: cannot write log '/dev/full': No space left on device",
    );
}

fn assert_one_line_error(out: &Output, code: i32, starts: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with(starts), "{err:?}");
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    assert_one_line_error(
        &run(&[]),
        2,
        "pty-resize: error: the following required arguments were not provided: <SMOLVM ARGV>...",
    );
    assert_one_line_error(&run(&["m"]), 2, "pty-resize: error:");
    assert_one_line_error(&run(&["m", "smolvm", "machine"]), 2, "pty-resize: error:");
    assert_one_line_error(
        &run(&["m", "--"]),
        2,
        "pty-resize: error: the following required arguments were not provided: <SMOLVM ARGV>...",
    );
    assert_one_line_error(
        &run(&["", "--", "true"]),
        2,
        "pty-resize: error: the machine name is empty",
    );
    assert_one_line_error(
        &run(&["--", "smolvm", "machine", "exec", "--name", "", "-t"]),
        2,
        "pty-resize: error: the machine name is empty",
    );
    assert_one_line_error(
        &run(&["--mode", "fast", "m", "--", "true"]),
        2,
        "pty-resize: error:",
    );
    assert_one_line_error(
        &run(&["--fallback-ms", "-1", "m", "--", "true"]),
        2,
        "pty-resize: error:",
    );
}

#[test]
fn program_that_cannot_run_exits_127() {
    let out = run(&[
        "m",
        "--",
        "/nonexistent/smolvm",
        "machine",
        "exec",
        "--name",
        "m",
        "-t",
        "--",
        "sh",
    ]);
    assert_one_line_error(&out, 127, "pty-resize: cannot run '/nonexistent/smolvm': ");

    let out = run(&["m", "--", "no-such-smolvm-pty-resize-test"]);
    assert_one_line_error(
        &out,
        127,
        "pty-resize: cannot run 'no-such-smolvm-pty-resize-test': ",
    );

    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("smolvm");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    let out = run(&["m", "--", plain.to_str().unwrap()]);
    assert_one_line_error(&out, 127, "pty-resize: cannot run '");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not executable"));

    let out = run(&["--smolvm", "/nonexistent/smolvm", "m", "--", "true"]);
    assert_one_line_error(&out, 127, "pty-resize: cannot run '/nonexistent/smolvm': ");
}

#[test]
fn unopenable_log_is_an_internal_error_before_start() {
    let out = run(&["--log", "/nonexistent/dir/log", "m", "--", "true"]);
    assert_one_line_error(&out, 1, "pty-resize: cannot open log");
}

#[test]
fn help_documents_every_option_and_exit_code() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--smolvm",
        "--mode",
        "--fallback-ms",
        "--push-timeout-ms",
        "--settle-ms",
        "--no-prologue",
        "--force-bridge",
        "--log",
        "--no-log",
        "PTY_RESIZE_LOG",
        "XDG_STATE_HOME",
        "[MACHINE]",
        "doctor",
        "[default: agent]",
        "PTY_RESIZE_AGENT_SOCKET",
        "agent-fallback",
        "[default: 2000]",
        "[default: 10000]",
        "128+N",
        "127",
        "usage error",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn one_name_the_machine_may_be_left_out() {
    // No MACHINE: the command's --name (here passthrough: no terminal).
    let out = run(&["--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let out = run(&["doctor", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("--smolvm"),
        "{help}"
    );
    assert!(
        help.contains("Usage: pty-resize doctor [OPTIONS] [MACHINE]"),
        "{help}"
    );
    let out = run(&["doctor", "--bogus"]);
    assert_one_line_error(
        &out,
        2,
        "pty-resize: error: doctor: unexpected argument '--bogus' found (try",
    );
}

#[test]
fn without_a_terminal_the_command_runs_as_is() {
    let out = run(&["m", "--", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
}

#[test]
fn closed_standard_fds_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let script = format!("echo ok > {}; exit 6", marker.display());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pty-resize"));
    cmd.args(["m", "--", "sh", "-c", &script])
        .env("XDG_STATE_HOME", dir.path());
    // SAFETY: close is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(0);
            libc::close(1);
            libc::close(2);
            Ok(())
        });
    }
    let st = cmd.status().unwrap();
    assert_eq!(st.code(), Some(6));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ok\n");
}

#[test]
fn without_a_terminal_a_signal_death_is_the_commands_own() {
    // Passthrough replaces the wrapper (exec), so the parent sees exactly what
    // it would see without the wrapper: death by SIGTERM (a shell shows 143).
    let out = run(&["m", "--", "sh", "-c", "kill -TERM $$"]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(15), "{:?}", out.status);
}
