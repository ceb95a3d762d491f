//! The three smolvm 0.8.0 faults, end to end with a naive client.

mod common;

use std::process::Stdio;

use common::*;
use fake_smolvm::exec_log::Fault;

const TORN: &str =
    "Error: load `config.json`: parse error: trailing garbage { \"ociVersion\": \"1.0.2\", … }\n";

// ---------------------------------------------------------------- fault 1

#[test]
fn tty_exec_sees_a_0x0_pty_and_no_resizes_under_080() {
    let fake = Fake::new();
    let m = fake.machine("p0");
    let mut s = PtySession::spawn(m.exec(["-t", "--", "stty", "size"]), 100, 30);
    let status = s.wait_exit(30);
    assert!(status.success(), "{:?}", s.output());
    assert!(s.output().contains("0 0"), "{:?}", s.output());
    let rec = &m.log()[0];
    assert!(rec.tty && rec.interactive);
    assert!(rec.stdin.starts_with("tty:/dev/pts/"), "{}", rec.stdin);
    assert_eq!(s.size(), (100, 30), "the host PTY must be left alone");

    // A host resize during the session never reaches the guest.
    let mut s = PtySession::spawn(m.stty_loop(), 100, 30);
    s.wait_output(30, |o| o.contains("0 0"));
    s.resize(120, 40);
    let seen = s.output().matches("0 0").count();
    s.wait_output(30, |o| o.matches("0 0").count() >= seen + 5);
    assert!(!s.output().contains("40 120"), "{:?}", s.output());
    s.interrupt();
}

#[test]
fn compat_081_sends_the_initial_size_and_follows_resizes() {
    let fake = Fake::new();
    let m = fake.machine_with("p1", &[("FAKE_SMOLVM_COMPAT", "0.8.1")]);
    // As upstream 0.8.1: the guest PTY starts at 80x24 and the host size is
    // sent right after `started`, so the guest may first see 80x24, then the host's.
    let mut s = PtySession::spawn(m.stty_loop(), 100, 30);
    s.wait_output(30, |o| o.contains("30 100"));
    let first = s
        .output()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        first == "24 80" || first == "30 100",
        "first size seen: {first:?}"
    );
    s.resize(120, 40);
    s.wait_output(30, |o| o.contains("40 120"));
    s.resize(90, 20);
    s.wait_output(30, |o| o.contains("20 90"));
    s.interrupt(); // Ctrl-C travels as a byte and interrupts the guest
}

#[test]
fn compat_081_is_a_per_exec_switch_too() {
    let fake = Fake::new();
    let m = fake.machine("p2");
    let mut c = m.stty_loop();
    c.env("FAKE_SMOLVM_COMPAT", "0.8.1");
    let mut s = PtySession::spawn(c, 77, 22);
    s.wait_output(30, |o| o.contains("22 77"));
    assert!(!s.output().contains("0 0"), "{:?}", s.output());
    s.interrupt();
}

// ---------------------------------------------------------------- fault 2

/// Starts exec A with a long bring-up, waits until its config.json is written
/// (its bring-up has begun), then runs exec B: their bring-ups overlap by construction.
fn overlapping_pair(
    m: &Machine<'_>,
    extra_env: &[(&str, &str)],
) -> (std::process::Output, std::process::Output, u32, u32) {
    let mut a = m.exec(["--", "echo", "A"]);
    a.env("FAKE_SMOLVM_BRINGUP_MS", "1500")
        .envs(extra_env.iter().copied());
    a.stdout(Stdio::piped()).stderr(Stdio::piped());
    let a = a.spawn().unwrap();
    let a_pid = a.id();
    let config = m.dir().join("config.json");
    wait_until(
        30,
        || {
            std::fs::read_to_string(&config)
                .map(|t| t.contains(&format!("\"{a_pid}-")))
                .unwrap_or(false)
        },
        || std::fs::read_to_string(&config).unwrap_or_default(),
    );
    let mut b = m.exec(["--", "echo", "B"]);
    b.env("FAKE_SMOLVM_BRINGUP_MS", "400")
        .envs(extra_env.iter().copied());
    let b_child_out = run_output(b);
    let b_pid = m
        .log()
        .iter()
        .map(|r| r.pid)
        .find(|p| *p != a_pid)
        .unwrap_or(0);
    let a_out = {
        let mut a = a;
        let status = wait_child(&mut a, 30);
        use std::io::Read;
        let mut so = Vec::new();
        let mut se = Vec::new();
        a.stdout.take().unwrap().read_to_end(&mut so).unwrap();
        a.stderr.take().unwrap().read_to_end(&mut se).unwrap();
        std::process::Output {
            status,
            stdout: so,
            stderr: se,
        }
    };
    (a_out, b_child_out, a_pid, b_pid)
}

