//! The snapshot format: a fixed grid a person can read in a diff.
//!
//! ```text
//! size 20x3 cursor row 1 col 5 visible normal-screen
//! |hello               |
//! |world               |
//! |                    |
//! ```
//! One header line (size as COLSxROWS, cursor position from 0, whether the
//! cursor is shown, which screen buffer is active, then `app-keypad` and
//! `app-cursor` only when the program switched those input modes on, so a
//! snapshot of a program that leaves them alone reads as before), then every
//! row padded to exactly the width and framed by `|` so trailing spaces are
//! visible. Rows are never trimmed or dropped: a frame one row too short
//! shows up as a blank row in the diff.
//!
//! A styled snapshot ([`Grid::styled`]) adds, under the rows, the colours and
//! attributes as a run list (see [`crate::style`]):
//! ```text
//! styles (rows not listed are default):
//! r0: 0-4 fg=red bold; 5-19 default
//! ```

/// A screen as text, from an emulator (vt100) or from tmux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    /// Width in columns.
    pub cols: u16,
    /// Height in rows.
    pub rows: u16,
    /// The size the PTY reports, when it differs from the emulated one (a
    /// 0x0 PTY is emulated at 80x24 so the program's output stays visible).
    pub pty_size: Option<(u16, u16)>,
    /// Cursor row, from 0.
    pub cursor_row: u16,
    /// Cursor column, from 0.
    pub cursor_col: u16,
    /// Whether the cursor is shown.
    pub cursor_visible: bool,
    /// Whether the alternate screen is active.
    pub alternate: bool,
    /// Whether the keypad sends application sequences (DECKPAM, `ESC =`).
    pub app_keypad: bool,
    /// Whether the cursor keys send application sequences (DECCKM,
    /// `CSI ? 1 h`).
    pub app_cursor: bool,
    /// The colour run list, when the snapshot is styled.
    pub styles: Option<Vec<String>>,
    /// The rows, top to bottom; each is padded or cut to `cols` when rendered.
    pub lines: Vec<String>,
}

impl Grid {
    /// The grid of a vt100 screen.
    ///
    /// Limitation: a wide character (CJK, emoji) is one `char` for two cells,
    /// so its row renders one column wider per wide character. The programs
    /// the tests run draw none (box drawing is single-width).
    pub fn from_vt100(screen: &vt100::Screen) -> Grid {
        let (rows, cols) = screen.size();
        let (rows, cols) = (rows.get(), cols.get());
        let lines = (0..rows)
            .map(|r| {
                let mut line = String::new();
                for c in 0..cols {
                    match screen.cell(r, c) {
                        Some(cell) if cell.is_wide_continuation() => {}
                        Some(cell) if cell.has_contents() => line.push_str(cell.contents()),
                        _ => line.push(' '),
                    }
                }
                line
            })
            .collect();
        let (cursor_row, cursor_col) = screen.cursor_position();
        Grid {
            cols,
            rows,
            pty_size: None,
            cursor_row,
            cursor_col,
            cursor_visible: !screen.hide_cursor(),
            alternate: screen.alternate_screen(),
            app_keypad: screen.application_keypad(),
            app_cursor: screen.application_cursor(),
            lines,
            styles: None,
        }
    }

    /// The same grid with `screen`'s colours and attributes added under
    /// the rows (`screen` is the one the grid was read from).
    pub fn styled(mut self, screen: &vt100::Screen) -> Grid {
        self.styles = Some(crate::style::run_list(screen));
        self
    }

