//! The wrapper's session contracts, against a stub smolvm on PTYs the tests
//! create: readiness, the lazy side channel, the machine lock, the hand-off,
//! the terminal hand-back, PDEATHSIG and native forwarding.

mod kit;

use std::time::{Duration, Instant};

use kit::{gone, journal, wait_for, Pty, Setup, Step};

fn steps(dir: &std::path::Path, event: &str) -> Vec<Step> {
    journal(dir)
        .into_iter()
        .filter(|s| s.event == event)
        .collect()
}

fn step(dir: &std::path::Path, event: &str) -> Step {
    let mut found = None;
    wait_for(&format!("journal {event}"), dir, || {
        found = steps(dir, event).into_iter().next();
        found.is_some()
    });
    found.unwrap()
}

/// No side exec may start while the main exec's crun window is open.
fn assert_no_side_in_window(dir: &std::path::Path) {
    for s in journal(dir) {
        assert!(
            !s.rest.contains("inwindow=1"),
            "side exec inside the window: {s:?}\n{}",
            kit::context(dir)
        );
    }
}

/// Types `q` once the stub reads the terminal (a byte typed before smolvm's
/// TCSAFLUSH switch to raw mode would be discarded).
fn quit(run: &mut kit::Run, pty: &Pty) -> i32 {
    run.wait_event("ready");
    pty.type_in(b"q");
    run.wait_exit().code().expect("exit code")
}

#[test]
fn a_session_never_resized_starts_no_side_channel_and_ready_waits_the_settle_margin() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut run = Setup::new(dir.path(), "m").spawn(&pty);
    let ready = run.wait_event("ready");
    let started = run.first("started").expect("started before ready");
    assert_eq!(ready.get("via"), Some("raw+settle"));
    assert_eq!(started.get("via"), Some("raw"));
    assert!(ready.t_ms - started.t_ms >= 500.0, "{ready:?} {started:?}");
    assert_eq!(
        step(dir.path(), "main-start").rest,
        "prologue=100x30 marker=1"
    );
    // The main lock is released at readiness, not before.
    let unlock = run.first("unlock").expect("unlock");
    assert_eq!(unlock.get("for"), Some("main"));
    assert!(unlock.t_ms >= ready.t_ms);
    assert_eq!(quit(&mut run, &pty), 0);
    assert!(steps(dir.path(), "channel-start").is_empty());
    assert!(steps(dir.path(), "exec-start").is_empty());
    assert_eq!(run.count("channel-open"), 0);
    assert_eq!(run.count("push"), 0);
    assert_eq!(run.first("exit").unwrap().get("code"), Some("0"));
}

#[test]
fn a_resize_at_raw_mode_is_pushed_after_ready_never_inside_the_window() {
    for mode in ["channel", "exec"] {
        let dir = tempfile::tempdir().unwrap();
        let pty = Pty::new(100, 30);
        let mut run = Setup::new(dir.path(), "m")
            .opts(&["--mode", mode])
            .env("STUB_CRUN_MS", 300)
            .spawn(&pty);
        step(dir.path(), "main-raw");
        pty.resize(90, 25);
        let push_event = if mode == "channel" {
            "channel-push"
        } else {
            "exec-push"
        };
        wait_for("a push of 90x25", dir.path(), || {
            steps(dir.path(), push_event)
                .iter()
                .any(|s| s.rest.split(' ').next() == Some("size=90x25"))
        });
        let push = run.first("push").unwrap();
        assert_eq!(push.get("size"), Some("90x25"));
        assert_eq!(push.get("transport"), Some(mode));
        assert!(push.t_ms >= run.first("ready").unwrap().t_ms);
        let running = step(dir.path(), "main-running");
        let side = step(
            dir.path(),
            if mode == "channel" {
                "channel-start"
            } else {
                "exec-start"
            },
        );
        assert!(side.t >= running.t, "{side:?} before {running:?}");
        // A later resize reuses the channel (or one exec, serially).
        pty.resize(60, 20);
        wait_for("a push of 60x20", dir.path(), || {
            steps(dir.path(), push_event)
                .iter()
                .any(|s| s.rest.split(' ').next() == Some("size=60x20"))
        });
        assert_eq!(quit(&mut run, &pty), 0, "{mode}");
        assert_no_side_in_window(dir.path());
        if mode == "channel" {
            assert_eq!(steps(dir.path(), "channel-start").len(), 1);
            assert_eq!(run.count("channel-running"), 1);
        }
        // Each side bring-up held the machine lock.
        assert!(run
            .records()
            .iter()
            .any(|r| r.event == "lock" && r.get("for") == Some("side")));
    }
}

