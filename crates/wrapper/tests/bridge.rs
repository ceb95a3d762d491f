//! `pty-resize` against the real `fake-smolvm`, on PTYs the tests create.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn env(fake: &Fake) -> Vec<(&'static str, String)> {
    vec![(
        "FAKE_SMOLVM_HOME",
        fake.home.path().to_string_lossy().into_owned(),
    )]
}

/// `[opts…] <machine> -- <fake exec -t -- cmd…>`
fn args(opts: &[&str], machine: &str, argv: Vec<String>) -> Vec<String> {
    let mut v = s(opts);
    v.push(machine.to_string());
    v.push("--".into());
    v.extend(argv);
    v
}

fn tui(fake: &Fake) -> Vec<String> {
    fake.exec_argv(true, &[guest_tui_bin().to_str().unwrap(), "--label", "t"])
}

/// Checks the invariants every session must keep, whatever the mode.
fn assert_no_race(fake: &Fake) {
    let log = fake.exec_log();
    let main = main_exec(&log);
    assert_eq!(main.fault, None, "main exec hit a fault: {log:#?}");
    for side in side_execs(&log) {
        assert!(
            !side.bringup_overlaps(main),
            "side-channel bring-up overlaps the main exec's: {log:#?}"
        );
        assert!(
            side.stdin == "devnull" || side.stdin == "pipe",
            "side-channel stdin must never be the terminal: {side:#?}"
        );
        assert_eq!(side.fault, None, "{side:#?}");
    }
}

/// `pty-resize [opts…] m -- <fake exec -t -- argv…>` against `fake`'s home,
/// on a default PTY.
fn wrap(fake: &Fake, opts: &[&str], argv: Vec<String>) -> Session {
    Session::wrapper(&args(opts, "m", argv), &env(fake), PtyOpts::default())
}

/// Waits for the wrapper to exit 0; shows the session on failure.
#[track_caller]
fn assert_success(w: &mut Session, fake: &Fake) {
    assert!(
        w.wait_exit(Some(fake)).success(),
        "{}",
        w.explain(Some(fake))
    );
}

/// Waits for the wrapper to exit with `code`; shows the session on failure.
#[track_caller]
fn assert_exit_code(w: &mut Session, fake: &Fake, code: i32) {
    assert_eq!(
        w.wait_exit(Some(fake)).code(),
        Some(code),
        "{}",
        w.explain(Some(fake))
    );
}

/// Waits until the guest TUI drew its first frame at the PTY's 100x30 and the
/// wrapper saw the session become ready.
fn wait_first_frame_and_ready(w: &Session, fake: &Fake) {
    w.wait_screen("size 100x30", Some(fake));
    w.wait_log("ready", Some(fake));
}

/// Quits the guest TUI (`q`), expects a clean exit and a race-free exec.log.
#[track_caller]
fn quit_cleanly(w: &mut Session, fake: &Fake) {
    w.type_bytes(b"q");
    assert_success(w, fake);
    assert_no_race(fake);
}

#[test]
fn first_frame_is_at_the_host_size_while_the_naive_client_sees_0x0() {
    {
        let fake = Fake::start("naive");
        let argv = fake.exec_argv(true, &["stty", "size"]);
        let mut naive = Session::spawn(&fake_bin(), &argv[1..], &env(&fake), PtyOpts::default());
        assert!(naive.wait_exit(Some(&fake)).success());
        assert_eq!(
            naive.output().lines().next(),
            Some("0 0"),
            "{}",
            naive.explain(Some(&fake))
        );
    }

    let fake = Fake::start("m");
    let argv = fake.exec_argv(true, &["stty", "size"]);

    let mut w = wrap(&fake, &[], argv);
    assert_success(&mut w, &fake);
    assert_eq!(
        w.output().lines().next(),
        Some("30 100"),
        "{}",
        w.explain(Some(&fake))
    );
    assert_no_race(&fake);
}

