//! An asciicast v2 recording of a session (`session.cast` in a failure
//! folder), replayable with `asciinema play`.
//!
//! The format (<https://docs.asciinema.org/manual/asciicast/v2/>): one JSON
//! header line `{"version":2,"width":W,"height":H,"timestamp":…,"env":{…}}`,
//! then one JSON array per event, `[seconds, code, data]`: `"o"` output,
//! `"i"` input (keys sent, and the terminal's answers to queries), `"r"` a
//! resize to `"COLSxROWS"`. Times are real, in seconds since the recording
//! started, and never decrease.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Output kept at most; a longer session stops recording output (and says so
/// in one last event) rather than grow without bound.
const MAX_BYTES: usize = 64 << 20;

/// An asciicast v2 recording being written, kept in memory.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    text: String,
    /// The start of a UTF-8 sequence split across two reads, kept until the
    /// rest arrives: the event data is JSON text, and a split character would
    /// otherwise turn into two replacement characters.
    pending: Vec<u8>,
    full: bool,
}

impl Recorder {
    /// Starts a recording of a `cols` x `rows` terminal whose program sees
    /// `env` (asciinema shows `TERM` and `SHELL`).
    pub fn new(cols: u16, rows: u16, env: &[(&str, &str)]) -> Recorder {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let env: serde_json::Map<String, serde_json::Value> = env
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let header = serde_json::json!({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": timestamp,
            "env": env,
        });
        Recorder {
            start: Instant::now(),
            text: format!("{header}\n"),
            pending: Vec::new(),
            full: false,
        }
    }

    /// Seconds since the recording started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn event(&mut self, code: &str, data: &str) {
        if self.full {
            return;
        }
        let line = serde_json::json!([self.elapsed(), code, data]);
        self.text.push_str(&line.to_string());
        self.text.push('\n');
        if self.text.len() > MAX_BYTES {
            self.full = true;
            let note = format!("\r\n[e2e: recording stopped at {MAX_BYTES} bytes]\r\n");
            let line = serde_json::json!([self.elapsed(), "o", note]);
            self.text.push_str(&line.to_string());
            self.text.push('\n');
        }
    }

    /// Records bytes the program wrote.
    pub fn output(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let text = take_utf8(&mut self.pending);
        if !text.is_empty() {
            self.event("o", &text);
        }
    }

    /// Records bytes sent to the program (keys, answers to queries).
    pub fn input(&mut self, bytes: &[u8]) {
        self.event("i", &String::from_utf8_lossy(bytes));
    }

    /// Records a resize of the terminal.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.event("r", &format!("{cols}x{rows}"));
    }

    /// The recording so far: the header line and one line per event.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Takes the longest decodable prefix of `buf` as text, invalid bytes
/// replaced by U+FFFD, and leaves in `buf` only an incomplete sequence at its
/// end (at most 3 bytes), to be completed by the next read.
fn take_utf8(buf: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut rest: &[u8] = buf;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).expect("checked prefix"));
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        rest = &bad[n..];
                    }
                    None => {
                        rest = bad;
                        break;
                    }
                }
            }
        }
    }
    let keep = rest.to_vec();
    *buf = keep;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_reads_is_one_character() {
        let mut buf = b"a\xe2\x94".to_vec(); // "a" + the first 2 bytes of '─'
        assert_eq!(take_utf8(&mut buf), "a");
        assert_eq!(buf, b"\xe2\x94");
        buf.push(0x80);
        assert_eq!(take_utf8(&mut buf), "─");
        assert!(buf.is_empty());
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut buf = b"a\xffb".to_vec();
        assert_eq!(take_utf8(&mut buf), "a\u{FFFD}b");
        assert!(buf.is_empty());
    }

    #[test]
    fn header_and_events_are_json_lines() {
        let mut rec = Recorder::new(20, 4, &[("TERM", "xterm-256color")]);
        rec.output(b"hi\x1b[1m");
        rec.resize(30, 5);
        rec.input(b"q");
        let lines: Vec<serde_json::Value> = rec
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["width"], 20);
        assert_eq!(lines[0]["env"]["TERM"], "xterm-256color");
        assert_eq!(lines[1][1], "o");
        assert_eq!(lines[1][2], "hi\x1b[1m");
        assert_eq!(lines[2][1], "r");
        assert_eq!(lines[2][2], "30x5");
        assert_eq!(lines[3][1], "i");
        assert_eq!(lines.len(), 4);
    }
}