#[test]
fn the_terminal_is_handed_back_after_sigterm_sighup_and_a_killed_smolvm() {
    // A session ended by a stop request dies of it, as plain smolvm would.
    for (what, ended) in [
        ("SIGTERM", "signal-15"),
        ("SIGHUP", "signal-1"),
        ("kill smolvm", "exit-137"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let pty = Pty::new(100, 30);
        let before = pty.mode();
        let mut run = Setup::new(dir.path(), "m").spawn(&pty);
        step(dir.path(), "main-running");
        assert_ne!(
            pty.mode(),
            before,
            "the stub made the terminal raw and O_NONBLOCK"
        );
        match what {
            "SIGTERM" => run.signal(libc::SIGTERM),
            "SIGHUP" => run.signal(libc::SIGHUP),
            _ => {
                // SAFETY: SIGKILL to the stub this test started.
                unsafe { libc::kill(run.smolvm_pid(), libc::SIGKILL) };
            }
        }
        assert_eq!(
            kit::ended(run.wait_exit()),
            ended,
            "{what}\n{}",
            kit::context(dir.path())
        );
        assert_eq!(pty.mode(), before, "{what}: terminal not handed back");
        let restore = run.first("restore").expect("restore");
        assert_eq!(restore.get("termios"), Some("restored"), "{what}");
        assert_eq!(restore.get("flags"), Some("restored"), "{what}");
    }
}

#[test]
fn a_sigkilled_wrapper_takes_smolvm_with_it_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut run = Setup::new(dir.path(), "m").spawn(&pty);
    let smolvm = run.smolvm_pid();
    step(dir.path(), "main-running");
    run.signal(libc::SIGKILL);
    run.wait_exit();
    let t = Instant::now();
    wait_for("smolvm gone", dir.path(), || gone(smolvm));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn a_second_wrapper_on_the_machine_waits_for_the_first_ones_bring_up() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (Pty::new(100, 30), Pty::new(80, 24));
    let mut a = Setup::new(dir.path(), "m").spawn(&pa);
    a.wait_event("lock");
    let mut b = Setup {
        log_name: "b.log",
        ..Setup::new(dir.path(), "m")
    }
    .spawn(&pb);
    let wait = b.wait_event("lock-wait");
    assert_eq!(wait.get("for"), Some("main"));
    let lock = b.wait_event("lock");
    assert!(lock.get("waited_ms").unwrap().parse::<f64>().unwrap() > 0.0);
    // B's smolvm started only after A's window closed (A released at ready).
    wait_for("two main execs", dir.path(), || {
        steps(dir.path(), "main-start").len() == 2
    });
    let starts = steps(dir.path(), "main-start");
    let a_running = steps(dir.path(), "main-running")[0].clone();
    assert!(starts[1].t >= a_running.t, "{starts:?} {a_running:?}");
    // Another machine is not held up.
    let pc = Pty::new(80, 24);
    let mut c = Setup {
        log_name: "c.log",
        ..Setup::new(dir.path(), "other")
    }
    .spawn(&pc);
    assert_eq!(c.wait_event("lock").get("waited_ms"), Some("0.000"));
    for (run, pty) in [(&mut a, &pa), (&mut b, &pb), (&mut c, &pc)] {
        assert_eq!(quit(run, pty), 0);
    }
}

