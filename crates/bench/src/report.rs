//! The text a person reads: the main table (one row per figure, one column
//! per variant), one exec's cost, the ratios and the targets. The results
//! themselves are [`crate::results`].

pub use crate::results::{default_mode_from_help, Results, VariantResult};
use crate::robust::Robust;

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
        row("storm: vm_execs at VM level (agent transport)", &|v| {
            v.storm
                .as_ref()
                .map_or("—".into(), |s| s.vm_execs.to_string())
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
            "terminal guardian: peak RSS MiB / start-up ms",
            &|v| match inter(v).and_then(|i| i.guardian) {
                Some(g) => format!(
                    "{} / {:.2}",
                    g.rss_kib
                        .map_or("—".into(), |k| format!("{:.2}", k as f64 / 1024.0)),
                    g.start_ms
                ),
                None => "—".into(),
            },
        ),
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
        row(
            &format!(
                "resize at raw mode, crun window {} ms: lost",
                crate::window::LONG_CRUN_MS
            ),
            &|v| robust_cell(v.window_long.as_ref().map(|w| &w.robust)),
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
         {} for the crun-window row (resize at raw mode), {} for the {} ms one, {} back-to-back short sessions, \
         {} round(s) of {} neighbours, {} for the tmux row (resize {} ms after launch)\n",
        c.latency_resizes,
        c.storm_resizes,
        c.cost_launches,
        c.window_launches,
        c.long_window_launches,
        crate::window::LONG_CRUN_MS,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::fixtures::results;

    #[test]
    fn table_has_a_column_per_variant_and_marks_the_default() {
        let text = table(&results());
        let head = text.lines().next().unwrap();
        assert!(head.contains("channel (default)") && head.contains("naive"));
        assert!(text.contains("| 0 of 20"));
        assert!(text.contains("| +200"));
        assert!(text.lines().all(|l| l.starts_with('|') && l.ends_with('|')));
    }
}
