//! The ratios and the targets derived from the results (pure).

use crate::report::ms;
use crate::results::{Ratio, Results, Target, VariantResult};
use crate::stats::ratio;

impl Results {
    fn default_variant(&self) -> Option<&VariantResult> {
        self.variants.iter().find(|v| v.is_default)
    }

    fn alternative(&self) -> Option<&VariantResult> {
        self.variants
            .iter()
            .find(|v| !v.is_default && matches!(v.key, "agent" | "channel" | "exec"))
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

#[cfg(test)]
mod tests {
    use crate::results::fixtures::results;

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
}
