//! smolvm 0.8.0's agent protocol, the part the wrapper speaks (pure).
//!
//! Frames are a 4-byte big-endian length and one JSON message
//! (`crates/smolvm-protocol/src/lib.rs` at v0.8.0: requests tagged
//! `"method"`, responses `"status"`, byte fields base64). The wrapper sends
//! only `vm_exec` (lib.rs 216-238), never `background`, always with a
//! `timeout_ms`, and reads one answer: `completed {exit_code, stdout,
//! stderr}` or `error {message, code}`. Anything else is "not 0.8.0's
//! protocol" and makes the caller fall back to the CLI transports.
//!
//! Where the socket is, and the socket I/O, live in [`crate::agent`].

use base64::Engine as _;
use serde_json::{json, Value};

/// Largest answer accepted. A push's script prints a few bytes; 0.8.0's
/// `vm_exec` caps captured output at 11 MiB (`main.rs` 4383-4544), and the
/// protocol's own frame limit is 32 MiB (lib.rs 49). Anything above 1 MiB is
/// not an answer to our script.
pub const MAX_ANSWER: usize = 1024 * 1024;

/// The one `vm_exec` request frame: length prefix included.
pub fn vm_exec_frame(command: &[String], timeout_ms: u64) -> Vec<u8> {
    let body = json!({
        "method": "vm_exec",
        "command": command,
        "timeout_ms": timeout_ms,
    })
    .to_string()
    .into_bytes();
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// The length a frame header announces, if acceptable.
pub fn frame_len(header: [u8; 4]) -> Result<usize, Garbage> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        return Err(Garbage("empty frame".into()));
    }
    if len > MAX_ANSWER {
        return Err(Garbage(format!("frame of {len} bytes announced")));
    }
    Ok(len)
}

/// What the agent answered a `vm_exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The command ran: its exit code and output.
    Completed {
        /// Exit code (124: timeout; -1: killed by a signal, on 0.8.0).
        exit_code: i32,
        /// Its stdout.
        stdout: Vec<u8>,
        /// Its stderr.
        stderr: Vec<u8>,
    },
    /// The agent refused or could not spawn it.
    Error {
        /// Its message.
        message: String,
        /// Its code (`SPAWN_FAILED`, …), if given.
        code: Option<String>,
    },
}

/// An answer that is not 0.8.0's protocol; the text says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garbage(pub String);

impl std::fmt::Display for Garbage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn b64(v: &Value, field: &str) -> Result<Vec<u8>, Garbage> {
    let text = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| Garbage(format!("completed without a string `{field}`")))?;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| Garbage(format!("`{field}` is not base64: {e}")))
}

/// Parses one answer body (the JSON after the length). Unknown extra fields
/// are ignored, as smolvm's serde does.
pub fn parse_answer(body: &[u8]) -> Result<Answer, Garbage> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Garbage(format!("not JSON: {e}")))?;
    let status = v
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| Garbage("no `status`".into()))?;
    match status {
        "completed" => {
            let exit_code = v
                .get("exit_code")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok())
                .ok_or_else(|| Garbage("completed without an integer `exit_code`".into()))?;
            Ok(Answer::Completed {
                exit_code,
                stdout: b64(&v, "stdout")?,
                stderr: b64(&v, "stderr")?,
            })
        }
        "error" => Ok(Answer::Error {
            message: v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            code: v.get("code").and_then(Value::as_str).map(String::from),
        }),
        other => Err(Garbage(format!("unexpected status `{other}`"))),
    }
}

/// The `ping` request frame (length prefix included): smolvm's own liveness
/// test (`{"method":"ping"}` → `{"status":"pong","version":1}`), used by
/// `pty-resize doctor` only.
pub fn ping_frame() -> Vec<u8> {
    let body = json!({ "method": "ping" }).to_string().into_bytes();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Parses the answer to `ping`: the protocol version a `pong` carries.
pub fn parse_pong(body: &[u8]) -> Result<u64, Garbage> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Garbage(format!("not JSON: {e}")))?;
    match v.get("status").and_then(Value::as_str) {
        Some("pong") => v
            .get("version")
            .and_then(Value::as_u64)
            .ok_or_else(|| Garbage("pong without an integer `version`".into())),
        Some(other) => Err(Garbage(format!("unexpected status `{other}`"))),
        None => Err(Garbage("no `status`".into())),
    }
}

