//! `FAKE_SMOLVM_COMPAT=0.8.1`: the console-socket timeline (smolvm-0.8.0.md,
//! "0.8.1 and later"). `started` comes once crun has handed the PTY over —
//! the end of the crun window —, the PTY is 80×24 from its creation, and a
//! `resize` applies the moment it arrives: a guest that asks its size a
//! moment after start sees the host's size, one that asks before the
//! client's first `resize` sees 80×24.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use fake_smolvm::wire::{self, ExecRequest, Request, Response};

use crate::common::*;

const V081: [(&str, &str); 3] = [
    ("FAKE_SMOLVM_COMPAT", "0.8.1"),
    ("FAKE_SMOLVM_BRINGUP_MS", "30"),
    ("FAKE_SMOLVM_CRUN_MS", "300"),
];

#[test]
fn under_0_8_1_a_guest_asking_half_a_second_after_start_sees_the_host_size() {
    let home = Home::new();
    let m = home.machine("c81late", true);
    for client in clients() {
        let mut c = m.exec_by(&client, ["-t", "--", "sh", "-c", "sleep 0.5; stty size"]);
        c.envs(V081);
        let mut t = Term::spawn(c, 100, 30);
        let status = t.wait_exit(30, || m.context());
        assert!(status.success(), "{client:?}: {:?}", t.output());
        assert!(
            t.output().contains("30 100"),
            "{client:?}: {:?}",
            t.output()
        );
        // `started` only at the end of the crun window.
        let rec = m.record_of(t.pid());
        let (started, w1) = (rec.started_ms.unwrap(), rec.window_end_ms.unwrap());
        assert!(
            started >= w1,
            "{client:?}: started {started} < window end {w1}"
        );
    }
}

/// A `run -t` on the test's own connection; the frames until `exited`.
/// `resize_after_output`: send a 100×30 `resize` once the first output came
/// (a client slower than the guest's first question).
fn own_session(m: &Machine<'_>, script: &str, resize_after_output: bool) -> (String, i32) {
    let mut s = UnixStream::connect(m.dir().join("agent.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = Request::Run(ExecRequest {
        image: Some("alpine".into()),
        command: vec!["sh".into(), "-c".into(), script.into()],
        interactive: true,
        tty: true,
        persistent_overlay_id: Some(m.name.clone()),
        ..ExecRequest::default()
    });
    wire::write_frame(&mut s, &req).unwrap();
    let mut out = String::new();
    let mut resized = false;
    loop {
        match wire::read_frame::<_, Response>(&mut s) {
            Ok(Some(Response::Started)) => {}
            Ok(Some(Response::Stdout { data })) | Ok(Some(Response::Stderr { data })) => {
                out.push_str(&text(&data.0));
                if resize_after_output && !resized {
                    resized = true;
                    let r = Request::Resize {
                        cols: 100,
                        rows: 30,
                    };
                    wire::write_frame(&mut s, &r).unwrap();
                }
            }
            Ok(Some(Response::Exited { exit_code })) => return (out, exit_code),
            other => panic!("{other:?} after {out:?}\n{}", m.context()),
        }
    }
}

#[test]
fn under_0_8_1_a_guest_asking_at_once_sees_80x24_and_later_the_size_sent() {
    let home = Home::new();
    // The test's own client has no switches in its environment: the
    // machine's default applies.
    let m = home.machine_with("c81now", true, &V081);
    let (out, code) = own_session(&m, "stty size; sleep 0.5; stty size", true);
    assert_eq!(code, 0, "{out:?}");
    let sizes: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(sizes, ["24 80", "30 100"], "{out:?}\n{}", m.context());
}

#[test]
fn under_0_8_1_a_session_torn_in_its_window_gets_an_error_and_never_started() {
    let home = Home::new();
    let m = home.machine("c81torn", true);
    let mut c = m.exec(["-t", "--", "stty", "size"]);
    c.envs(V081).env("FAKE_SMOLVM_CRUN_MS", "600");
    let mut t = Term::spawn_wired(c, 100, 30, Wiring::StdinOnly);
    // A plain exec reaching the machine inside the session's window rewrites
    // config.json: crun never hands the PTY over.
    wait_until(
        30,
        || {
            std::fs::read_to_string(m.dir().join("bundle/config.json"))
                .is_ok_and(|t| t.contains("stty"))
        },
        || m.context(),
    );
    let mut side = m.exec(["--", "true"]);
    side.envs([
        ("FAKE_SMOLVM_BRINGUP_MS", "0"),
        ("FAKE_SMOLVM_CRUN_MS", "30"),
    ]);
    let out = run_output(side);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = t.wait_exit(30, || m.context());
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        text(&t.stderr),
        "Error: agent operation failed: run interactive: failed to receive PTY master from crun: \
console socket: timed out waiting for crun to connect\n"
    );
    let rec = m.record_of(t.pid());
    assert_eq!(rec.started_ms, None, "{rec:?}");
    assert!(
        rec.end_ms - rec.window_start_ms.unwrap() >= 5000.0,
        "{rec:?}"
    );
    // The terminal never went raw: the client restored nothing and needed not.
    assert_eq!(t.after.as_ref(), Some(&t.before));
}
