//! The guest is really separate: its /dev/pts holds only guest PTYs, and the
//! wrapper's side-channel loop resizes guest sessions, never a host terminal.

mod common;

use common::*;

const SIDE_CHANNEL: &str = "for f in /dev/pts/*; do stty -F $f cols 33 rows 11; done";

#[test]
fn guest_dev_pts_lists_only_guest_ptys() {
    let fake = Fake::new();
    let m = fake.machine("iso");
    let out = run_output(m.exec(["--", "ls", "/dev/pts"]));
    assert_eq!(text(&out.stdout), "ptmx\n", "{}", text(&out.stderr));

    let mut s = PtySession::spawn(m.stty_loop(), 100, 30);
    s.wait_output(30, |o| o.contains("0 0"));
    // The test's own PTY is on the host devpts; the guest sees its one session.
    assert!(s.slave_path.exists());
    let out = run_output(m.exec(["--", "ls", "/dev/pts"]));
    assert_eq!(text(&out.stdout), "0\nptmx\n", "{}", text(&out.stderr));
    s.interrupt();
}

#[test]
fn side_channel_loop_resizes_the_guest_session_and_no_host_pty() {
    let fake = Fake::new();
    let m = fake.machine("side");
    let mut s = PtySession::spawn(m.stty_loop(), 100, 30);
    s.wait_output(30, |o| o.contains("0 0"));
    // A second host PTY the test owns, idle, to show no host PTY is touched.
    let bystander = nix::pty::openpty(Some(&winsize(70, 15)), None).unwrap();
    let size_of = |fd: &std::os::fd::OwnedFd| {
        let mut ws = winsize(0, 0);
        use std::os::fd::AsRawFd;
        // SAFETY: TIOCGWINSZ fills our struct; the fd is our own PTY.
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        (ws.ws_col, ws.ws_row)
    };
    assert_eq!(s.size(), (100, 30));

    let out = run_output(m.exec(["--", "sh", "-c", SIDE_CHANNEL]));
    assert_eq!(text(&out.stdout), "");
    s.wait_output(30, |o| o.contains("11 33"));

    assert_eq!(s.size(), (100, 30), "the session's host PTY was resized");
    assert_eq!(
        size_of(&bystander.master),
        (70, 15),
        "a bystander host PTY was resized"
    );
    let rec = m.log().into_iter().find(|r| r.argv.len() == 3).unwrap();
    assert_eq!(rec.stdin, "devnull");
    s.interrupt();
}

#[test]
fn tty_session_processes_die_with_the_machine() {
    let fake = Fake::new();
    let m = fake.machine("gone");
    let mark = marker("tty");
    let mut s = PtySession::spawn(
        m.exec(["-t", "--", "sh", "-c", "sleep 100000; echo never", &mark]),
        80,
        24,
    );
    wait_until(
        30,
        || pids_with(&mark).len() >= 2,
        || format!("{:?} {:?}", pids_with(&mark), s.output()),
    );
    let out = fake.run(["machine", "stop", "--name", "gone"]);
    assert!(out.status.success());
    assert!(
        pids_with(&mark).is_empty(),
        "left running: {:?}",
        pids_with(&mark)
    );
    assert!(!alive(m.init_pid));
    let status = s.wait_exit(10);
    assert_eq!(status.code(), Some(1));
    assert!(
        s.output().contains("Error: agent operation failed"),
        "{:?}",
        s.output()
    );
}

#[test]
fn a_vanished_client_is_logged_by_the_agent_and_its_command_killed() {
    let fake = Fake::new();
    let m = fake.machine("vanish");
    let mark = marker("vanish");
    let mut c = m.exec(["-i", "--", "sh", "-c", "sleep 100000", &mark]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut client = c.spawn().unwrap();
    let client_pid = client.id() as i32;
    // The client's own command line holds the marker too: wait for the guest's.
    let guest = || {
        pids_with(&mark)
            .into_iter()
            .filter(|p| *p != client_pid)
            .collect::<Vec<_>>()
    };
    wait_until(
        30,
        || !guest().is_empty(),
        || format!("{:?}", pids_with(&mark)),
    );
    client.kill().unwrap(); // SIGKILL: the client cannot write its record
    client.wait().unwrap();
    wait_until(30, || guest().is_empty(), || format!("{:?}", guest()));
    wait_until(30, || !m.log().is_empty(), || format!("{:?}", m.log()));
    let rec = &m.log()[0];
    assert_eq!(rec.pid, client.id());
    assert_eq!(rec.exit_code, 137);
    assert!(rec.error.as_deref().unwrap().contains("agent"));
    assert!(rec.bringup_end_ms.is_some());
}

/// `cmd` as a background job of a non-interactive shell runs it (`cmd &`,
/// nohup, some CI runners): SIGINT and SIGQUIT ignored, which exec keeps.
fn as_background_job(mut cmd: std::process::Command) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            Ok(())
        });
    }
    cmd
}

#[test]
fn guest_processes_do_not_inherit_the_hosts_ignored_signals() {
    let fake = Fake::new();
    let out = fake.run(["machine", "create", "sig"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let start = fake.cmd(["machine", "start", "--name", "sig"]);
    let out = run_output(as_background_job(start));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = fake.adopt("sig");

    // Ctrl-C typed into the session still interrupts the guest command
    // (exit 130), as it would in a real VM.
    let mut s = PtySession::spawn(as_background_job(m.stty_loop()), 100, 30);
    s.wait_output(30, |o| o.contains("0 0"));
    s.interrupt();
}