#[test]
fn sigterm_while_waiting_for_the_machine_lock_ends_the_wrapper_without_a_smolvm() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (Pty::new(100, 30), Pty::new(80, 24));
    // A long crun window keeps A's lock held for a while.
    let mut a = Setup::new(dir.path(), "m")
        .env("STUB_CRUN_MS", 3000)
        .spawn(&pa);
    a.wait_event("lock");
    let mut b = Setup {
        log_name: "b.log",
        ..Setup::new(dir.path(), "m")
    }
    .spawn(&pb);
    b.wait_event("lock-wait");
    b.signal(libc::SIGTERM);
    assert_eq!(kit::ended(b.wait_exit()), "signal-15");
    assert!(b
        .first("exit")
        .unwrap()
        .get("status")
        .unwrap()
        .contains("machine lock"));
    assert_eq!(b.count("start"), 0);
    assert_eq!(quit(&mut a, &pa), 0);
    assert_eq!(
        steps(dir.path(), "main-start").len(),
        1,
        "B never spawned smolvm"
    );
}

#[test]
fn ctrl_c_while_waiting_for_the_machine_lock_gives_up_after_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (Pty::new(100, 30), Pty::new(80, 24));
    // A long bring-up (before raw mode) keeps A's lock held for a while.
    let mut a = Setup::new(dir.path(), "m")
        .env("STUB_BRINGUP_MS", 5000)
        .spawn(&pa);
    a.wait_event("lock");
    let mut b = Setup {
        log_name: "b.log",
        ..Setup::new(dir.path(), "m")
    }
    .spawn(&pb);
    b.wait_event("lock-wait");
    // After a second, one line says why nothing happens and how to leave.
    b.wait_output("waiting for another session's start-up on machine 'm'");
    // No child yet: Ctrl-C (the terminal's SIGINT to its foreground group)
    // ends the wait, as it would end a plain smolvm.
    pb.type_in(b"\x03");
    assert_eq!(kit::ended(b.wait_exit()), "signal-2");
    assert_eq!(b.count("start"), 0);
    assert_eq!(quit(&mut a, &pa), 0);
    assert_eq!(
        steps(dir.path(), "main-start").len(),
        1,
        "B never spawned smolvm"
    );
}

#[test]
fn ctrl_c_during_start_up_ends_the_session_and_the_wrapper_dies_of_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let before = pty.mode();
    // A long bring-up: the terminal is still cooked, so Ctrl-C is a SIGINT
    // to the foreground group (the wrapper and smolvm), as with plain smolvm.
    let mut run = Setup::new(dir.path(), "m")
        .env("STUB_BRINGUP_MS", 5000)
        .spawn(&pty);
    run.wait_event("start");
    pty.type_in(b"\x03");
    // Dying of SIGINT (not exit 130) is what stops an enclosing shell loop.
    assert_eq!(
        kit::ended(run.wait_exit()),
        "signal-2",
        "{}",
        kit::context(dir.path())
    );
    assert_eq!(pty.mode(), before, "terminal not as before");
    assert_eq!(run.first("exit").unwrap().get("code"), Some("130"));
}

