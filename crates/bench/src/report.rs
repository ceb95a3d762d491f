//! The results: their JSON shape, the ratios and targets derived from them
//! (pure), and the table a person reads.

use serde::Serialize;

use crate::args::Counts;
use crate::cost::{Bringup, StartOffsets};
use crate::interactive::Interactive;
use crate::robust::Robust;
use crate::stats::{self, ratio};
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
        [
            window,
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

    fn default_variant(&self) -> Option<&VariantResult> {
        self.variants.iter().find(|v| v.is_default)
    }

    fn alternative(&self) -> Option<&VariantResult> {
        self.variants
            .iter()
            .find(|v| !v.is_default && matches!(v.key, "channel" | "exec"))
    }

    /// Fills in [`Results::ratios`] and [`Results::targets`].
    pub fn derive(&mut self) {
        self.ratios = ratios(self);
        self.targets = targets(self);
    }
}

fn latency_median(v: Option<&VariantResult>) -> Option<f64> {
    v?.interactive.as_ref()?.latency.as_ref().map(|s| s.median)
}

fn first_ms(v: Option<&VariantResult>) -> Option<f64> {
    v?.interactive.as_ref()?.first_frame.as_ref().map(|f| f.ms)
}

fn storm_execs(v: Option<&VariantResult>) -> Option<f64> {
    v?.storm.as_ref().map(|s| s.execs_session as f64)
}

fn bringup_wall(r: &Results) -> Option<f64> {
    r.bringup.wall.as_ref().map(|s| s.median)
}

fn ratios(r: &Results) -> Vec<Ratio> {
    let (def, alt, naive) = (r.default_variant(), r.alternative(), r.variant("naive"));
    let name = |v: Option<&VariantResult>| v.map_or("?", |v| v.key);
    let offset =
        |v: Option<&VariantResult>| v?.start_offset.as_ref()?.summary.as_ref().map(|s| s.median);
    vec![
        Ratio {
            what: "one exec bring-up (wall) / default-mode resize latency".into(),
            value: ratio(bringup_wall(r), latency_median(def)),
        },
        Ratio {
            what: format!("resize latency: naive / default ({})", name(def)),
            value: ratio(latency_median(naive), latency_median(def)),
        },
        Ratio {
            what: format!(
                "resize latency: alternative ({}) / default ({})",
                name(alt),
                name(def)
            ),
            value: ratio(latency_median(alt), latency_median(def)),
        },
        Ratio {
            what: "time to correct size: naive / default".into(),
            value: ratio(first_ms(naive), first_ms(def)),
        },
        Ratio {
            what: "storm side-channel execs: naive / default".into(),
            value: ratio(storm_execs(naive), storm_execs(def)),
        },
        Ratio {
            what: "start-up offset: default / smolvm alone".into(),
            value: ratio(offset(def), offset(r.variant("direct"))),
        },
    ]
}

fn check(what: &str, target: &str, value: Option<(String, bool)>) -> Target {
    Target {
        what: what.into(),
        target: target.into(),
        value: value
            .as_ref()
            .map_or_else(|| "not measured".into(), |(v, _)| v.clone()),
        met: value.map(|(_, met)| met),
    }
}

fn targets(r: &Results) -> Vec<Target> {
    let def = r.default_variant();
    let inter = def.and_then(|v| v.interactive.as_ref());
    let wrong = inter.map(|i| match &i.first_frame {
        Some(f) => (
            format!("{} wrong frames", f.wrong_frames),
            f.wrong_frames == 0,
        ),
        None => ("never at the host size".to_string(), false),
    });
    let latency = latency_median(def).map(|ms| (format!("{ms:.2} ms"), ms <= 5.0));
    let speedup =
        ratio(bringup_wall(r), latency_median(def)).map(|x| (format!("{x:.0}x lower"), x >= 10.0));
    let storm = def
        .and_then(|v| v.storm.as_ref())
        .map(|s| (format!("{} execs", s.execs_session), s.execs_session <= 2));
    let window = def.and_then(|v| {
        let w = v.window.as_ref()?;
        let push = bringup_wall(r)?;
        let missing = w.robust.launches - w.after_window_ms.len();
        let after = v.after_window_median()?;
        let missed = if missing > 0 {
            format!(", {missing} never")
        } else {
            String::new()
        };
        Some((
            format!(
                "+{} ms (one push: {} ms){missed}",
                ms(Some(after)),
                ms(Some(push))
            ),
            after <= push && missing == 0,
        ))
    });
    let rss = inter
        .and_then(|i| i.rss_kib)
        .map(|k| (format!("{:.2} MiB", k as f64 / 1024.0), k <= 3 * 1024));
    let overhead = def
        .and_then(|v| v.overhead_ms)
        .map(|ms| (format!("{ms:.2} ms"), ms <= 2.0));
    let lost = def.and_then(|v| {
        let rows = v.robust_rows();
        if rows.len() < 4 {
            return None;
        }
        let lost: usize = rows.iter().map(|r| r.lost).sum();
        let total: usize = rows.iter().map(|r| r.launches).sum();
        Some((format!("{lost} of {total}"), lost == 0))
    });
    vec![
        check("first frame at the host size", "0 wrong frames", wrong),
        check("steady-state resize latency, median", "<= 5 ms", latency),
        check(
            "resize latency vs one exec bring-up",
            ">= 10x lower",
            speedup,
        ),
        check("100-resize storm", "<= 2 side-channel execs", storm),
        check(
            "resize in the crun window → guest",
            "<= window end + one push",
            window,
        ),
        check("wrapper start-up overhead, median", "<= 2 ms", overhead),
        check("wrapper peak RSS", "<= 3 MiB", rss),
        check("sessions lost (all robustness rows)", "0", lost),
    ]
}

