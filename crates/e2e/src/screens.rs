//! The last few distinct settled screens of a session (`screens.txt` in a
//! failure folder): the history that led to the failing screen, not just
//! the failing screen itself.

use std::collections::VecDeque;
use std::fmt::Write as _;

/// How many screens are kept.
pub const KEEP: usize = 10;

/// The last [`KEEP`] settled screens, each different from the one before,
/// with the session time (seconds, as in the `.cast`) it settled at.
#[derive(Debug, Default, Clone)]
pub struct Screens {
    screens: VecDeque<(f64, String)>,
}

impl Screens {
    /// Adds a settled screen (in snapshot format) unless it is the same as
    /// the last one kept.
    pub fn push(&mut self, at: f64, screen: String) {
        if self.screens.back().is_some_and(|(_, last)| *last == screen) {
            return;
        }
        if self.screens.len() == KEEP {
            self.screens.pop_front();
        }
        self.screens.push_back((at, screen));
    }

    /// How many screens are kept.
    pub fn len(&self) -> usize {
        self.screens.len()
    }

    /// Whether no screen was kept.
    pub fn is_empty(&self) -> bool {
        self.screens.is_empty()
    }

    /// The screens, oldest first, then `now` (the screen at the failure,
    /// settled or not), each under a `--- … ---` line with its time.
    pub fn render(&self, now: (f64, &str)) -> String {
        let mut out = String::new();
        let n = self.screens.len();
        for (i, (at, screen)) in self.screens.iter().enumerate() {
            let _ = writeln!(out, "--- settled screen {} of {n}, at {at:.3}s ---", i + 1);
            out.push_str(screen);
        }
        let _ = writeln!(out, "--- the screen at the failure, at {:.3}s ---", now.0);
        out.push_str(now.1);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_distinct_screens() {
        let mut s = Screens::default();
        for i in 0..(KEEP + 3) {
            s.push(i as f64, format!("screen {i}\n"));
            s.push(i as f64 + 0.5, format!("screen {i}\n"));
        }
        assert_eq!(s.len(), KEEP);
        let text = s.render((99.0, "now\n"));
        assert!(
            !text.contains("screen 2\n") && text.contains("screen 3\n"),
            "{text}"
        );
        assert!(text.ends_with("at 99.000s ---\nnow\n"), "{text}");
        assert_eq!(text.matches("screen 12\n").count(), 1, "{text}");
    }
}