#[test]
fn a_side_channel_still_in_its_bring_up_is_left_to_finish() {
    for (mode, start, done) in [
        ("channel", "channel-start", "channel-eof"),
        ("exec", "exec-start", "exec-push"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let pty = Pty::new(100, 30);
        let mut run = Setup::new(dir.path(), "m")
            .opts(&["--mode", mode])
            .env("STUB_SIDE_MS", 1500)
            .spawn(&pty);
        run.wait_event("ready");
        pty.resize(90, 25);
        step(dir.path(), start);
        assert_eq!(quit(&mut run, &pty), 0);
        // The wrapper exited at once, before the side bring-up ended.
        assert!(
            steps(dir.path(), done).is_empty(),
            "{mode}\n{}",
            kit::context(dir.path())
        );
        assert!(run.first("handoff").is_some(), "{mode}");
        // The next session on the machine waits: the supervisor holds the lock.
        let next_pty = Pty::new(80, 24);
        let mut next = Setup {
            log_name: "next.log",
            ..Setup::new(dir.path(), "m")
        }
        .spawn(&next_pty);
        next.wait_event("lock-wait");
        // It finished by itself (stdin closed), under the supervisor.
        let finished_at = step(dir.path(), done);
        let finished = run.wait_event("handoff-done");
        assert_eq!(finished.get("outcome"), Some("exited"), "{mode}");
        next.wait_event("lock");
        wait_for("the next main exec", dir.path(), || {
            steps(dir.path(), "main-start").len() == 2
        });
        let next_start = steps(dir.path(), "main-start")[1].clone();
        assert!(
            next_start.t >= finished_at.t,
            "{mode}: {next_start:?} before {finished_at:?}"
        );
        assert_eq!(quit(&mut next, &next_pty), 0);
    }
}

#[test]
fn sigterm_to_the_hand_off_supervisor_is_ignored_until_its_deadline_and_logged() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    // A side bring-up that would run for a minute, in its own group.
    let mut side = std::process::Command::new("sleep");
    side.arg("60");
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        side.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut side = side.spawn().unwrap();
    let log = std::fs::File::create(dir.path().join("handoff.log")).unwrap();
    let h = pty_resize::handoff::Handoff {
        pid: side.id(),
        pidfd: pty_resize::handoff::pidfd_open(side.id()),
        lock_fd: None,
        log_fd: Some(log.as_raw_fd()),
        drain: Vec::new(),
        deadline: Duration::from_millis(1500),
        t0: Duration::ZERO,
    };
    let keep: Vec<i32> = [h.pidfd, h.log_fd].into_iter().flatten().collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pty-resize"));
    cmd.arg(pty_resize::handoff::SUBCOMMAND).args(h.args());
    // SAFETY: fcntl is async-signal-safe; `keep` is only read.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &keep {
                libc::fcntl(*fd, libc::F_SETFD, 0);
            }
            Ok(())
        });
    }
    let mut supervisor = cmd.spawn().unwrap();
    let reaper = std::thread::spawn(move || side.wait().unwrap());
    // Once its handler is installed (SigCgt in /proc), SIGTERM, again and
    // again: the supervisor must go on until its deadline.
    let catches_term = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|st| {
                st.lines()
                    .find_map(|l| l.strip_prefix("SigCgt:"))
                    .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            })
            .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
    };
    kit::wait_for("the supervisor to catch SIGTERM", dir.path(), || {
        catches_term(supervisor.id())
    });
    let sent = std::time::Instant::now();
    while !std::fs::read_to_string(dir.path().join("handoff.log"))
        .unwrap()
        .contains("handoff-done")
    {
        // SAFETY: kill on the pid of a child this test spawned.
        unsafe { libc::kill(supervisor.id() as i32, libc::SIGTERM) };
        assert!(
            sent.elapsed() < kit::DEADLINE,
            "the supervisor never logged handoff-done"
        );
        std::thread::sleep(Duration::from_millis(20)); // paces the signals only
    }
    assert_eq!(supervisor.wait().unwrap().code(), Some(0));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(reaper.join().unwrap().signal(), Some(libc::SIGKILL));
    let recs = pty_resize::log::read(&dir.path().join("handoff.log")).unwrap();
    let done = recs.iter().find(|r| r.event == "handoff-done").unwrap();
    assert_eq!(done.get("outcome"), Some("killed"), "{recs:?}");
    assert_eq!(done.get("ignored"), Some("SIGTERM"), "{recs:?}");
    assert!(done.t_ms >= 1500.0, "it ended early: {recs:?}");
}

#[test]
fn a_side_channel_that_never_ends_is_killed_at_the_hand_off_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut run = Setup::new(dir.path(), "m")
        .opts(&["--push-timeout-ms", "1000"])
        .env("STUB_SIDE_MS", 300)
        .env("STUB_SIDE_HANG", 1)
        .spawn(&pty);
    run.wait_event("ready");
    pty.resize(90, 25);
    let channel = step(dir.path(), "channel-start");
    assert_eq!(quit(&mut run, &pty), 0);
    let done = run.wait_event("handoff-done");
    assert_eq!(
        done.get("outcome"),
        Some("killed"),
        "{}",
        kit::context(dir.path())
    );
    wait_for("the channel gone", dir.path(), || gone(channel.pid));
}

