//! Self-tests of the failure folder: a wait that is meant to fail, on a
//! `Term` and on a `Tmux`, must leave `target/e2e-failures/<test>/` with a
//! replayable recording, the screens, an SVG of the failing screen, the log
//! tails and the process tree.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::{failure, hermetic, Term, Tmux};

const DEADLINE: Duration = Duration::from_secs(10);

/// Red "RED", then plain text; then it stays running, so the wait fails
/// with the program alive and a `sleep` in its process tree.
const PROGRAM: &str = r"printf '\033[31;1mRED\033[0m plain'; exec sleep 30";

/// Runs `wait`, which must panic; returns the panic message.
fn failing(wait: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(wait)).expect_err("the wait was meant to fail");
    err.downcast_ref::<String>().cloned().unwrap_or_default()
}

/// The folder the message names, checked to be this test's own.
fn folder_from(message: &str) -> PathBuf {
    let line = message
        .lines()
        .find_map(|l| l.strip_prefix("failure folder: "))
        .unwrap_or_else(|| panic!("no folder line in:\n{message}"));
    let path = PathBuf::from(line.split(" (replay:").next().unwrap());
    assert_eq!(path, failure::failures_root().join(failure::folder_name()));
    assert!(
        path.starts_with(e2e::bins::profile_dir().parent().unwrap()),
        "{}",
        path.display()
    );
    path
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
}

/// Checks `text` against asciicast v2: a header object with version 2,
/// positive width and height, a timestamp and an env object; then events
/// `[time, code, data]` with times that never decrease, codes `o`, `i` or
/// `r`, string data, and `COLSxROWS` for `r`. Returns the events.
fn check_asciicast_v2(text: &str) -> Vec<(f64, String, String)> {
    let mut lines = text.lines();
    let header: serde_json::Value =
        serde_json::from_str(lines.next().expect("a header line")).expect("header is JSON");
    assert_eq!(header["version"], 2, "{header}");
    for field in ["width", "height"] {
        assert!(header[field].as_u64().is_some_and(|n| n > 0), "{header}");
    }
    assert!(header["timestamp"].as_u64().is_some(), "{header}");
    assert!(header["env"].is_object(), "{header}");
    let mut events = Vec::new();
    let mut last = 0.0;
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("event is JSON");
        let ev = v
            .as_array()
            .unwrap_or_else(|| panic!("not an array: {line}"));
        assert_eq!(ev.len(), 3, "{line}");
        let t = ev[0].as_f64().unwrap_or_else(|| panic!("time: {line}"));
        assert!(t >= last, "time goes back: {line}");
        last = t;
        let code = ev[1].as_str().expect("code").to_string();
        assert!(["o", "i", "r"].contains(&code.as_str()), "{line}");
        let data = ev[2].as_str().expect("data").to_string();
        if code == "r" {
            let (c, r) = data.split_once('x').expect("COLSxROWS");
            assert!(
                c.parse::<u16>().is_ok() && r.parse::<u16>().is_ok(),
                "{line}"
            );
        }
        events.push((t, code, data));
    }
    events
}

/// Replays the cast with `asciinema cat` into a terminal (asciinema 2.2
/// needs a `/dev/tty`) when asciinema is installed, and waits for `expect`
/// on the screen; says so on the terminal when it is not installed (libtest
/// does not capture direct writes to stderr).
fn replay_with_asciinema(cast: &Path, expect: &str) {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join("asciinema").is_file());
    if !found {
        e2e::note(&format!(
            "asciinema is not installed: {} checked against the asciicast v2 \
             schema only, not replayed",
            cast.display()
        ));
        return;
    }
    // A config folder of its own: asciinema creates its config home on first
    // use, and two first uses at once (tests run in parallel, on a fresh
    // machine) race on it (`FileExistsError`), failing the replay.
    let config = tempfile::tempdir().expect("asciinema config folder");
    let mut cmd = hermetic::command("asciinema");
    cmd.arg("cat")
        .arg(cast)
        .env("ASCIINEMA_CONFIG_HOME", config.path());
    let mut term = Term::spawn(80, 10, cmd);
    term.wait_for_text(expect, DEADLINE);
    assert_eq!(
        term.wait_exit(DEADLINE),
        e2e::Exit::Code(0),
        "{}",
        term.render()
    );
}

