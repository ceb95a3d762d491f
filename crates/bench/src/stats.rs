//! Summaries of samples: median and p95 (nearest rank), pure.

use serde::Serialize;

/// A summary of millisecond samples.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    /// The median (mean of the two middle samples for an even count).
    pub median: f64,
    /// The 95th percentile, nearest rank.
    pub p95: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
}

/// Summarises `samples`; `None` when there are none.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    // Nearest rank: the smallest sample with at least 95% of them at or below it.
    let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
    Some(Summary {
        n,
        median,
        p95: s[rank - 1],
        min: s[0],
        max: s[n - 1],
    })
}

/// `a / b`, when both exist and `b` is not (close to) zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.abs() > 1e-9 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn median(samples: &[f64]) -> Option<f64> {
        summarize(samples).map(|s| s.median)
    }

    #[test]
    fn odd_and_even_medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn p95_is_nearest_rank() {
        let samples: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = summarize(&samples).unwrap();
        assert_eq!(s.p95, 19.0);
        assert_eq!((s.min, s.max, s.n), (1.0, 20.0, 20));
        assert_eq!(summarize(&[7.0]).unwrap().p95, 7.0);
    }

    #[test]
    fn ratio_needs_both_and_a_nonzero_divisor() {
        assert_eq!(ratio(Some(10.0), Some(2.0)), Some(5.0));
        assert_eq!(ratio(Some(10.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }
}
