//! `machine exec` as a user sees it, with both clients (the fake's own and
//! the real smolvm 0.8.0), on image and bare machines, with `-t`, `-i` and
//! neither: exit codes, stdout/stderr, `Error:` messages, the terminal's
//! raw mode and O_NONBLOCK while running, after a normal exit and after a
//! SIGTERM, and `resize` frames.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use nix::sys::signal::Signal;

use crate::common::*;
use crate::lifecycle::not_running;
use fake_smolvm::exec_log::ExecPath;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    I,
    T,
}

const MODES: [Mode; 3] = [Mode::Plain, Mode::I, Mode::T];

impl Mode {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Mode::Plain => &[],
            Mode::I => &["-i"],
            Mode::T => &["-t"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Normal,
    Sigterm,
}

/// One exec on a test PTY (stdin on it, stdout/stderr on pipes): checks the
/// terminal while the guest command runs and after the client is gone.
fn one_exec(m: &Machine<'_>, client: &Client, mode: Mode, ending: Ending) {
    // The guest says it runs by a file in its own /tmp, written once its
    // waiting child traps SIGTERM; the test ends it with a SIGTERM to that
    // child (the host sees the guest's processes).
    let guest_flag = format!("/tmp/{}", marker("running"));
    let flag = m.guest_tmp(&guest_flag);
    let mark = marker("exec");
    // Only the waiting child has `<mark>-wait` in its arguments (the
    // script names it `$0-wait`, and `$0` is the mark).
    let waiting = format!("{mark}-wait");
    let script = format!(
        "echo out; echo err >&2; sh -c 'trap \"exit 0\" TERM; touch {guest_flag}; while :; do sleep 0.01; done' \"$0-wait\"; exit 3"
    );
    let mut c = m.exec_by(client, mode.flags());
    c.args(["--", "sh", "-c", &script, &mark]).envs(QUICK);
    let mut t = Term::spawn_wired(c, 90, 25, Wiring::StdinOnly);
    let what = format!("{client:?} {mode:?} {ending:?} on {}", m.name);
    let ctx = || format!("{what}\n{}", m.context());
    wait_until(
        30,
        || flag.exists(),
        || format!("PTY: {:?}\n{}", t.output(), ctx()),
    );

    // On a bare machine the command runs before `started` reaches the
    // client: wait until the client has had it (O_NONBLOCK, raw with -t).
    let want = (mode == Mode::T, mode != Mode::Plain);
    wait_until(
        30,
        || {
            let s = t.state();
            (s.raw, s.nonblock) == want
        },
        || {
            format!(
                "state {:?}, want (raw, nonblock) {want:?}\n{}",
                t.state(),
                ctx()
            )
        },
    );
    let during = t.state();
    assert_eq!(during.raw, mode == Mode::T, "raw while running: {what}");
    assert_eq!(
        during.nonblock,
        mode != Mode::Plain,
        "O_NONBLOCK while running: {what}"
    );
    assert!(!t.before.raw && !t.before.nonblock);

    let pid = t.pid();
    match ending {
        Ending::Normal => {
            // The waiting shell itself, not a child it has just forked
            // (which has its arguments until it execs `sleep`).
            let found = pids_with(&waiting);
            let ppid = |p: i32| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .and_then(|s| {
                        s.rsplit(')')
                            .next()?
                            .split_whitespace()
                            .nth(1)?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            let shells: Vec<i32> = found
                .iter()
                .copied()
                .filter(|p| !found.contains(&ppid(*p)))
                .collect();
            for p in shells {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), Signal::SIGTERM);
            }
            let status = t.wait_exit(30, ctx);
            assert_eq!(status.code(), Some(3), "{what}: {:?}", text(&t.stderr));
            assert_eq!(
                t.after.as_ref(),
                Some(&t.before),
                "terminal not restored: {what}"
            );
            let (out, err) = (text(&t.stdout), text(&t.stderr));
            if mode == Mode::T {
                // One guest PTY: both streams on stdout, with its CR LF.
                assert_eq!(
                    (out.as_str(), err.as_str()),
                    ("out\r\nerr\r\n", ""),
                    "{what}"
                );
            } else {
                assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"), "{what}");
            }
            let rec = m.record_of(pid);
            assert_eq!(rec.exit_code, 3, "{what}");
            assert!(!rec.client_gone, "{what}");
            assert_eq!(rec.program, client.logged_name(), "{what}");
            assert_eq!(
                (rec.interactive, rec.tty),
                (mode != Mode::Plain, mode == Mode::T)
            );
            assert_eq!(
                rec.stdin,
                format!("tty:{}", t.slave_path.display()),
                "{what}"
            );
        }
        Ending::Sigterm => {
            t.signal(Signal::SIGTERM);
            let status = t.wait_exit(30, ctx);
            assert_eq!(status.signal(), Some(15), "{what}: {status:?}");
            let after = t.after.clone().unwrap();
            // Killed, the client restores nothing: raw and O_NONBLOCK stay.
            assert_eq!(after.raw, mode == Mode::T, "raw after SIGTERM: {what}");
            assert_eq!(
                after.nonblock,
                mode != Mode::Plain,
                "O_NONBLOCK after SIGTERM: {what}"
            );
            if mode == Mode::Plain {
                assert_eq!(after, t.before, "{what}");
            }
            let rec = m.record_of(pid);
            if m.name == "term" && mode == Mode::T {
                // The agent kills crun; the container of a `-t` session goes
                // on as the machine's main container (smolvm-0.8.0.md).
                assert!(
                    pids_with(&mark).into_iter().any(|p| p != pid as i32),
                    "the main container died with its client: {what}"
                );
            } else {
                // The agent notices the hang-up and kills the guest command.
                wait_until(
                    30,
                    || pids_with(&mark).into_iter().all(|p| p == pid as i32),
                    || format!("{:?}\n{}", pids_with(&mark), ctx()),
                );
            }
            assert!(rec.client_gone, "{what}: {rec:?}");
            // Image machines: crun reports 128+9. VM level (bare): a
            // half-closed plain vm_exec is 129; an interactive one killed
            // reports the signal as -1 (0.8.0).
            let want = match (m.name.as_str(), mode) {
                ("term-bare", Mode::Plain) => 129,
                ("term-bare", _) => -1,
                _ => 137,
            };
            assert_eq!((rec.exit_code, rec.signal), (want, Some(9)), "{what}");
        }
    }
}

fn terminal_behaviour(client: Client, image: bool) {
    let home = Home::new();
    let m = home.machine(if image { "term" } else { "term-bare" }, image);
    for mode in MODES {
        for ending in [Ending::Normal, Ending::Sigterm] {
            one_exec(&m, &client, mode, ending);
        }
    }
    let want = if image {
        ExecPath::Run
    } else {
        ExecPath::VmExec
    };
    let log = m.log();
    assert_eq!(log.len(), 6, "{}", m.context());
    assert!(log.iter().all(|r| r.path == want), "{}", m.context());
    m.stop_and_check();
}

#[test]
fn fake_client_on_an_image_machine() {
    terminal_behaviour(Client::Fake, true);
}

#[test]
fn fake_client_on_a_bare_machine() {
    terminal_behaviour(Client::Fake, false);
}

#[test]
fn real_client_on_an_image_machine() {
    let Some(real) = real_client() else { return };
    terminal_behaviour(real, true);
}

#[test]
fn real_client_on_a_bare_machine() {
    let Some(real) = real_client() else { return };
    terminal_behaviour(real, false);
}

#[test]
fn error_messages_are_the_same_from_both_clients() {
    let home = Home::new();
    let img = home.machine("img", true);
    let bare = home.machine("bare", false);
    home.run(["machine", "create", "idle"]);
    let wd = |p: &str| {
        format!("Error: agent operation failed: {p}: exec failed: workdir /no/such: no such directory\n")
    };
    // (machine, flags, exit code, stderr)
    let cases: Vec<(&str, &[&str], i32, String)> = vec![
        ("nope", &[], 1, "Error: vm not found: nope\n".into()),
        ("nope", &["-i"], 1, "Error: vm not found: nope\n".into()),
        ("nope", &["-t"], 1, "Error: vm not found: nope\n".into()),
        (
            "a.b",
            &[],
            1,
            "Error: config operation failed: validate machine name: machine name contains invalid character: '.'\n".into(),
        ),
        ("idle", &[], 1, not_running("idle")),
        ("idle", &["-i"], 1, not_running("idle")),
        ("idle", &["-t"], 1, not_running("idle")),
        ("img", &["-w", "/no/such"], 1, wd("run command")),
        // A plain vm_exec: std's spawn error (`main.rs` 4434-4442).
        (
            "bare",
            &["-w", "/no/such"],
            1,
            "Error: agent operation failed: vm exec: failed to spawn command: No such file or directory (os error 2)\n".into(),
        ),
        (
            "bare",
            &["-i", "-w", "/no/such"],
            1,
            wd("vm exec interactive"),
        ),
        (
            "bare",
            &["-t", "-w", "/no/such"],
            1,
            wd("vm exec interactive"),
        ),
    ];
    for client in clients() {
        for (name, flags, code, stderr) in &cases {
            let mut c = home.cmd_of(client.program(), ["machine", "exec", "--name", name]);
            c.args(*flags).args(["--", "true"]).envs(QUICK);
            let mut t = Term::spawn_wired(c, 80, 24, Wiring::StdinOnly);
            let what = format!("{client:?} {name} {flags:?}");
            let status = t.wait_exit(30, || what.clone());
            assert_eq!(status.code(), Some(*code), "{what}: {:?}", text(&t.stderr));
            assert_eq!(&text(&t.stderr), stderr, "{what}");
            assert_eq!(text(&t.stdout), "", "{what}");
            assert_eq!(
                t.after.as_ref(),
                Some(&t.before),
                "terminal changed: {what}"
            );
        }
    }
    // Only execs that reached an agent are logged: the two workdir failures
    // on each machine per client, nothing for `nope` and `idle`.
    let n = clients().len();
    assert_eq!(img.log().len(), n, "{}", img.context());
    assert_eq!(bare.log().len(), 3 * n, "{}", bare.context());
    assert!(!home.machine_dir("idle").join("exec.log").exists());
    assert!(!home.machine_dir("nope").join("exec.log").exists());
}

#[test]
fn interactive_pipes_relay_stdin_and_eof_with_both_clients() {
    let home = Home::new();
    for image in [true, false] {
        let m = home.machine(if image { "pi" } else { "pb" }, image);
        for client in clients() {
            // Written at once: on an image machine it arrives during the crun
            // window, before the command runs, and must not be lost.
            let mut c = m.exec_by(
                &client,
                ["-i", "--", "sh", "-c", "tr a-z A-Z; echo done >&2"],
            );
            c.envs(QUICK)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = c.spawn().unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"hello guest\n")
                .unwrap(); // dropped: EOF
            let status = wait_child_or(&mut child, 30, || m.context());
            let (mut out, mut err) = (String::new(), String::new());
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(
                status.success(),
                "{client:?} {image}: {err}\n{}",
                m.context()
            );
            assert_eq!((out.as_str(), err.as_str()), ("HELLO GUEST\n", "done\n"));
            let rec = m.record_of(child.id());
            assert!(rec.interactive && !rec.tty);
            assert_eq!(rec.stdin, "pipe");
        }
    }
}