/// Checks the SVG is XML with the terminal's geometry, the text, a red
/// fill for the red cells, and the cursor.
fn check_svg(svg: &str, cols: u32, rows: u32) {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}:\n{svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let px = |a: &str| root.attribute(a).and_then(|v| v.parse::<u32>().ok());
    assert_eq!(px("width"), Some(cols * 9), "{svg}");
    assert_eq!(px("height"), Some(rows * 18), "{svg}");
    let texts: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .collect();
    let red = texts
        .iter()
        .find(|n| n.text() == Some("RED"))
        .unwrap_or_else(|| panic!("no <text>RED</text> in:\n{svg}"));
    assert_eq!(red.attribute("fill"), Some("#cd0000"), "{svg}");
    assert_eq!(red.attribute("font-weight"), Some("bold"), "{svg}");
    assert!(
        texts
            .iter()
            .any(|n| n.text().is_some_and(|t| t.contains("plain"))),
        "{svg}"
    );
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name("rect") && n.attribute("class") == Some("cursor")),
        "no cursor in:\n{svg}"
    );
}

/// The checks both kinds of session share.
fn check_folder(dir: &Path, message: &str, cols: u32, rows: u32, context_log: &str) {
    for file in e2e::failure::FOLDER_FILES {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }
    assert!(read(dir, "report.txt").contains("waiting for: \"ready\""));
    assert!(message.contains("waiting for: \"ready\""), "{message}");

    let events = check_asciicast_v2(&read(dir, "session.cast"));
    let output: String = events
        .iter()
        .filter(|e| e.1 == "o")
        .map(|e| e.2.as_str())
        .collect();
    assert!(output.contains("\u{1b}[31;1mRED"), "{output:?}");
    assert!(
        events
            .iter()
            .any(|e| e.1 == "r" && e.2 == format!("{cols}x{rows}")),
        "no resize event: {events:?}"
    );
    assert!(
        events.iter().any(|e| e.1 == "i" && e.2 == "x"),
        "no key event: {events:?}"
    );
    replay_with_asciinema(&dir.join("session.cast"), "RED");

    let screens = read(dir, "screens.txt");
    assert!(screens.contains("--- settled screen 1 of "), "{screens}");
    assert!(
        screens.contains("--- the screen at the failure"),
        "{screens}"
    );
    assert!(
        screens.contains(&format!("size {cols}x{rows} ")),
        "{screens}"
    );
    assert!(screens.contains("|RED plain"), "{screens}");

    check_svg(&read(dir, "screen.svg"), cols, rows);

    let procs = read(dir, "processes.txt");
    assert!(procs.contains("sleep 30"), "{procs}");

    let log = read(dir, "logs/exec.log");
    assert_eq!(log, context_log, "log tail");
}

fn sh(script: &str) -> Command {
    let mut cmd = hermetic::command("sh");
    cmd.arg("-c").arg(script);
    cmd
}

#[test]
fn a_failed_term_wait_writes_the_failure_folder() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("exec.log");
    std::fs::write(&log, "exec one\nexec two\n").unwrap();
    let mut term = Term::spawn(40, 6, sh(PROGRAM));
    term.add_context("exec.log", &log);
    term.wait_for_text("RED plain", DEADLINE);
    term.send_keys("x");
    term.resize(36, 5);
    let message = failing(|| term.wait_for_text("ready", Duration::from_millis(300)));
    let folder = folder_from(&message);
    check_folder(&folder, &message, 36, 5, "exec one\nexec two\n");
    // Only this test's own evidence goes: a real failure's folder stays.
    std::fs::remove_dir_all(folder).unwrap();
}

#[test]
fn a_failed_tmux_wait_writes_the_failure_folder() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("exec.log");
    std::fs::write(&log, "exec one\n").unwrap();
    let mut tmux = Tmux::start(40, 6, PROGRAM, &[]);
    tmux.add_context("exec.log", &log);
    tmux.wait_for_text("RED plain", DEADLINE);
    tmux.send_keys("x");
    tmux.resize(36, 5);
    let message = failing(|| tmux.wait_for_text("ready", Duration::from_millis(300)));
    let folder = folder_from(&message);
    check_folder(&folder, &message, 36, 5, "exec one\n");
    std::fs::remove_dir_all(folder).unwrap();
}

#[test]
fn a_new_failure_of_the_same_test_replaces_its_folder() {
    let mut term = Term::spawn(20, 3, sh("echo first; exec sleep 30"));
    term.wait_for_text("first", DEADLINE);
    let folder = folder_from(&failing(|| {
        term.wait_for_text("never", Duration::from_millis(100))
    }));
    std::fs::write(folder.join("left-by-hand"), "x").unwrap();
    let again = folder_from(&failing(|| {
        term.wait_for_text("still never", Duration::from_millis(100))
    }));
    assert_eq!(folder, again);
    assert!(!folder.join("left-by-hand").exists());
    assert!(read(&folder, "report.txt").contains("still never"));
    std::fs::remove_dir_all(folder).unwrap();
}
