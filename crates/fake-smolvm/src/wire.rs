//! smolvm 0.8.0's host <-> agent protocol (crate `smolvm-protocol` at v0.8.0,
//! `src/lib.rs`): frames of a 4-byte big-endian length + one JSON message.
//!
//! Requests are tagged `"method"`, responses `"status"`, both snake_case;
//! byte fields are base64 strings; unknown extra fields (the client's
//! `trace_id`, say) are ignored, as serde does in smolvm.

use std::io::{self, Read, Write};

use base64::Engine as _;
use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

/// Largest frame either side accepts (`MAX_FRAME_SIZE`, lib.rs:49: 32 MiB).
pub const MAX_FRAME: usize = 32 * 1024 * 1024;

/// Protocol version the agent answers `ping` with.
pub const PROTOCOL_VERSION: u32 = 1;

/// Bytes that travel as a base64 string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes)
            .map_err(serde::de::Error::custom)
    }
}

/// What `run` and `vm_exec` ask for; one shape for both (`vm_exec` has no
/// image and no overlay).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The container image (`run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// `-e` entries.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// `-w`.
    #[serde(default)]
    pub workdir: Option<String>,
    /// `--timeout`, ms.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `-i` or `-t`.
    #[serde(default)]
    pub interactive: bool,
    /// `-t`.
    #[serde(default)]
    pub tty: bool,
    /// The machine name: one persistent overlay (and one `config.json`) per machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_overlay_id: Option<String>,
}

/// Host -> agent (`AgentRequest`, lib.rs:136, the methods the exec path uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Request {
    /// Liveness probe; answered with `pong`.
    Ping,
    /// Whether an image is present (the client ignores any failure).
    Query {
        /// The image.
        image: String,
    },
    /// Run a command in the machine's image container.
    Run(ExecRequest),
    /// Run a command directly in the VM (bare machines).
    VmExec(ExecRequest),
    /// Bytes for the command's stdin; empty = EOF.
    Stdin {
        /// The bytes.
        data: Bytes,
    },
    /// The host terminal's size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Any method the fake does not serve.
    #[serde(other)]
    Unknown,
}

/// Agent -> host (`AgentResponse`, lib.rs:369).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    /// Success with optional data (`query`).
    Ok {
        /// Data.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<serde_json::Value>,
    },
    /// Answer to `ping`.
    Pong {
        /// Protocol version.
        version: u32,
    },
    /// A failure; the client prints `Error: …` and exits 1.
    Error {
        /// The message.
        message: String,
        /// smolvm's error code (`INVALID_REQUEST`, `SPAWN_FAILED`, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
    /// Non-interactive: the whole result.
    Completed {
        /// Exit code.
        exit_code: i32,
        /// All of stdout.
        stdout: Bytes,
        /// All of stderr.
        stderr: Bytes,
    },
    /// Interactive: the container runtime was spawned (not: the command runs).
    Started,
    /// Interactive output.
    Stdout {
        /// The bytes.
        data: Bytes,
    },
    /// Interactive error output.
    Stderr {
        /// The bytes.
        data: Bytes,
    },
    /// Interactive: the command ended.
    Exited {
        /// Exit code (128+N for signal N).
        exit_code: i32,
    },
}

impl Response {
    /// An `error` response with a code.
    pub fn error(message: impl Into<String>, code: &str) -> Response {
        Response::Error {
            message: message.into(),
            code: Some(code.to_string()),
        }
    }
}

/// Writes one frame (length + body in one `write_all`, so frames from one
/// writer never interleave).
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
/// A frame cut short is `UnexpectedEof`; a length over [`MAX_FRAME`] or a
/// body that is not a known message is `InvalidData` (the length is checked
/// before anything is allocated).
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

/// Whether the agent socket at `socket` answers `ping` (smolvm's liveness test).
pub fn answers_ping(socket: &std::path::Path) -> bool {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    write_frame(&mut s, &Request::Ping).is_ok()
        && matches!(
            read_frame::<_, Response>(&mut s),
            Ok(Some(Response::Pong { .. }))
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(json: &str) -> Vec<u8> {
        let mut buf = (json.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(json.as_bytes());
        buf
    }

    #[test]
    fn the_real_clients_frames_parse() {
        // Captured from smolvm 0.8.0's `machine exec --name m -t -- sh`.
        let run = r#"{"method": "run", "image": "alpine", "command": ["sh"], "env": [["A", "1"]], "workdir": null, "mounts": [], "timeout_ms": null, "interactive": true, "tty": true, "detached": false, "persistent_overlay_id": "m", "background": false, "trace_id": "t"}"#;
        let mut buf = frame(r#"{"method": "ping"}"#);
        buf.extend(frame(r#"{"method": "query", "image": "alpine"}"#));
        buf.extend(frame(run));
        buf.extend(frame(r#"{"method": "resize", "cols": 0, "rows": 0}"#));
        buf.extend(frame(r#"{"method": "stdin", "data": "aGk="}"#));
        let mut r = &buf[..];
        let next = |r: &mut &[u8]| read_frame::<_, Request>(r).unwrap().unwrap();
        assert_eq!(next(&mut r), Request::Ping);
        assert_eq!(
            next(&mut r),
            Request::Query {
                image: "alpine".into()
            }
        );
        match next(&mut r) {
            Request::Run(e) => {
                assert_eq!(e.image.as_deref(), Some("alpine"));
                assert_eq!(e.command, ["sh"]);
                assert_eq!(e.env, [("A".to_string(), "1".to_string())]);
                assert!(e.interactive && e.tty);
                assert_eq!(e.persistent_overlay_id.as_deref(), Some("m"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(next(&mut r), Request::Resize { cols: 0, rows: 0 });
        assert_eq!(
            next(&mut r),
            Request::Stdin {
                data: Bytes(b"hi".to_vec())
            }
        );
        assert_eq!(read_frame::<_, Request>(&mut r).unwrap(), None);
    }

    #[test]
    fn unknown_methods_are_their_own_variant() {
        let buf = frame(r#"{"method": "format_storage"}"#);
        assert_eq!(
            read_frame::<_, Request>(&mut &buf[..]).unwrap(),
            Some(Request::Unknown)
        );
        let garbage = frame("not json");
        let e = read_frame::<_, Request>(&mut &garbage[..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn responses_are_tagged_status() {
        let text = |r: &Response| serde_json::to_string(r).unwrap();
        assert_eq!(
            text(&Response::Pong { version: 1 }),
            r#"{"status":"pong","version":1}"#
        );
        assert_eq!(text(&Response::Started), r#"{"status":"started"}"#);
        assert_eq!(
            text(&Response::Stdout {
                data: Bytes(vec![0, 255])
            }),
            r#"{"status":"stdout","data":"AP8="}"#
        );
        assert_eq!(
            text(&Response::error("no", "RUN_FAILED")),
            r#"{"status":"error","message":"no","code":"RUN_FAILED"}"#
        );
    }

    #[test]
    fn truncated_and_oversized_frames_are_errors() {
        let buf = frame(r#"{"method": "ping"}"#);
        for cut in [2, buf.len() - 1] {
            let err = read_frame::<_, Request>(&mut &buf[..cut]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
        let big = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let err = read_frame::<_, Request>(&mut &big[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
