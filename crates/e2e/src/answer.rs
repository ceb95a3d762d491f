//! A terminal that answers: the replies a real terminal sends to a
//! program's queries, as vt100 callbacks.
//!
//! vt100 parses these queries but leaves them to its
//! [`vt100::Callbacks::unhandled_csi`]; the callback runs at the exact point
//! of the stream where the query sits (vte keeps its parser state between
//! reads, so a query split across two reads is still seen once, whole), and
//! gets the screen as it is there. So the cursor position reported is the
//! one after every byte before the query and none after it.
//!
//! The replies are collected here; the PTY reader writes them to the
//! program once the chunk is parsed (see `term.rs`).

/// The primary device attributes a real xterm-compatible terminal reports:
/// a VT100 with advanced video (`?1;2c`), what xterm itself sends in its
/// default configuration, and what most programs accept as "a terminal".
pub const PRIMARY_DA: &[u8] = b"\x1b[?1;2c";

/// The secondary device attributes (`CSI > c`): terminal type 0 (VT100),
/// version 0, no ROM cartridge; a neutral answer a program cannot mistake
/// for a specific terminal.
pub const SECONDARY_DA: &[u8] = b"\x1b[>0;0;0c";

/// vt100 callbacks that answer terminal queries; the answers wait in
/// [`Answerer::take`] to be written to the program.
#[derive(Debug, Default)]
pub struct Answerer {
    replies: Vec<u8>,
}

impl Answerer {
    /// The replies produced since the last call, in order.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.replies)
    }
}

fn first(params: &[&[u16]]) -> Option<u16> {
    params.first().and_then(|p| p.first().copied())
}

impl vt100::Callbacks for Answerer {
    fn unhandled_csi(
        &mut self,
        screen: &mut vt100::Screen,
        i1: Option<u8>,
        _i2: Option<u8>,
        params: &[&[u16]],
        c: char,
    ) {
        let (row, col) = screen.cursor_position();
        let (rows, cols) = screen.size();
        match (i1, c, first(params)) {
            // DSR 5: "terminal OK".
            (None, 'n', Some(5)) => self.replies.extend_from_slice(b"\x1b[0n"),
            // CPR: the cursor, from 1.
            (None, 'n', Some(6)) => self
                .replies
                .extend_from_slice(format!("\x1b[{};{}R", row + 1, col + 1).as_bytes()),
            // DECXCPR: the same with `?` (and page 1, as xterm adds).
            (Some(b'?'), 'n', Some(6)) => self
                .replies
                .extend_from_slice(format!("\x1b[?{};{};1R", row + 1, col + 1).as_bytes()),
            (None, 'c', None | Some(0)) => self.replies.extend_from_slice(PRIMARY_DA),
            (Some(b'>'), 'c', None | Some(0)) => self.replies.extend_from_slice(SECONDARY_DA),
            // Text area size in characters.
            (None, 't', Some(18)) => self
                .replies
                .extend_from_slice(format!("\x1b[8;{rows};{cols}t").as_bytes()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(rows: u16, cols: u16) -> vt100::Parser<Answerer> {
        vt100::Parser::new_with_callbacks(
            rows.try_into().unwrap(),
            cols.try_into().unwrap(),
            0,
            Answerer::default(),
        )
    }

    #[test]
    fn cursor_position_is_the_one_at_the_query() {
        let mut p = parser(24, 80);
        // Moved after the query: the answer must not see the later move.
        p.process(b"\x1b[3;7H\x1b[6n\x1b[10;10H");
        assert_eq!(p.callbacks_mut().take(), b"\x1b[3;7R");
        assert!(p.callbacks_mut().take().is_empty());
    }

    #[test]
    fn a_query_split_across_reads_is_answered_once() {
        let mut p = parser(24, 80);
        p.process(b"ab\x1b[");
        assert!(p.callbacks_mut().take().is_empty());
        p.process(b"6");
        p.process(b"n");
        assert_eq!(p.callbacks_mut().take(), b"\x1b[1;3R");
    }

    #[test]
    fn device_attributes_size_and_status() {
        let mut p = parser(30, 100);
        p.process(b"\x1b[c\x1b[0c\x1b[>c\x1b[18t\x1b[5n\x1b[?6n\x1b[14t");
        let replies = p.callbacks_mut().take();
        assert_eq!(
            String::from_utf8_lossy(&replies),
            "\x1b[?1;2c\x1b[?1;2c\x1b[>0;0;0c\x1b[8;30;100t\x1b[0n\x1b[?1;1;1R"
        );
    }
}
