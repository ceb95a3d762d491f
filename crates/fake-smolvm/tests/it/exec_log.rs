//! exec.log holds exactly one line per exec that reached the agent, written
//! by the agent (for any client), and none for an exec that did not.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};

use fake_smolvm::exec_log::{ExecPath, Fault, Level};

use crate::common::*;

/// Runs an exec with its output discarded; returns the client's pid and status.
fn run_exec(mut c: Command) -> (u32, ExitStatus) {
    c.stdout(Stdio::null()).stderr(Stdio::null()).envs(QUICK);
    let mut child = c.spawn().unwrap();
    let status = wait_child_or(&mut child, 30, String::new);
    (child.id(), status)
}

/// Execs that end in each way the agent reports: (args, exit code, error).
const CASES: [(&[&str], i32, Option<&str>); 5] = [
    (&["--", "sh", "-c", "exit 3"], 3, None),
    (&["-i", "--", "sh", "-c", "exit 5"], 5, None),
    (&["--", "sh", "-c", "kill -9 $$"], 137, None),
    (
        &["-w", "/nonexistent-fsm-dir", "--", "true"],
        1,
        Some("exec failed: workdir /nonexistent-fsm-dir: no such directory"),
    ),
    (&["--", "/nonexistent-fsm-cmd"], 127, None),
];

#[test]
fn one_line_per_exec_that_reached_the_agent_with_both_clients() {
    let home = Home::new();
    for image in [true, false] {
        let m = home.machine(if image { "li" } else { "lb" }, image);
        let mut expected = 0;
        for client in clients() {
            for (args, code, error) in CASES {
                let (pid, status) = run_exec(m.exec_by(&client, args));
                let what = format!("{client:?} image={image} {args:?}");
                // At VM level 0.8.0 reports a signal as -1 (exit 255), and a
                // plain vm_exec that cannot start is an `error` (exit 1).
                let plain = !args.contains(&"-i");
                let (code, exit, error) = match (code, image) {
                    (137, false) => (-1, 255, error),
                    (127, false) | (1, false) if plain => (
                        1,
                        1,
                        Some("failed to spawn command: No such file or directory (os error 2)"),
                    ),
                    _ => (code, code, error),
                };
                assert_eq!(status.code(), Some(exit), "{what}\n{}", m.context());
                let rec = m.record_of(pid);
                expected += 1;
                assert_eq!(rec.exit_code, code, "{what}");
                assert_eq!(rec.error.as_deref(), error, "{what}");
                assert_eq!(rec.program, client.logged_name(), "{what}");
                assert_eq!(
                    rec.argv,
                    args[args.iter().position(|a| *a == "--").unwrap() + 1..]
                );
                let want = if image {
                    ExecPath::Run
                } else {
                    ExecPath::VmExec
                };
                assert_eq!(rec.path, want, "{what}");
                assert!(!rec.client_gone && !rec.joined, "{what}");
                assert_eq!(rec.stdin, "devnull", "{what}");
                // The timeline reads in order.
                let b0 = rec.bringup_start_ms.unwrap();
                // A vm_exec (VM level) never touches the machine: no
                // config.json, no main container.
                assert_eq!(rec.level, Level::from(want), "{what}");
                assert_eq!(rec.touched_ms.is_none(), !image, "{what}: {rec:?}");
                let t = rec.touched_ms.unwrap_or(b0);
                assert!(
                    rec.start_ms <= b0 && b0 <= t && t <= rec.end_ms,
                    "{what}: {rec:?}"
                );
                if code == 137 || code == -1 {
                    assert_eq!(rec.signal, Some(9), "{what}");
                }
            }
            // vm not found and not running never reach an agent: no line.
            let (_, status) = run_exec(home.cmd_of(
                client.program(),
                ["machine", "exec", "--name", "nope", "--", "true"],
            ));
            assert_eq!(status.code(), Some(1));
            assert_eq!(m.log().len(), expected, "{}", m.context());
        }
        m.stop_and_check();
        let mut c = m.exec(["--", "true"]);
        c.stderr(Stdio::null());
        let (_, status) = run_exec(c);
        assert_eq!(status.code(), Some(1), "exec on a stopped machine");
        assert_eq!(m.log().len(), expected, "no line for a stopped machine");
    }
}

#[test]
fn a_client_killed_mid_session_is_logged_once_with_client_gone() {
    let home = Home::new();
    let m = home.machine("vanish", true);
    for client in clients() {
        for flags in [&["-i"][..], &["-t"][..], &[][..]] {
            let mark = marker("vanish");
            let guest_flag = format!("/tmp/{}", marker("flag"));
            let flag = m.guest_tmp(&guest_flag);
            let script = format!("touch {guest_flag}; sleep 100000");
            let mut c = m.exec_by(&client, flags);
            c.args(["--", "sh", "-c", &script, &mark]).envs(QUICK);
            let mut t = Term::spawn(c, 80, 24);
            let pid = t.pid();
            let what = format!("{client:?} {flags:?}");
            wait_until(30, || flag.exists(), || format!("{what}\n{}", m.context()));
            t.signal(nix::sys::signal::Signal::SIGKILL);
            let status = t.wait_exit(30, || m.context());
            assert_eq!(status.signal(), Some(9));
            let rec = m.record_of(pid);
            if flags == ["-t"] && !rec.joined {
                // The -t session that made the main container: crun dies,
                // the container goes on (smolvm-0.8.0.md, last section).
                assert!(!pids_with(&mark).is_empty(), "{what}: the container died");
            } else {
                wait_until(
                    30,
                    || pids_with(&mark).is_empty(),
                    || format!("{what}: guest command survived {:?}", pids_with(&mark)),
                );
            }
            assert!(rec.client_gone, "{what}: {rec:?}");
            assert_eq!((rec.exit_code, rec.signal, rec.fault), (137, Some(9), None));
            assert!(rec.bringup_end_ms.is_some(), "{what}: the command had run");
        }
    }
    m.stop_and_check();
}

#[test]
fn a_client_killed_during_bringup_does_not_stop_it_and_is_logged() {
    let home = Home::new();
    let m = home.machine("early", true);
    let mut c = m.exec(["--", "touch", "/tmp/ran"]);
    c.env("FAKE_SMOLVM_BRINGUP_MS", "400")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let pid = child.id();
    // Killed once the agent has the request (its exec is open in agent.log).
    wait_until(
        30,
        || m.agent_log().contains(&format!("exec open {pid}-")),
        || m.context(),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let rec = m.record_of(pid);
    assert!(rec.client_gone, "{rec:?}");
    assert!(rec.touched_ms.is_some(), "the bring-up went on: {rec:?}");
    assert_ne!(rec.fault, Some(Fault::Timeout));
}
