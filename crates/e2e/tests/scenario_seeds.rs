//! The seeds' two crashes, reproduced by their real mechanism
//! (`../shared/smolvm-0.8.0.md`, "The three bugs"): a naive bridge whose
//! first push touches the machine inside the session's crun window — after
//! smolvm's `started` has put the terminal in raw mode, before the session's
//! container runs — loses the session. Either crun reads a torn
//! `config.json` (exit 1, its message in-band) or the not-yet-running
//! container is deleted as stale (exit 137), as `FAKE_SMOLVM_RACE` chooses.
//! In tmux and outside alike; the seeds' `stdin=/dev/null` fix does not save
//! it, their 2-second delay does.

use std::time::Duration;

use e2e::{execs, guest, Exit, Machine, Term};
use fake_smolvm::exec_log::{ExecRecord, Fault};

const DEADLINE: Duration = Duration::from_secs(20);

const TRAILING_GARBAGE: &str = "load `config.json`: parse error: trailing garbage";

/// A 1.5 s crun window (a slow container, like the seeds' claude): the
/// session's window runs from ~0.25 s to ~1.75 s after launch.
const SLOW_CRUN: (&str, &str) = ("FAKE_SMOLVM_CRUN_MS", "1500");

/// The naive first push 0.3 s after launch: its own 0.25 s bring-up makes it
/// touch the machine at ~0.55 s, well inside the window.
const EARLY_DEVNULL: [&str; 4] = ["--stdin", "devnull", "--initial-delay", "0.3"];

/// The same, sharing the terminal as stdin (the seeds' first suspect).
const EARLY_INHERIT: [&str; 4] = ["--stdin", "inherit", "--initial-delay", "0.3"];

/// The seeds' final form: stdin `/dev/null`, first push after 2 s.
const SEEDS_FINAL: [&str; 4] = ["--stdin", "devnull", "--initial-delay", "2"];

/// Where the naive bridge runs.
#[derive(Clone, Copy, Debug)]
enum Place {
    Pty,
    Tmux,
}

/// Runs the naive bridge around guest-tui at 100x30 and returns how it
/// ended, with the machine's exec log. `expect` is the text the guest must
/// show before `q` is sent (for sessions that survive).
fn naive(
    place: Place,
    race: &str,
    opts: &[&str],
    expect: Option<&str>,
) -> (Exit, Vec<ExecRecord>, Machine) {
    let machine = Machine::start("seed", &[SLOW_CRUN, ("FAKE_SMOLVM_RACE", race)]);
    let args = guest::tui_exec_args("naive", &[]);
    let exit = match place {
        Place::Pty => {
            let mut term = Term::spawn(100, 30, machine.naive_command(opts, &args));
            term.watch(&machine);
            if let Some(text) = expect {
                term.wait_for_text(text, DEADLINE);
                term.send_keys("q");
            }
            term.wait_exit(DEADLINE)
        }
        Place::Tmux => {
            let tmux = machine.tmux(100, 30, &machine.naive_argv(opts, &args));
            if let Some(text) = expect {
                tmux.wait_for_text(text, DEADLINE);
                tmux.send_keys("q");
            }
            tmux.wait_exit(DEADLINE)
        }
    };
    let log = machine.exec_log();
    (exit, log, machine)
}

/// The session was lost to `fault` with `code`, and the naive push touched
/// the machine inside its crun window.
fn assert_lost(place: Place, exit: Exit, log: &[ExecRecord], fault: Fault, code: i32) {
    assert_eq!(exit, Exit::Code(code), "{place:?}: {log:#?}");
    let main = execs::main_exec(log);
    assert_eq!(main.fault, Some(fault), "{place:?}: {log:#?}");
    assert_eq!(main.exit_code, code, "{place:?}: {log:#?}");
    assert_eq!(main.tmux, matches!(place, Place::Tmux), "{log:#?}");
    assert!(
        main.bringup_end_ms.is_none(),
        "the guest command never started: {main:#?}"
    );
    let side = execs::side_channels(log);
    assert!(
        side.iter().any(|s| s.touched_inside_window_of(main)),
        "the naive push touched the machine inside the crun window: {log:#?}"
    );
}

#[test]
fn a_naive_push_inside_the_crun_window_tears_config_json_exit_1() {
    if e2e::backend::fake_only(
        "FAKE_SMOLVM_RACE (a forced outcome) and exec.log (scenario_real_agent has the real race)",
    ) {
        return;
    }
    let (exit, log, _m) = naive(Place::Pty, "exit1", &EARLY_DEVNULL, None);
    assert_lost(Place::Pty, exit, &log, Fault::ConfigRace, 1);
}

#[test]
fn a_naive_push_inside_the_crun_window_tears_config_json_exit_1_in_tmux() {
    if e2e::backend::fake_only(
        "FAKE_SMOLVM_RACE (a forced outcome) and exec.log (scenario_real_agent has the real race)",
    ) {
        return;
    }
    let (exit, log, _m) = naive(Place::Tmux, "exit1", &EARLY_DEVNULL, None);
    assert_lost(Place::Tmux, exit, &log, Fault::ConfigRace, 1);
}

