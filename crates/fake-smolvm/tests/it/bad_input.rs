//! Bad input to the new layer: a client that talks nonsense to agent.sock,
//! and a corrupt or locked registry. Each is answered or dropped, logged,
//! and leaves nothing behind; everything else keeps working.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use fake_smolvm::wire::{self, MAX_FRAME};
use serde_json::Value;

use crate::common::*;

fn connect(m: &Machine<'_>) -> UnixStream {
    let s = UnixStream::connect(m.dir().join("agent.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn frame(json: &str) -> Vec<u8> {
    let mut buf = (json.len() as u32).to_be_bytes().to_vec();
    buf.extend_from_slice(json.as_bytes());
    buf
}

/// The next response on `s` (`None`: the agent closed the connection).
fn response(s: &mut UnixStream) -> Option<Value> {
    wire::read_frame::<_, Value>(s).unwrap()
}

fn ping(m: &Machine<'_>) {
    let mut s = connect(m);
    s.write_all(&frame(r#"{"method":"ping"}"#)).unwrap();
    let r = response(&mut s).unwrap();
    assert_eq!(r["status"], "pong", "{r}");
    assert_eq!(r["version"], 1, "{r}");
}

/// Agent lines about dropped or refused connections.
fn complaints(m: &Machine<'_>) -> usize {
    m.agent_log()
        .lines()
        .filter(|l| l.starts_with("agent: connection from"))
        .count()
}

/// Sends `bytes` (then half-closes when `eof`), and returns what came back.
fn send(m: &Machine<'_>, bytes: &[u8], eof: bool) -> (Option<Value>, UnixStream) {
    let before = complaints(m);
    let mut s = connect(m);
    s.write_all(bytes).unwrap();
    if eof {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let r = response(&mut s);
    wait_until(10, || complaints(m) > before, || m.context());
    (r, s)
}

#[test]
fn the_agent_answers_or_drops_bad_frames_and_keeps_serving() {
    let home = Home::new();
    let m = home.machine("bad", true);
    let other = home.machine("other", false);

    // Not JSON, in a well-formed frame: an error, then the connection is dropped.
    let (r, mut s) = send(&m, &frame("hello, agent"), false);
    let r = r.expect("an error response");
    assert_eq!(r["status"], "error", "{r}");
    assert!(response(&mut s).is_none(), "dropped after the error");

    // Plain garbage: its first four bytes are a length far over the limit.
    let (r, _) = send(&m, b"GET / HTTP/1.1\r\nHost: agent\r\n\r\n", false);
    assert_eq!(r.expect("an error response")["status"], "error");

    // A frame one byte over 32 MiB: refused before anything is allocated.
    let over = ((MAX_FRAME + 1) as u32).to_be_bytes();
    let (r, _) = send(&m, &over, false);
    let r = r.expect("an error response");
    assert_eq!(r["status"], "error");
    assert!(r["message"].as_str().unwrap().contains("exceeds"), "{r}");

    // Half a frame, held open: the machine serves others meanwhile; then EOF
    // and the connection is dropped without an answer.
    let before = complaints(&m);
    let mut half = connect(&m);
    half.write_all(&[0, 0, 0, 100]).unwrap();
    half.write_all(br#"{"method":"#).unwrap();
    ping(&m);
    ping(&other);
    half.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(response(&mut half).is_none(), "no answer to half a frame");
    wait_until(10, || complaints(&m) > before, || m.context());

    // An unknown method: an error, and the connection still serves.
    let (r, mut s) = send(&m, &frame(r#"{"method":"frobnicate","x":1}"#), false);
    let r = r.expect("an error response");
    assert_eq!(r["status"], "error");
    assert!(r["message"].as_str().unwrap().contains("unknown"), "{r}");
    s.write_all(&frame(r#"{"method":"ping"}"#)).unwrap();
    assert_eq!(response(&mut s).unwrap()["status"], "pong");
    drop(s);

    // None of it reached exec.log, and a normal exec works, with either client.
    assert!(m.log().is_empty(), "{}", m.context());
    for client in clients() {
        let mut c = m.exec_by(&client, ["--", "echo", "fine"]);
        c.envs(QUICK);
        let out = run_output(c);
        assert!(
            out.status.success(),
            "{client:?}: {}\n{}",
            text(&out.stderr),
            m.context()
        );
        assert_eq!(text(&out.stdout), "fine\n");
    }
    assert_eq!(complaints(&m), 5, "{}", m.agent_log());
    assert_eq!(complaints(&other), 0, "{}", other.agent_log());
    m.stop_and_check();
    other.stop_and_check();
}

/// The registry's error: one line naming the file, exit 1.
#[track_caller]
fn assert_registry_error(out: &std::process::Output, db: &std::path::Path, what: &str) {
    assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out.stderr));
    let err = text(&out.stderr);
    let want = format!("Error: registry {}: ", db.display());
    assert!(err.starts_with(&want), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: {err}");
    assert_eq!(text(&out.stdout), "", "{what}");
}

#[test]
fn a_corrupt_registry_is_one_line_naming_the_file() {
    let home = Home::new();
    let db = home.registry();
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let garbage = "this is not a database, just text\n".repeat(200);
    std::fs::write(&db, &garbage).unwrap();
    for args in [
        vec!["machine", "ls"],
        vec!["machine", "create", "x"],
        vec!["machine", "start", "--name", "x"],
        vec!["machine", "exec", "--name", "x", "--", "true"],
    ] {
        let out = home.run(&args);
        assert_registry_error(&out, &db, &format!("{args:?}"));
        assert!(
            text(&out.stderr).contains("not a database"),
            "{}",
            text(&out.stderr)
        );
    }
    // Nothing was started, nothing was written.
    assert_eq!(std::fs::read_to_string(&db).unwrap(), garbage);
    assert!(!home.machine_dir("x").join("agent.sock").exists());
}

#[test]
fn a_locked_registry_is_one_line_naming_the_file_after_the_busy_timeout() {
    let home = Home::new();
    let out = home.run(["machine", "create", "l"]);
    assert!(out.status.success());
    let db = home.registry();
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let t0 = Instant::now();
    // Both wait out the 5 s busy timeout at the same time.
    let outs: Vec<_> = std::thread::scope(|scope| {
        let jobs: Vec<_> = [
            vec!["machine", "ls"],
            vec!["machine", "start", "--name", "l"],
            vec!["machine", "exec", "--name", "l", "--", "true"],
        ]
        .into_iter()
        .map(|args| {
            let home = &home;
            scope.spawn(move || (home.run(&args), args))
        })
        .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert!(
        t0.elapsed() >= Duration::from_millis(4500),
        "{:?}",
        t0.elapsed()
    );
    for (out, args) in &outs {
        assert_registry_error(out, &db, &format!("{args:?}"));
        assert!(
            text(&out.stderr).contains("locked"),
            "{}",
            text(&out.stderr)
        );
    }
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    // No leftover lock: an exclusive lock is granted at once, and the CLI works.
    let probe = rusqlite::Connection::open(&db).unwrap();
    probe.busy_timeout(Duration::ZERO).unwrap();
    probe.execute_batch("BEGIN EXCLUSIVE; ROLLBACK;").unwrap();
    drop(probe);
    let out = home.run(["machine", "status", "--name", "l"]);
    assert_eq!(
        text(&out.stdout),
        "Machine 'l': created\n",
        "{}",
        text(&out.stderr)
    );
    assert!(!home.machine_dir("l").join("agent.sock").exists());
    assert!(!db.with_extension("db-journal").exists());
}
