//! The fake's environment switches (`FAKE_SMOLVM_*`): parsing and defaults.
//!
//! Every switch is read twice: by `machine start` (the machine's default,
//! inherited by the agent) and, per exec, from the environment of the client
//! process that connected (read by the agent from `/proc/<pid>/environ`, so
//! any client, the real smolvm included, can set them). The exec's value
//! wins; see the crate README.

use serde::{Deserialize, Serialize};

/// `FAKE_SMOLVM_BRINGUP_MS`: the agent's work before `started` (overlay, mounts).
pub const ENV_BRINGUP_MS: &str = "FAKE_SMOLVM_BRINGUP_MS";
/// `FAKE_SMOLVM_CRUN_MS`: crun's set-up after `started`, before the container runs.
pub const ENV_CRUN_MS: &str = "FAKE_SMOLVM_CRUN_MS";
/// `FAKE_SMOLVM_COMPAT`: `0.8.0` (bugs) or `0.8.1` (size forwarding fixed).
pub const ENV_COMPAT: &str = "FAKE_SMOLVM_COMPAT";
/// `FAKE_SMOLVM_RACE`: what a second exec inside a session's crun window does to it.
pub const ENV_RACE: &str = "FAKE_SMOLVM_RACE";
/// `FAKE_SMOLVM_SHARED_STDIN`: the seeds' first hypothesis, opt-in.
pub const ENV_SHARED_STDIN: &str = "FAKE_SMOLVM_SHARED_STDIN";
/// `FAKE_SMOLVM_SHARED_STDIN_DELAY_MS`: delay before the earlier session is killed.
pub const ENV_SHARED_STDIN_DELAY_MS: &str = "FAKE_SMOLVM_SHARED_STDIN_DELAY_MS";
/// Default bring-up before `started`, in ms.
pub const DEFAULT_BRINGUP_MS: u64 = 250;
/// Default crun set-up window after `started`, in ms.
pub const DEFAULT_CRUN_MS: u64 = 300;
/// Default delay of the shared-stdin SIGKILL, in ms.
pub const DEFAULT_SHARED_STDIN_DELAY_MS: u64 = 100;

/// Which smolvm release the fake behaves as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Compat {
    /// 0.8.0: guest PTY 0x0, resizes never forwarded.
    #[default]
    #[serde(rename = "0.8.0")]
    V080,
    /// 0.8.1: guest PTY 80x24, initial size and every SIGWINCH forwarded.
    #[serde(rename = "0.8.1")]
    V081,
}

impl Compat {
    /// The version string `--version` prints.
    pub fn version(self) -> &'static str {
        match self {
            Compat::V080 => "0.8.0",
            Compat::V081 => "0.8.1",
        }
    }
}

/// What a second exec that reaches the machine inside a session's crun
/// window does to that session (`FAKE_SMOLVM_RACE`). Both outcomes apply in
/// the real agent (its `config.json` write tears crun's read; its
/// `resolve_main_container` deletes the not-yet-running container); which one
/// wins depends on how far crun got, so the switch chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RaceMode {
    /// crun's load of the torn `config.json` fails: its message in-band, exit 1.
    #[default]
    Exit1,
    /// `crun delete -f` of the "stale" container: the session exits 137.
    Sigkill,
    /// No fault: torn files and stale deletes are tolerated.
    Off,
}

/// When the shared-stdin abort fires (`FAKE_SMOLVM_SHARED_STDIN`): what the
/// seeds first believed (a second exec sharing the session's terminal as
/// stdin, in tmux, kills it). smolvm's code has no such path, so it is off
/// unless asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SharedStdinMode {
    /// Only when the newer exec's environment has `TMUX`.
    Tmux,
    /// Whenever two execs share a terminal as stdin.
    Always,
    /// Never (the default: not what smolvm does).
    #[default]
    Never,
}

impl SharedStdinMode {
    /// Whether a newer exec (with or without `TMUX`) kills an earlier session on its terminal.
    pub fn fires(self, newer_has_tmux: bool) -> bool {
        match self {
            SharedStdinMode::Tmux => newer_has_tmux,
            SharedStdinMode::Always => true,
            SharedStdinMode::Never => false,
        }
    }
}

