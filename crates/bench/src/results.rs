//! The results: their JSON shape (what `--json` writes), and where the
//! default mode in it comes from. Pure; derived figures are in
//! [`crate::targets`], the text a person reads in [`crate::report`].

use serde::Serialize;

use crate::args::Counts;
use crate::cost::{Bringup, StartOffsets};
use crate::interactive::Interactive;
use crate::robust::Robust;
use crate::stats;
use crate::storm::Storm;
use crate::window::Window;

/// Everything measured for one variant.
#[derive(Debug, Clone, Serialize)]
pub struct VariantResult {
    /// Short name (`channel`, `exec`, `naive`, `direct`).
    pub key: &'static str,
    /// Long name.
    pub label: &'static str,
    /// Whether this is pty-resize's default mode.
    pub is_default: bool,
    /// The long session (first frame, latency, RSS).
    pub interactive: Option<Interactive>,
    /// The resize storm.
    pub storm: Option<Storm>,
    /// Launch → smolvm client start.
    pub start_offset: Option<StartOffsets>,
    /// Extra start-up time over smolvm alone: median of the per-round
    /// differences, ms.
    pub overhead_ms: Option<f64>,
    /// The same from the best launch of each, ms (no scheduling noise).
    pub overhead_best_ms: Option<f64>,
    /// The crun-window row (resize the moment the terminal goes raw).
    pub window: Option<Window>,
    /// The same with a crun window of [`crate::window::LONG_CRUN_MS`].
    pub window_long: Option<Window>,
    /// The shared-stdin row (inside tmux, the fake's opt-in switch on).
    pub tmux: Option<Robust>,
    /// Back-to-back short sessions.
    pub short: Option<Robust>,
    /// Neighbouring sessions on one machine.
    pub neighbours: Option<Robust>,
}

impl VariantResult {
    /// Every robustness row measured, in table order.
    pub fn robust_rows(&self) -> Vec<&Robust> {
        let window = self.window.as_ref().map(|w| &w.robust);
        let long = self.window_long.as_ref().map(|w| &w.robust);
        [
            window,
            long,
            self.short.as_ref(),
            self.neighbours.as_ref(),
            self.tmux.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Median of (guest frame at the new size − crun window's end), ms.
    pub fn after_window_median(&self) -> Option<f64> {
        let w = self.window.as_ref()?;
        stats::summarize(&w.after_window_ms).map(|s| s.median)
    }
}

/// One derived ratio.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// What is divided by what.
    pub what: String,
    /// The ratio (`None`: a side was not measured or is zero).
    pub value: Option<f64>,
}

/// One of the targets, for the default mode.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is checked.
    pub what: String,
    /// The target, in words.
    pub target: String,
    /// The measured value, in words.
    pub value: String,
    /// Met, missed, or `None` when not measured.
    pub met: Option<bool>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// When the run started (UTC).
    pub date: String,
    /// The command that ran it.
    pub command: String,
    /// Whether it was a `--quick` smoke run.
    pub quick: bool,
    /// The counts in force.
    pub counts: Counts,
    /// CPU cores of the machine.
    pub cores: usize,
    /// `FAKE_SMOLVM_BRINGUP_MS` in force (the fake's default).
    pub bringup_setting_ms: u64,
    /// `FAKE_SMOLVM_CRUN_MS` in force (the fake's default).
    pub crun_setting_ms: u64,
    /// pty-resize's default `--mode`, from its `-h`.
    pub default_mode: String,
    /// One plain exec's cost.
    pub bringup: Bringup,
    /// Per variant: default mode, alternative mode, naive bridge, smolvm alone.
    pub variants: Vec<VariantResult>,
    /// Derived ratios.
    pub ratios: Vec<Ratio>,
    /// The targets, for the default mode.
    pub targets: Vec<Target>,
}

impl Results {
    /// The variant with key `key`.
    pub fn variant(&self, key: &str) -> Option<&VariantResult> {
        self.variants.iter().find(|v| v.key == key)
    }
}

/// The `[default: X]` of `--mode` in pty-resize's short help (`-h`, where
/// clap puts each option on one line).
pub fn default_mode_from_help(help: &str) -> Option<String> {
    let line = help
        .lines()
        .find(|l| l.trim_start().starts_with("--mode"))?;
    let rest = &line[line.find("[default: ")? + "[default: ".len()..];
    Some(rest[..rest.find(']')?].to_string())
}

/// The same results for the unit tests of every results module.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::interactive::FirstFrame;
    use crate::stats::summarize;

    fn variant(key: &'static str, is_default: bool, latency: f64, execs: usize) -> VariantResult {
        VariantResult {
            key,
            label: key,
            is_default,
            interactive: Some(Interactive {
                first_frame: Some(FirstFrame {
                    ms: 260.0,
                    wrong_frames: 0,
                }),
                frames_without_correct: 0,
                latency: summarize(&[latency]),
                latency_samples: vec![latency],
                latency_missed: 0,
                rss_kib: Some(2048),
                guardian: None,
            }),
            storm: Some(Storm {
                resizes: 100,
                span_ms: 990.0,
                execs,
                execs_session: execs,
                vm_execs: 0,
                overlapped: false,
                settle_ms: Some(5.0),
            }),
            start_offset: None,
            overhead_ms: Some(0.5),
            overhead_best_ms: Some(0.4),
            window: Some(Window {
                robust: clean(20),
                inside: 20,
                after_window_ms: vec![200.0; 20],
                resize_to_frame_ms: vec![400.0; 20],
            }),
            window_long: Some(Window {
                robust: clean(5),
                inside: 5,
                after_window_ms: vec![30.0; 5],
                resize_to_frame_ms: vec![2700.0; 5],
            }),
            tmux: Some(clean(10)),
            short: Some(clean(20)),
            neighbours: Some(clean(10)),
        }
    }

    fn clean(launches: usize) -> Robust {
        Robust {
            launches,
            lost: 0,
            reasons: vec![],
            final_size: Some(launches),
        }
    }

    pub(crate) fn results() -> Results {
        let mut r = Results {
            date: "d".into(),
            command: "c".into(),
            quick: false,
            counts: Counts::FULL,
            cores: 2,
            bringup_setting_ms: 250,
            crun_setting_ms: 300,
            default_mode: "channel".into(),
            bringup: Bringup {
                wall: summarize(&[270.0]),
                window: summarize(&[250.0]),
            },
            variants: vec![
                variant("channel", true, 3.0, 1),
                variant("exec", false, 270.0, 4),
                variant("naive", false, 300.0, 100),
            ],
            ratios: vec![],
            targets: vec![],
        };
        r.derive();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mode_is_read_from_clap_help() {
        let help = "Options:\n      --mode <MODE>  How sizes are pushed [default: exec] [possible values: channel, exec]\n      --fallback-ms <MS>  Fallback [default: 2000]\n";
        assert_eq!(default_mode_from_help(help).as_deref(), Some("exec"));
        let other_first = "      --fallback-ms <MS>  [default: 2000]\n      --mode <MODE>  x [default: channel]\n";
        assert_eq!(
            default_mode_from_help(other_first).as_deref(),
            Some("channel")
        );
        assert_eq!(default_mode_from_help("nothing"), None);
    }
}
