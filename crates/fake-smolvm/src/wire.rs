//! The host <-> agent protocol: 4-byte big-endian length + one JSON message.
//!
//! Byte payloads (stdin, stdout, stderr) travel base64-encoded so any bytes,
//! not only UTF-8, survive the JSON.

use std::io::{self, Read, Write};

use base64::Engine as _;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::exec_log::Fault;
use crate::settings::{Compat, Switches};

/// Largest frame either side accepts (16 MiB): a guard against a corrupt length.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// How the client's stdin is connected, and which terminal it is if it is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StdinInfo {
    /// `tty:<path>`, `devnull`, `pipe`, `file`, `closed` or `other`.
    pub kind: String,
    /// `st_rdev` of the terminal, when stdin is one: the terminal's identity.
    pub tty_rdev: Option<u64>,
}

/// The first request of every connection: run one command in the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    /// The guest command.
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries from `-e` (already filtered).
    pub env: Vec<(String, String)>,
    /// `-w`, if given.
    pub workdir: Option<String>,
    /// `-i` or `-t`: the interactive path.
    pub interactive: bool,
    /// `-t`: a guest PTY.
    pub tty: bool,
    /// The client's stdin.
    pub stdin: StdinInfo,
    /// Whether the client's environment has `TMUX`.
    pub tmux: bool,
    /// The client's `TERM`, passed to a `-t` guest process.
    pub term: Option<String>,
    /// Host pid of the client.
    pub client_pid: u32,
    /// Monotonic ms when the client started.
    pub start_ms: f64,
    /// `--timeout`, in ms.
    pub timeout_ms: Option<u64>,
    /// The client's `FAKE_SMOLVM_*` switches (override the machine's).
    pub switches: Switches,
}

/// Host -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Start an exec.
    Run(Box<RunRequest>),
    /// Bytes for the guest process's stdin (base64); empty = EOF.
    Stdin {
        /// base64 bytes.
        data: String,
    },
    /// The host terminal's size (only sent under compat 0.8.1).
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// The client has appended this exec's exec.log line; sent after the final
    /// response, just before the client closes the connection. Without it the
    /// agent writes the line itself, so every exec that reached the agent is
    /// logged exactly once even if the client dies between the two.
    Logged,
}

/// Agent -> host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Interactive: bring-up done, the guest process runs.
    Started {
        /// Monotonic ms, bring-up start.
        bringup_start_ms: f64,
        /// Monotonic ms, bring-up end.
        bringup_end_ms: f64,
        /// The behaviour in effect: the client forwards sizes only under 0.8.1.
        compat: Compat,
    },
    /// Guest output (base64).
    Stdout {
        /// base64 bytes.
        data: String,
    },
    /// Guest error output (base64).
    Stderr {
        /// base64 bytes.
        data: String,
    },
    /// Interactive: the guest process ended.
    Exited {
        /// Code (128+N for signal N, 124 on timeout).
        exit_code: i32,
        /// Signal that killed the guest process.
        signal: Option<i32>,
        /// Fault that fired.
        fault: Option<Fault>,
    },
    /// Non-interactive: the whole result.
    Completed {
        /// Code (128+N for signal N, 124 on timeout).
        exit_code: i32,
        /// Signal that killed the guest process.
        signal: Option<i32>,
        /// Fault that fired.
        fault: Option<Fault>,
        /// base64 stdout.
        stdout: String,
        /// base64 stderr.
        stderr: String,
        /// Monotonic ms, bring-up start.
        bringup_start_ms: f64,
        /// Monotonic ms, bring-up end.
        bringup_end_ms: f64,
    },
    /// The exec failed in the guest before or instead of running.
    Error {
        /// The message (the client prints `Error: <message>`).
        message: String,
        /// Fault that caused it.
        fault: Option<Fault>,
        /// Monotonic ms, bring-up start, if it began.
        bringup_start_ms: Option<f64>,
        /// Monotonic ms, bring-up end, if it ended.
        bringup_end_ms: Option<f64>,
    },
}

/// Encodes bytes for a payload field.
pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes a payload field.
pub fn decode(text: &str) -> io::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad base64: {e}")))
}

/// Writes one frame (one `write_all` of length + body, so frames from one writer never mix).
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame. `Ok(None)`: the peer closed cleanly between frames.
/// A frame cut short is `UnexpectedEof`; a length over [`MAX_FRAME`] is `InvalidData`.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad frame: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Request {
        Request::Run(Box::new(RunRequest {
            argv: vec!["sh".into(), "-c".into(), "stty size".into()],
            env: vec![("A".into(), "b=c".into())],
            workdir: None,
            interactive: true,
            tty: true,
            stdin: StdinInfo {
                kind: "tty:/dev/pts/3".into(),
                tty_rdev: Some(34819),
            },
            tmux: true,
            term: Some("xterm".into()),
            client_pid: 42,
            start_ms: 1.5,
            timeout_ms: Some(1000),
            switches: Switches::default(),
        }))
    }

    #[test]
    fn frames_round_trip_in_order() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &run()).unwrap();
        write_frame(
            &mut buf,
            &Request::Stdin {
                data: encode(b"\x00\xffq"),
            },
        )
        .unwrap();
        write_frame(&mut buf, &Request::Resize { cols: 80, rows: 24 }).unwrap();
        write_frame(&mut buf, &Request::Logged).unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame::<_, Request>(&mut r).unwrap(), Some(run()));
        match read_frame::<_, Request>(&mut r).unwrap() {
            Some(Request::Stdin { data }) => assert_eq!(decode(&data).unwrap(), b"\x00\xffq"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            read_frame::<_, Request>(&mut r).unwrap(),
            Some(Request::Resize { cols: 80, rows: 24 })
        );
        assert_eq!(
            read_frame::<_, Request>(&mut r).unwrap(),
            Some(Request::Logged)
        );
        assert_eq!(read_frame::<_, Request>(&mut r).unwrap(), None);
    }

    #[test]
    fn truncated_frame_is_unexpected_eof() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Request::Resize { cols: 1, rows: 2 }).unwrap();
        for cut in [2, buf.len() - 1] {
            let err = read_frame::<_, Request>(&mut &buf[..cut]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
    }

    #[test]
    fn oversized_frame_is_rejected_before_reading_it() {
        let buf = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let err = read_frame::<_, Request>(&mut &buf[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn response_tags_are_snake_case() {
        let text = serde_json::to_string(&Response::Exited {
            exit_code: 137,
            signal: Some(9),
            fault: Some(Fault::SharedStdin),
        })
        .unwrap();
        assert!(text.contains(r#""type":"exited""#), "{text}");
        assert!(text.contains(r#""fault":"shared-stdin""#), "{text}");
        let text = serde_json::to_string(&Request::Logged).unwrap();
        assert_eq!(text, r#"{"type":"logged"}"#);
    }
}