fn resizes_are_followed(mode: &str) {
    let fake = Fake::start("m");
    let mut w = wrap(&fake, &["--mode", mode], tui(&fake));
    // The first frame is already right (the prologue).
    w.wait_screen("size 100x30 first 100x30", Some(&fake));
    w.wait_log("ready", Some(&fake));
    w.resize(120, 40);
    w.wait_screen("size 120x40", Some(&fake));
    w.resize(90, 20);
    w.wait_screen("size 90x20", Some(&fake));
    // A 0x0 answer is no size: logged, nothing pushed.
    let pushes = w.log_text().matches("event=push ").count();
    w.resize(0, 0);
    w.wait_log("size size=none", Some(&fake));
    w.resize(90, 20);
    w.wait_log("skip size=90x20", Some(&fake));
    assert_eq!(
        w.log_text().matches("event=push ").count(),
        pushes,
        "{}",
        w.log_text()
    );
    quit_cleanly(&mut w, &fake);
    let log = fake.exec_log();
    let sides = side_execs(&log);
    match mode {
        "exec" => {
            assert_eq!(sides.len(), 2, "one exec per resize: {log:#?}");
            assert!(sides.iter().all(|r| r.stdin == "devnull"), "{log:#?}");
        }
        _ => {
            assert_eq!(sides.len(), 1, "one persistent channel: {log:#?}");
            assert_eq!(sides[0].stdin, "pipe");
            assert!(sides[0].interactive);
            assert!(w.log_text().contains("event=channel-open"));
        }
    }
}

#[test]
fn resizes_are_followed_through_the_channel() {
    resizes_are_followed("channel");
}

#[test]
fn resizes_are_followed_with_one_exec_per_resize() {
    resizes_are_followed("exec");
}

/// Bring-up (3 s) longer than the fallback timer (0.5 s): readiness is seen
/// in the terminal's switch to raw mode, so nothing is pushed before it.
#[test]
fn slow_bringup_longer_than_the_fallback_timer_never_races() {
    let fake = Fake::start("m");
    let mut e = env(&fake);
    e.push(("FAKE_SMOLVM_BRINGUP_MS", "3000".into()));
    // Without the prologue a push is needed at ready: the racy case.
    let mut w = Session::wrapper(
        &args(
            &["--mode", "exec", "--fallback-ms", "500", "--no-prologue"],
            "m",
            tui(&fake),
        ),
        &e,
        PtyOpts::default(),
    );
    w.wait_log("start", Some(&fake));
    w.resize(110, 35); // during bring-up
    w.wait_screen("size 110x35", Some(&fake));
    // The guest can show the size before the side-channel's client has
    // exited (and logged): wait for the wrapper to see the push end.
    w.wait_log("push-done", Some(&fake));
    let text = w.log_text();
    assert!(text.contains("event=ready via=raw-mode"), "{text}");
    quit_cleanly(&mut w, &fake);
    let log = fake.exec_log();
    let main = main_exec(&log);
    let sides = side_execs(&log);
    assert!(!sides.is_empty());
    for side in sides {
        assert!(
            side.start_ms >= main.bringup_end_ms.unwrap(),
            "side-channel started during bring-up: {log:#?}"
        );
    }
}

fn burst_of_50(mode: &str) {
    let fake = Fake::start("m");
    let mut e = env(&fake);
    // Arm the shared-stdin abort for every exec: a side-channel that shared
    // the terminal would kill the session.
    e.push(("FAKE_SMOLVM_SHARED_STDIN", "always".into()));
    let mut w = Session::wrapper(
        &args(&["--mode", mode], "m", tui(&fake)),
        &e,
        PtyOpts::default(),
    );
    wait_first_frame_and_ready(&w, &fake);
    let sizes: Vec<(u16, u16)> = (0..50).map(|i| (60 + i, 20 + i % 10)).collect();
    for &(c, r) in &sizes {
        w.resize(c, r);
    }
    let (c, r) = *sizes.last().unwrap();
    w.wait_screen(&format!("size {c}x{r}"), Some(&fake));
    quit_cleanly(&mut w, &fake);
    let log = fake.exec_log();
    let sides = side_execs(&log);
    for (i, a) in sides.iter().enumerate() {
        for b in &sides[i + 1..] {
            assert!(
                !a.lifetime_overlaps(b),
                "two side-channels at once: {a:#?} {b:#?}"
            );
        }
    }
    let pushes = w.log_text().matches("event=push ").count();
    assert!(
        pushes < 10,
        "{pushes} pushes for 50 resizes:\n{}",
        w.log_text()
    );
    match mode {
        "exec" => {
            assert!(
                sides.len() < 10,
                "{} side execs for 50 resizes",
                sides.len()
            );
            assert!(sides.iter().all(|r| r.stdin == "devnull"), "{log:#?}");
        }
        _ => assert_eq!(sides.len(), 1, "{log:#?}"),
    }
}

#[test]
fn burst_of_50_resizes_in_exec_mode_coalesces() {
    burst_of_50("exec");
}

