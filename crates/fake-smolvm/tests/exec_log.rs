//! exec.log holds exactly one line per exec that reached the agent: the
//! client's own, or the agent's when the client did not confirm it (`logged`)
//! because it died between the final response and its append.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};

use common::*;
use fake_smolvm::exec_log::ExecRecord;

/// Runs an exec with its output discarded; returns the client's pid and status.
fn run_exec(mut c: Command) -> (u32, ExitStatus) {
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let status = wait_child(&mut child, 30);
    (child.id(), status)
}

fn agent_log(m: &Machine<'_>) -> String {
    std::fs::read_to_string(m.dir().join("agent.log")).unwrap_or_default()
}

/// Waits until the agent has settled the exec of client `pid` (it notes that
/// in agent.log after any append of its own), then returns that exec's
/// exec.log records and the agent's note.
fn settled(m: &Machine<'_>, pid: u32) -> (Vec<ExecRecord>, String) {
    let tag = format!("exec {pid}-");
    let note = || {
        agent_log(m)
            .lines()
            .find(|l| l.contains(&tag))
            .map(str::to_owned)
    };
    wait_until(30, || note().is_some(), || agent_log(m));
    let records = m.log().into_iter().filter(|r| r.pid == pid).collect();
    (records, note().unwrap())
}

/// Execs that end in each way the agent reports (exit code, error, command
/// not found), with and without `-i`: (args, exit code, logged error).
const CASES: [(&[&str], i32, Option<&str>); 4] = [
    (&["--", "sh", "-c", "exit 3"], 3, None),
    (&["-i", "--", "sh", "-c", "exit 5"], 5, None),
    (
        &["-w", "/nonexistent-fsm-dir", "--", "true"],
        1,
        Some("exec failed: workdir /nonexistent-fsm-dir: no such directory"),
    ),
    (&["--", "/nonexistent-fsm-cmd"], 127, None),
];

fn only(records: Vec<ExecRecord>, what: &str) -> ExecRecord {
    assert_eq!(records.len(), 1, "{what}: {records:#?}");
    records.into_iter().next().unwrap()
}

#[test]
fn a_normal_exec_is_logged_once_by_its_client() {
    let fake = Fake::new();
    let m = fake.machine("once");
    for (args, code, error) in CASES {
        let (pid, status) = run_exec(m.exec(args));
        assert_eq!(status.code(), Some(code), "{args:?}");
        let (records, note) = settled(&m, pid);
        assert!(note.contains("client confirmed"), "{args:?}: {note}");
        let rec = only(records, &format!("{args:?}"));
        assert_eq!(rec.exit_code, code, "{args:?}");
        assert_eq!(rec.error.as_deref(), error, "{args:?}");
    }
    assert_eq!(m.log().len(), CASES.len(), "{:#?}", m.log());
}

#[test]
fn a_client_killed_before_logging_is_logged_once_by_the_agent() {
    let fake = Fake::new();
    let m = fake.machine("agentlog");
    for (args, code, error) in CASES {
        let mut c = m.exec(args);
        c.env(TEST_DIE_BEFORE_LOG, "1");
        let (pid, status) = run_exec(c);
        assert_eq!(status.signal(), Some(9), "{args:?}: {status:?}");
        let (records, note) = settled(&m, pid);
        assert!(note.contains("did not confirm"), "{args:?}: {note}");
        let rec = only(records, &format!("{args:?}"));
        // What the agent told the client, not the 137 of a vanished client.
        assert_eq!(rec.exit_code, code, "{args:?}");
        assert_eq!(rec.error.as_deref(), error, "{args:?}");
        assert_eq!((rec.signal, rec.fault), (None, None), "{args:?}");
        let (b0, b1) = (rec.bringup_start_ms.unwrap(), rec.bringup_end_ms.unwrap());
        assert!(
            rec.start_ms <= b0 && b0 <= b1 && b1 <= rec.end_ms,
            "{rec:?}"
        );
    }
    assert_eq!(m.log().len(), CASES.len(), "{:#?}", m.log());
}

#[test]
fn a_tty_client_killed_before_logging_is_logged_once_by_the_agent() {
    let fake = Fake::new();
    let m = fake.machine("ttylog");
    let mut c = m.exec(["-t", "--", "sh", "-c", "exit 7"]);
    c.env(TEST_DIE_BEFORE_LOG, "1");
    let mut s = PtySession::spawn(c, 80, 24);
    let status = s.wait_exit(30);
    assert_eq!(status.signal(), Some(9), "{:?}", s.output());
    let (records, note) = settled(&m, s.child.id());
    assert!(note.contains("did not confirm"), "{note}");
    let rec = only(records, "tty exec");
    assert_eq!((rec.exit_code, rec.error), (7, None));
    assert!(rec.tty && rec.interactive && rec.stdin.starts_with("tty:"));
}
