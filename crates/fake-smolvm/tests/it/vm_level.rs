//! The VM level: `vm_exec` sent on `agent.sock` by a small client of the
//! test's own (as a wrapper would), on an image machine, at every moment of
//! a session's bring-up. It never touches `config.json` or the main
//! container, so it never hurts the session; from there a marker scan of
//! `/proc/*/environ` finds the session's program once its container runs,
//! and `stty -F /proc/<pid>/fd/0` reaches its PTY (smolvm-0.8.0.md, "The VM
//! level").

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use fake_smolvm::exec_log::{ExecPath, ExecRecord, Fault, Level};
use fake_smolvm::wire::{self, ExecRequest, Request, Response};

use crate::common::*;

/// What a non-interactive `vm_exec` answered.
#[derive(Debug)]
pub struct Completed {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The request a wrapper sends: `{"method":"vm_exec","command":[…],"env":[…],"timeout_ms":…}`.
pub fn vm_exec_request(argv: &[&str], timeout_ms: Option<u64>) -> Request {
    Request::VmExec(ExecRequest {
        command: argv.iter().map(|s| s.to_string()).collect(),
        timeout_ms,
        ..ExecRequest::default()
    })
}

/// One `vm_exec` on its own short connection, no ping, no handshake; the
/// one answer it gets.
pub fn vm_exec(sock: &Path, argv: &[&str], timeout_ms: Option<u64>) -> Result<Completed, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    wire::write_frame(&mut s, &vm_exec_request(argv, timeout_ms)).map_err(|e| e.to_string())?;
    match wire::read_frame::<_, Response>(&mut s) {
        Ok(Some(Response::Completed {
            exit_code,
            stdout,
            stderr,
        })) => Ok(Completed {
            code: exit_code,
            stdout: text(&stdout.0),
            stderr: text(&stderr.0),
        }),
        other => Err(format!("not a completed answer: {other:?}")),
    }
}

