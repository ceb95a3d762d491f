//! smolvm 0.8.0's faults beyond the `-t` session's window (see
//! determinism.rs for that): torn config.json between plain execs, the OCI
//! document, joined execs dying with the main container, the opt-in
//! shared-stdin hypothesis, and the compat switch as a machine default.

use std::io::Read;
use std::process::{Output, Stdio};

use fake_smolvm::exec_log::Fault;

use crate::common::*;

/// Plain exec A with a long crun window; once its config.json is written,
/// plain exec B: B's write lands inside A's window.
fn overlapping_pair(m: &Machine<'_>, race: &str) -> (Output, Output) {
    let mut a = m.exec(["--", "echo", "A"]);
    a.envs([
        ("FAKE_SMOLVM_BRINGUP_MS", "30"),
        ("FAKE_SMOLVM_CRUN_MS", "1500"),
        ("FAKE_SMOLVM_RACE", race),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut a = a.spawn().unwrap();
    let a_pid = a.id();
    let config = m.dir().join("bundle/config.json");
    wait_until(
        30,
        || {
            std::fs::read_to_string(&config)
                .map(|t| t.contains(&format!("\"{a_pid}-")))
                .unwrap_or(false)
        },
        || m.context(),
    );
    let mut b = m.exec(["--", "echo", "B"]);
    b.envs([
        ("FAKE_SMOLVM_BRINGUP_MS", "30"),
        ("FAKE_SMOLVM_CRUN_MS", "30"),
        ("FAKE_SMOLVM_RACE", race),
    ]);
    let b = run_output(b);
    let status = wait_child_or(&mut a, 30, || m.context());
    let (mut so, mut se) = (Vec::new(), Vec::new());
    a.stdout.take().unwrap().read_to_end(&mut so).unwrap();
    a.stderr.take().unwrap().read_to_end(&mut se).unwrap();
    let a = Output {
        status,
        stdout: so,
        stderr: se,
    };
    (a, b)
}

#[test]
fn a_plain_exec_inside_anothers_window_tears_its_config_json() {
    let home = Home::new();
    let m = home.machine("race", true);
    let (a, b) = overlapping_pair(&m, "exit1");
    assert_eq!(a.status.code(), Some(1), "{}", text(&a.stderr));
    // crun's own message on stderr, no `Error:` prefix: the exec "ran".
    assert_eq!(text(&a.stderr), format!("{TORN}\n"));
    assert_eq!(text(&a.stdout), "");
    assert!(b.status.success(), "{}", text(&b.stderr));
    assert_eq!(text(&b.stdout), "B\n");
    let log = m.log();
    let (ra, rb) = (&log[1], &log[0]);
    assert_eq!(rb.argv, ["echo", "B"], "B ends first");
    assert!(rb.touched_inside_window_of(ra), "{}", m.context());
    assert_eq!((ra.fault, ra.exit_code), (Some(Fault::ConfigRace), 1));
    assert_eq!(ra.bringup_end_ms, None, "A's command never ran");
    assert_eq!(rb.fault, None);
}

#[test]
fn race_off_lets_overlapping_plain_execs_succeed() {
    let home = Home::new();
    let m = home.machine("race0", true);
    let (a, b) = overlapping_pair(&m, "off");
    assert!(a.status.success() && b.status.success());
    assert_eq!(text(&a.stdout), "A\n");
    assert_eq!(text(&b.stdout), "B\n");
    assert!(m.log().iter().all(|r| r.fault.is_none()));
}

#[test]
fn sequential_execs_never_tear() {
    let home = Home::new();
    let m = home.machine("seq", true);
    for round in 0..10 {
        let mut c = m.exec(["--", "echo", &round.to_string()]);
        c.envs(QUICK);
        let out = run_output(c);
        assert!(out.status.success(), "round {round}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{round}\n"));
    }
    let log = m.log();
    assert_eq!(log.len(), 10);
    assert!(log.iter().all(|r| r.fault.is_none() && r.exit_code == 0));
    for w in log.windows(2) {
        assert!(!w[0].bringup_overlaps(&w[1]));
    }
}

#[test]
fn config_json_is_an_oci_document_per_exec() {
    let home = Home::new();
    let m = home.machine("oci", true);
    let config = m.dir().join("bundle/config.json");
    let read = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap()
    };
    let mut c = m.exec(["-e", "K=V", "--", "echo", "one"]);
    c.envs(QUICK);
    assert!(run_output(c).status.success());
    let first = read();
    assert_eq!(first["ociVersion"], "1.0.2");
    assert_eq!(first["process"]["args"], serde_json::json!(["echo", "one"]));
    assert_eq!(first["process"]["terminal"], false);
    assert_eq!(first["process"]["env"], serde_json::json!(["K=V"]));
    assert_eq!(first["root"]["path"], "rootfs");
    assert_eq!(first["hostname"], "oci");
    let mut c = m.exec(["--", "echo", "two"]);
    c.envs(QUICK);
    assert!(run_output(c).status.success());
    let second = read();
    assert_ne!(first, second);
    assert_eq!(
        second["process"]["args"],
        serde_json::json!(["echo", "two"])
    );
    // A bare machine has no bundle at all.
    let bare = home.machine("bare", false);
    let mut c = bare.exec(["--", "true"]);
    c.envs(QUICK);
    assert!(run_output(c).status.success());
    assert!(!bare.dir().join("bundle").exists());
}

