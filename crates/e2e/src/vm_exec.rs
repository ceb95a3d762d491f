//! A `vm_exec` written directly on a machine's `agent.sock`: a command run
//! at VM level, outside any container (`../shared/smolvm-0.8.0.md`, "The VM
//! level"). One short connection per request, never half-closed (the agent
//! counts a half-closed peer as gone and kills the command), with a read
//! deadline so a silent agent fails the test instead of hanging it.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use fake_smolvm::wire::{self, ExecRequest, Request, Response};

/// What a completed `vm_exec` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmOutput {
    /// The command's exit code (124 on the agent's timeout, -1 for a signal on 0.8.0).
    pub exit_code: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// Connects to `socket` (so a caller can connect first and send at an
/// instant that matters).
pub fn connect(socket: &Path) -> Result<UnixStream, String> {
    UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))
}

/// Sends `{"method":"vm_exec","command":argv,"timeout_ms":…}` on `stream`
/// and reads the one answer; `Err` says what went wrong (an `error` frame,
/// a closed connection, the deadline).
pub fn send(stream: &mut UnixStream, argv: &[&str], timeout: Duration) -> Result<VmOutput, String> {
    let request = Request::VmExec(ExecRequest {
        command: argv.iter().map(|a| a.to_string()).collect(),
        timeout_ms: Some(timeout.as_millis() as u64),
        ..ExecRequest::default()
    });
    stream
        .set_read_timeout(Some(timeout + Duration::from_secs(5)))
        .map_err(|e| format!("set read timeout: {e}"))?;
    wire::write_frame(stream, &request).map_err(|e| format!("write vm_exec: {e}"))?;
    match wire::read_frame::<_, Response>(stream) {
        Ok(Some(Response::Completed {
            exit_code,
            stdout,
            stderr,
        })) => Ok(VmOutput {
            exit_code,
            stdout: String::from_utf8_lossy(&stdout.0).into_owned(),
            stderr: String::from_utf8_lossy(&stderr.0).into_owned(),
        }),
        Ok(Some(other)) => Err(format!("vm_exec answered {other:?}")),
        Ok(None) => Err("the agent closed the connection without an answer".into()),
        Err(e) => Err(format!("reading the vm_exec answer: {e}")),
    }
}

/// [`connect`] then [`send`].
pub fn run(socket: &Path, argv: &[&str], timeout: Duration) -> Result<VmOutput, String> {
    send(&mut connect(socket)?, argv, timeout)
}

/// A VM-level script that finds the session whose program carries
/// `MARKER=<value>` in its environment (the session leader with a terminal:
/// `/proc/<pid>/stat` field 6 = pid, field 7 ≠ 0) and sizes its PTY with
/// `stty -F /proc/<pid>/fd/0 cols C rows R`. Run as `sh -c SCRIPT sh VALUE
/// COLS ROWS`: the value travels as an argument, never in the script's own
/// environment, or its `grep` would find itself. Prints the pid; exit 10
/// when no such session (yet).
pub const SIZE_BY_MARKER: &str = r#"v=$1 c=$2 r=$3
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  tr '\0' '\n' < $p/environ 2>/dev/null | grep -qx "E2E_MARK=$v" || continue
  set -- $(cat $p/stat 2>/dev/null)
  [ "$6" = "$pid" ] && [ "$7" != 0 ] || continue
  stty -F /proc/$pid/fd/0 cols "$c" rows "$r" && echo "$pid" && exit 0
  exit 1
done
exit 10"#;

/// The marker variable [`SIZE_BY_MARKER`] looks for.
pub const MARKER_VAR: &str = "E2E_MARK";