#[test]
fn on_smolvm_0_8_1_no_side_channel_and_a_start_up_resize_is_nudged() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut run = Setup::new(dir.path(), "m")
        .env("STUB_VERSION", "0.8.1")
        .env("STUB_BRINGUP_MS", 300)
        .spawn(&pty);
    step(dir.path(), "main-start");
    pty.resize(70, 20);
    let nudge = run.wait_event("nudge");
    assert_eq!(nudge.get("size"), Some("70x20"));
    assert_eq!(nudge.get("prologue"), Some("100x30"));
    assert_eq!(run.first("start").unwrap().get("transport"), Some("native"));
    let running = step(dir.path(), "main-running");
    wait_for("a SIGWINCH after the window", dir.path(), || {
        steps(dir.path(), "winch").iter().any(|w| w.t > running.t)
    });
    pty.resize(60, 20);
    assert_eq!(quit(&mut run, &pty), 0);
    assert!(steps(dir.path(), "channel-start").is_empty());
    assert!(steps(dir.path(), "exec-start").is_empty());
    assert_eq!(run.count("push"), 0);
    assert_eq!(run.count("nudge"), 1);
}

#[test]
fn a_hung_version_is_bounded_then_cached() {
    let dir = tempfile::tempdir().unwrap();
    for (i, source) in ["query", "cache"].into_iter().enumerate() {
        let pty = Pty::new(100, 30);
        let mut run = Setup {
            log_name: if i == 0 { "first.log" } else { "second.log" },
            ..Setup::new(dir.path(), "m")
        }
        .env("STUB_VERSION", "hang")
        .spawn(&pty);
        let v = run.wait_event("version");
        assert_eq!(v.get("source"), Some(source));
        assert_eq!(v.get("version"), Some("unknown"));
        if i == 0 {
            assert_eq!(v.get("probe"), Some("timeout"));
        }
        assert_eq!(run.wait_event("start").get("transport"), Some("channel"));
        assert_eq!(quit(&mut run, &pty), 0);
    }
    assert_eq!(steps(dir.path(), "version").len(), 1, "asked once");
}

#[test]
fn ctrl_c_while_smolvm_version_hangs_ends_the_wrapper_logged_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut run = Setup::new(dir.path(), "m")
        .env("STUB_VERSION", "hang")
        .spawn(&pty);
    // The probe runs (its own session: the terminal's SIGINT reaches only
    // the wrapper).
    let probe = step(dir.path(), "version").pid;
    pty.type_in(b"\x03");
    assert_eq!(
        kit::ended(run.wait_exit()),
        "signal-2",
        "{}",
        kit::context(dir.path())
    );
    let exit = run.first("exit").expect("the exit is logged");
    assert_eq!(exit.get("code"), Some("130"));
    assert_eq!(run.count("start"), 0, "no smolvm started");
    assert!(steps(dir.path(), "main-start").is_empty());
    // The hung probe did not outlive the wrapper's bound on it.
    kit::wait_for("the version probe to be gone", dir.path(), || {
        testkit::procs::has_exited(probe)
    });
}

#[test]
fn without_a_controlling_terminal_the_log_says_no_resize_will_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut run = Setup {
        ctty: false,
        ..Setup::new(dir.path(), "m")
    }
    .spawn(&pty);
    let r = run.wait_event("no-resize");
    assert!(
        r.get("reason")
            .unwrap()
            .starts_with("no-controlling-terminal"),
        "{r:?}"
    );
    run.wait_event("ready");
    assert_eq!(quit(&mut run, &pty), 0);
}

#[test]
fn sizes_no_terminal_has_are_rejected_not_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(10_000, 10_000);
    let mut run = Setup::new(dir.path(), "m").spawn(&pty);
    let size = run.wait_event("size");
    assert_eq!(size.get("size"), Some("none"));
    assert_eq!(size.get("invalid"), Some("out-of-range-10000x10000"));
    assert_eq!(
        run.first("prologue").unwrap().get("reason"),
        Some("no-size")
    );
    assert!(step(dir.path(), "main-start")
        .rest
        .starts_with("prologue=none "));
    run.wait_event("ready");
    pty.resize(80, 9000);
    wait_for("the second size record", dir.path(), || {
        run.count("size") == 2
    });
    pty.resize(80, 24);
    wait_for("a push of 80x24", dir.path(), || {
        steps(dir.path(), "channel-push")
            .iter()
            .any(|s| s.rest.split(' ').next() == Some("size=80x24"))
    });
    assert_eq!(quit(&mut run, &pty), 0);
    let pushed: Vec<_> = run
        .records()
        .into_iter()
        .filter(|r| r.event == "push")
        .map(|r| r.get("size").unwrap().to_string())
        .collect();
    assert_eq!(pushed, ["80x24"]);
}