/// A `-t` session whose command runs (it echoed `ready`).
fn running_session(m: &Machine<'_>, client: &Client) -> Term {
    let mut c = m.exec_by(
        client,
        [
            "-t",
            "--",
            "sh",
            "-c",
            "echo ready; read line; echo got:$line",
        ],
    );
    c.envs(QUICK);
    let s = Term::spawn(c, 80, 24);
    s.wait_output(30, |o| o.contains("ready"), || m.context());
    s
}

#[test]
fn an_exec_joined_to_the_session_dies_when_the_session_ends() {
    let home = Home::new();
    let m = home.machine("join", true);
    for client in clients() {
        let mut s = running_session(&m, &client);
        let guest_flag = format!("/tmp/{}", marker("joined"));
        let flag = m.guest_tmp(&guest_flag);
        let script = format!("touch {guest_flag}; sleep 100000");
        let mut side = m.exec_by(&client, ["--", "sh", "-c", &script]);
        side.envs(QUICK).stdout(Stdio::null()).stderr(Stdio::null());
        let mut side = side.spawn().unwrap();
        wait_until(30, || flag.exists(), || m.context());
        s.write(b"bye\r");
        assert_eq!(s.wait_exit(30, || m.context()).code(), Some(0));
        assert!(s.output().contains("got:bye"), "{:?}", s.output());
        let status = wait_child_or(&mut side, 30, || m.context());
        assert_eq!(status.code(), Some(137), "{client:?}\n{}", m.context());
        let rec = m.record_of(side.id());
        assert!(rec.joined, "{rec:?}");
        assert_eq!(rec.fault, Some(Fault::MainExited));
    }
}

#[test]
fn shared_stdin_is_opt_in_and_fires_only_when_asked() {
    let home = Home::new();
    let m = home.machine("stdin", true);
    let side = |s: &Term, env: &[(&str, &str)]| {
        let mut c = m.exec(["--", "echo", "side"]);
        c.envs(QUICK)
            .envs(env.iter().copied())
            .stdin(s.open_slave());
        let out = run_output(c);
        assert!(
            out.status.success(),
            "{}\n{}",
            text(&out.stderr),
            m.context()
        );
        assert_eq!(text(&out.stdout), "side\n");
    };
    let mut s = running_session(&m, &Client::Fake);
    // The default (never): a side channel on the session's terminal, in tmux.
    side(&s, &[("TMUX", "/tmp/tmux-0/default,1,0")]);
    // tmux mode without TMUX: still nothing.
    side(&s, &[("FAKE_SMOLVM_SHARED_STDIN", "tmux")]);
    s.write(b"alive\r");
    assert_eq!(s.wait_exit(30, || m.context()).code(), Some(0));
    assert!(s.output().contains("got:alive"), "{:?}", s.output());
    assert!(m.log().iter().all(|r| r.fault.is_none()), "{}", m.context());

    // tmux mode with TMUX: the seeds' first hypothesis, the session dies 137.
    let mut s = running_session(&m, &Client::Fake);
    side(
        &s,
        &[
            ("TMUX", "/tmp/tmux-0/default,1,0"),
            ("FAKE_SMOLVM_SHARED_STDIN", "tmux"),
            ("FAKE_SMOLVM_SHARED_STDIN_DELAY_MS", "0"),
            // Touching after the session is gone: it must not join, and die with, it.
            ("FAKE_SMOLVM_BRINGUP_MS", "300"),
        ],
    );
    assert_eq!(
        s.wait_exit(30, || m.context()).code(),
        Some(137),
        "{:?}",
        s.output()
    );
    let rec = m.record_of(s.pid());
    assert_eq!(rec.fault, Some(Fault::SharedStdin));
    // The client got a normal `exited`: it restored the terminal.
    assert_eq!(s.after.as_ref(), Some(&s.before));
}

#[test]
fn compat_081_as_the_machines_default() {
    let home = Home::new();
    let m = home.machine_with("p1", true, &[("FAKE_SMOLVM_COMPAT", "0.8.1")]);
    let mut c = m.stty_loop(&Client::Fake);
    c.envs(QUICK);
    let mut t = Term::spawn(c, 100, 30);
    t.wait_output(
        30,
        |o| o.contains("24 80") || o.contains("30 100"),
        || m.context(),
    );
    t.resize(120, 40);
    t.wait_output(30, |o| o.contains("40 120"), || m.context());
    assert!(!t.output().contains("0 0"), "{:?}", t.output());
    t.interrupt(|| m.context());
    // The exec's own value wins over the machine's.
    let mut c = m.exec(["-t", "--", "stty", "size"]);
    c.envs(QUICK).env("FAKE_SMOLVM_COMPAT", "0.8.0");
    let mut t = Term::spawn(c, 100, 30);
    assert!(t.wait_exit(30, || m.context()).success());
    assert!(t.output().contains("0 0"), "{:?}", t.output());
}
