//! The colours and attributes of a screen as a compact run list, for
//! snapshots that must see colour (`Term::snapshot_styled`):
//!
//! ```text
//! r0: 0-9 fg=red bold; 10-79 default
//! r3: 0-79 bg=blue
//! ```
//! One line per row that has any non-default cell (rows not listed are
//! entirely default), each a list of column ranges (from 0, inclusive) with
//! the same style. Colours: the 8 ANSI names, `bright-` + name for 8–15,
//! `idx N` for the 256-colour palette, `#rrggbb` for true colour.

use std::fmt::Write as _;

/// The style of one cell, as the emulator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CellStyle {
    /// Foreground colour.
    pub fg: vt100::Color,
    /// Background colour.
    pub bg: vt100::Color,
    /// Bold.
    pub bold: bool,
    /// Dim (faint).
    pub dim: bool,
    /// Italic.
    pub italic: bool,
    /// Underlined.
    pub underline: bool,
    /// Inverse video (fg and bg swapped when drawn).
    pub inverse: bool,
}

impl CellStyle {
    /// The style of `cell`.
    pub fn of(cell: &vt100::Cell) -> CellStyle {
        CellStyle {
            fg: cell.fgcolor(),
            bg: cell.bgcolor(),
            bold: cell.bold(),
            dim: cell.dim(),
            italic: cell.italic(),
            underline: cell.underline(),
            inverse: cell.inverse(),
        }
    }

    /// `fg=red bold`, or `default` for the default style.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.fg != vt100::Color::Default {
            parts.push(format!("fg={}", color_name(self.fg)));
        }
        if self.bg != vt100::Color::Default {
            parts.push(format!("bg={}", color_name(self.bg)));
        }
        for (on, name) in [
            (self.bold, "bold"),
            (self.dim, "dim"),
            (self.italic, "italic"),
            (self.underline, "underline"),
            (self.inverse, "inverse"),
        ] {
            if on {
                parts.push(name.to_string());
            }
        }
        if parts.is_empty() {
            "default".to_string()
        } else {
            parts.join(" ")
        }
    }
}

const NAMES: [&str; 8] = [
    "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white",
];

/// A colour's name in the run list.
pub fn color_name(color: vt100::Color) -> String {
    match color {
        vt100::Color::Default => "default".to_string(),
        vt100::Color::Idx(i @ 0..=7) => NAMES[usize::from(i)].to_string(),
        vt100::Color::Idx(i @ 8..=15) => format!("bright-{}", NAMES[usize::from(i - 8)]),
        vt100::Color::Idx(i) => format!("idx{i}"),
        vt100::Color::Rgb(r, g, b) => format!("#{r:02x}{g:02x}{b:02x}"),
    }
}

/// The styles of one row, as runs of equal style: `(first col, last col,
/// style)`. The second half of a wide character takes its first half's style.
pub fn row_runs(screen: &vt100::Screen, row: u16) -> Vec<(u16, u16, CellStyle)> {
    let cols = screen.size().1.get();
    let mut runs: Vec<(u16, u16, CellStyle)> = Vec::new();
    for col in 0..cols {
        let style = match screen.cell(row, col) {
            Some(cell) if cell.is_wide_continuation() && col > 0 => {
                runs.last().map_or_else(CellStyle::default, |r| r.2)
            }
            Some(cell) => CellStyle::of(cell),
            None => CellStyle::default(),
        };
        match runs.last_mut() {
            Some(last) if last.2 == style => last.1 = col,
            _ => runs.push((col, col, style)),
        }
    }
    runs
}

/// The run list of every row with a non-default cell (see the module docs).
pub fn run_list(screen: &vt100::Screen) -> Vec<String> {
    let rows = screen.size().0.get();
    let mut out = Vec::new();
    for row in 0..rows {
        let runs = row_runs(screen, row);
        if runs.iter().all(|r| r.2 == CellStyle::default()) {
            continue;
        }
        let mut line = format!("r{row}:");
        for (i, (a, b, style)) in runs.iter().enumerate() {
            let sep = if i == 0 { " " } else { "; " };
            let _ = write!(line, "{sep}{a}-{b} {}", style.describe());
        }
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::snapshot::test_screen as screen;

    #[test]
    fn runs_of_colour_and_attributes() {
        let p = screen(
            3,
            10,
            b"\x1b[31;1mred\x1b[0m ok\r\n\x1b[44;7m  \x1b[0m\r\n\x1b[38;5;208mx\x1b[38;2;1;2;3my\x1b[93mz",
        );
        assert_eq!(
            run_list(p.screen()),
            [
                "r0: 0-2 fg=red bold; 3-9 default",
                "r1: 0-1 bg=blue inverse; 2-9 default",
                "r2: 0-0 fg=idx208; 1-1 fg=#010203; 2-2 fg=bright-yellow; 3-9 default",
            ]
        );
    }

    #[test]
    fn a_plain_screen_has_no_runs() {
        let p = screen(2, 5, b"plain\r\ntext");
        assert!(run_list(p.screen()).is_empty());
    }
}
