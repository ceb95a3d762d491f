//! The real-agent backend's machines: smolvm 0.8.0's own agent and crun,
//! made by `scripts/real-machine up NAME …` (which prints only `export K=V`
//! lines) and ended by `scripts/real-machine down NAME …`.
//!
//! The fake's switches map where a faithful equivalent exists:
//! `FAKE_SMOLVM_CRUN_MS` (the crun window) → `--crun-delay-ms` (crun waits
//! that long before it loads `config.json`, the agent untouched).
//! `FAKE_SMOLVM_BRINGUP_MS` has no knob: the real bring-up is what it is,
//! and the switch is dropped. Any other `FAKE_SMOLVM_*` switch (a forced
//! race outcome, the 0.8.1 mode, the shared-stdin hypothesis) only the
//! fake has: asking for it is an error naming the guard to use.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A machine setting only the real agent has: `scripts/real-machine up
/// --crun-stall-ms MS` (crun stopped MS once its container folder exists,
/// so a stale `crun delete -f` meets a container being created).
pub const STALL_VAR: &str = "E2E_CRUN_STALL_MS";

/// What `up` is given: the switches turned into `up` arguments, and the
/// variables (not the fake's switches) every process still gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Extra `scripts/real-machine up` arguments (`--crun-delay-ms MS`).
    pub args: Vec<String>,
    /// The variables other than the fake's switches.
    pub env: Vec<(String, String)>,
}

/// A machine `up` made: where its state lives and what it exported.
#[derive(Debug, Clone)]
pub struct RealMachine {
    /// The `--state` folder given to `up` and `down`.
    pub state: PathBuf,
    /// The `export K=V` lines `up` printed, in order.
    pub exports: Vec<(String, String)>,
}

impl RealMachine {
    /// The value `up` exported for `key`, if any.
    pub fn export(&self, key: &str) -> Option<&str> {
        self.exports
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Turns a scenario's machine settings into a [`Plan`]; `Err` for a switch
/// only the fake has.
pub fn plan(env: &[(&str, &str)]) -> Result<Plan, String> {
    let mut plan = Plan {
        args: Vec::new(),
        env: Vec::new(),
    };
    for (key, value) in env {
        match *key {
            "FAKE_SMOLVM_CRUN_MS" => {
                plan.args.push("--crun-delay-ms".into());
                plan.args.push(value.to_string());
            }
            // The fake's agent bring-up time: the real one has its own.
            "FAKE_SMOLVM_BRINGUP_MS" => {}
            // The real agent's own knob (no fake equivalent): crun stopped
            // that long once its container folder exists (`up --crun-stall-ms`).
            STALL_VAR => {
                plan.args.push("--crun-stall-ms".into());
                plan.args.push(value.to_string());
            }
            k if k.starts_with("FAKE_SMOLVM_") => {
                return Err(format!(
                    "e2e: {k}={value} has no equivalent on the real agent; guard the scenario with e2e::backend::fake_only"
                ))
            }
            k => plan.env.push((k.to_string(), value.to_string())),
        }
    }
    Ok(plan)
}

/// Parses `up`'s output: `export K=V` lines, V bare, `'single'` (with
/// `'\''` for a quote) or `"double"` quoted. Blank lines and `#` comments
/// are skipped; anything else is an error naming the line.
pub fn parse_exports(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let rest = line
            .strip_prefix("export ")
            .ok_or_else(|| format!("not an `export K=V` line: {line:?}"))?;
        let (key, value) = rest
            .split_once('=')
            .ok_or_else(|| format!("no `=` in {line:?}"))?;
        out.push((key.trim().to_string(), unquote(value)?));
    }
    Ok(out)
}

/// A shell word's value (one word: bare, quoted, or quoted pieces joined).
fn unquote(word: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => out.push(c),
                    None => return Err(format!("unclosed ' in {word:?}")),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => out.extend(chars.next()),
                    Some(c) => out.push(c),
                    None => return Err(format!("unclosed \" in {word:?}")),
                }
            },
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Runs `scripts/real-machine ARGS`, its output to files under `dir` (a
/// background process that inherited a pipe would hold the read open).
fn run(dir: &Path, args: &[String]) -> Result<String, String> {
    let script = crate::backend::real_machine_script();
    let (out_path, err_path) = (dir.join(".real-machine.out"), dir.join(".real-machine.err"));
    let out = File::create(&out_path).map_err(|e| format!("e2e: {e}"))?;
    let err = File::create(&err_path).map_err(|e| format!("e2e: {e}"))?;
    let status = Command::new(&script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("e2e: cannot run {}: {e}", script.display()))?;
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    if status.success() {
        return Ok(stdout);
    }
    Err(format!(
        "e2e: `scripts/real-machine {}` failed ({status}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        stdout.trim(),
        std::fs::read_to_string(&err_path)
            .unwrap_or_default()
            .trim()
    ))
}

/// `scripts/real-machine up NAME --state <home>/state --layer <guest-tui
/// layer> <plan args>`; panics with its output if it fails.
pub fn up(name: &str, home: &Path, plan: &Plan) -> RealMachine {
    let state = home.join("state");
    let mut args = vec![
        "up".to_string(),
        name.to_string(),
        "--state".into(),
        state.to_string_lossy().into_owned(),
        "--layer".into(),
        crate::bins::guest_tui_layer()
            .to_string_lossy()
            .into_owned(),
    ];
    args.extend(plan.args.iter().cloned());
    let stdout = run(home, &args).unwrap_or_else(|e| panic!("{e}"));
    let exports = parse_exports(&stdout)
        .unwrap_or_else(|e| panic!("e2e: scripts/real-machine up printed {e}"));
    RealMachine { state, exports }
}

/// `scripts/real-machine down NAME --state <state>`.
pub fn down(name: &str, real: &RealMachine) -> Result<(), String> {
    let home = real.state.parent().unwrap_or(Path::new("/tmp"));
    let args = [
        "down".to_string(),
        name.to_string(),
        "--state".into(),
        real.state.to_string_lossy().into_owned(),
    ];
    run(home, &args).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crun_window_maps_and_the_fakes_own_switches_are_refused() {
        let p = plan(&[
            ("FAKE_SMOLVM_CRUN_MS", "1500"),
            ("FAKE_SMOLVM_BRINGUP_MS", "9"),
            ("X", "1"),
        ])
        .unwrap();
        assert_eq!(p.args, ["--crun-delay-ms", "1500"]);
        assert_eq!(p.env, [("X".to_string(), "1".to_string())]);
        let e = plan(&[("FAKE_SMOLVM_RACE", "exit1")]).unwrap_err();
        assert!(
            e.contains("FAKE_SMOLVM_RACE") && e.contains("fake_only"),
            "{e}"
        );
    }

    #[test]
    fn export_lines_are_read_bare_or_quoted() {
        let got = parse_exports(
            "export A=/x/y\n\nexport B='it'\\''s'\nexport C=\"a \\\"b\\\"\"\n# note\n",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                ("A".to_string(), "/x/y".to_string()),
                ("B".to_string(), "it's".to_string()),
                ("C".to_string(), "a \"b\"".to_string()),
            ]
        );
        assert!(parse_exports("hello\n").unwrap_err().contains("hello"));
        assert!(parse_exports("export A='x\n").is_err());
    }
}
