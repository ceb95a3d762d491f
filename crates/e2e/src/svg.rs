//! A screen as an SVG picture (`screen.svg` in a failure folder): the cells
//! with their colours, bold/italic/underline/inverse, and the cursor as a
//! block, laid out on an exact character grid.
//!
//! Why not anstyle-svg: it renders a stream of styled text, not a grid; it
//! has no cursor, paints backgrounds with `█` glyphs whose width depends on
//! the font, and sizes the picture from the longest line. Here every run of
//! equally styled cells is placed at its column, backgrounds are rectangles
//! of exactly its cells, and `textLength` pins each run to its cells' width,
//! so the picture keeps the terminal's geometry whatever font the viewer
//! has.

use std::fmt::Write as _;

use crate::style::{row_runs, CellStyle};

/// Cell width and height in pixels, and the font size that fits them.
const CELL_W: u32 = 9;
const CELL_H: u32 = 18;
const FONT_PX: u32 = 15;
/// Baseline offset within a cell.
const BASELINE: u32 = 14;

/// The default foreground and background (xterm's defaults, light on dark).
const DEFAULT_FG: (u8, u8, u8) = (0xe5, 0xe5, 0xe5);
const DEFAULT_BG: (u8, u8, u8) = (0x10, 0x10, 0x10);

/// xterm's 16 standard colours.
const ANSI16: [(u8, u8, u8); 16] = [
    (0x00, 0x00, 0x00),
    (0xcd, 0x00, 0x00),
    (0x00, 0xcd, 0x00),
    (0xcd, 0xcd, 0x00),
    (0x00, 0x00, 0xee),
    (0xcd, 0x00, 0xcd),
    (0x00, 0xcd, 0xcd),
    (0xe5, 0xe5, 0xe5),
    (0x7f, 0x7f, 0x7f),
    (0xff, 0x00, 0x00),
    (0x00, 0xff, 0x00),
    (0xff, 0xff, 0x00),
    (0x5c, 0x5c, 0xff),
    (0xff, 0x00, 0xff),
    (0x00, 0xff, 0xff),
    (0xff, 0xff, 0xff),
];

/// A colour as RGB, `default` standing for `fallback`.
fn rgb(color: vt100::Color, fallback: (u8, u8, u8)) -> (u8, u8, u8) {
    match color {
        vt100::Color::Default => fallback,
        vt100::Color::Idx(i @ 0..=15) => ANSI16[usize::from(i)],
        // The 6x6x6 cube, then 24 greys, as xterm defines them.
        vt100::Color::Idx(i @ 16..=231) => {
            let level = |n: u8| if n == 0 { 0 } else { 55 + 40 * n };
            let n = i - 16;
            (level(n / 36), level((n / 6) % 6), level(n % 6))
        }
        vt100::Color::Idx(i) => {
            let v = 8 + 10 * (i - 232);
            (v, v, v)
        }
        vt100::Color::Rgb(r, g, b) => (r, g, b),
    }
}

fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The colours a cell is drawn with: inverse (and the block cursor) swap
/// them.
fn colors(style: &CellStyle, cursor: bool) -> ((u8, u8, u8), (u8, u8, u8)) {
    let fg = rgb(style.fg, DEFAULT_FG);
    let bg = rgb(style.bg, DEFAULT_BG);
    if style.inverse != cursor {
        (bg, fg)
    } else {
        (fg, bg)
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // Not allowed in XML 1.0 at all: shown as the replacement char.
            c if (c as u32) < 0x20 => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The text of columns `a..=b` of `row`, one char per cell (blank cells as
/// spaces, the second half of a wide character as nothing).
fn cells_text(screen: &vt100::Screen, row: u16, a: u16, b: u16) -> String {
    let mut text = String::new();
    for col in a..=b {
        match screen.cell(row, col) {
            Some(cell) if cell.is_wide_continuation() => {}
            Some(cell) if cell.has_contents() => text.push_str(cell.contents()),
            _ => text.push(' '),
        }
    }
    text
}

/// Splits runs at the cursor's column so the cursor cell is drawn alone.
fn split_at_cursor(
    runs: Vec<(u16, u16, CellStyle)>,
    cursor_col: Option<u16>,
) -> Vec<(u16, u16, CellStyle, bool)> {
    let mut out = Vec::new();
    for (a, b, style) in runs {
        match cursor_col {
            Some(c) if (a..=b).contains(&c) => {
                if a < c {
                    out.push((a, c - 1, style, false));
                }
                out.push((c, c, style, true));
                if c < b {
                    out.push((c + 1, b, style, false));
                }
            }
            _ => out.push((a, b, style, false)),
        }
    }
    out
}

/// `screen` as a standalone SVG document. `title` goes into the picture's
/// `<title>` (shown by browsers as a tooltip).
pub fn render(screen: &vt100::Screen, title: &str) -> String {
    let (rows, cols) = screen.size();
    let (rows, cols) = (rows.get(), cols.get());
    let (width, height) = (u32::from(cols) * CELL_W, u32::from(rows) * CELL_H);
    let (cursor_row, cursor_col) = screen.cursor_position();
    let cursor_shown = !screen.hide_cursor();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\">\n<title>{}</title>\n<style>text {{ font-family: \
         'DejaVu Sans Mono', 'Liberation Mono', monospace; font-size: {FONT_PX}px; \
         white-space: pre; }}</style>\n<rect class=\"background\" width=\"{width}\" \
         height=\"{height}\" fill=\"{}\"/>\n",
        escape(title),
        hex(DEFAULT_BG)
    );
    let mut text = String::new();
    for row in 0..rows {
        let at_cursor = (cursor_shown && row == cursor_row).then_some(cursor_col);
        let y = u32::from(row) * CELL_H;
        for (a, b, style, cursor) in split_at_cursor(row_runs(screen, row), at_cursor) {
            let (fg, bg) = colors(&style, cursor);
            let x = u32::from(a) * CELL_W;
            let w = u32::from(b - a + 1) * CELL_W;
            if bg != DEFAULT_BG {
                let class = if cursor { " class=\"cursor\"" } else { "" };
                let _ = writeln!(
                    svg,
                    "<rect{class} x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{CELL_H}\" fill=\"{}\"/>",
                    hex(bg)
                );
            }
            let content = cells_text(screen, row, a, b);
            if content.trim().is_empty() {
                continue;
            }
            let mut attrs = format!("fill=\"{}\"", hex(fg));
            if style.bold {
                attrs.push_str(" font-weight=\"bold\"");
            }
            if style.italic {
                attrs.push_str(" font-style=\"italic\"");
            }
            if style.underline {
                attrs.push_str(" text-decoration=\"underline\"");
            }
            if style.dim {
                attrs.push_str(" opacity=\"0.6\"");
            }
            let _ = writeln!(
                text,
                "<text x=\"{x}\" y=\"{}\" textLength=\"{w}\" lengthAdjust=\"spacingAndGlyphs\" xml:space=\"preserve\" \
                 {attrs}>{}</text>",
                y + BASELINE,
                escape(&content)
            );
        }
    }
    // Text after every background, so a background never hides a glyph.
    svg.push_str(&text);
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_matches_xterm() {
        assert_eq!(rgb(vt100::Color::Idx(196), DEFAULT_FG), (255, 0, 0));
        assert_eq!(rgb(vt100::Color::Idx(16), DEFAULT_FG), (0, 0, 0));
        assert_eq!(rgb(vt100::Color::Idx(244), DEFAULT_FG), (128, 128, 128));
        assert_eq!(rgb(vt100::Color::Idx(1), DEFAULT_FG), (0xcd, 0, 0));
    }

    #[test]
    fn cursor_splits_its_run() {
        let s = CellStyle::default();
        let runs = split_at_cursor(vec![(0, 9, s)], Some(3));
        assert_eq!(
            runs.iter().map(|r| (r.0, r.1, r.3)).collect::<Vec<_>>(),
            [(0, 2, false), (3, 3, true), (4, 9, false)]
        );
    }

    #[test]
    fn text_is_escaped() {
        let mut p = vt100::Parser::new(1.try_into().unwrap(), 8.try_into().unwrap(), 0);
        p.process(b"<a&b>");
        let svg = render(p.screen(), "t<");
        assert!(svg.contains(">&lt;a&amp;b&gt;"), "{svg}");
        assert!(svg.contains("<title>t&lt;</title>"), "{svg}");
    }
}