#[test]
fn overlapping_bringups_tear_config_json_with_the_seed_message() {
    let fake = Fake::new();
    let m = fake.machine("race");
    let (a, b, a_pid, b_pid) = overlapping_pair(&m, &[]);
    for (name, out) in [("A", &a), ("B", &b)] {
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), TORN, "{name}");
        assert_eq!(text(&out.stdout), "", "{name}");
    }
    let log = m.log();
    let (ra, rb) = (record_of(&log, a_pid), record_of(&log, b_pid));
    assert!(ra.bringup_overlaps(&rb));
    for r in [&ra, &rb] {
        assert_eq!(r.fault, Some(Fault::ConfigRace));
        assert_eq!(r.exit_code, 1);
        assert!(r
            .error
            .as_deref()
            .unwrap()
            .starts_with("load `config.json`"));
    }
}

#[test]
fn race_mode_sigkill_kills_the_torn_exec_with_137() {
    let fake = Fake::new();
    let m = fake.machine("race9");
    let (a, b, a_pid, _) = overlapping_pair(&m, &[("FAKE_SMOLVM_RACE", "sigkill")]);
    assert_eq!(a.status.code(), Some(137), "{}", text(&a.stderr));
    assert_eq!(b.status.code(), Some(137), "{}", text(&b.stderr));
    let ra = record_of(&m.log(), a_pid);
    assert_eq!(
        (ra.fault, ra.signal, ra.exit_code),
        (Some(Fault::ConfigRace), Some(9), 137)
    );
}

#[test]
fn race_mode_off_lets_overlapping_execs_succeed() {
    let fake = Fake::new();
    let m = fake.machine("race0");
    let (a, b, _, _) = overlapping_pair(&m, &[("FAKE_SMOLVM_RACE", "off")]);
    assert!(a.status.success() && b.status.success());
    assert_eq!(text(&a.stdout), "A\n");
    assert_eq!(text(&b.stdout), "B\n");
    assert!(m.log().iter().all(|r| r.fault.is_none()));
}

#[test]
fn sequential_execs_never_tear() {
    let fake = Fake::new();
    let m = fake.machine("seq");
    for round in 0..10 {
        for who in ["first", "second"] {
            let mut c = m.exec(["--", "echo", who]);
            c.env("FAKE_SMOLVM_BRINGUP_MS", "60");
            let out = run_output(c);
            assert!(
                out.status.success(),
                "round {round} {who}: {}",
                text(&out.stderr)
            );
            assert_eq!(text(&out.stdout), format!("{who}\n"));
        }
    }
    let log = m.log();
    assert_eq!(log.len(), 20);
    assert!(log.iter().all(|r| r.fault.is_none() && r.exit_code == 0));
    for w in log.windows(2) {
        assert!(!w[0].bringup_overlaps(&w[1]));
    }
}