#[cfg(test)]
mod ping_tests {
    use super::*;

    #[test]
    fn ping_and_pong() {
        let f = ping_frame();
        assert_eq!(&f[4..], br#"{"method":"ping"}"#);
        assert_eq!(
            u32::from_be_bytes(f[..4].try_into().unwrap()) as usize,
            f.len() - 4
        );
        assert_eq!(parse_pong(br#"{"status":"pong","version":1}"#), Ok(1));
        assert!(parse_pong(br#"{"status":"ok"}"#).is_err());
        assert!(parse_pong(br#"{"status":"pong"}"#).is_err());
        assert!(parse_pong(b"x").is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_one_length_prefixed_vm_exec_with_a_timeout() {
        let cmd: Vec<String> = ["sh", "-c", "echo \"$1\"", "sh", "ab12"]
            .map(String::from)
            .into();
        let frame = vm_exec_frame(&cmd, 3000);
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        let v: Value = serde_json::from_slice(&frame[4..]).unwrap();
        assert_eq!(
            v,
            json!({"method": "vm_exec", "command": cmd, "timeout_ms": 3000})
        );
        // Never `background`, never `env`: the script's own environment must
        // not carry the marker.
        assert!(v.get("background").is_none() && v.get("env").is_none());
    }

    #[test]
    fn completed_and_error_answers_parse() {
        let a = parse_answer(
            br#"{"status":"completed","exit_code":10,"stdout":"aGk=","stderr":"","extra":1}"#,
        );
        assert_eq!(
            a,
            Ok(Answer::Completed {
                exit_code: 10,
                stdout: b"hi".to_vec(),
                stderr: vec![]
            })
        );
        let a = parse_answer(br#"{"status":"error","message":"no","code":"SPAWN_FAILED"}"#);
        assert_eq!(
            a,
            Ok(Answer::Error {
                message: "no".into(),
                code: Some("SPAWN_FAILED".into())
            })
        );
        assert_eq!(
            parse_answer(br#"{"status":"completed","exit_code":-1,"stdout":"","stderr":""}"#),
            Ok(Answer::Completed {
                exit_code: -1,
                stdout: vec![],
                stderr: vec![]
            })
        );
    }

    #[test]
    fn anything_else_is_garbage_with_a_reason() {
        for (body, why) in [
            (&b"HTTP/1.1 400"[..], "not JSON"),
            (br#"{"x":1}"#, "no `status`"),
            (
                br#"{"status":"pong","version":1}"#,
                "unexpected status `pong`",
            ),
            (br#"{"status":"started"}"#, "unexpected status `started`"),
            (
                br#"{"status":"completed","stdout":"","stderr":""}"#,
                "integer `exit_code`",
            ),
            (
                br#"{"status":"completed","exit_code":0,"stdout":"!!","stderr":""}"#,
                "not base64",
            ),
            (
                br#"{"status":"completed","exit_code":0,"stdout":""}"#,
                "`stderr`",
            ),
        ] {
            let e = parse_answer(body).unwrap_err();
            assert!(
                e.0.contains(why),
                "{e} for {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn frame_lengths_are_bounded() {
        assert_eq!(frame_len(7u32.to_be_bytes()), Ok(7));
        assert!(frame_len(0u32.to_be_bytes()).is_err());
        assert!(frame_len((MAX_ANSWER as u32 + 1).to_be_bytes()).is_err());
        // "HTTP" read as a length: far over the limit, refused before any read.
        assert!(frame_len(*b"HTTP").is_err());
    }
}
