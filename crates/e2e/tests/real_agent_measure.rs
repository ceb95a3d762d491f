//! The counts of issue 14's "Done means", measured on smolvm 0.8.0's own
//! agent and crun through the real client (the real-agent backend). Ignored
//! by default (minutes each); run by hand, one at a time:
//!
//! ```sh
//! E2E_BACKEND=real-agent cargo test -p e2e --test real_agent_measure -- \
//!     --ignored --nocapture --test-threads=1 [measure_naive_push_at_raw]
//! ```
//! Knobs: `E2E_TRIES` (20), `E2E_CRUN_DELAY_MS` (400, the naive push),
//! `E2E_CRUN_STALL_MS` (0, the naive push: `up --crun-stall-ms`),
//! `E2E_CRUN_DELAYS` (`0,2600,5000`, the wrapper's resize at raw),
//! `E2E_WRAPPER_OPTS` (extra pty-resize options, e.g. `--mode channel`).
//! Each prints one `MEASURE …` line per try and a tally; the figures are in
//! docs/real-agent.md.

mod real_agent;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use e2e::place::Place;
use e2e::real_machine::STALL_VAR;
use e2e::{backend, note, Machine};
use real_agent::{back_to_back_short_session, naive_push_at_raw, resize_at_raw_with, Outcome};

fn tries() -> usize {
    env_or("E2E_TRIES", "20")
        .parse()
        .expect("E2E_TRIES: a number")
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// `E2E_WRAPPER_OPTS`, split on whitespace.
fn wrapper_opts() -> Vec<String> {
    env_or("E2E_WRAPPER_OPTS", "")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Runs `attempt` catching its panic: `Ok` or the panic's first line.
fn attempt(f: impl FnOnce()) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|e| {
        let text = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        text.lines().next().unwrap_or("panic").to_string()
    })
}

#[test]
#[ignore = "a measurement (minutes): run by hand, see the file's doc"]
fn measure_naive_push_at_raw() {
    if backend::real_agent_only() {
        return;
    }
    let delay = env_or("E2E_CRUN_DELAY_MS", "400");
    let stall = env_or(STALL_VAR, "0");
    let knobs = format!("crun_delay_ms={delay} crun_stall_ms={stall}");
    let (mut k137, mut k1, mut never, mut alive, mut other) = (0, 0, 0, 0, 0);
    for n in 0..tries() {
        // A fresh machine per try: no try inherits another's leftovers.
        let machine = Machine::start(
            "measure-push",
            &[("FAKE_SMOLVM_CRUN_MS", &delay), (STALL_VAR, &stall)],
        );
        let outcome = naive_push_at_raw(&machine, &format!("push-{n}"));
        note(&format!(
            "MEASURE naive-push {knobs} try={n} outcome={outcome:?}"
        ));
        match outcome {
            Outcome::Killed137 => k137 += 1,
            Outcome::Exit1 => k1 += 1,
            Outcome::NeverRan(_) => never += 1,
            Outcome::Survived => alive += 1,
            Outcome::Other(_) => other += 1,
        }
    }
    note(&format!(
        "MEASURE naive-push {knobs} tries={}: 137={k137} exit1={k1} never-ran={never} survived={alive} other={other}",
        tries()
    ));
}

#[test]
#[ignore = "a measurement (minutes): run by hand, see the file's doc"]
fn measure_pty_resize_resize_at_raw() {
    if backend::real_agent_only() {
        return;
    }
    let opts = wrapper_opts();
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    for delay in env_or("E2E_CRUN_DELAYS", "0,2600,5000").split(',') {
        let machine = Machine::start("measure-raw", &[("FAKE_SMOLVM_CRUN_MS", delay)]);
        let mut ok = 0;
        let mut slowest = 0.0f64;
        for n in 0..tries() {
            let t = Instant::now();
            let result = attempt(|| {
                resize_at_raw_with(&machine, Place::Pty, n, &opts);
            });
            let secs = t.elapsed().as_secs_f64();
            slowest = slowest.max(secs);
            ok += usize::from(result.is_ok());
            note(&format!(
                "MEASURE resize-at-raw crun_delay_ms={delay} opts={opts:?} try={n} {:.1}s {}",
                secs,
                result.err().unwrap_or_else(|| "ok: ended at 90x25".into())
            ));
        }
        note(&format!(
            "MEASURE resize-at-raw crun_delay_ms={delay} opts={opts:?}: {ok}/{} ended at the final 90x25, exit 0 (slowest {slowest:.1}s)",
            tries()
        ));
    }
}

#[test]
#[ignore = "a measurement (minutes): run by hand, see the file's doc"]
fn measure_back_to_back_short_sessions() {
    if backend::real_agent_only() {
        return;
    }
    let machine = Machine::start("measure-short", &[]);
    let mut ok = 0;
    for n in 0..tries() {
        let result = attempt(|| back_to_back_short_session(&machine, Place::Pty, n));
        ok += usize::from(result.is_ok());
        note(&format!(
            "MEASURE short-session try={n} {}",
            result
                .err()
                .unwrap_or_else(|| "ok: exit 0 at 100x30".into())
        ));
    }
    note(&format!(
        "MEASURE short-sessions: {ok}/{} exit 0, drawn at the host's 100x30",
        tries()
    ));
}