/// A switch set to a value it does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}={value:?}: expected {expected}")]
pub struct InvalidSwitch {
    /// The variable.
    pub var: &'static str,
    /// What it was set to.
    pub value: String,
    /// What it takes.
    pub expected: &'static str,
}

/// All per-exec switches; `None` means "not set here, use the next default".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Switches {
    /// `FAKE_SMOLVM_BRINGUP_MS`.
    pub bringup_ms: Option<u64>,
    /// `FAKE_SMOLVM_CRUN_MS`.
    pub crun_ms: Option<u64>,
    /// `FAKE_SMOLVM_COMPAT`.
    pub compat: Option<Compat>,
    /// `FAKE_SMOLVM_RACE`.
    pub race: Option<RaceMode>,
    /// `FAKE_SMOLVM_SHARED_STDIN`.
    pub shared_stdin: Option<SharedStdinMode>,
    /// `FAKE_SMOLVM_SHARED_STDIN_DELAY_MS`.
    pub shared_stdin_delay_ms: Option<u64>,
}

/// Switches with every default applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolved {
    /// Bring-up before `started`, ms.
    pub bringup_ms: u64,
    /// crun window after `started`, ms.
    pub crun_ms: u64,
    /// Behaviour version.
    pub compat: Compat,
    /// Race outcome.
    pub race: RaceMode,
    /// Shared-stdin mode.
    pub shared_stdin: SharedStdinMode,
    /// Shared-stdin delay, ms.
    pub shared_stdin_delay_ms: u64,
}

impl Switches {
    /// Reads the switches from a lookup function (the process environment in production).
    /// A set but invalid value is an error naming the variable and the accepted values.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Switches, InvalidSwitch> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        Ok(Switches {
            bringup_ms: get(ENV_BRINGUP_MS)
                .map(|v| parse_ms(ENV_BRINGUP_MS, &v))
                .transpose()?,
            crun_ms: get(ENV_CRUN_MS)
                .map(|v| parse_ms(ENV_CRUN_MS, &v))
                .transpose()?,
            compat: get(ENV_COMPAT).map(|v| parse_compat(&v)).transpose()?,
            race: get(ENV_RACE).map(|v| parse_race(&v)).transpose()?,
            shared_stdin: get(ENV_SHARED_STDIN)
                .map(|v| parse_shared_stdin(&v))
                .transpose()?,
            shared_stdin_delay_ms: get(ENV_SHARED_STDIN_DELAY_MS)
                .map(|v| parse_ms(ENV_SHARED_STDIN_DELAY_MS, &v))
                .transpose()?,
        })
    }

    /// Reads the switches from the process environment.
    pub fn from_env() -> Result<Switches, InvalidSwitch> {
        Switches::from_lookup(|k| std::env::var(k).ok())
    }

    /// This set, with unset values taken from `fallback`.
    pub fn or(&self, fallback: &Switches) -> Switches {
        Switches {
            bringup_ms: self.bringup_ms.or(fallback.bringup_ms),
            crun_ms: self.crun_ms.or(fallback.crun_ms),
            compat: self.compat.or(fallback.compat),
            race: self.race.or(fallback.race),
            shared_stdin: self.shared_stdin.or(fallback.shared_stdin),
            shared_stdin_delay_ms: self
                .shared_stdin_delay_ms
                .or(fallback.shared_stdin_delay_ms),
        }
    }

    /// Applies the built-in defaults.
    pub fn resolve(&self) -> Resolved {
        Resolved {
            bringup_ms: self.bringup_ms.unwrap_or(DEFAULT_BRINGUP_MS),
            crun_ms: self.crun_ms.unwrap_or(DEFAULT_CRUN_MS),
            compat: self.compat.unwrap_or_default(),
            race: self.race.unwrap_or_default(),
            shared_stdin: self.shared_stdin.unwrap_or_default(),
            shared_stdin_delay_ms: self
                .shared_stdin_delay_ms
                .unwrap_or(DEFAULT_SHARED_STDIN_DELAY_MS),
        }
    }
}

