//! The fake's environment switches (`FAKE_SMOLVM_*`): parsing and defaults.
//!
//! Every switch is read twice: by `machine start` (the machine's default,
//! inherited by the agent) and by `machine exec` (a per-exec override sent in
//! the `run` request). The exec's value wins; see the crate README.

use serde::{Deserialize, Serialize};

/// `FAKE_SMOLVM_HOME`: where machine folders live.
pub const ENV_HOME: &str = "FAKE_SMOLVM_HOME";
/// `FAKE_SMOLVM_BRINGUP_MS`: length of each exec's bring-up window.
pub const ENV_BRINGUP_MS: &str = "FAKE_SMOLVM_BRINGUP_MS";
/// `FAKE_SMOLVM_COMPAT`: `0.8.0` (bugs) or `0.8.1` (size forwarding fixed).
pub const ENV_COMPAT: &str = "FAKE_SMOLVM_COMPAT";
/// `FAKE_SMOLVM_RACE`: what the config.json race does to a torn exec.
pub const ENV_RACE: &str = "FAKE_SMOLVM_RACE";
/// `FAKE_SMOLVM_SHARED_STDIN`: when the shared-stdin abort fires.
pub const ENV_SHARED_STDIN: &str = "FAKE_SMOLVM_SHARED_STDIN";
/// `FAKE_SMOLVM_SHARED_STDIN_DELAY_MS`: delay before the earlier session is killed.
pub const ENV_SHARED_STDIN_DELAY_MS: &str = "FAKE_SMOLVM_SHARED_STDIN_DELAY_MS";
/// `FAKE_SMOLVM_TEST_DIE_BEFORE_LOG`: test-only, hidden from `--help`. `1`
/// makes `machine exec` SIGKILL itself right after the agent's final response
/// arrives, before it writes its exec.log line, so tests can exercise the
/// agent's fallback record deterministically.
pub const ENV_TEST_DIE_BEFORE_LOG: &str = "FAKE_SMOLVM_TEST_DIE_BEFORE_LOG";

/// Default bring-up window, in ms.
pub const DEFAULT_BRINGUP_MS: u64 = 250;
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

/// What the config.json race does to a torn exec (`FAKE_SMOLVM_RACE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RaceMode {
    /// `Error: load ...` and exit 1.
    #[default]
    Exit1,
    /// The guest process is started and SIGKILLed at once: exit 137.
    Sigkill,
    /// No fault: torn files are tolerated.
    Off,
}

/// When the shared-stdin abort fires (`FAKE_SMOLVM_SHARED_STDIN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SharedStdinMode {
    /// Only when the newer exec's environment has `TMUX`.
    #[default]
    Tmux,
    /// Whenever two execs share a terminal as stdin.
    Always,
    /// Never.
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

/// All per-exec switches; `None` means "not set here, use the next default".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Switches {
    /// `FAKE_SMOLVM_BRINGUP_MS`.
    pub bringup_ms: Option<u64>,
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
    /// Bring-up window, ms.
    pub bringup_ms: u64,
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
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Switches, String> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        Ok(Switches {
            bringup_ms: get(ENV_BRINGUP_MS)
                .map(|v| parse_ms(ENV_BRINGUP_MS, &v))
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
    pub fn from_env() -> Result<Switches, String> {
        Switches::from_lookup(|k| std::env::var(k).ok())
    }

    /// This set, with unset values taken from `fallback`.
    pub fn or(&self, fallback: &Switches) -> Switches {
        Switches {
            bringup_ms: self.bringup_ms.or(fallback.bringup_ms),
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
            compat: self.compat.unwrap_or_default(),
            race: self.race.unwrap_or_default(),
            shared_stdin: self.shared_stdin.unwrap_or_default(),
            shared_stdin_delay_ms: self
                .shared_stdin_delay_ms
                .unwrap_or(DEFAULT_SHARED_STDIN_DELAY_MS),
        }
    }
}

fn parse_ms(var: &str, v: &str) -> Result<u64, String> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| format!("invalid {var}={v:?}: expected a number of milliseconds"))
}

fn parse_compat(v: &str) -> Result<Compat, String> {
    match v.trim() {
        "0.8.0" => Ok(Compat::V080),
        "0.8.1" => Ok(Compat::V081),
        _ => Err(format!(
            "invalid {ENV_COMPAT}={v:?}: expected 0.8.0 or 0.8.1"
        )),
    }
}

fn parse_race(v: &str) -> Result<RaceMode, String> {
    match v.trim() {
        "exit1" => Ok(RaceMode::Exit1),
        "sigkill" => Ok(RaceMode::Sigkill),
        "off" => Ok(RaceMode::Off),
        _ => Err(format!(
            "invalid {ENV_RACE}={v:?}: expected exit1, sigkill or off"
        )),
    }
}

fn parse_shared_stdin(v: &str) -> Result<SharedStdinMode, String> {
    match v.trim() {
        "tmux" => Ok(SharedStdinMode::Tmux),
        "always" => Ok(SharedStdinMode::Always),
        "never" => Ok(SharedStdinMode::Never),
        _ => Err(format!(
            "invalid {ENV_SHARED_STDIN}={v:?}: expected tmux, always or never"
        )),
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
        assert_eq!(r.compat, Compat::V080);
        assert_eq!(r.race, RaceMode::Exit1);
        assert_eq!(r.shared_stdin, SharedStdinMode::Tmux);
        assert_eq!(r.shared_stdin_delay_ms, 100);
    }

    #[test]
    fn every_value_parses() {
        let s = Switches::from_lookup(lookup(&[
            (ENV_BRINGUP_MS, "400"),
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
        assert!(e.contains("FAKE_SMOLVM_RACE") && e.contains("exit1"), "{e}");
        let e = Switches::from_lookup(lookup(&[(ENV_BRINGUP_MS, "-1")])).unwrap_err();
        assert!(e.contains("FAKE_SMOLVM_BRINGUP_MS"), "{e}");
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
