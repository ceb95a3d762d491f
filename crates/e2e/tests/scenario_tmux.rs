//! Scenario: `pty-resize` in a real tmux pane survives and follows
//! `tmux resize-window`, in both push modes, and no side channel ever
//! shares the pane as stdin. (What the seeds saw in tmux, and why it was
//! never the shared stdin: `scenario_seeds.rs`.)

use std::time::Duration;

use e2e::{execs, guest, Exit, Machine};

const DEADLINE: Duration = Duration::from_secs(20);

/// `pty-resize --mode MODE` in a 100x30 pane: resized with tmux itself to
/// 60x20 then 132x40; the session survives and the guest follows.
fn wrapped_in_tmux_follows_resize_window(mode: &str) {
    let label = format!("tmux-{mode}");
    let machine = Machine::start("wrapped-tmux", &[]);
    let argv = machine.wrapped_argv(&["--mode", mode], &guest::tui_exec_args(&label, &[]));
    let tmux = machine.tmux(100, 30, &argv);
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
    if machine.is_real_agent() {
        return; // no exec.log there: the screens and the exit are the evidence
    }
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
    if e2e::backend::skipped() {
        return;
    }
    wrapped_in_tmux_follows_resize_window("channel");
}

#[test]
fn pty_resize_inside_tmux_with_one_exec_per_resize_survives_and_follows_tmux_resize_window() {
    if e2e::backend::skipped() {
        return;
    }
    wrapped_in_tmux_follows_resize_window("exec");
}
