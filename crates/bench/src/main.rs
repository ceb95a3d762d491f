//! `bench`: measures pty-resize (both push modes) against a naive bridge and
//! against smolvm alone, on fake-smolvm with its default timings, in one run;
//! prints a table and writes the results as JSON. Run it through
//! `scripts/bench`, which builds the release binaries first. Usage and exit
//! codes: `bench --help` ([`args::Cli`]).

mod args;
mod cost;
mod frames;
mod interactive;
mod lab;
mod procs;
mod report;
mod results;
mod robust;
mod sessions;
mod stats;
mod storm;
mod targets;
mod window;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use e2e::{bins, hermetic};

use clap::Parser;

use crate::args::{Cli, Options};
use crate::lab::{Lab, Tools, Variant};
use crate::report::{Results, VariantResult};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // clap prints --help and usage errors itself (exit 0 and 2).
    let options = Cli::parse().options(&workspace_root());
    let command = std::env::var("BENCH_COMMAND").unwrap_or_else(|_| {
        std::iter::once("bench".to_string())
            .chain(argv.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    });
    match run(&options, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The workspace folder: the defaults (`target/bench`, `scripts/`) live there.
fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
}

/// Progress on stderr, stamped with the seconds since the bench started.
fn progress(what: &str) {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let t = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs();
    eprintln!("bench: [{t:>4}s] {what}");
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown date".into())
}

/// pty-resize's default `--mode`, as its own `-h` states it.
fn default_mode(pty_resize: &Path) -> anyhow::Result<Variant> {
    let out = hermetic::command(pty_resize)
        .arg("-h")
        .output()
        .with_context(|| format!("running {} -h", pty_resize.display()))?;
    let help = String::from_utf8_lossy(&out.stdout);
    match report::default_mode_from_help(&help).as_deref() {
        Some("agent") => Ok(Variant::Agent),
        Some("channel") => Ok(Variant::Channel),
        Some("exec") => Ok(Variant::Exec),
        other => bail!("cannot read the default --mode from pty-resize -h (found {other:?})"),
    }
}

fn run(options: &Options, command: String) -> anyhow::Result<()> {
    if !options.naive_bridge.is_file() {
        bail!(
            "the naive bridge {} does not exist (--naive-bridge PATH)",
            options.naive_bridge.display()
        );
    }
    let date = utc_now();
    progress("locating the binaries (cargo build, a no-op when fresh)");
    let tools = Tools {
        pty_resize: bins::pty_resize(),
        fake: bins::fake_smolvm(),
        guest_tui: bins::guest_tui(),
        naive: options.naive_bridge.clone(),
    };
    let default = default_mode(&tools.pty_resize)?;
    let counts = options.counts;
    // The default mode first, then pty-resize's other modes, the naive
    // bridge, and smolvm alone last.
    let mut order = vec![default];
    order.extend(
        [Variant::Agent, Variant::Channel, Variant::Exec]
            .into_iter()
            .filter(|&v| v != default),
    );
    order.extend([Variant::Naive, Variant::Direct]);
    progress("starting one fake machine per variant");
    let labs: Vec<Lab> = order
        .iter()
        .map(|&v| Lab::new(v, &tools))
        .collect::<anyhow::Result<_>>()?;
    let bridges: Vec<&Lab> = labs[..labs.len() - 1].iter().collect();
    let direct = &labs[labs.len() - 1];

    progress(&format!("one plain exec, {} times", counts.bringup_samples));
    let bringup = cost::bringup(direct, counts.bringup_samples);

    let mut results: Vec<VariantResult> = labs
        .iter()
        .map(|lab| VariantResult {
            key: lab.variant.key(),
            label: lab.variant.label(),
            is_default: lab.variant == default,
            interactive: None,
            storm: None,
            start_offset: None,
            overhead_ms: None,
            overhead_best_ms: None,
            window: None,
            window_long: None,
            tmux: None,
            short: None,
            neighbours: None,
        })
        .collect();

    for (lab, out) in labs.iter().zip(results.iter_mut()) {
        progress(&format!(
            "{}: first frame, {} timed resizes, peak RSS",
            lab.variant.label(),
            counts.latency_resizes
        ));
        out.interactive = Some(interactive::run(lab, counts.latency_resizes));
    }
    for (lab, out) in bridges.iter().zip(results.iter_mut()) {
        progress(&format!(
            "{}: {}-resize storm",
            lab.variant.label(),
            counts.storm_resizes
        ));
        out.storm = storm::run(lab, counts.storm_resizes);
    }

    progress(&format!(
        "start-up cost: {} launches per variant",
        counts.cost_launches
    ));
    let all: Vec<&Lab> = labs.iter().collect();
    let offsets = cost::start_offsets(&all, counts.cost_launches);
    let direct_samples = offsets[offsets.len() - 1].samples.clone();
    for (out, off) in results.iter_mut().zip(offsets) {
        (out.overhead_ms, out.overhead_best_ms) = cost::overhead(&off.samples, &direct_samples);
        out.start_offset = Some(off);
    }

    progress(&format!(
        "crun-window row: {} launches per variant, resized the moment the terminal goes raw",
        counts.window_launches
    ));
    let mut windows = vec![window::Window::default(); labs.len()];
    for _ in 0..counts.window_launches {
        for (lab, out) in labs.iter().zip(windows.iter_mut()) {
            window::launch(lab, out);
        }
    }
    for (out, w) in results.iter_mut().zip(windows) {
        out.window = Some(w);
    }

    progress(&format!(
        "crun-window row at {} ms: {} launches per variant, resized the moment the terminal goes raw",
        window::LONG_CRUN_MS,
        counts.long_window_launches
    ));
    let long_labs: Vec<Lab> = order
        .iter()
        .map(|&v| Lab::with_crun(v, &tools, Some(window::LONG_CRUN_MS)))
        .collect::<anyhow::Result<_>>()?;
    let mut longs = vec![window::Window::default(); long_labs.len()];
    for _ in 0..counts.long_window_launches {
        for (lab, out) in long_labs.iter().zip(longs.iter_mut()) {
            window::launch(lab, out);
        }
    }
    drop(long_labs);
    for (out, w) in results.iter_mut().zip(longs) {
        out.window_long = Some(w);
    }

    progress(&format!(
        "back-to-back short sessions: {} per variant",
        counts.short_sessions
    ));
    for (lab, out) in labs.iter().zip(results.iter_mut()) {
        out.short = Some(sessions::short(lab, counts.short_sessions));
    }

    progress(&format!(
        "neighbours: {} round(s) of {} sessions {} ms apart per variant",
        counts.neighbour_rounds,
        counts.neighbours,
        sessions::NEIGHBOUR_GAP.as_millis()
    ));
    for (lab, out) in labs.iter().zip(results.iter_mut()) {
        let mut r = robust::Robust::default();
        for _ in 0..counts.neighbour_rounds {
            sessions::neighbours(lab, counts.neighbours, &mut r);
        }
        out.neighbours = Some(r);
    }

    if which_tmux() {
        progress(&format!(
            "shared-stdin row (tmux, {}={}): {} launches per variant",
            robust::SHARED_STDIN.0,
            robust::SHARED_STDIN.1,
            counts.tmux_launches
        ));
        let mut tmux = vec![robust::Robust::default(); labs.len()];
        for _ in 0..counts.tmux_launches {
            for (lab, out) in labs.iter().zip(tmux.iter_mut()) {
                robust::tmux_launch(lab, out);
            }
        }
        for (out, r) in results.iter_mut().zip(tmux) {
            out.tmux = Some(r);
        }
    } else {
        progress("tmux is not installed: the shared-stdin row is skipped");
    }
    drop(labs);

    let mut results = Results {
        date,
        command,
        quick: options.quick,
        counts,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        bringup_setting_ms: 250,
        crun_setting_ms: 300,
        default_mode: default.key().into(),
        bringup,
        variants: results,
        ratios: vec![],
        targets: vec![],
    };
    results.derive();
    progress("done");
    print!("{}", report::render(&results));
    write_json(&options.json, &results)?;
    println!("\nJSON: {}", options.json.display());
    Ok(())
}

fn which_tmux() -> bool {
    hermetic::command("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn write_json(path: &Path, results: &Results) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(results)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
