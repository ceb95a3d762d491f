//! What guest-tui shows, as pure functions of its state: the status line and
//! the whole screen as lines of text. Nothing here touches a terminal, so the
//! layout is unit-tested directly.

use std::fmt;

/// A terminal size as the PTY reports it; either dimension may be 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl Size {
    /// Whether a frame can be drawn at all (both dimensions non-zero).
    pub fn is_drawable(self) -> bool {
        self.cols > 0 && self.rows > 0
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.cols, self.rows)
    }
}

/// Everything one frame depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View<'a> {
    /// `--label`, if given.
    pub label: Option<&'a str>,
    /// The size this frame is drawn at.
    pub size: Size,
    /// The size the first frame was drawn at.
    pub first: Size,
    /// How many frames have been drawn, this one included.
    pub frames: u64,
    /// How many SIGWINCH have been received.
    pub winch: u64,
}

/// The line shown when a dimension is 0.
pub const NO_SIZE: &str = "no size: cannot draw";

/// The status line (contract, docs/contracts.md): single spaces, the label
/// left out entirely when absent, so tests can match `size 100x30`.
pub fn status_line(view: &View<'_>) -> String {
    let label = view.label.map(|l| format!(" {l}")).unwrap_or_default();
    format!(
        "guest-tui{label} size {} first {} frames {} winch {}",
        view.size, view.first, view.frames, view.winch
    )
}

/// The whole screen, one string per row, top to bottom.
///
/// At a drawable size every row is at most `cols` characters wide (the status
/// line is cut, so it never wraps and pushes the box down) and there are at
/// most `rows` rows. The box fills rows 2..=rows and all columns when there is
/// room for it (rows >= 3, cols >= 10). At 0xN or Nx0 the status line is kept
/// whole and followed by [`NO_SIZE`]: there is no width to cut it to.
pub fn screen_lines(view: &View<'_>) -> Vec<String> {
    let status = status_line(view);
    let size = view.size;
    if !size.is_drawable() {
        return vec![status, NO_SIZE.to_string()];
    }
    let cols = usize::from(size.cols);
    let rows = usize::from(size.rows);
    let mut lines = vec![truncate(&status, cols)];
    let believed = format!("believed {size}");
    if rows >= 3 && cols >= 10 {
        lines.extend(box_lines(cols, rows - 1, &[&believed, "press q to quit"]));
    } else if rows >= 2 {
        // Too small for a box: still say what we believe.
        lines.push(truncate(&believed, cols));
    }
    lines
}

/// A box `width` x `height` (both >= 2) with `text` centered inside, one
/// entry per line, starting at the middle row; text that does not fit is cut.
fn box_lines(width: usize, height: usize, text: &[&str]) -> Vec<String> {
    let inner = width - 2;
    let inner_rows = height - 2;
    let first_text_row = inner_rows.saturating_sub(text.len()) / 2;
    let mut lines = Vec::with_capacity(height);
    lines.push(format!("┌{}┐", "─".repeat(inner)));
    for row in 0..inner_rows {
        let content = row
            .checked_sub(first_text_row)
            .and_then(|i| text.get(i))
            .map(|t| center(&truncate(t, inner), inner))
            .unwrap_or_else(|| " ".repeat(inner));
        lines.push(format!("│{content}│"));
    }
    lines.push(format!("└{}┘", "─".repeat(inner)));
    lines
}

/// The first `width` characters of `text`.
fn truncate(text: &str, width: usize) -> String {
    text.chars().take(width).collect()
}

/// `text` (at most `width` chars) padded with spaces to exactly `width`, centered.
fn center(text: &str, width: usize) -> String {
    let len = text.chars().count();
    let left = (width - len) / 2;
    let right = width - len - left;
    format!("{}{text}{}", " ".repeat(left), " ".repeat(right))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(label: Option<&str>, cols: u16, rows: u16) -> View<'_> {
        View {
            label,
            size: Size { cols, rows },
            first: Size {
                cols: 100,
                rows: 30,
            },
            frames: 3,
            winch: 2,
        }
    }

    #[test]
    fn status_line_with_and_without_label() {
        assert_eq!(
            status_line(&view(None, 60, 20)),
            "guest-tui size 60x20 first 100x30 frames 3 winch 2"
        );
        assert_eq!(
            status_line(&view(Some("main"), 0, 0)),
            "guest-tui main size 0x0 first 100x30 frames 3 winch 2"
        );
    }

    #[test]
    fn zero_size_keeps_status_and_says_it_cannot_draw() {
        for (c, r) in [(0, 0), (0, 30), (100, 0)] {
            let lines = screen_lines(&view(None, c, r));
            assert_eq!(lines.len(), 2);
            assert!(lines[0].contains(&format!("size {c}x{r}")), "{lines:?}");
            assert_eq!(lines[1], NO_SIZE);
        }
    }

    #[test]
    fn box_fills_the_believed_size_exactly() {
        let lines = screen_lines(&view(None, 40, 10));
        assert_eq!(lines.len(), 10);
        for line in &lines[1..] {
            assert_eq!(line.chars().count(), 40, "{line:?}");
        }
        assert!(lines[1].starts_with('┌') && lines[1].ends_with('┐'));
        assert!(lines[9].starts_with('└') && lines[9].ends_with('┘'));
        let believed = lines.iter().find(|l| l.contains("believed 40x10")).unwrap();
        // Centered: as many spaces on each side, give or take one.
        let inner: String = believed.chars().skip(1).take(38).collect();
        let left = inner.len() - inner.trim_start().len();
        let right = inner.len() - inner.trim_end().len();
        assert!(left.abs_diff(right) <= 1, "{believed:?}");
    }

    #[test]
    fn status_is_cut_to_the_width_and_never_wraps() {
        let lines = screen_lines(&view(Some("a-long-label"), 12, 3));
        assert_eq!(lines[0], "guest-tui a-");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1], "┌──────────┐");
        assert_eq!(lines[2], "└──────────┘");
    }

    #[test]
    fn tiny_sizes_draw_no_box_and_do_not_panic() {
        for cols in 1..12 {
            for rows in 1..5 {
                let lines = screen_lines(&view(None, cols, rows));
                assert!(lines.len() <= usize::from(rows), "{cols}x{rows}: {lines:?}");
                for line in &lines {
                    assert!(line.chars().count() <= usize::from(cols), "{line:?}");
                }
            }
        }
        assert_eq!(screen_lines(&view(None, 9, 5))[1], "believed ");
    }

    #[test]
    fn text_that_does_not_fit_inside_is_cut() {
        let lines = box_lines(10, 3, &["believed 100x30"]);
        assert_eq!(lines[1], "│believed│");
    }
}
