//! The guest is really separate: its /dev/pts holds only its own PTYs, a
//! side channel's `stty -F` resizes guest sessions and never a host PTY,
//! nothing of a machine outlives `machine stop`, and Ctrl-C reaches the
//! guest with either client.

use crate::common::*;

const SIDE_CHANNEL: &str = "for f in /dev/pts/*; do stty -F $f cols 33 rows 11; done";

#[test]
fn guest_dev_pts_lists_only_guest_ptys() {
    let home = Home::new();
    let m = home.machine("iso", true);
    let ls = || {
        let mut c = m.exec(["--", "ls", "/dev/pts"]);
        c.envs(QUICK);
        run_output(c)
    };
    let out = ls();
    assert_eq!(text(&out.stdout), "ptmx\n", "{}", text(&out.stderr));

    let mut c = m.stty_loop(&Client::Fake);
    c.envs(QUICK);
    let mut s = Term::spawn(c, 100, 30);
    s.wait_output(30, |o| o.contains("0 0"), || m.context());
    // The test's own PTY is on the host devpts; the guest sees its one session.
    assert!(s.slave_path.exists());
    let out = ls();
    assert_eq!(text(&out.stdout), "0\nptmx\n", "{}", text(&out.stderr));
    s.interrupt(|| m.context());
}

#[test]
fn side_channel_resizes_the_guest_session_and_no_host_pty() {
    let home = Home::new();
    let m = home.machine("side", true);
    for client in clients() {
        let mut c = m.stty_loop(&client);
        c.envs(QUICK);
        let mut s = Term::spawn(c, 100, 30);
        s.wait_output(30, |o| o.contains("0 0"), || m.context());
        // A second host PTY the test owns, idle, to show no host PTY is touched.
        let bystander = testkit::pty::Pty::open(70, 15).unwrap();
        let size_of = |fd: &std::os::fd::OwnedFd| testkit::winsize::get(fd).unwrap();
        let mut c = m.exec_by(&client, ["--", "sh", "-c", SIDE_CHANNEL]);
        c.envs(QUICK);
        let out = run_output(c);
        assert!(
            out.status.success(),
            "{client:?}: {:?} {}\n{}",
            out.status,
            text(&out.stderr),
            m.context()
        );
        s.wait_output(30, |o| o.contains("11 33"), || m.context());
        assert_eq!(s.size(), (100, 30), "the session's host PTY was resized");
        assert_eq!(
            size_of(&bystander.master),
            (70, 15),
            "a bystander was resized"
        );
        // Ctrl-C travels as a byte and interrupts the guest command.
        s.interrupt(|| m.context());
    }
}

#[test]
fn tty_session_processes_die_with_the_machine() {
    let home = Home::new();
    let m = home.machine("gone", true);
    let mark = marker("tty");
    let mut c = m.exec([
        "-t",
        "--",
        "sh",
        "-c",
        "echo ready; sleep 100000; echo never",
        &mark,
    ]);
    c.envs(QUICK);
    let mut s = Term::spawn(c, 80, 24);
    s.wait_output(30, |o| o.contains("ready"), || m.context());
    let client = s.pid() as i32;
    assert!(pids_with(&mark).iter().any(|p| *p != client));
    m.stop_and_check();
    assert!(
        pids_with(&mark).iter().all(|p| *p == client),
        "left running: {:?}",
        pids_with(&mark)
    );
    let status = s.wait_exit(10, || m.context());
    assert_eq!(status.code(), Some(1));
    assert!(
        s.output()
            .contains("Error: io operation failed: connection closed"),
        "{:?}",
        s.output()
    );
    // A normal exit (with an error): the terminal is put back.
    assert_eq!(s.after.as_ref(), Some(&s.before));
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
    let home = Home::new();
    let out = home.run(["machine", "create", "sig"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let start = home.cmd(["machine", "start", "--name", "sig"]);
    let out = run_output(as_background_job(start));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = home.adopt("sig");
    // Ctrl-C typed into the session still interrupts the guest command,
    // as it would in a real VM (a bare machine: vm_exec reports the signal
    // as -1, so the client exits 255).
    let mut c = m.stty_loop(&Client::Fake);
    c.envs(QUICK);
    let mut s = Term::spawn(as_background_job(c), 100, 30);
    s.wait_output(30, |o| o.contains("30 100"), || m.context());
    s.interrupt_expecting(255, || m.context());
}

#[test]
fn the_agent_never_opens_a_host_pty() {
    let home = Home::new();
    let m = home.machine("hands-off", true);
    let mut c = m.stty_loop(&Client::Fake);
    c.envs(QUICK);
    let mut s = Term::spawn(c, 100, 30);
    s.wait_output(30, |o| o.contains("0 0"), || m.context());
    // No process of the machine (front, keeper, init, server, guest
    // commands) holds the test's PTY: only the client (and this test) do.
    let slave = s.slave_path.clone();
    // Compared by identity (devpts instance + device number), not by name:
    // the guest's private devpts has its own `/dev/pts/0`.
    use std::os::unix::fs::MetadataExt;
    let id = |m: std::fs::Metadata| (m.dev(), m.rdev());
    let ours = id(std::fs::metadata(&slave).unwrap());
    let me = std::process::id() as i32;
    let holders: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|fds| {
                    fds.flatten()
                        .any(|fd| std::fs::metadata(fd.path()).ok().map(id) == Some(ours))
                })
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(holders, [s.pid() as i32], "{slave:?} held by {holders:?}");
    s.interrupt(|| m.context());
}

#[test]
fn a_guest_writing_tmp_leaves_the_hosts_tmp_untouched() {
    let home = Home::new();
    let m = home.machine("own-tmp", true);
    let mark = marker("tmp");
    let ours = |dir: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(&mark))
                    .collect()
            })
            .unwrap_or_default()
    };
    for client in clients() {
        // A container session (-t) and a VM-level command both write /tmp.
        let script = format!("echo s > /tmp/x-{mark}; echo p > /tmp/.pty-resize-{mark}; echo done");
        let mut c = m.exec_by(&client, ["-t", "--", "sh", "-c", &script]);
        c.envs(QUICK);
        let mut s = Term::spawn(c, 80, 24);
        assert!(
            s.wait_exit(30, || m.context()).success(),
            "{:?}",
            s.output()
        );
        let sock = m.dir().join("agent.sock");
        let vm = crate::vm_level::vm_exec(
            &sock,
            &[
                "sh",
                "-c",
                &format!("echo v > /tmp/y-{mark}; cat /tmp/x-{mark}"),
            ],
            Some(5000),
        )
        .unwrap();
        assert_eq!((vm.code, vm.stdout.as_str()), (0, "s\n"), "{vm:?}");
        // A container exec sees what the VM level wrote: one /tmp per machine.
        let out = run_output(m.exec_by(&client, ["--", "cat", &format!("/tmp/y-{mark}")]));
        assert_eq!(text(&out.stdout), "v\n", "{}", text(&out.stderr));
    }
    assert_eq!(
        ours("/tmp"),
        Vec::<String>::new(),
        "the host's /tmp gained files"
    );
    let mut layer = ours(m.dir().join("tmp").to_str().unwrap());
    layer.sort();
    assert_eq!(layer.len(), 3, "{layer:?}");
    m.stop_and_check();
    let out = home.run(["machine", "delete", "own-tmp"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!m.dir().exists(), "the machine's /tmp outlived it");
}
