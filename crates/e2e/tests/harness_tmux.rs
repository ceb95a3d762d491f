//! Self-tests of `e2e::Tmux`: a private server, sizes, resize, capture, exit.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use e2e::{bins, Exit, Tmux};

const DEADLINE: Duration = Duration::from_secs(10);

#[test]
fn the_session_has_the_chosen_size_and_reports_the_exit_code() {
    let tmux = Tmux::start(50, 8, "stty size; exit 3", &[]);
    assert_eq!(tmux.wait_exit(DEADLINE), Exit::Code(3));
    assert_eq!(tmux.size(), (50, 8));
    assert_eq!(tmux.contents().lines().next(), Some("8 50"));
}

#[test]
fn resize_reaches_the_program_in_the_pane() {
    let tmux = Tmux::start(50, 8, "stty size; while read l; do stty size; done", &[]);
    tmux.wait_for_text("8 50", DEADLINE);
    tmux.resize(30, 5);
    tmux.send_key_names(&["Enter"]);
    tmux.wait_for_text("5 30", DEADLINE);
}

#[test]
fn the_pane_gets_tmux_variables_but_nothing_from_the_test_environment() {
    let tmux = Tmux::start(
        80,
        10,
        "echo \"tmux=${TMUX:+set} term=$TERM cols=${COLUMNS-unset} extra=$EXTRA\"; exit 0",
        &[("EXTRA", "yes")],
    );
    assert_eq!(tmux.wait_exit(DEADLINE), Exit::Code(0));
    let first = tmux.contents().lines().next().unwrap_or("").to_string();
    assert_eq!(first, "tmux=set term=screen cols=unset extra=yes");
}

#[test]
fn guest_tui_in_tmux_snapshot_resize_and_quit() {
    let cmd = format!("{} --label tmux", bins::guest_tui().display());
    let tmux = Tmux::start(60, 8, &cmd, &[]);
    tmux.wait_for_text("guest-tui tmux size 60x8 first 60x8 frames 1", DEADLINE);
    insta::assert_snapshot!("tmux_guest_tui_60x8", tmux.snapshot());
    tmux.resize(56, 6);
    tmux.wait_for_text("size 56x6 first 60x8 frames 2 winch 1", DEADLINE);
    tmux.send_keys("q");
    assert_eq!(tmux.wait_exit(DEADLINE), Exit::Code(0));
}

#[test]
fn a_failed_wait_shows_the_pane() {
    let tmux = Tmux::start(30, 3, "echo not yet; sleep 30", &[]);
    tmux.wait_for_text("not yet", DEADLINE);
    let err = catch_unwind(AssertUnwindSafe(|| {
        tmux.wait_for_text("ready", Duration::from_millis(200));
    }))
    .expect_err("must fail");
    let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("waiting for: \"ready\" in the pane"),
        "{message}"
    );
    assert!(
        message.contains("|not yet                       |"),
        "{message}"
    );
    assert!(message.contains("(running; pane pid"), "{message}");
    // Only real failures leave evidence behind.
    let line = message.lines().nth(1).unwrap_or_default();
    let path = line
        .strip_prefix("failure folder: ")
        .and_then(|l| l.split(" (replay:").next())
        .unwrap_or_else(|| panic!("no failure folder line in:\n{message}"));
    std::fs::remove_dir_all(path).unwrap_or_else(|e| panic!("{path}: {e}"));
}

#[test]
fn a_styled_snapshot_shows_the_colours_tmux_keeps() {
    let tmux = Tmux::start(
        24,
        3,
        r"printf '\033[?1h\033=\033[1;31merror\033[0m: \033[7m inv \033[0m\r\n\033[44m  \033[0m\033[38;5;208mx'; exec sleep 30",
        &[],
    );
    tmux.wait_for_text("error: ", DEADLINE);
    insta::assert_snapshot!("tmux_styled_24x3", tmux.snapshot_styled());
}

#[test]
fn the_recording_starts_at_the_first_byte() {
    // Written at once: a recording attached after the program started would
    // miss it.
    let tmux = Tmux::start(30, 4, "printf 'very first'; exec sleep 30", &[]);
    tmux.wait_for_text("very first", DEADLINE);
    e2e::wait::wait_for(
        "the first bytes in the recording",
        DEADLINE,
        || tmux.cast().contains(r#""o","very first"]"#),
        || tmux.cast(),
    );
}

#[test]
fn servers_are_private_and_killed_on_drop() {
    let a = Tmux::start(40, 5, "sleep 1000", &[]);
    let b = Tmux::start(40, 5, "sleep 1000", &[]);
    let list = |t: &Tmux| t.run(&["list-sessions", "-F", "#{socket_path}"]);
    assert_ne!(list(&a), list(&b));
    let pid: i32 = a.display("#{pane_pid}").parse().unwrap();
    drop(a);
    e2e::wait::wait_for(
        &format!("pane process {pid} to end with its Tmux"),
        DEADLINE,
        || e2e::procs::has_exited(pid),
        String::new,
    );
    assert_eq!(b.try_exit(), None, "the other server was disturbed");
}
