//! The host terminal's size: reading it from the standard fds and validating it.
//!
//! Why fds 0, 1, 2 in that order: the seeds' wrapper did the same, and any one
//! of them may be the terminal while the others are redirected (e.g. stdin a
//! pipe but stdout the pane). A `0x0` answer is what a PTY nobody sized reports
//! (smolvm's own guest PTY is the ironic example), so it is skipped like an error.

use std::fmt;
use std::os::fd::RawFd;

/// Largest accepted column or row count. Real terminals stay far below this
/// (a 8K display with a 1-pixel font is ~7680 columns); anything above is a
/// corrupted answer, and pushing it would make the guest allocate huge screens.
pub const MAX_DIM: u16 = 10_000;

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

/// Picks the first valid answer among per-fd readings (in fd order).
pub fn first_valid<I>(readings: I) -> Option<Size>
where
    I: IntoIterator<Item = Option<(u16, u16)>>,
{
    readings
        .into_iter()
        .flatten()
        .find_map(|(cols, rows)| validate(cols, rows))
}

/// Reads the window size of one fd with `TIOCGWINSZ`; `None` if it is not a terminal.
pub fn read_fd(fd: RawFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer we pass; the fd
    // is only read from, and an invalid fd makes the call fail with EBADF.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some((ws.ws_col, ws.ws_row))
}

/// The host size: the first valid answer of fds 0, 1, 2; `None` if none has one.
pub fn read_host() -> Option<Size> {
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
            Some(Size::new(120, 40))
        );
        // The first valid answer wins even if a later one differs.
        assert_eq!(
            first_valid([Some((100, 30)), Some((120, 40)), None]),
            Some(Size::new(100, 30))
        );
        assert_eq!(first_valid([None, Some((0, 0)), Some((0, 0))]), None);
        assert_eq!(first_valid([None, None, None]), None);
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