#[test]
fn burst_of_50_resizes_through_the_channel_coalesces() {
    burst_of_50("channel");
}

#[test]
fn exit_code_passes_through() {
    let fake = Fake::start("m");
    let mut w = wrap(&fake, &[], fake.exec_argv(true, &["sh", "-c", "exit 7"]));
    assert_exit_code(&mut w, &fake, 7);
}

#[test]
fn guest_killed_by_a_signal_gives_128_plus_n() {
    let fake = Fake::start("m");
    let mut w = wrap(
        &fake,
        &[],
        fake.exec_argv(true, &["sh", "-c", "kill -KILL $$"]),
    );
    assert_exit_code(&mut w, &fake, 137);
}

fn logged_pid(log: &str, event: &str) -> Option<i32> {
    let line = log
        .lines()
        .find(|l| l.contains(&format!("event={event} ")))?;
    let at = line.find("pid=")? + 4;
    line[at..].split_whitespace().next()?.parse().ok()
}

fn alive(pid: i32) -> bool {
    // A zombie is not running; look at the state letter.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn sigterm_reaches_the_child_and_nothing_is_left_running() {
    let fake = Fake::start("m");
    let mut w = wrap(&fake, &[], tui(&fake));
    w.wait_screen("size 100x30", Some(&fake));
    w.wait_log("channel-open", Some(&fake));
    let channel = logged_pid(&w.log_text(), "channel-open").expect("channel pid");
    kill(Pid::from_raw(w.child.id() as i32), Signal::SIGTERM).unwrap();
    let st = w.wait_exit(Some(&fake));
    assert_eq!(st.code(), Some(128 + 15), "{}", w.explain(Some(&fake)));
    let text = w.log_text();
    assert!(
        text.contains("event=signal signal=SIGTERM action=forwarded ok=true"),
        "{text}"
    );
    assert!(!alive(channel), "channel {channel} still running");
}

#[test]
fn sigint_to_the_wrapper_alone_does_not_end_the_session() {
    let fake = Fake::start("m");
    let mut w = wrap(&fake, &[], tui(&fake));
    w.wait_screen("size 100x30", Some(&fake));
    kill(Pid::from_raw(w.child.id() as i32), Signal::SIGINT).unwrap();
    kill(Pid::from_raw(w.child.id() as i32), Signal::SIGQUIT).unwrap();
    w.wait_log("signal signal=SIGQUIT", Some(&fake));
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "the wrapper died of SIGINT/SIGQUIT"
    );
    w.resize(101, 31);
    w.wait_screen("size 101x31", Some(&fake));
    w.type_bytes(b"q");
    assert_success(&mut w, &fake);
}

/// The terminal is already raw (readiness not observable → fallback timer of
/// 10 s); a child that exits at once still ends the wrapper at once.
#[test]
fn a_child_that_exits_at_once_ends_the_wrapper_at_once() {
    let fake = Fake::start("m");
    let mut e = env(&fake);
    e.push(("FAKE_SMOLVM_BRINGUP_MS", "0".into()));
    let t0 = Instant::now();
    let mut w = Session::wrapper(
        &args(
            &["--fallback-ms", "10000"],
            "m",
            fake.exec_argv(true, &["sh", "-c", "exit 3"]),
        ),
        &e,
        PtyOpts {
            raw: true,
            ..PtyOpts::default()
        },
    );
    assert_exit_code(&mut w, &fake, 3);
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}\n{}",
        w.explain(Some(&fake))
    );
    assert!(w.log_text().contains("readiness=timer"), "{}", w.log_text());
    assert!(side_execs(&fake.exec_log()).is_empty());

    // A machine that does not exist: smolvm fails at once, so does the wrapper.
    let t0 = Instant::now();
    let mut argv = fake.exec_argv(true, &["true"]);
    argv[4] = "nope".into();
    let mut w = Session::wrapper(
        &args(&["--fallback-ms", "10000"], "nope", argv),
        &e,
        PtyOpts::default(),
    );
    assert_exit_code(&mut w, &fake, 1);
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn without_a_terminal_on_stdout_there_is_no_bridge() {
    let fake = Fake::start("m");
    let mut w = Session::wrapper(
        &args(&[], "m", fake.exec_argv(true, &["sh", "-c", "exit 4"])),
        &env(&fake),
        PtyOpts {
            stdout_pipe: true,
            ..PtyOpts::default()
        },
    );
    assert_exit_code(&mut w, &fake, 4);
    let log = fake.exec_log();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0].argv, ["sh", "-c", "exit 4"], "argv must run as is");
    assert!(
        w.log_text().contains("bridge=off reason=not-a-tty"),
        "{}",
        w.log_text()
    );
}