    /// The rendered snapshot (see the module docs).
    pub fn render(&self) -> String {
        let pty = match self.pty_size {
            Some((c, r)) if (c, r) != (self.cols, self.rows) => format!("pty {c}x{r} "),
            _ => String::new(),
        };
        let mut out = format!(
            "{pty}size {}x{} cursor row {} col {} {} {}\n",
            self.cols,
            self.rows,
            self.cursor_row,
            self.cursor_col,
            if self.cursor_visible {
                "visible"
            } else {
                "hidden"
            },
            if self.alternate {
                "alternate-screen"
            } else {
                "normal-screen"
            },
        );
        // Only when on: their default leaves every existing snapshot as is.
        if self.app_keypad {
            out.insert_str(out.len() - 1, " app-keypad");
        }
        if self.app_cursor {
            out.insert_str(out.len() - 1, " app-cursor");
        }
        let width = usize::from(self.cols);
        for r in 0..usize::from(self.rows) {
            let line = self.lines.get(r).map(String::as_str).unwrap_or("");
            let mut cells: String = line.chars().take(width).collect();
            let len = cells.chars().count();
            cells.extend(std::iter::repeat_n(' ', width - len));
            out.push('|');
            out.push_str(&cells);
            out.push_str("|\n");
        }
        if let Some(styles) = &self.styles {
            out.push_str("styles (rows not listed are default):\n");
            for line in styles {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// A `rows`x`cols` emulator that has been fed `bytes` (unit tests).
#[cfg(test)]
pub(crate) fn test_screen(rows: u16, cols: u16, bytes: &[u8]) -> vt100::Parser {
    let mut p = vt100::Parser::new(rows.try_into().unwrap(), cols.try_into().unwrap(), 0);
    p.process(bytes);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_screen as screen;

    #[test]
    fn rows_are_padded_framed_and_never_dropped() {
        let p = screen(3, 8, b"ab  \r\n  cd");
        let text = Grid::from_vt100(p.screen()).render();
        assert_eq!(
            text,
            "size 8x3 cursor row 1 col 4 visible normal-screen\n\
             |ab      |\n\
             |  cd    |\n\
             |        |\n"
        );
    }

    #[test]
    fn header_shows_hidden_cursor_and_alternate_screen() {
        let p = screen(2, 4, b"\x1b[?1049h\x1b[?25l\x1b[2;3Hx");
        let text = Grid::from_vt100(p.screen()).render();
        assert!(
            text.starts_with("size 4x2 cursor row 1 col 3 hidden alternate-screen\n"),
            "{text}"
        );
    }

    #[test]
    fn header_shows_input_modes_only_when_on() {
        let p = screen(1, 4, b"\x1b=\x1b[?1h");
        let text = Grid::from_vt100(p.screen()).render();
        assert!(
            text.starts_with(
                "size 4x1 cursor row 0 col 0 visible normal-screen app-keypad app-cursor\n"
            ),
            "{text}"
        );
        let p = screen(1, 4, b"\x1b=\x1b[?1h\x1b>\x1b[?1l");
        let text = Grid::from_vt100(p.screen()).render();
        assert!(
            text.starts_with("size 4x1 cursor row 0 col 0 visible normal-screen\n"),
            "{text}"
        );
    }

    #[test]
    fn a_styled_grid_lists_runs_under_the_rows() {
        let p = screen(2, 6, b"\x1b[32mok\x1b[m");
        let text = Grid::from_vt100(p.screen()).styled(p.screen()).render();
        assert_eq!(
            text,
            "size 6x2 cursor row 0 col 2 visible normal-screen\n\
             |ok    |\n\
             |      |\n\
             styles (rows not listed are default):\n\
             r0: 0-1 fg=green; 2-5 default\n"
        );
    }

    #[test]
    fn long_lines_are_cut_and_a_differing_pty_size_is_shown() {
        let grid = Grid {
            cols: 3,
            rows: 1,
            pty_size: Some((0, 0)),
            cursor_row: 0,
            cursor_col: 0,
            cursor_visible: true,
            alternate: false,
            app_keypad: false,
            app_cursor: false,
            lines: vec!["abcdef".into()],
            styles: None,
        };
        assert_eq!(
            grid.render(),
            "pty 0x0 size 3x1 cursor row 0 col 0 visible normal-screen\n|abc|\n"
        );
    }
}