#[test]
fn already_raw_at_start_waits_for_the_later_of_the_timer_and_nonblock_plus_settle() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut t = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
    let mut run = Setup::new(dir.path(), "m")
        .opts(&["--fallback-ms", "700"])
        .env("STUB_BRINGUP_MS", 300)
        .env("STUB_CRUN_MS", 300)
        .spawn(&pty);
    run.wait_event("start");
    pty.resize(90, 25);
    let ready = run.wait_event("ready");
    assert_eq!(run.first("start").unwrap().get("readiness"), Some("timer"));
    assert_eq!(run.first("started").unwrap().get("via"), Some("nonblock"));
    assert_eq!(ready.get("via"), Some("nonblock+settle"));
    wait_for("a push of 90x25", dir.path(), || {
        steps(dir.path(), "channel-push")
            .iter()
            .any(|s| s.rest.split(' ').next() == Some("size=90x25"))
    });
    assert_eq!(quit(&mut run, &pty), 0);
    assert_no_side_in_window(dir.path());
}

/// Issue 16, "one name": without MACHINE the machine is the command's
/// `--name`; the lock and the pushes use it.
#[test]
fn one_name_without_machine_the_commands_name_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut run = Setup::new(dir.path(), "bottle")
        .without_machine()
        .opts(&["--mode", "exec"])
        .spawn(&pty);
    let lock = run.wait_event("lock");
    assert!(
        lock.get("path").unwrap().contains("/machine-bottle-"),
        "{lock:?}"
    );
    assert!(step(dir.path(), "main-start")
        .rest
        .starts_with("prologue=100x30"));
    run.wait_event("ready");
    pty.resize(90, 25);
    wait_for("a push of 90x25", dir.path(), || {
        steps(dir.path(), "exec-push")
            .iter()
            .any(|s| s.rest.split(' ').next() == Some("size=90x25"))
    });
    assert_eq!(quit(&mut run, &pty), 0);
}

/// Issue 16, bug 3: `-t CMD` without `--` (smolvm accepts it) gets the
/// prologue and the marker too, so its pushes find its own PTY.
#[test]
fn the_t_cmd_form_without_a_separator_gets_the_prologue() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut run = Setup::new(dir.path(), "m")
        .opts(&["--mode", "exec"])
        .exec_args(&["--name", "m", "-t", "guest", "arg"])
        .spawn(&pty);
    assert!(step(dir.path(), "main-start")
        .rest
        .starts_with("prologue=100x30"));
    run.wait_event("ready");
    pty.resize(90, 25);
    let push = {
        let mut found = None;
        wait_for("a push", dir.path(), || {
            found = steps(dir.path(), "exec-push").into_iter().next();
            found.is_some()
        });
        found.unwrap()
    };
    assert_eq!(push.rest, "size=90x25 target=marker");
    assert_eq!(quit(&mut run, &pty), 0);
}

/// Issue 16, bug 3: with `--no-prologue` too, a CLI push finds the session
/// by its marker, never by resizing every PTY of the guest (other sessions'
/// terminals).
#[test]
fn without_a_prologue_cli_pushes_find_the_session_by_its_marker_never_every_pty() {
    for mode in ["channel", "exec"] {
        let dir = tempfile::tempdir().unwrap();
        let pty = Pty::new(100, 30);
        let mut run = Setup::new(dir.path(), "m")
            .opts(&["--mode", mode, "--no-prologue"])
            .spawn(&pty);
        assert_eq!(
            step(dir.path(), "main-start").rest,
            "prologue=none marker=1",
            "{mode}"
        );
        run.wait_event("ready");
        pty.resize(90, 25);
        let (start, push) = match mode {
            "channel" => ("channel-start", "channel-push"),
            _ => ("exec-start", "exec-push"),
        };
        wait_for("a push of 90x25", dir.path(), || {
            steps(dir.path(), push)
                .iter()
                .any(|s| s.rest.split(' ').next() == Some("size=90x25"))
        });
        let targets: Vec<String> = steps(dir.path(), start)
            .into_iter()
            .chain(steps(dir.path(), push))
            .filter_map(|s| {
                s.rest
                    .split(' ')
                    .find(|w| w.starts_with("target="))
                    .map(String::from)
            })
            .collect();
        assert!(!targets.is_empty(), "{mode}");
        assert!(
            targets.iter().all(|t| t == "target=marker"),
            "{mode}: {targets:?}\n{}",
            kit::context(dir.path())
        );
        assert_eq!(quit(&mut run, &pty), 0, "{mode}");
    }
}

