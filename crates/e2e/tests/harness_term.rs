//! Self-tests of `e2e::Term`, with plain programs whose output is known.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use e2e::{bins, hermetic, Exit, Term};

const DEADLINE: Duration = Duration::from_secs(10);

fn sh(script: &str) -> std::process::Command {
    let mut cmd = hermetic::command("sh");
    cmd.arg("-c").arg(script);
    cmd
}

#[test]
fn the_program_sees_the_chosen_size_from_its_first_output() {
    // Repeated: a size set after the program starts would lose this race
    // some of the time.
    for _ in 0..10 {
        let mut term = Term::spawn(
            100,
            30,
            hermetic::command("stty").arg("size").to_owned_cmd(),
        );
        assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
        let first_line = term.contents().lines().next().unwrap_or("").to_string();
        assert_eq!(first_line, "30 100", "{}", term.render());
    }
}

#[test]
fn a_zero_size_pty_is_zero_for_the_program() {
    let mut term = Term::spawn(0, 0, hermetic::command("stty").arg("size").to_owned_cmd());
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
    assert_eq!(term.contents().lines().next(), Some("0 0"));
    assert!(
        term.render().starts_with("pty 0x0 size 80x24 "),
        "{}",
        term.render()
    );
}

#[test]
fn resize_reaches_the_program_and_the_emulator() {
    let mut term = Term::spawn(100, 30, sh("stty size; while read l; do stty size; done"));
    term.wait_for_text("30 100", DEADLINE);
    term.resize(60, 20);
    term.send_keys("\r");
    term.wait_for_text("20 60", DEADLINE);
    assert!(term.render().starts_with("size 60x20 "));
    term.send_keys("\x04"); // EOF ends the loop
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
}

#[test]
fn exit_codes_and_signals_are_reported() {
    let mut term = Term::spawn(80, 24, sh("exit 3"));
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(3));
    let mut term = Term::spawn(80, 24, sh("kill -TERM $$"));
    assert_eq!(term.wait_exit(DEADLINE), Exit::Signal(15));
}

#[test]
fn snapshot_of_known_output() {
    let mut term = Term::spawn(
        20,
        4,
        sh(r"printf 'hello\r\n  world  \r\n\033[?25l\033[4;18Hend'; sleep 30"),
    );
    term.wait_for_text("end", DEADLINE);
    insta::assert_snapshot!("printf_20x4", term.snapshot());
}

#[test]
fn guest_tui_snapshots_before_and_after_a_resize() {
    let mut cmd = hermetic::command(bins::guest_tui());
    cmd.args(["--label", "snap"]);
    let mut term = Term::spawn(60, 8, cmd);
    term.wait_for_text(
        "guest-tui snap size 60x8 first 60x8 frames 1 winch 0",
        DEADLINE,
    );
    insta::assert_snapshot!("guest_tui_60x8", term.snapshot());
    term.resize(56, 6);
    term.wait_for_text("size 56x6 first 60x8 frames 2 winch 1", DEADLINE);
    insta::assert_snapshot!("guest_tui_resized_56x6", term.snapshot());
    term.send_keys("q");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
    insta::assert_snapshot!("guest_tui_after_q", term.snapshot());
}

#[test]
fn a_failed_wait_shows_condition_screen_bytes_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("exec.log");
    std::fs::write(&log, "first line\nlast line of the log\n").unwrap();
    let mut term = Term::spawn(30, 3, sh("printf 'not yet\\033[1m'; sleep 30"));
    term.add_context("exec.log", &log);
    term.wait_for_text("not yet", DEADLINE);
    let err = catch_unwind(AssertUnwindSafe(|| {
        term.wait_for_text("ready", Duration::from_millis(200));
    }))
    .expect_err("waiting for text that never comes must fail");
    let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("waiting for: \"ready\" on screen"),
        "{message}"
    );
    assert!(message.contains("gave up after 200ms"), "{message}");
    assert!(
        message.contains("|not yet                       |"),
        "{message}"
    );
    assert!(message.contains("running"), "{message}");
    assert!(message.contains("not yet\\u{1b}[1m"), "{message}");
    assert!(message.contains("last line of the log"), "{message}");
    remove_failure_folder(&message);
}