/// Waits until the guest printed `n` more sizes than it had when called.
fn wait_more_sizes(t: &Term, n: usize, m: &Machine<'_>) {
    let count = |o: &str| o.lines().filter(|l| l.trim().contains(' ')).count();
    let seen = count(&t.output());
    t.wait_output(30, |o| count(o) >= seen + n, || m.context());
}

#[test]
fn resize_frames_reach_the_guest_only_where_smolvm_applies_them() {
    let home = Home::new();
    let img = home.machine("rimg", true);
    let bare = home.machine("rbare", false);
    for client in clients() {
        let what = format!("{client:?}");
        // 0.8.0, image path: crun's own 0x0 PTY, nobody sizes it.
        let mut c = img.stty_loop(&client);
        c.envs(QUICK);
        let mut t = Term::spawn(c, 100, 30);
        t.wait_output(30, |o| o.contains("0 0"), || img.context());
        t.resize(120, 40);
        wait_more_sizes(&t, 6, &img);
        assert!(
            t.output()
                .lines()
                .all(|l| l.trim() == "0 0" || l.trim().is_empty()),
            "{what}: {:?}",
            t.output()
        );
        assert_eq!(t.size(), (120, 40), "the host PTY is the test's alone");
        t.interrupt(|| img.context());

        // 0.8.1 (per exec): 80x24, then the client's resizes are applied.
        let mut c = img.stty_loop(&client);
        c.envs(QUICK).env("FAKE_SMOLVM_COMPAT", "0.8.1");
        let mut t = Term::spawn(c, 100, 30);
        t.wait_output(
            30,
            |o| o.contains("24 80") || o.contains("30 100"),
            || img.context(),
        );
        assert!(!t.output().contains("0 0"), "{what}: {:?}", t.output());
        t.resize(120, 40);
        t.wait_output(30, |o| o.contains("40 120"), || img.context());
        t.resize(90, 20);
        t.wait_output(30, |o| o.contains("20 90"), || img.context());
        t.interrupt(|| img.context());

        // A bare machine (vm_exec) was sized in 0.8.0 already: the initial
        // size frame and every resize reach the agent's PTY.
        let mut c = bare.stty_loop(&client);
        c.envs(QUICK);
        let mut t = Term::spawn(c, 100, 30);
        t.wait_output(30, |o| o.contains("30 100"), || bare.context());
        t.resize(120, 40);
        t.wait_output(30, |o| o.contains("40 120"), || bare.context());
        // At VM level 0.8.0 reports the SIGINT as -1: the client exits 255.
        t.interrupt_expecting(255, || bare.context());
    }
}

#[test]
fn a_stopped_machine_ends_a_session_with_connection_closed() {
    for client in clients() {
        let home = Home::new();
        let m = home.machine("lost", true);
        let guest_flag = format!("/tmp/{}", marker("running"));
        let flag = m.guest_tmp(&guest_flag);
        let mark = marker("lost");
        let script = format!("touch {guest_flag}; sleep 100000");
        let mut c = m.exec_by(&client, ["-t", "--", "sh", "-c", &script, &mark]);
        c.envs(QUICK);
        let mut t = Term::spawn_wired(c, 80, 24, Wiring::StdinOnly);
        wait_until(30, || flag.exists(), || m.context());
        m.stop_and_check();
        let status = t.wait_exit(30, || m.context());
        assert_eq!(status.code(), Some(1), "{client:?}");
        assert_eq!(
            text(&t.stderr),
            "Error: io operation failed: connection closed\n",
            "{client:?}"
        );
        let pid = t.pid() as i32;
        assert!(
            pids_with(&mark).iter().all(|p| *p == pid),
            "{:?}",
            pids_with(&mark)
        );
    }
}