#[test]
fn native_forwarding_runs_the_argv_as_is_unless_forced() {
    let fake = Fake::start("m");
    let mut e = env(&fake);
    e.push(("FAKE_SMOLVM_COMPAT", "0.8.1".into()));
    let argv = fake.exec_argv(true, &["sh", "-c", "exit 0"]);
    let mut w = Session::wrapper(&args(&[], "m", argv.clone()), &e, PtyOpts::default());
    assert_success(&mut w, &fake);
    assert!(
        w.log_text().contains("bridge=off reason=native-0.8.1"),
        "{}",
        w.log_text()
    );
    assert_eq!(fake.exec_log()[0].argv, ["sh", "-c", "exit 0"]);

    let mut w = Session::wrapper(
        &args(&["--force-bridge"], "m", argv),
        &e,
        PtyOpts::default(),
    );
    assert_success(&mut w, &fake);
    // The main execs (-t); the forced bridge may also have opened its
    // channel before the guest's instant exit ended the session.
    let log = fake.exec_log();
    let mains: Vec<_> = log.iter().filter(|r| r.tty).collect();
    assert_eq!(mains.len(), 2, "{log:#?}");
    assert_eq!(mains[1].argv[0..2], ["sh", "-c"]);
    assert!(
        mains[1].argv[2].starts_with("stty cols 100 rows 30"),
        "{log:#?}"
    );
}

/// A machine name full of shell metacharacters is one argv element: no
/// shell ever runs it; the side-channel fails cleanly and the session lives on.
#[test]
fn hostile_machine_name_never_reaches_a_shell() {
    let fake = Fake::start("m");
    let dir = tempfile::tempdir().unwrap();
    let pwned = dir.path().join("pwned");
    let evil = format!("$(touch {})", pwned.display());
    let mut w = Session::wrapper(
        &args(&["--mode", "exec"], &evil, tui(&fake)),
        &env(&fake),
        PtyOpts::default(),
    );
    wait_first_frame_and_ready(&w, &fake);
    w.resize(111, 33);
    w.wait_log("push-failed", Some(&fake));
    let text = w.log_text();
    assert!(text.contains("vm not found"), "{text}");
    // The session goes on and still follows the terminal (through the main exec, the guest still runs).
    assert!(w.child.try_wait().unwrap().is_none());
    w.type_bytes(b"q");
    assert_success(&mut w, &fake);
    assert!(!pwned.exists(), "a shell ran the machine name");
    assert!(
        !w.screen().contains("vm not found"),
        "side-channel output reached the terminal"
    );
}

/// A `--smolvm` that breaks the persistent channel (`-i` execs) in `how`,
/// and passes everything else to the fake.
fn broken_channel_smolvm(dir: &std::path::Path, how: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("smolvm-broken-channel");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" -i \"*) {how};; esac\nexec {} \"$@\"\n",
            fake_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn channel_failure_falls_back_to_exec(how: &str, extra: &[&str], reason: &str) {
    let fake = Fake::start("m");
    let dir = tempfile::tempdir().unwrap();
    let smolvm = broken_channel_smolvm(dir.path(), how);
    let mut opts = vec!["--mode", "channel", "--smolvm", smolvm.to_str().unwrap()];
    opts.extend_from_slice(extra);
    let mut w = wrap(&fake, &opts, tui(&fake));
    wait_first_frame_and_ready(&w, &fake);
    w.resize(120, 40);
    w.wait_screen("size 120x40", Some(&fake));
    let text = w.log_text();
    assert!(
        text.contains(&format!("event=channel-dead reason={reason}")),
        "{text}"
    );
    assert!(text.contains("mode=exec"), "{text}");
    w.resize(90, 20);
    w.wait_screen("size 90x20", Some(&fake));
    quit_cleanly(&mut w, &fake);
    assert!(side_execs(&fake.exec_log())
        .iter()
        .all(|r| r.stdin == "devnull"));
}

#[test]
fn a_channel_that_dies_falls_back_to_one_exec_per_resize() {
    channel_failure_falls_back_to_exec("echo 'Error: broken' >&2; exit 1", &[], "eof");
}

#[test]
fn a_channel_that_hangs_times_out_and_falls_back() {
    channel_failure_falls_back_to_exec("exec sleep 600", &["--push-timeout-ms", "500"], "timeout");
}
