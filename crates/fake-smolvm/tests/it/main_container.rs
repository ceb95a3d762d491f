//! What smolvm 0.8.0's own agent did when run here by hand (smolvm-0.8.0.md,
//! last section): a `-t` session whose client is killed leaves its
//! container running as the machine's main container, which later `-t`
//! execs join; and a joined `-t` session starts at the host's size (crun
//! exec copies the agent PTY's size) but never follows a resize.

use nix::sys::signal::Signal;

use crate::common::*;

#[test]
fn a_killed_tty_client_leaves_its_container_running_and_the_next_tty_exec_joins_it() {
    for client in clients() {
        let home = Home::new();
        let m = home.machine("orphan", true);
        let what = format!("{client:?}");
        let mark = marker("orphan");
        let guest = "echo first-ready; while :; do sleep 0.05; done";
        let mut c = m.exec_by(&client, ["-t", "--", "sh", "-c", guest, &mark]);
        c.envs(QUICK);
        let mut s = Term::spawn(c, 100, 30);
        s.wait_output(30, |o| o.contains("first-ready"), || m.context());
        let first = s.pid();
        s.signal(Signal::SIGTERM);
        s.wait_exit(30, || m.context());
        // The agent is done with the exec (crun killed)...
        let rec = m.record_of(first);
        assert!(rec.client_gone, "{what}: {rec:?}");
        // ...and the container's program goes on.
        let alive: Vec<i32> = pids_with(&mark)
            .into_iter()
            .filter(|p| *p != first as i32)
            .collect();
        assert!(!alive.is_empty(), "{what}: the container died");
        // The next -t exec joins it: no crun window, the same devpts.
        let mut c = m.exec_by(
            &client,
            ["-t", "--", "sh", "-c", "ls -1 /dev/pts; echo second-done"],
        );
        c.envs(QUICK);
        let mut t = Term::spawn(c, 100, 30);
        assert!(
            t.wait_exit(30, || m.context()).success(),
            "{:?}",
            t.output()
        );
        assert!(t.output().contains("second-done"), "{:?}", t.output());
        let rec = m.record_of(t.pid());
        assert!(rec.joined, "{what}: {rec:?}\n{}", m.context());
        assert_eq!(rec.window_start_ms, None, "{what}");
        // The session's PTY (0) and the joined one's (1) share the devpts.
        assert!(
            t.output().contains("0\r\n1\r\nptmx"),
            "{what}: {:?}",
            t.output()
        );
        assert!(pids_with(&mark).iter().any(|p| alive.contains(p)));
        m.stop_and_check();
        assert!(
            pids_with(&mark).iter().all(|p| *p == first as i32),
            "{what}: left running {:?}",
            pids_with(&mark)
        );
    }
}

#[test]
fn a_joined_tty_session_starts_at_the_host_size_and_never_follows_a_resize() {
    let home = Home::new();
    let m = home.machine("joinsize", true);
    for client in clients() {
        let what = format!("{client:?}");
        // The main container: a session on crun's 0x0 PTY.
        let mut c = m.stty_loop(&client);
        c.envs(QUICK);
        let mut main = Term::spawn(c, 100, 30);
        main.wait_output(30, |o| o.contains("0 0"), || m.context());
        // A joined -t session in a 90x25 terminal.
        let mut c = m.stty_loop(&client);
        c.envs(QUICK);
        let mut t = Term::spawn(c, 90, 25);
        t.wait_output(30, |o| o.contains("25 90"), || m.context());
        assert!(!t.output().contains("0 0"), "{what}: {:?}", t.output());
        t.resize(70, 20);
        let count = |o: &str| o.matches("25 90").count();
        let seen = count(&t.output());
        t.wait_output(30, |o| count(o) >= seen + 10, || m.context());
        assert!(!t.output().contains("20 70"), "{what}: {:?}", t.output());
        t.interrupt(|| m.context());
        let rec = m.record_of(t.pid());
        assert!(rec.joined, "{what}: {rec:?}");
        main.interrupt(|| m.context());
    }
    m.stop_and_check();
}
