//! guest-tui's `--record` file: one JSON line per frame drawn, stamped with
//! `CLOCK_MONOTONIC` ms (docs/contracts.md). Reading it and the questions the
//! bench asks of it.

use std::path::Path;

use serde::Deserialize;

/// One frame the guest drew.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Frame {
    /// Frame number, from 1.
    pub frame: u64,
    /// Columns it was drawn at.
    pub cols: u16,
    /// Rows it was drawn at.
    pub rows: u16,
    /// When it was drawn (monotonic ms).
    pub ms: f64,
}

impl Frame {
    /// The frame's size as (cols, rows).
    pub fn size(&self) -> (u16, u16) {
        (self.cols, self.rows)
    }
}

/// Parses the record text. Only complete lines count: the guest may be in
/// the middle of appending the last one.
pub fn parse(text: &str) -> Vec<Frame> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Reads the record file (empty if it does not exist yet).
pub fn read(path: &Path) -> Vec<Frame> {
    parse(&std::fs::read_to_string(path).unwrap_or_default())
}

/// The first frame at `size` drawn at or after `since_ms`, and how many
/// frames (at any other size) came before it in that span.
pub fn first_at(frames: &[Frame], size: (u16, u16), since_ms: f64) -> Option<(Frame, usize)> {
    frames
        .iter()
        .filter(|f| f.ms >= since_ms)
        .enumerate()
        .find(|(_, f)| f.size() == size)
        .map(|(wrong, f)| (*f, wrong))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(frame: u64, cols: u16, rows: u16, ms: f64) -> Frame {
        Frame {
            frame,
            cols,
            rows,
            ms,
        }
    }

    #[test]
    fn parse_skips_an_unfinished_last_line() {
        let text = "{\"frame\":1,\"cols\":0,\"rows\":0,\"ms\":1.5}\n{\"frame\":2,\"co";
        assert_eq!(parse(text), [f(1, 0, 0, 1.5)]);
        assert!(parse("").is_empty());
    }

    #[test]
    fn first_at_counts_the_wrong_frames_before() {
        let frames = [f(1, 0, 0, 10.0), f(2, 80, 24, 20.0), f(3, 100, 30, 30.0)];
        assert_eq!(first_at(&frames, (100, 30), 0.0), Some((frames[2], 2)));
        assert_eq!(first_at(&frames, (80, 24), 15.0), Some((frames[1], 0)));
        assert_eq!(first_at(&frames, (80, 24), 25.0), None);
    }
}