#[test]
fn config_json_is_an_oci_document_per_exec() {
    let fake = Fake::new();
    let m = fake.machine("oci");
    let config = m.dir().join("config.json");
    let read = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap()
    };
    assert!(run_output(m.exec(["-e", "K=V", "--", "echo", "one"]))
        .status
        .success());
    let first = read();
    assert_eq!(first["ociVersion"], "1.0.2");
    assert_eq!(first["process"]["args"], serde_json::json!(["echo", "one"]));
    assert_eq!(first["process"]["terminal"], false);
    assert_eq!(first["process"]["env"], serde_json::json!(["K=V"]));
    assert_eq!(first["root"]["path"], "rootfs");
    assert_eq!(first["hostname"], "oci");
    assert!(run_output(m.exec(["--", "echo", "two"])).status.success());
    let second = read();
    assert_ne!(first, second);
    assert_eq!(
        second["process"]["args"],
        serde_json::json!(["echo", "two"])
    );
}

// ---------------------------------------------------------------- fault 3

/// Starts `-t -- cat` on a test PTY and waits until the guest echoes input.
fn cat_session(m: &Machine<'_>) -> PtySession {
    let s = PtySession::spawn(m.exec(["-t", "--", "cat"]), 80, 24);
    s.wait_raw(30);
    s.write(b"ping\r");
    // Guest echo + cat's copy: the session relays both ways.
    s.wait_output(30, |o| o.matches("ping").count() >= 2);
    s
}

fn second_exec_on_same_stdin(
    m: &Machine<'_>,
    s: &PtySession,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut c = m.exec(["--", "echo", "side"]);
    c.envs(env.iter().copied()).stdin(s.open_slave());
    run_output(c)
}

#[test]
fn shared_stdin_under_tmux_kills_the_first_session() {
    let fake = Fake::new();
    let m = fake.machine("tmux");
    let mut s = cat_session(&m);
    let side = second_exec_on_same_stdin(&m, &s, &[("TMUX", "/tmp/tmux-0/default,1,0")]);
    assert!(side.status.success(), "{}", text(&side.stderr));
    assert_eq!(text(&side.stdout), "side\n");
    let status = s.wait_exit(30);
    assert_eq!(status.code(), Some(137), "{:?}", s.output());
    let log = m.log();
    let first = record_of(&log, s.child.id());
    assert_eq!(first.fault, Some(Fault::SharedStdin));
    assert_eq!((first.exit_code, first.signal), (137, Some(9)));
    let second = log.iter().find(|r| r.pid != s.child.id()).unwrap();
    assert!(second.tmux && second.fault.is_none());
    assert_eq!(second.stdin, first.stdin);
    // The host terminal was restored: canonical mode with echo is back.
    let t = nix::sys::termios::tcgetattr(s.open_slave()).unwrap();
    assert!(t
        .local_flags
        .contains(nix::sys::termios::LocalFlags::ICANON));
}

#[test]
fn shared_stdin_outside_tmux_is_tolerated() {
    let fake = Fake::new();
    let m = fake.machine("raw");
    let mut s = cat_session(&m);
    let side = second_exec_on_same_stdin(&m, &s, &[]);
    assert!(side.status.success(), "{}", text(&side.stderr));
    // The side exec took 250 ms of bring-up, well past the 100 ms kill delay:
    // the first session is still relaying.
    s.write(b"still-here\r");
    s.wait_output(30, |o| o.matches("still-here").count() >= 2);
    s.write(b"\x04"); // EOF for cat
    assert_eq!(s.wait_exit(30).code(), Some(0), "{:?}", s.output());
    assert!(m.log().iter().all(|r| r.fault.is_none()));
}

#[test]
fn shared_stdin_switch_forces_it_on_and_off() {
    let fake = Fake::new();
    let m = fake.machine("forced");
    let mut s = cat_session(&m);
    let side = second_exec_on_same_stdin(
        &m,
        &s,
        &[("TMUX", "x,1,0"), ("FAKE_SMOLVM_SHARED_STDIN", "never")],
    );
    assert!(side.status.success());
    s.write(b"alive\r");
    s.wait_output(30, |o| o.matches("alive").count() >= 2);
    let side = second_exec_on_same_stdin(&m, &s, &[("FAKE_SMOLVM_SHARED_STDIN", "always")]);
    assert!(side.status.success());
    assert_eq!(s.wait_exit(30).code(), Some(137));
}
