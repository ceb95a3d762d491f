//! The host terminal's size: reading it from the standard fds and validating it.
//!
//! Why fds 0, 1, 2 in that order: the seeds' wrapper did the same, and any one
//! of them may be the terminal while the others are redirected (e.g. stdin a
//! pipe but stdout the pane). A `0x0` answer is what a PTY nobody sized reports
//! (smolvm's own guest PTY is the ironic example), so it is skipped like an error.

use std::fmt;
use std::os::fd::RawFd;

/// Largest accepted column or row count. An 8K display (7680 pixels) with a
/// 2-pixel-wide font, far below anything readable, is 3840 columns; no real
/// terminal reaches 4096 cells a side. Anything above is a corrupted or hostile
/// answer, and pushing it would make the guest allocate huge screens.
pub const MAX_DIM: u16 = 4096;

/// A terminal size in character cells. Both dimensions are in `1..=MAX_DIM`
/// when built through [`validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Size {
    /// Columns (width).
    pub cols: u16,
    /// Rows (height).
    pub rows: u16,
}

impl Size {
    /// Builds a size without validation (for tests and already-validated input).
    pub const fn new(cols: u16, rows: u16) -> Self {
        Self { cols, rows }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.cols, self.rows)
    }
}

/// Accepts a size only if both dimensions are in `1..=MAX_DIM`.
///
/// `0x0` (an unsized PTY), a zero in either dimension, and absurd values are
/// all rejected: pushing any of them would make the guest draw garbage.
pub fn validate(cols: u16, rows: u16) -> Option<Size> {
    let ok = |d: u16| (1..=MAX_DIM).contains(&d);
    (ok(cols) && ok(rows)).then_some(Size { cols, rows })
}

/// Why no valid host size could be read (for the decision log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// None of fds 0, 1, 2 is a terminal.
    NoTerminal,
    /// Terminals answered, but only with a zero dimension (an unsized PTY).
    Unsized,
    /// The first non-zero answer was above [`MAX_DIM`]: rejected, never pushed.
    OutOfRange(u16, u16),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoTerminal => f.write_str("no-terminal"),
            Self::Unsized => f.write_str("unsized"),
            Self::OutOfRange(c, r) => write!(f, "out-of-range-{c}x{r}"),
        }
    }
}

/// Picks the first valid answer among per-fd readings (in fd order), or says
/// why there is none: an out-of-range answer is reported over a zero one
/// because it is the surprising case worth a log line.
pub fn first_valid<I>(readings: I) -> Result<Size, Invalid>
where
    I: IntoIterator<Item = Option<(u16, u16)>>,
{
    let mut why = Invalid::NoTerminal;
    for (cols, rows) in readings.into_iter().flatten() {
        if let Some(size) = validate(cols, rows) {
            return Ok(size);
        }
        if cols > MAX_DIM || rows > MAX_DIM {
            if !matches!(why, Invalid::OutOfRange(..)) {
                why = Invalid::OutOfRange(cols, rows);
            }
        } else if why == Invalid::NoTerminal {
            why = Invalid::Unsized;
        }
    }
    Err(why)
}

/// Reads the window size of one fd (`TIOCGWINSZ`); `None` if it is not a terminal.
pub fn read_fd(fd: RawFd) -> Option<(u16, u16)> {
    if fd < 0 {
        return None;
    }
    // SAFETY: the fd is only borrowed for this one call; an fd that is not
    // open makes it fail with EBADF, which is `None` here.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::termios::tcgetwinsize(fd)
        .ok()
        .map(|ws| (ws.ws_col, ws.ws_row))
}

/// The host size: the first valid answer of fds 0, 1, 2, or why there is none.
pub fn read_host() -> Result<Size, Invalid> {
    first_valid([0, 1, 2].map(read_fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_zero_and_absurd_sizes() {
        assert_eq!(validate(80, 24), Some(Size::new(80, 24)));
        assert_eq!(validate(1, 1), Some(Size::new(1, 1)));
        assert_eq!(
            validate(MAX_DIM, MAX_DIM),
            Some(Size::new(MAX_DIM, MAX_DIM))
        );
        assert_eq!(validate(0, 0), None);
        assert_eq!(validate(0, 24), None);
        assert_eq!(validate(80, 0), None);
        assert_eq!(validate(MAX_DIM + 1, 24), None);
        assert_eq!(validate(u16::MAX, u16::MAX), None);
    }

    #[test]
    fn first_valid_falls_through_errors_and_zero_sizes_in_order() {
        // stdin is not a terminal, stdout is smolvm's 0x0 PTY, stderr is the pane.
        assert_eq!(
            first_valid([None, Some((0, 0)), Some((120, 40))]),
            Ok(Size::new(120, 40))
        );
        // The first valid answer wins even if a later one differs.
        assert_eq!(
            first_valid([Some((100, 30)), Some((120, 40)), None]),
            Ok(Size::new(100, 30))
        );
        assert_eq!(
            first_valid([None, Some((0, 0)), Some((0, 0))]),
            Err(Invalid::Unsized)
        );
        assert_eq!(first_valid([None, None, None]), Err(Invalid::NoTerminal));
    }

    #[test]
    fn a_size_no_terminal_has_is_rejected_and_named() {
        assert_eq!(
            first_valid([Some((10_000, 10_000)), Some((0, 0))]),
            Err(Invalid::OutOfRange(10_000, 10_000))
        );
        assert_eq!(
            first_valid([Some((0, 0)), Some((80, 5000)), Some((9000, 9))]),
            Err(Invalid::OutOfRange(80, 5000))
        );
        assert_eq!(
            first_valid([Some((5000, 24)), Some((80, 24))]),
            Ok(Size::new(80, 24))
        );
        // One dimension alone out of range is named; a zero one is not "out of range".
        assert_eq!(
            first_valid([Some((5000, 24))]),
            Err(Invalid::OutOfRange(5000, 24))
        );
        assert_eq!(first_valid([Some((4096, 0))]), Err(Invalid::Unsized));
        assert_eq!(first_valid([Some((0, 4096))]), Err(Invalid::Unsized));
        assert_eq!(first_valid([Some((0, 24))]), Err(Invalid::Unsized));
        assert_eq!(
            Invalid::OutOfRange(10_000, 3).to_string(),
            "out-of-range-10000x3"
        );
        assert_eq!(Invalid::Unsized.to_string(), "unsized");
        assert_eq!(Invalid::NoTerminal.to_string(), "no-terminal");
        assert_eq!(validate(4096, 4096), Some(Size::new(4096, 4096)));
        assert_eq!(validate(4097, 24), None);
        assert_eq!(validate(80, 4097), None);
    }

    #[test]
    fn display_is_cols_x_rows() {
        assert_eq!(Size::new(100, 30).to_string(), "100x30");
    }

    #[test]
    fn read_fd_of_a_non_terminal_is_none() {
        let file = tempfile::tempfile().unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(read_fd(file.as_raw_fd()), None);
        assert_eq!(read_fd(-1), None);
    }
}