/// A number of ms, or a dash.
pub fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "—".into(),
    }
}

/// Renders `rows` (the first one the header) as a Markdown table with
/// padded columns.
pub fn markdown(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |c: usize| {
        rows.iter()
            .filter_map(|r| r.get(c))
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(0)
            .max(3)
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let pad = |r: &Vec<String>| {
        (0..cols)
            .map(|c| {
                let s = r.get(c).map_or("", String::as_str);
                format!("{s}{}", " ".repeat(widths[c] - s.chars().count()))
            })
            .collect::<Vec<_>>()
    };
    let mut out = String::new();
    if let Some(head) = rows.first() {
        out += &line(pad(head));
        out += &line(widths.iter().map(|w| "-".repeat(*w)).collect());
        for r in &rows[1..] {
            out += &line(pad(r));
        }
    }
    out
}

fn robust_cell(r: Option<&Robust>) -> String {
    r.map_or("—".into(), |r| format!("{} of {}", r.lost, r.launches))
}

/// Sessions whose guest ended at the new size, out of all.
fn final_cell(r: Option<&Robust>) -> String {
    match r {
        Some(Robust {
            launches,
            final_size: Some(k),
            ..
        }) => format!("{k} of {launches}"),
        _ => "—".into(),
    }
}

/// The main table: one row per figure, one column per variant.
pub fn table(r: &Results) -> String {
    let mut head = vec!["figure".to_string()];
    head.extend(r.variants.iter().map(|v| {
        if v.is_default {
            format!("{} (default)", v.label)
        } else {
            v.label.to_string()
        }
    }));
    let row = |name: &str, f: &dyn Fn(&VariantResult) -> String| {
        let mut cells = vec![name.to_string()];
        cells.extend(r.variants.iter().map(f));
        cells
    };
    let inter = |v: &VariantResult| v.interactive.clone();
    let rows = vec![
        head,
        row("time to correct size, ms", &|v| match inter(v) {
            Some(i) => i.first_frame.map_or("never".into(), |f| ms(Some(f.ms))),
            None => "—".into(),
        }),
        row("frames at a wrong size first", &|v| match inter(v) {
            Some(i) => match i.first_frame {
                Some(f) => f.wrong_frames.to_string(),
                None => format!("all ({})", i.frames_without_correct),
            },
            None => "—".into(),
        }),
        row("resize latency median / p95, ms", &|v| match inter(v)
            .and_then(|i| i.latency.map(|s| (s, i.latency_missed)))
        {
            Some((s, 0)) => format!("{} / {}", ms(Some(s.median)), ms(Some(s.p95))),
            Some((s, missed)) => format!(
                "{} / {} ({missed} missed)",
                ms(Some(s.median)),
                ms(Some(s.p95))
            ),
            None => "—".into(),
        }),
        row("storm: side-channel execs (whole session)", &|v| {
            v.storm.as_ref().map_or("—".into(), |s| {
                format!("{} ({})", s.execs, s.execs_session)
            })
        }),
        row("storm: any two execs overlapped", &|v| {
            v.storm.as_ref().map_or("—".into(), |s| {
                if s.overlapped { "yes" } else { "no" }.into()
            })
        }),
        row("storm: last resize → final size, ms", &|v| {
            v.storm.as_ref().map_or("—".into(), |s| {
                s.settle_ms.map_or("never".into(), |x| ms(Some(x)))
            })
        }),
        row("launch → session request at the agent, median ms", &|v| {
            ms(v.start_offset
                .as_ref()
                .and_then(|s| s.summary.as_ref())
                .map(|s| s.median))
        }),
        row(
            "start-up overhead vs smolvm alone, ms (median / best)",
            &|v| match (v.overhead_ms, v.overhead_best_ms) {
                (Some(m), Some(b)) => format!("{m:.2} / {b:.2}"),
                _ => "—".into(),
            },
        ),
        row("peak RSS of the process, MiB", &|v| {
            inter(v)
                .and_then(|i| i.rss_kib)
                .map_or("—".into(), |k| format!("{:.2}", k as f64 / 1024.0))
        }),
        row(
            "resize at raw mode (in the crun window): lost to the config.json race",
            &|v| robust_cell(v.window.as_ref().map(|w| &w.robust)),
        ),
        row(
            "resize at raw mode: guest at the new size, ms after the window's end (median)",
            &|v| match v.window.as_ref() {
                Some(w) if w.after_window_ms.is_empty() => "never".into(),
                Some(w) => {
                    let never = w.robust.launches - w.after_window_ms.len();
                    let tail = if never > 0 {
                        format!(" ({never} never)")
                    } else {
                        String::new()
                    };
                    format!("+{}{tail}", ms(v.after_window_median()))
                }
                None => "—".into(),
            },
        ),
        row("back-to-back short sessions (`-t -- true`): lost", &|v| {
            robust_cell(v.short.as_ref())
        }),
        row("neighbouring sessions (100 ms apart): lost", &|v| {
            robust_cell(v.neighbours.as_ref())
        }),
        row("neighbouring sessions: guest ended at the new size", &|v| {
            final_cell(v.neighbours.as_ref())
        }),
        row(
            "tmux, opt-in FAKE_SMOLVM_SHARED_STDIN=tmux: lost to the shared-stdin abort",
            &|v| robust_cell(v.tmux.as_ref()),
        ),
    ];
    markdown(&rows)
}

/// Everything printed: the table, one exec's cost, the ratios, the targets.
pub fn render(r: &Results) -> String {
    let mut out = format!(
        "pty-resize bench — {} — `{}`{}\n{} cores; fake-smolvm default timings (bring-up {} ms, crun window {} ms)\n\n",
        r.date,
        r.command,
        if r.quick { " (quick: small counts)" } else { "" },
        r.cores,
        r.bringup_setting_ms,
        r.crun_setting_ms
    );
    out += &table(r);
    let c = &r.counts;
    out += &format!(
        "\ncounts: {} timed resizes, a {}-resize storm over 1 s, {} launches for the start-up cost, \
         {} for the crun-window row (resize at raw mode), {} back-to-back short sessions, \
         {} round(s) of {} neighbours, {} for the tmux row (resize {} ms after launch)\n",
        c.latency_resizes,
        c.storm_resizes,
        c.cost_launches,
        c.window_launches,
        c.short_sessions,
        c.neighbour_rounds,
        c.neighbours,
        c.tmux_launches,
        crate::robust::TMUX_RESIZE_MS,
    );
    out += &format!(
        "one plain `machine exec -- true`: {} ms wall (median of {}), request → command start {} ms\n",
        ms(r.bringup.wall.as_ref().map(|s| s.median)),
        r.bringup.wall.as_ref().map_or(0, |s| s.n),
        ms(r.bringup.window.as_ref().map(|s| s.median)),
    );
    out += "\nratios:\n";
    for x in &r.ratios {
        let value = x.value.map_or("—".into(), |v| format!("{v:.1}x"));
        out += &format!("  {:<62} {value}\n", x.what);
    }
    out += &format!("\ntargets (default mode: {}):\n", r.default_mode);
    for t in &r.targets {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        out += &format!(
            "  {:<38} {:<26} {:<34} {verdict}\n",
            t.what, t.target, t.value
        );
    }
    out
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

#[cfg(test)]
mod tests {
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
            }),
            storm: Some(Storm {
                resizes: 100,
                span_ms: 990.0,
                execs,
                execs_session: execs,
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

    fn results() -> Results {
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

    #[test]
    fn ratios_divide_by_the_default_mode() {
        let r = results();
        assert_eq!(r.ratios[0].value, Some(90.0));
        assert_eq!(r.ratios[1].value, Some(100.0));
        assert_eq!(r.ratios[2].value, Some(90.0));
        assert_eq!(r.ratios[4].value, Some(100.0));
    }

    #[test]
    fn targets_are_met_or_missed_by_the_figures() {
        let mut r = results();
        assert!(
            r.targets.iter().all(|t| t.met == Some(true)),
            "{:?}",
            r.targets
        );
        r.variants[0].storm.as_mut().unwrap().execs_session = 3;
        r.variants[0].interactive.as_mut().unwrap().rss_kib = Some(4096);
        r.variants[0].window.as_mut().unwrap().after_window_ms = vec![1900.0; 20];
        r.variants[0].short.as_mut().unwrap().lost = 1;
        r.derive();
        let missed: Vec<_> = r
            .targets
            .iter()
            .filter(|t| t.met == Some(false))
            .map(|t| t.what.as_str())
            .collect();
        assert_eq!(
            missed,
            [
                "100-resize storm",
                "resize in the crun window → guest",
                "wrapper peak RSS",
                "sessions lost (all robustness rows)"
            ]
        );
    }

    #[test]
    fn table_has_a_column_per_variant_and_marks_the_default() {
        let text = table(&results());
        let head = text.lines().next().unwrap();
        assert!(head.contains("channel (default)") && head.contains("naive"));
        assert!(text.contains("| 0 of 20"));
        assert!(text.contains("| +200"));
        assert!(text.lines().all(|l| l.starts_with('|') && l.ends_with('|')));
    }

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