/// Issue 16, "never silent": a terminal session that will not be bridged
/// (here: no `-t`) says so in one line on stderr before the command runs,
/// then runs as is.
#[test]
fn a_terminal_session_that_is_not_bridged_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut run = Setup::new(dir.path(), "m")
        .exec_args(&["--name", "m", "--", "guest"])
        .spawn(&pty);
    run.wait_output(
        "pty-resize: not bridging (runs as is, resizes will not reach the guest): no -t/--tty",
    );
    assert_eq!(run.wait_exit().code(), Some(0));
    assert_eq!(
        run.first("passthrough").unwrap().get("reason"),
        Some("no-tty-exec")
    );
    assert_eq!(steps(dir.path(), "exec-start").len(), 1, "the command ran");
}

/// Issue 16, bug 9: smolvm kills the channel when the session's command
/// ends (137 on 0.8.0); that is the channel's normal end, logged as
/// `channel-closed reason=session-ended`, never as `channel-dead`.
#[test]
fn a_channel_ended_by_the_sessions_end_is_closed_not_dead() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut run = Setup::new(dir.path(), "m")
        .opts(&["--mode", "channel"])
        .env("STUB_KILL_CHANNEL", 1)
        .spawn(&pty);
    run.wait_event("ready");
    pty.resize(90, 25);
    run.wait_event("channel-running");
    assert_eq!(quit(&mut run, &pty), 0);
    step(dir.path(), "channel-killed");
    let closed = run.first("channel-closed").expect("channel-closed");
    assert_eq!(closed.get("reason"), Some("session-ended"));
    assert_eq!(run.count("channel-dead"), 0, "{}", kit::context(dir.path()));
}

/// Issue 16, bug 9, the other side: a channel that dies while the session
/// goes on is still `channel-dead reason=eof`, and pushes fall back to exec.
#[test]
fn a_channel_that_dies_mid_session_is_still_dead_and_exec_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut run = Setup::new(dir.path(), "m")
        .opts(&["--mode", "channel"])
        .env("STUB_CHANNEL_DIES", 1)
        .spawn(&pty);
    run.wait_event("ready");
    pty.resize(90, 25);
    let dead = run.wait_event("channel-dead");
    assert_eq!(dead.get("reason"), Some("eof"));
    pty.resize(70, 20);
    wait_for("an exec push of 70x20", dir.path(), || {
        steps(dir.path(), "exec-push")
            .iter()
            .any(|s| s.rest.split(' ').next() == Some("size=70x20"))
    });
    assert_eq!(quit(&mut run, &pty), 0);
    assert_eq!(run.count("channel-closed"), 0);
}

/// Issue 16, "never silent": `env X=1 smolvm machine exec -t …` is not
/// looked through; the one line says so and how to wrap it, then the
/// command runs as is (its own `-t` session, no bridge).
#[test]
fn a_command_behind_env_is_not_bridged_and_says_how_to_wrap_it() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::new(100, 30);
    let mut run = Setup::new(dir.path(), "m")
        .without_machine()
        .prefix(&["env", "X=1"])
        .spawn(&pty);
    run.wait_output("the command starts with `env X=1`, not smolvm: put that before pty-resize");
    // Raw mode flushes what was typed before: type once it reads.
    step(dir.path(), "main-running");
    pty.type_in(b"q");
    assert_eq!(run.wait_exit().code(), Some(0));
    assert_eq!(
        run.first("passthrough").unwrap().get("reason"),
        Some("no-tty-exec")
    );
    assert_eq!(run.count("start"), 0, "no bridge");
}
