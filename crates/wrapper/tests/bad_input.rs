//! Bad input: clear one-line errors and documented exit codes (no PTY needed).

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pty-resize"))
        .args(args)
        .env_remove("PTY_RESIZE_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
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
        "pty-resize: error: the following required arguments were not provided: <MACHINE>, <SMOLVM ARGV>...",
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
        "--no-prologue",
        "--force-bridge",
        "--log",
        "PTY_RESIZE_LOG",
        "[default: channel]",
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
    cmd.args(["m", "--", "sh", "-c", &script]);
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