fn invalid(var: &'static str, value: &str, expected: &'static str) -> InvalidSwitch {
    InvalidSwitch {
        var,
        value: value.to_string(),
        expected,
    }
}

fn parse_ms(var: &'static str, v: &str) -> Result<u64, InvalidSwitch> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| invalid(var, v, "a number of milliseconds"))
}

fn parse_compat(v: &str) -> Result<Compat, InvalidSwitch> {
    match v.trim() {
        "0.8.0" => Ok(Compat::V080),
        "0.8.1" => Ok(Compat::V081),
        _ => Err(invalid(ENV_COMPAT, v, "0.8.0 or 0.8.1")),
    }
}

fn parse_race(v: &str) -> Result<RaceMode, InvalidSwitch> {
    match v.trim() {
        "exit1" => Ok(RaceMode::Exit1),
        "sigkill" => Ok(RaceMode::Sigkill),
        "off" => Ok(RaceMode::Off),
        _ => Err(invalid(ENV_RACE, v, "exit1, sigkill or off")),
    }
}

fn parse_shared_stdin(v: &str) -> Result<SharedStdinMode, InvalidSwitch> {
    match v.trim() {
        "tmux" => Ok(SharedStdinMode::Tmux),
        "always" => Ok(SharedStdinMode::Always),
        "never" => Ok(SharedStdinMode::Never),
        _ => Err(invalid(ENV_SHARED_STDIN, v, "tmux, always or never")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn unset_and_empty_mean_default() {
        let s = Switches::from_lookup(lookup(&[(ENV_COMPAT, "")])).unwrap();
        assert_eq!(s, Switches::default());
        let r = s.resolve();
        assert_eq!(r.bringup_ms, 250);
        assert_eq!(r.crun_ms, 300);
        assert_eq!(r.compat, Compat::V080);
        assert_eq!(r.race, RaceMode::Exit1);
        assert_eq!(r.shared_stdin, SharedStdinMode::Never);
        assert_eq!(r.shared_stdin_delay_ms, 100);
    }

    #[test]
    fn every_value_parses() {
        let s = Switches::from_lookup(lookup(&[
            (ENV_BRINGUP_MS, "400"),
            (ENV_CRUN_MS, "1500"),
            (ENV_COMPAT, "0.8.1"),
            (ENV_RACE, "sigkill"),
            (ENV_SHARED_STDIN, "never"),
            (ENV_SHARED_STDIN_DELAY_MS, "5"),
        ]))
        .unwrap()
        .resolve();
        assert_eq!(
            s,
            Resolved {
                bringup_ms: 400,
                crun_ms: 1500,
                compat: Compat::V081,
                race: RaceMode::Sigkill,
                shared_stdin: SharedStdinMode::Never,
                shared_stdin_delay_ms: 5
            }
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = Switches::from_lookup(lookup(&[(ENV_RACE, "maybe")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid FAKE_SMOLVM_RACE=\"maybe\": expected exit1, sigkill or off"
        );
        let e = Switches::from_lookup(lookup(&[(ENV_BRINGUP_MS, "-1")])).unwrap_err();
        assert_eq!(e.var, "FAKE_SMOLVM_BRINGUP_MS");
    }

    #[test]
    fn exec_value_wins_over_machine_default() {
        let exec = Switches {
            compat: Some(Compat::V081),
            ..Default::default()
        };
        let machine = Switches {
            compat: Some(Compat::V080),
            bringup_ms: Some(10),
            ..Default::default()
        };
        let r = exec.or(&machine).resolve();
        assert_eq!((r.compat, r.bringup_ms), (Compat::V081, 10));
    }

    #[test]
    fn shared_stdin_mode_decides() {
        assert!(SharedStdinMode::Tmux.fires(true));
        assert!(!SharedStdinMode::Tmux.fires(false));
        assert!(SharedStdinMode::Always.fires(false));
        assert!(!SharedStdinMode::Never.fires(true));
    }
}
