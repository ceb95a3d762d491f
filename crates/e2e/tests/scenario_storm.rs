//! Scenario 6: a resize storm. 50 resizes in about a quarter of a second;
//! the guest ends at the final size, side-channels never overlap each
//! other, and there are far fewer of them than resizes (coalescing: one push
//! in flight, newer sizes replace the queued one).

use std::time::Duration;

use e2e::wait::wait_for;
use e2e::{execs, guest, Exit, Machine, Term};

const DEADLINE: Duration = Duration::from_secs(20);

/// The storm: 50 sizes, the last one (120x40) the one that must stick.
fn storm_sizes() -> Vec<(u16, u16)> {
    let mut sizes: Vec<(u16, u16)> = (0..49).map(|i| (70 + i, 20 + i % 15)).collect();
    sizes.push((120, 40));
    sizes
}

/// Runs the storm in `mode`; asserts at most `max_side_channels`.
fn storm(mode: &str, max_side_channels: usize) {
    let label = format!("storm-{mode}");
    let machine = Machine::start("storm", &[]);
    let mut term = Term::spawn(
        100,
        30,
        machine.wrapped_command(&["--mode", mode], &guest::tui_exec_args(&label, &[])),
    );
    term.watch(&machine);
    term.wait_for_text(&guest::status_at(&label, 100, 30), DEADLINE);
    wait_for(
        "the wrapper to be ready",
        DEADLINE,
        || machine.wrapper_log().contains("event=ready "),
        || machine.wrapper_log(),
    );

    let sizes = storm_sizes();
    for &(cols, rows) in &sizes {
        term.resize(cols, rows);
        // Input pacing (50 x 5 ms = a quarter second), not a wait for a result.
        std::thread::sleep(Duration::from_millis(5));
    }
    term.wait_for_text(&guest::status_at(&label, 120, 40), DEADLINE);
    term.wait_for_text("believed 120x40", DEADLINE);
    term.send_keys("q");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));

    let log = machine.exec_log();
    assert!(execs::faulted(&log).is_empty(), "{log:#?}");
    let sides = execs::side_channels(&log);
    assert!(
        sides.len() <= max_side_channels,
        "{} side-channels for {} resizes (at most {max_side_channels} expected):\n{log:#?}",
        sides.len(),
        sizes.len()
    );
    assert!(
        execs::overlapping_lifetimes(&sides).is_empty(),
        "side-channels overlapping in time: {:?}\n{log:#?}",
        execs::overlapping_lifetimes(&sides)
    );
}

#[test]
fn a_storm_of_50_resizes_in_exec_mode_ends_at_the_final_size_with_at_most_5_serial_side_channels() {
    if e2e::backend::fake_only("exec.log (it counts the side channels)") {
        return;
    }
    // Each exec pays a 250 ms bring-up: ~2 during the storm, 1 after it.
    storm("exec", 5);
}

#[test]
fn a_storm_of_50_resizes_through_the_channel_ends_at_the_final_size_with_one_side_channel() {
    if e2e::backend::fake_only("exec.log (it counts the side channels)") {
        return;
    }
    // The persistent channel is the only side-channel (2 allowed: one
    // fallback exec should the channel die).
    storm("channel", 2);
}
