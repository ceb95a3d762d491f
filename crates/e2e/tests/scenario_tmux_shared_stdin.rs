//! Scenario 4: the shared-stdin abort (seed 1), in a real tmux.
//!
//! A naive bridge whose side-channel inherits the pane's stdin makes smolvm
//! kill the main session (exit 137) — inside tmux only. Its first push is
//! deferred by a second (`--initial-delay 1`), after the main exec's
//! bring-up, so the config.json race (scenario 5) cannot be what fires.
//! `pty-resize` in the same pane survives and follows `tmux resize-window`.

use std::time::Duration;

use e2e::{execs, guest, shell, Exit, Machine, Term, Tmux};
use fake_smolvm::exec_log::Fault;

const DEADLINE: Duration = Duration::from_secs(20);

fn start_tmux(machine: &Machine, cols: u16, rows: u16, argv: &[String]) -> Tmux {
    let env = machine.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut tmux = Tmux::start(cols, rows, &shell::join(argv), &env);
    tmux.watch(machine);
    tmux
}

const NAIVE_INHERIT: [&str; 4] = ["--stdin", "inherit", "--initial-delay", "1"];

#[test]
fn naive_side_channel_sharing_the_pane_stdin_kills_the_session_in_tmux() {
    let machine = Machine::start("naive-stdin", &[]);
    let argv = machine.naive_argv(&NAIVE_INHERIT, &guest::tui_exec_args("naive", &[]));
    let tmux = start_tmux(&machine, 100, 30, &argv);
    tmux.wait_for_text("guest-tui naive size 0x0", DEADLINE);

    // The session is dead: the pane's command ends by itself, with the
    // killed session's code passed through the naive bridge.
    assert_eq!(tmux.wait_exit(DEADLINE), Exit::Code(137));
    let log = machine.exec_log();
    let main = execs::main_exec(&log);
    assert_eq!(main.fault, Some(Fault::SharedStdin), "{log:#?}");
    assert_eq!(main.exit_code, 137, "{log:#?}");
    assert!(main.tmux, "{log:#?}");
    let sides = execs::side_channels(&log);
    assert!(
        sides.iter().any(|s| s.stdin.starts_with("tty:")),
        "the naive side-channel shares the pane as stdin: {log:#?}"
    );
    assert!(
        execs::overlapping_bringups(&log).is_empty(),
        "the push came after bring-up, so this is not the config.json race: {log:#?}"
    );
}

#[test]
fn the_same_naive_side_channel_outside_tmux_leaves_the_session_alive() {
    let machine = Machine::start("naive-stdin-out", &[]);
    let mut term = Term::spawn(
        100,
        30,
        machine.naive_command(&NAIVE_INHERIT, &guest::tui_exec_args("naive", &[])),
    );
    term.watch(&machine);
    term.wait_for_text("guest-tui naive size 0x0", DEADLINE);
    // The naive push resizes every guest PTY: the guest redraws at 100x30.
    term.wait_for_text("guest-tui naive size 100x30", DEADLINE);
    // The side-channel's record is written when it ends, after its own
    // bring-up (250 ms) — longer than the abort's delay (100 ms): had the
    // abort fired, the session would be dead by now.
    let side_logged = || {
        execs::side_channels(&machine.exec_log())
            .iter()
            .any(|s| s.stdin.starts_with("tty:"))
    };
    term.wait_until("the naive side-channel to end", DEADLINE, |_| side_logged());
    assert_eq!(term.try_exit(), None, "the session died outside tmux");

    term.send_keys("q");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
    let log = machine.exec_log();
    let main = execs::main_exec(&log);
    assert_eq!(main.fault, None, "{log:#?}");
    assert_eq!(main.exit_code, 0, "{log:#?}");
    assert!(!main.tmux, "{log:#?}");
}

/// `pty-resize --mode MODE` in a 100x30 pane: resized with tmux itself to
/// 60x20 then 132x40; the session survives and the guest follows.
fn wrapped_in_tmux_follows_resize_window(mode: &str) {
    let label = format!("tmux-{mode}");
    let machine = Machine::start("wrapped-tmux", &[]);
    let argv = machine.wrapped_argv(&["--mode", mode], &guest::tui_exec_args(&label, &[]));
    let tmux = start_tmux(&machine, 100, 30, &argv);
    tmux.wait_for_text(
        &format!("guest-tui {label} size 100x30 first 100x30 frames 1"),
        DEADLINE,
    );
    insta::assert_snapshot!(format!("tmux_{mode}_100x30"), tmux.snapshot());

    for (cols, rows) in [(60, 20), (132, 40)] {
        tmux.resize(cols, rows);
        tmux.wait_for_text(&guest::status_at(&label, cols, rows), DEADLINE);
    }
    // Counters masked: one push may reach the guest as one SIGWINCH or two.
    insta::assert_snapshot!(
        format!("tmux_{mode}_resized_132x40"),
        guest::mask_counters(&tmux.snapshot())
    );

    tmux.send_keys("q");
    assert_eq!(tmux.wait_exit(DEADLINE), Exit::Code(0));
    let log = machine.exec_log();
    let main = execs::main_exec(&log);
    assert!(main.tmux, "{log:#?}");
    assert!(execs::faulted(&log).is_empty(), "{log:#?}");
    let sides = execs::side_channels(&log);
    assert!(
        !sides.is_empty(),
        "the resizes went through side-channels: {log:#?}"
    );
    for side in sides {
        assert!(
            !side.stdin.starts_with("tty:"),
            "a side-channel must never share the pane: {side:#?}"
        );
    }
}

#[test]
fn pty_resize_inside_tmux_survives_and_follows_tmux_resize_window() {
    wrapped_in_tmux_follows_resize_window("channel");
}

#[test]
fn pty_resize_inside_tmux_with_one_exec_per_resize_survives_and_follows_tmux_resize_window() {
    wrapped_in_tmux_follows_resize_window("exec");
}