/// The VM-level marker scan of smolvm-0.8.0.md: the session leader (stat
/// field 6 = pid) with a terminal (field 7 ≠ 0) whose environment holds
/// `PTYR_MARK=$1`. The marker comes as an argument, so the script's own
/// environment never matches.
pub const SCAN: &str = r#"for e in /proc/[0-9]*/environ; do
  p=${e#/proc/}; p=${p%/environ}
  tr '\0' '\n' <"$e" 2>/dev/null | grep -qx "PTYR_MARK=$1" || continue
  s=$(cat /proc/$p/stat 2>/dev/null) || continue
  set -- "$1" ${s##*) }
  [ "$5" = "$p" ] && [ "$6" != 0 ] && echo "$p"
done"#;

/// The scan, then `stty -F /proc/<pid>/fd/0 cols $2 rows $3` on what it found.
pub const SCAN_AND_SIZE: &str = r#"m=$1; c=$2; r=$3
found=$(for e in /proc/[0-9]*/environ; do
  p=${e#/proc/}; p=${p%/environ}
  tr '\0' '\n' <"$e" 2>/dev/null | grep -qx "PTYR_MARK=$m" || continue
  s=$(cat /proc/$p/stat 2>/dev/null) || continue
  set -- ${s##*) }
  [ "$4" = "$p" ] && [ "$5" != 0 ] && echo "$p"
done)
[ -n "$found" ] || { echo "no session with marker $m" >&2; exit 3; }
for p in $found; do stty -F /proc/$p/fd/0 cols "$c" rows "$r" || exit 4; done
echo "$found""#;

fn socket(m: &Machine<'_>) -> std::path::PathBuf {
    m.dir().join("agent.sock")
}

/// The `vm_exec` records, in order.
fn vm_records(log: &[ExecRecord]) -> Vec<&ExecRecord> {
    log.iter().filter(|r| r.path == ExecPath::VmExec).collect()
}

#[test]
fn a_vm_exec_inside_twenty_crun_windows_in_a_row_never_hurts_the_session() {
    let home = Home::new();
    let m = home.machine("vmwin", true);
    let clients = clients();
    let config = m.dir().join("bundle/config.json");
    for i in 0..20 {
        let client = &clients[i % clients.len()];
        // Both faults a container exec would cause in the window: a vm_exec
        // must cause neither.
        let race = if i % 2 == 0 { "exit1" } else { "sigkill" };
        let mut c = m.exec_by(
            client,
            ["-t", "--", "sh", "-c", &format!("echo alive-{i}; exit 0")],
        );
        c.envs([
            ("FAKE_SMOLVM_BRINGUP_MS", "30"),
            ("FAKE_SMOLVM_CRUN_MS", "600"),
            ("FAKE_SMOLVM_RACE", race),
        ]);
        let what = format!("window {i} ({client:?}, race {race})");
        let ctx = || format!("{what}\n{}", m.context());
        let mut s = Term::spawn(c, 100, 30);
        // Raw mode = `started`: the crun window is open (600 ms).
        s.wait_raw(30, ctx);
        let before = std::fs::read(&config).unwrap_or_default();
        let got = vm_exec(
            &socket(&m),
            &[
                "sh",
                "-c",
                "echo vm-$1; ls /dev/pts >/dev/null",
                "x",
                &i.to_string(),
            ],
            Some(5000),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", ctx()));
        assert_eq!(got.code, 0, "{got:?}\n{}", ctx());
        assert_eq!(got.stdout, format!("vm-{i}\n"), "{got:?}");
        assert_eq!(
            std::fs::read(&config).unwrap_or_default(),
            before,
            "a vm_exec wrote config.json: {what}"
        );
        let status = s.wait_exit(30, ctx);
        assert_eq!(status.code(), Some(0), "{what}: {:?}", s.output());
        assert!(
            s.output().contains(&format!("alive-{i}")),
            "{:?}",
            s.output()
        );
        let log = m.log();
        let session = log.iter().rev().find(|r| r.tty).unwrap();
        assert_eq!(session.fault, None, "{what}\n{}", m.context());
        assert_eq!(session.exit_code, 0, "{what}");
        let vm = *vm_records(&log).last().unwrap();
        assert_eq!(vm.level, Level::Vm, "{what}");
        assert_eq!(vm.touched_ms, None, "{what}: a vm_exec touched the machine");
        assert_eq!(
            vm.window_start_ms, None,
            "{what}: a vm_exec had a crun window"
        );
        assert!(!vm.joined, "{what}");
        // It really arrived inside the window.
        let (w0, w1) = (
            session.window_start_ms.unwrap(),
            session.window_end_ms.unwrap(),
        );
        let arrived = vm.bringup_start_ms.unwrap();
        assert!(
            w0 < arrived && arrived < w1,
            "{what}: vm_exec at {arrived}, window {w0}..{w1}"
        );
    }
    assert_eq!(vm_records(&m.log()).len(), 20);
    m.stop_and_check();
}

#[test]
fn from_vm_level_a_marker_scan_finds_the_session_and_stty_reaches_its_pty() {
    let home = Home::new();
    let m = home.machine("vmscan", true);
    for client in clients() {
        let mark = marker("scan");
        let guest = "trap 'echo winch; stty size' WINCH; echo ready; while :; do sleep 0.05; done";
        let mut c = m.exec_by(
            &client,
            [
                "-t",
                "-e",
                &format!("PTYR_MARK={mark}"),
                "--",
                "sh",
                "-c",
                guest,
            ],
        );
        c.envs([
            ("FAKE_SMOLVM_BRINGUP_MS", "30"),
            ("FAKE_SMOLVM_CRUN_MS", "800"),
        ]);
        let what = format!("{client:?}");
        let ctx = || format!("{what}\n{}", m.context());
        let mut s = Term::spawn(c, 100, 30);
        s.wait_raw(30, ctx);
        // Inside the window: no program carries the marker yet.
        let early = vm_exec(&socket(&m), &["sh", "-c", SCAN, "early", &mark], Some(5000)).unwrap();
        assert_eq!(early.stdout, "", "{what}: found in the window: {early:?}");
        s.wait_output(30, |o| o.contains("ready"), ctx);
        let late = vm_exec(&socket(&m), &["sh", "-c", SCAN, "late", &mark], Some(5000)).unwrap();
        let pids: Vec<&str> = late.stdout.lines().collect();
        assert_eq!(pids.len(), 1, "{what}: {late:?}\n{}", m.context());
        // The program's environment holds the -e value.
        let sized = vm_exec(
            &socket(&m),
            &["sh", "-c", SCAN_AND_SIZE, "size", &mark, "80", "24"],
            Some(5000),
        )
        .unwrap();
        assert_eq!(sized.code, 0, "{what}: {sized:?}");
        s.wait_output(30, |o| o.contains("winch") && o.contains("24 80"), ctx);
        let client_pid = s.pid();
        s.interrupt(ctx);
        let session = m.record_of(client_pid);
        // The early scan came inside the window, the late one after it.
        let log = m.log();
        let scan = |tag: &str| {
            *vm_records(&log)
                .iter()
                .find(|r| r.argv[3] == tag && r.argv[4] == mark)
                .unwrap_or_else(|| panic!("no {tag} scan\n{}", m.context()))
        };
        let w1 = session.window_end_ms.unwrap();
        assert!(
            scan("early").bringup_start_ms.unwrap() < w1,
            "{what}: {session:?}"
        );
        assert!(
            scan("late").bringup_start_ms.unwrap() > w1,
            "{what}: {session:?}"
        );
    }
    m.stop_and_check();
}

#[test]
fn a_vm_exec_answers_one_completed_and_times_out_with_124() {
    let home = Home::new();
    let m = home.machine("vmdone", true);
    let got = vm_exec(
        &socket(&m),
        &["sh", "-c", "printf 'a\\0b'; echo err >&2; exit 5"],
        None,
    )
    .unwrap();
    assert_eq!(
        (got.code, got.stdout.as_str(), got.stderr.as_str()),
        (5, "a\0b", "err\n")
    );
    let got = vm_exec(&socket(&m), &["sleep", "30"], Some(200)).unwrap();
    assert_eq!(got.code, 124, "{got:?}");
    // The agent appends the line just after its answer.
    wait_until(10, || m.log().len() == 2, || m.context());
    let log = m.log();
    let last = log.last().unwrap();
    assert_eq!((last.fault, last.level), (Some(Fault::Timeout), Level::Vm));
    assert!(
        !m.dir().join("bundle/config.json").exists(),
        "vm_exec wrote a bundle"
    );
    m.stop_and_check();
}

#[test]
fn the_container_has_its_own_devpts_that_the_vm_level_never_reaches() {
    let home = Home::new();
    let m = home.machine("vmpts", true);
    let sock = socket(&m);
    for client in clients() {
        let what = format!("{client:?}");
        let mut c = m.stty_loop(&client);
        c.envs(QUICK);
        let mut s = Term::spawn(c, 100, 30);
        s.wait_output(30, |o| o.contains("0 0"), || m.context());
        // VM level: the machine's own devpts, without the session's PTY.
        let ls = vm_exec(&sock, &["ls", "/dev/pts"], Some(5000)).unwrap();
        assert_eq!(ls.stdout, "ptmx\n", "{what}: {ls:?}");
        let all = "for f in /dev/pts/*; do stty -F $f cols 33 rows 11; done; echo swept";
        let swept = vm_exec(&sock, &["sh", "-c", all], Some(5000)).unwrap();
        assert!(swept.stdout.contains("swept"), "{what}: {swept:?}");
        // The session goes on at 0x0: ten more reports, none 11x33.
        let count = |o: &str| o.matches("0 0").count();
        let seen = count(&s.output());
        s.wait_output(30, |o| count(o) >= seen + 10, || m.context());
        assert!(!s.output().contains("11 33"), "{what}: {:?}", s.output());
        // A container exec joins the container: its devpts holds the PTY.
        let mut c = m.exec_by(&client, ["--", "ls", "/dev/pts"]);
        c.envs(QUICK);
        let out = run_output(c);
        assert_eq!(
            text(&out.stdout),
            "0\nptmx\n",
            "{what}: {}",
            text(&out.stderr)
        );
        s.interrupt(|| m.context());
    }
    m.stop_and_check();
}

#[test]
fn an_interactive_vm_exec_streams_on_an_image_machine_inside_a_crun_window() {
    let home = Home::new();
    let m = home.machine("vmstream", true);
    let mut c = m.exec(["-t", "--", "sh", "-c", "echo alive; exit 0"]);
    c.envs([
        ("FAKE_SMOLVM_BRINGUP_MS", "30"),
        ("FAKE_SMOLVM_CRUN_MS", "800"),
    ]);
    let mut s = Term::spawn(c, 100, 30);
    s.wait_raw(30, || m.context());
    let mut conn = UnixStream::connect(socket(&m)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let req = Request::VmExec(ExecRequest {
        command: ["sh", "-c", "read -r x; echo got:$x; echo err >&2"]
            .map(String::from)
            .to_vec(),
        interactive: true,
        ..ExecRequest::default()
    });
    wire::write_frame(&mut conn, &req).unwrap();
    let next = |conn: &mut UnixStream| wire::read_frame::<_, Response>(conn).unwrap();
    assert_eq!(next(&mut conn), Some(Response::Started));
    let stdin = Request::Stdin {
        data: fake_smolvm::wire::Bytes(b"hi\n".to_vec()),
    };
    wire::write_frame(&mut conn, &stdin).unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    let code = loop {
        match next(&mut conn) {
            Some(Response::Stdout { data }) => out.push_str(&text(&data.0)),
            Some(Response::Stderr { data }) => err.push_str(&text(&data.0)),
            Some(Response::Exited { exit_code }) => break exit_code,
            other => panic!("{other:?}\n{}", m.context()),
        }
    };
    assert_eq!((code, out.as_str(), err.as_str()), (0, "got:hi\n", "err\n"));
    // The session, whose window the vm_exec ran in, is unharmed.
    assert_eq!(s.wait_exit(30, || m.context()).code(), Some(0));
    assert!(s.output().contains("alive"), "{:?}", s.output());
    let rec = m.record_of(s.pid());
    assert_eq!(rec.fault, None, "{rec:?}");
    m.stop_and_check();
}
