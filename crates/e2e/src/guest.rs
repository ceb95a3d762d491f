//! The guest program the scenarios run: `guest-tui` (see docs/contracts.md),
//! whose status line says which size it sees and saw first.

use crate::bins;

/// Where the guest finds guest-tui: the host's fresh build on the fake
/// (whose guest shares the host's files), [`bins::GUEST_TUI_IN_IMAGE`] in
/// the real agent's image.
pub fn tui_path() -> String {
    if crate::backend::real_agent() {
        bins::GUEST_TUI_IN_IMAGE.to_string()
    } else {
        bins::guest_tui().to_string_lossy().into_owned()
    }
}

/// The `machine exec` arguments that run guest-tui on a TTY:
/// `-t -- <guest-tui> --label LABEL <extra…>`.
pub fn tui_exec_args(label: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "-t".to_string(),
        "--".to_string(),
        tui_path(),
        "--label".to_string(),
        label.to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// The start of guest-tui's status line once it sees `cols` x `rows`:
/// `guest-tui LABEL size COLSxROWS first `.
pub fn status_at(label: &str, cols: u16, rows: u16) -> String {
    format!("guest-tui {label} size {cols}x{rows} first ")
}

/// The status line's first-frame field: `first COLSxROWS frames`.
pub fn first_frame(cols: u16, rows: u16) -> String {
    format!("first {cols}x{rows} frames")
}

/// `snapshot` with the digits of guest-tui's `frames N` and `winch N`
/// counters replaced by `#` (same width, so the grid stays aligned).
///
/// Why: a push runs `stty cols C rows R`, which sets the two dimensions
/// with two `TIOCSWINSZ` calls. The guest may get one SIGWINCH or two, and
/// draw one frame or two, depending on scheduling. Snapshots taken after a
/// push mask these counters; the size the guest shows stays exact.
pub fn mask_counters(snapshot: &str) -> String {
    let mut out = String::with_capacity(snapshot.len());
    let mut rest = snapshot;
    while let Some(at) = find_counter(rest) {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        out.extend(std::iter::repeat_n('#', digits));
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// `snapshot` with the size after guest-tui's `first ` replaced by `*`,
/// each changed grid row re-padded to its width.
///
/// Why: a smolvm with native forwarding (0.8.1) starts the guest PTY at
/// 80x24 and sends the host size right after, so the guest's first frame is
/// at either size depending on scheduling — like upstream.
pub fn mask_first_frame(snapshot: &str) -> String {
    let mut out = String::with_capacity(snapshot.len());
    for line in snapshot.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let framed = body.len() >= 2 && body.starts_with('|') && body.ends_with('|');
        match (framed, body.find("first ")) {
            (true, Some(at)) => {
                let inner = &body[1..body.len() - 1];
                let width = inner.chars().count();
                let at = at - 1 + "first ".len();
                let token = inner[at..].find(' ').map_or(inner.len(), |n| at + n);
                let masked = format!("{}*{}", &inner[..at], &inner[token..]);
                let masked = masked.trim_end();
                let pad = width.saturating_sub(masked.chars().count());
                out.push('|');
                out.push_str(masked);
                out.extend(std::iter::repeat_n(' ', pad));
                out.push('|');
            }
            _ => out.push_str(body),
        }
        out.push_str(nl);
    }
    out
}

/// Where the digits after the next `frames ` or `winch ` start.
fn find_counter(text: &str) -> Option<usize> {
    ["frames ", "winch "]
        .iter()
        .filter_map(|key| text.find(key).map(|i| i + key.len()))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_frame_is_masked_and_the_row_keeps_its_width() {
        let a = "size 40x2\n|t size 100x30 first 80x24 frames 2       |\n|x|\n";
        let b = "size 40x2\n|t size 100x30 first 100x30 frames 2      |\n|x|\n";
        let want = "size 40x2\n|t size 100x30 first * frames 2           |\n|x|\n";
        assert_eq!(mask_first_frame(a), want);
        assert_eq!(mask_first_frame(b), want);
    }

    #[test]
    fn counters_are_masked_at_the_same_width() {
        let row = "|guest-tui t size 60x20 first 100x30 frames 12 winch 3  |";
        assert_eq!(
            mask_counters(row),
            "|guest-tui t size 60x20 first 100x30 frames ## winch #  |"
        );
        assert_eq!(mask_counters("|frames 2 wi|"), "|frames # wi|");
    }

    #[test]
    fn status_fragments_match_the_contract() {
        let line = "guest-tui t size 60x20 first 100x30 frames 2 winch 1";
        assert!(line.starts_with(&status_at("t", 60, 20)));
        assert!(line.contains(&first_frame(100, 30)));
    }
}
