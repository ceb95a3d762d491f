//! `pty-resize` on smolvm 0.8.0's real timeline: the terminal goes raw at
//! `started`, while the session's container is still being set up (the crun
//! window), and any exec touching the machine inside that window loses the
//! session (`scenario_seeds.rs`). The wrapper must never do that — not at a
//! resize the moment the terminal goes raw, not across back-to-back short
//! sessions, not among neighbouring sessions on one machine, not with a slow
//! crun — and still end every session at the host's final size. In a real
//! PTY and in tmux; `scripts/test` runs these with the real 0.8.0 client too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::place::{Place, Screen};
use e2e::wait::wait_for;
use e2e::{execs, guest, Exit, Machine};
use fake_smolvm::exec_log::ExecRecord;

const DEADLINE: Duration = Duration::from_secs(30);

/// The wrapper's decision log for one session.
fn events(log: &Path) -> Vec<pty_resize::log::Record> {
    Machine::wrapper_events(log)
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Where event `name` first appears in `log` (panics with the log if never).
fn first(log: &Path, name: &str) -> usize {
    events(log)
        .iter()
        .position(|r| r.event == name)
        .unwrap_or_else(|| panic!("no `{name}` in {}:\n{}", log.display(), log_text(log)))
}

/// No exec touched the machine inside another's crun window, no session
/// was lost, and every `-t` session ended with 0.
fn assert_no_session_lost(log: &[ExecRecord], sessions: usize) {
    assert_eq!(
        log.iter().filter(|r| r.tty).count(),
        sessions,
        "one -t exec per session: {log:#?}"
    );
    assert!(
        execs::overlapping_bringups(log).is_empty(),
        "an exec touched the machine inside a crun window: {:?}\n{log:#?}",
        execs::overlapping_bringups(log)
    );
    assert!(execs::faulted(log).is_empty(), "{log:#?}");
    assert!(
        log.iter().filter(|r| r.tty).all(|r| r.exit_code == 0),
        "{log:#?}"
    );
}

/// One wrapped guest-tui session at 100x30: resized to 90x25 the moment the
/// wrapper sees smolvm switch the terminal to raw (inside the crun window),
/// quit once the guest shows 90x25. Returns its decision log.
fn resize_at_raw(machine: &Machine, place: Place, n: usize, opts: &[&str]) -> PathBuf {
    let label = format!("raw-{n}");
    let log = machine.home().join(format!("session-{n}.log"));
    let argv = machine.wrapped_argv_logging_to(&log, opts, &guest::tui_exec_args(&label, &[]));
    let mut screen = Screen::open(place, machine, 100, 30, &argv, Some(&log));
    wait_for(
        "the wrapper to see smolvm's switch to raw mode",
        DEADLINE,
        || events(&log).iter().any(|r| r.event == "started"),
        || log_text(&log),
    );
    screen.resize(90, 25);
    screen.wait_for_text(&guest::status_at(&label, 90, 25), DEADLINE);
    // On the agent transport the vm_exec that sized the guest may still be
    // on its way back (the guest shows the size before the agent answers):
    // readiness and the push are logged when its answer arrives. Quitting
    // before would end the session with that answer unread.
    wait_for(
        "the wrapper to log readiness and the push of 90x25",
        DEADLINE,
        || {
            let ev = events(&log);
            ev.iter().any(|r| r.event == "ready")
                && ev
                    .iter()
                    .any(|r| r.event == "push-done" && r.get("size") == Some("90x25"))
        },
        || log_text(&log),
    );
    screen.send_keys("q");
    assert_eq!(screen.wait_exit(DEADLINE), Exit::Code(0), "{place:?}");
    // The size was held back until the session's program could take it:
    // pushed after readiness (CLI transports: raw + settle), or by the very
    // probe that found the program (agent transport: readiness is that
    // finding, logged once its answer is back).
    let size_90 = events(&log)
        .iter()
        .position(|r| r.event == "size" && r.get("size") == Some("90x25"))
        .unwrap_or_else(|| panic!("no size=90x25 in:\n{}", log_text(&log)));
    let started = first(&log, "started");
    let ready = first(&log, "ready");
    let applied = events(&log)
        .iter()
        .position(|r| r.event == "push-done" && r.get("size") == Some("90x25"))
        .unwrap_or_else(|| panic!("no push-done size=90x25 in:\n{}", log_text(&log)));
    let via = events(&log)[ready].get("via").unwrap_or("").to_string();
    let order_ok = match via.as_str() {
        "marker" => started < size_90 && size_90 < applied,
        _ => started < size_90 && size_90 < ready && ready < applied,
    };
    assert!(
        order_ok,
        "started < size 90x25 < ready < push-done (via marker: the probe that found the program may carry it) expected:\n{}",
        log_text(&log)
    );
    log
}

/// `total` launches of [`resize_at_raw`], `parallel` machines at a time
/// (each machine runs its share back to back), alternating PTY and tmux.
fn launches(total: usize, parallel: usize, env: &[(&str, &str)], opts: &[&str]) {
    let test = std::thread::current()
        .name()
        .unwrap_or("launches")
        .to_string();
    std::thread::scope(|s| {
        for m in 0..parallel {
            // Named, so a failure folder says which machine's launches failed.
            let name = format!("{test}-machine-{m}");
            std::thread::Builder::new()
                .name(name)
                .spawn_scoped(s, move || {
                    let machine = Machine::start(&format!("raw{m}"), env);
                    let mine: Vec<usize> = (m..total).step_by(parallel).collect();
                    for &n in &mine {
                        let place = if n % 2 == 0 { Place::Pty } else { Place::Tmux };
                        resize_at_raw(&machine, place, n, opts);
                    }
                    assert_no_session_lost(&machine.exec_log(), mine.len());
                })
                .expect("spawn a launcher thread");
        }
    });
}

#[test]
fn fifty_launches_with_a_resize_the_moment_the_terminal_goes_raw_lose_no_session() {
    if e2e::backend::fake_only("exec.log (who touched the machine inside whose crun window); scenario_real_agent has the bring-up set") {
        return;
    }
    launches(50, 10, &[], &[]);
}

#[test]
fn twenty_launches_with_a_1500_ms_crun_window_lose_no_session() {
    if e2e::backend::fake_only("exec.log (who touched the machine inside whose crun window); scenario_real_agent has the bring-up set") {
        return;
    }
    launches(20, 5, &[("FAKE_SMOLVM_CRUN_MS", "1500")], &[]);
}

#[test]
fn fifty_back_to_back_short_sessions_lose_none_and_start_no_side_channel() {
    if e2e::backend::fake_only("exec.log (who touched the machine inside whose crun window); scenario_real_agent has the bring-up set") {
        return;
    }
    // Each session ends inside or right after its own crun window; a wrapper
    // that had opened (then abandoned) a side channel would race the next.
    let machine = Machine::start("short", &[]);
    for n in 0..50 {
        let place = if n % 2 == 0 { Place::Pty } else { Place::Tmux };
        let log = machine.home().join(format!("short-{n}.log"));
        let argv = machine.wrapped_argv_logging_to(&log, &[], &["-t", "--", "true"]);
        let mut screen = Screen::open(place, &machine, 100, 30, &argv, Some(&log));
        assert_eq!(screen.wait_exit(DEADLINE), Exit::Code(0), "session {n}");
    }
    let log = machine.exec_log();
    assert_no_session_lost(&log, 50);
    assert!(
        execs::container_side_channels(&log).is_empty(),
        "a session never resized starts no side channel: {log:#?}"
    );
}

#[test]
fn five_neighbouring_sessions_100_ms_apart_lose_none_and_end_at_the_final_size() {
    if e2e::backend::fake_only("exec.log (who touched the machine inside whose crun window); scenario_real_agent has the bring-up set") {
        return;
    }
    let machine = Machine::start("neighbours", &[]);
    let mut sessions: Vec<(String, PathBuf, Screen)> = (0..5)
        .map(|n| {
            let label = format!("nb-{n}");
            let log = machine.home().join(format!("nb-{n}.log"));
            let argv =
                machine.wrapped_argv_logging_to(&log, &[], &guest::tui_exec_args(&label, &[]));
            let place = if n % 2 == 0 { Place::Pty } else { Place::Tmux };
            let screen = Screen::open(place, &machine, 100, 30, &argv, Some(&log));
            // Input pacing: the neighbours start 100 ms apart.
            std::thread::sleep(Duration::from_millis(100));
            (label, log, screen)
        })
        .collect();
    for (label, _, screen) in &mut sessions {
        screen.wait_for_text(&guest::status_at(label, 100, 30), DEADLINE);
        screen.resize(90, 25);
    }
    for (label, _, screen) in &mut sessions {
        screen.wait_for_text(&guest::status_at(label, 90, 25), DEADLINE);
    }
    // The later sessions joined the first one's container: quit them first,
    // as a container's processes end with its first one (in a real VM too).
    for (_, _, screen) in sessions.iter_mut().rev() {
        screen.send_keys("q");
        assert_eq!(screen.wait_exit(DEADLINE), Exit::Code(0));
    }
    // One bring-up at a time: every session but the first waited its turn.
    let waited = sessions
        .iter()
        .filter(|(_, log, _)| events(log).iter().any(|r| r.event == "lock-wait"))
        .count();
    assert!(waited >= 1, "no session waited for the machine lock");
    assert_no_session_lost(&machine.exec_log(), 5);
}

#[test]
fn a_session_never_resized_starts_no_side_channel_even_long_after_ready() {
    if e2e::backend::fake_only("exec.log (who touched the machine inside whose crun window); scenario_real_agent has the bring-up set") {
        return;
    }
    let machine = Machine::start("lazy", &[]);
    let log = machine.home().join("lazy.log");
    let argv = machine.wrapped_argv_logging_to(&log, &[], &guest::tui_exec_args("lazy", &[]));
    let mut screen = Screen::open(Place::Pty, &machine, 100, 30, &argv, Some(&log));
    screen.wait_for_text(&guest::first_frame(100, 30), DEADLINE);
    wait_for(
        "the session to be ready",
        DEADLINE,
        || events(&log).iter().any(|r| r.event == "ready"),
        || log_text(&log),
    );
    // Still nothing to push: a channel opened now would be an exec on the
    // machine for nothing (and, on a neighbour's bring-up, a danger).
    screen.send_keys("q");
    assert_eq!(screen.wait_exit(DEADLINE), Exit::Code(0));
    let log_records = machine.exec_log();
    // The agent transport's readiness probes are VM-level `vm_exec`s
    // (scenario_agent_transport checks none comes after readiness); what
    // must never happen is an exec into the machine.
    assert!(
        execs::container_side_channels(&log_records).is_empty(),
        "a session never resized opened a side channel: {log_records:#?}"
    );
    assert!(
        !events(&log).iter().any(|r| r.event == "push"),
        "{}",
        log_text(&log)
    );
    assert!(
        !events(&log).iter().any(|r| r.event.starts_with("channel")),
        "{}",
        log_text(&log)
    );
}