#[test]
fn a_naive_push_inside_the_crun_window_gets_the_session_deleted_exit_137() {
    if e2e::backend::fake_only(
        "FAKE_SMOLVM_RACE (a forced outcome) and exec.log (scenario_real_agent has the real race)",
    ) {
        return;
    }
    let (exit, log, _m) = naive(Place::Pty, "sigkill", &EARLY_DEVNULL, None);
    assert_lost(Place::Pty, exit, &log, Fault::StaleKill, 137);
}

#[test]
fn a_naive_push_inside_the_crun_window_gets_the_session_deleted_exit_137_in_tmux() {
    if e2e::backend::fake_only(
        "FAKE_SMOLVM_RACE (a forced outcome) and exec.log (scenario_real_agent has the real race)",
    ) {
        return;
    }
    let (exit, log, _m) = naive(Place::Tmux, "sigkill", &EARLY_DEVNULL, None);
    assert_lost(Place::Tmux, exit, &log, Fault::StaleKill, 137);
}

#[test]
fn crun_prints_the_tear_in_band_on_the_raw_terminal() {
    if e2e::backend::fake_only(
        "FAKE_SMOLVM_RACE (a forced outcome) and exec.log (scenario_real_agent has the real race)",
    ) {
        return;
    }
    let machine = Machine::start("seed-msg", &[SLOW_CRUN]);
    let args = guest::tui_exec_args("naive", &[]);
    let mut term = Term::spawn(100, 30, machine.naive_command(&EARLY_DEVNULL, &args));
    term.watch(&machine);
    term.wait_for_text(TRAILING_GARBAGE, DEADLINE);
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(1));
    assert!(
        !term.contents().contains("Error:"),
        "crun's message arrives as guest output, not as smolvm's `Error:`:\n{}",
        term.contents()
    );
}

#[test]
fn sharing_the_pane_as_stdin_is_not_the_cause_in_tmux() {
    if e2e::backend::fake_only(
        "FAKE_SMOLVM_RACE (a forced outcome) and exec.log (scenario_real_agent has the real race)",
    ) {
        return;
    }
    // The seeds' first suspect, inherit, loses exactly like devnull …
    let (exit, log, _m) = naive(Place::Tmux, "exit1", &EARLY_INHERIT, None);
    assert_lost(Place::Tmux, exit, &log, Fault::ConfigRace, 1);
    assert!(
        execs::side_channels(&log)
            .iter()
            .any(|s| s.stdin.starts_with("tty:")),
        "the naive push shared the pane: {log:#?}"
    );
}

#[test]
fn sharing_the_pane_as_stdin_after_the_window_leaves_the_session_alive_in_tmux() {
    if e2e::backend::fake_only(
        "FAKE_SMOLVM_RACE (a forced outcome) and exec.log (scenario_real_agent has the real race)",
    ) {
        return;
    }
    // … and sharing the pane after the window harms nothing.
    let opts = ["--stdin", "inherit", "--initial-delay", "2"];
    let (exit, log, _m) = naive(
        Place::Tmux,
        "exit1",
        &opts,
        Some(&guest::status_at("naive", 100, 30)),
    );
    assert_eq!(exit, Exit::Code(0), "{log:#?}");
    assert!(execs::faulted(&log).is_empty(), "{log:#?}");
    assert!(execs::overlapping_bringups(&log).is_empty(), "{log:#?}");
}

/// The seeds' final form survives (and resizes the guest once, at 2 s).
fn seeds_final_survives(place: Place, race: &str) {
    let (exit, log, _m) = naive(
        place,
        race,
        &SEEDS_FINAL,
        Some(&guest::status_at("naive", 100, 30)),
    );
    assert_eq!(exit, Exit::Code(0), "{place:?}: {log:#?}");
    assert!(execs::faulted(&log).is_empty(), "{log:#?}");
    assert!(execs::overlapping_bringups(&log).is_empty(), "{log:#?}");
    assert_eq!(execs::main_exec(&log).exit_code, 0);
}

#[test]
fn the_seeds_2_second_delay_survives_either_outcome() {
    if e2e::backend::fake_only(
        "FAKE_SMOLVM_RACE (a forced outcome) and exec.log (scenario_real_agent has the real race)",
    ) {
        return;
    }
    seeds_final_survives(Place::Pty, "exit1");
    seeds_final_survives(Place::Pty, "sigkill");
}

#[test]
fn the_seeds_2_second_delay_survives_in_tmux() {
    if e2e::backend::fake_only(
        "FAKE_SMOLVM_RACE (a forced outcome) and exec.log (scenario_real_agent has the real race)",
    ) {
        return;
    }
    seeds_final_survives(Place::Tmux, "sigkill");
}