/// Removes the failure folder a deliberately failed wait left (its path is
/// on the message's second line), so only real failures leave evidence.
fn remove_failure_folder(message: &str) {
    let line = message.lines().nth(1).unwrap_or_default();
    let path = line
        .strip_prefix("failure folder: ")
        .and_then(|l| l.split(" (replay:").next())
        .unwrap_or_else(|| panic!("no failure folder line in:\n{message}"));
    std::fs::remove_dir_all(path).unwrap_or_else(|e| panic!("{path}: {e}"));
}

/// Reads one terminal reply ending in `$1` in raw mode (without echo, so
/// the reply does not land on the screen), then shows it with ESC as `^[`.
/// `read` blocks until the reply comes: without an answer the program hangs.
const ASK: &str = r#"ask() { stty raw -echo; printf "$2"; IFS= read -r -d "$1" reply; stty sane;
  printf '%s=%s\n' "$3" "$(printf '%s' "$reply" | sed 's/\x1b/^[/g')"; }"#;

#[test]
fn a_program_that_blocks_on_a_cursor_position_query_gets_the_answer() {
    // The cursor is at row 2, col 5 (from 1) when the query is written; the
    // text after the query must not move the reported position.
    let script = format!(r"{ASK}; printf 'one\r\ntwo\033[6nxx'; ask R '' cpr; exec sleep 30");
    let mut cmd = hermetic::command("bash");
    cmd.arg("-c").arg(script);
    let mut term = Term::spawn(40, 6, cmd);
    term.wait_for_text("cpr=", DEADLINE);
    assert!(term.contents().contains("cpr=^[[2;4"), "{}", term.render());
}

#[test]
fn device_attributes_and_the_window_size_are_answered() {
    let script = format!(r"{ASK}; ask c '\033[c' da; ask t '\033[18t' size; exec sleep 30");
    let mut cmd = hermetic::command("bash");
    cmd.arg("-c").arg(script);
    let mut term = Term::spawn(50, 7, cmd);
    term.wait_for_text("size=", DEADLINE);
    let text = term.contents();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"da=^[[?1;2"), "{}", term.render());
    assert!(lines.contains(&"size=^[[8;7;50"), "{}", term.render());
    // The answers are input the program got: the recording shows them.
    assert!(
        term.cast().contains(r#""i","\u001b[?1;2c"]"#),
        "{}",
        term.cast()
    );
}

#[test]
fn a_styled_snapshot_shows_colours_attributes_and_input_modes() {
    let mut term = Term::spawn(
        24,
        3,
        sh(
            r"printf '\033[?1h\033=\033[1;31merror\033[0m: \033[7m inv \033[0m\r\n\033[44m  \033[0m\033[38;5;208mx'; exec sleep 30",
        ),
    );
    term.wait_for_text("error: ", DEADLINE);
    insta::assert_snapshot!("styled_24x3", term.snapshot_styled());
}

#[test]
fn dropping_the_term_kills_the_whole_process_group() {
    let mut term = Term::spawn(80, 24, sh("sleep 1000 & echo bg=$!; wait"));
    term.wait_until("the background pid", DEADLINE, |s| {
        s.contents()
            .lines()
            .any(|l| l.starts_with("bg=") && l.len() > 3)
    });
    let pid: i32 = term
        .contents()
        .lines()
        .find_map(|l| l.strip_prefix("bg="))
        .and_then(|p| p.trim().parse().ok())
        .expect("pid");
    drop(term);
    // Gone, or a zombie waiting for init to reap it: either way not running.
    e2e::wait::wait_for(
        &format!("sleep {pid} to end with its Term"),
        DEADLINE,
        || e2e::procs::has_exited(pid),
        String::new,
    );
}

#[test]
fn the_environment_is_scrubbed() {
    let mut term = Term::spawn(200, 10, hermetic::command("env").to_owned_cmd());
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
    let mut names: Vec<String> = term
        .contents()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["HOME", "LANG", "PATH", "TERM"],
        "{}",
        term.contents()
    );
    assert!(term.contents().contains("TERM=xterm-256color"));
    assert!(term.contents().contains("LANG=C.UTF-8"));
}

/// `Command::arg` returns `&mut Command`; tests want the owned value.
trait ToOwnedCmd {
    fn to_owned_cmd(&mut self) -> std::process::Command;
}

impl ToOwnedCmd for std::process::Command {
    fn to_owned_cmd(&mut self) -> std::process::Command {
        std::mem::replace(self, std::process::Command::new("true"))
    }
}
