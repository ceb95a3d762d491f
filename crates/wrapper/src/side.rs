//! The side processes: the two ways a size reaches the guest.
//!
//! - [`ExecPush`]: one `<smolvm> machine exec --name M -- sh -c <script>` per
//!   size (stdin `/dev/null`, output captured).
//! - [`Channel`]: one long-lived `<smolvm> machine exec -i --name M -- sh -c
//!   <loop>` fed `ID COLS ROWS` lines through a pipe, answering `ok ID COLS ROWS`.
//!
//! Both run in their own session (`setsid`): they have no controlling
//! terminal, are not in the terminal's foreground process group, and can be
//! killed as a group. Neither ever gets the terminal as stdin, and their
//! output only reaches the decision log. Their reports come back as
//! [`Event::Side`]s.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::event::{Event, SideReport};
use crate::script;
use crate::size::Size;

/// Builds `<program> machine exec [-i] --name <machine> -- sh -c <script>`
/// in its own session. The machine name is one argv element: no shell sees it.
pub fn side_command(program: &Path, machine: &str, interactive: bool, script: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["machine", "exec"]);
    if interactive {
        cmd.arg("-i");
    }
    cmd.args(["--name", machine, "--", "sh", "-c", script]);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd
}

/// The argv `side_command` runs (for tests and the log).
pub fn side_argv(program: &Path, machine: &str, interactive: bool, script: &str) -> Vec<String> {
    let c = side_command(program, machine, interactive, script);
    std::iter::once(c.get_program().to_string_lossy().into_owned())
        .chain(c.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect()
}

/// Kills a whole side-channel session (its pid is its process group id).
pub fn kill_group(pid: u32) {
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// `exit-N`, `signal-N`.
pub fn describe_status(st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit-{c}"),
        (None, Some(s)) => format!("signal-{s}"),
        _ => "unknown".into(),
    }
}

/// The first non-empty line of `stderr`, else of `stdout`.
fn first_line(stdout: &str, stderr: &str) -> String {
    stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// Keeps a copy of each output pipe's read end, so a hand-off can give the
/// supervisor something to drain: a client whose stdout or stderr reader
/// vanished would die of SIGPIPE at its next write, mid-bring-up.
fn keep_read_ends<T: Into<OwnedFd>>(pipes: Vec<T>) -> (Vec<OwnedFd>, Vec<std::fs::File>) {
    let mut kept = Vec::new();
    let mut readers = Vec::new();
    for p in pipes {
        let fd: OwnedFd = p.into();
        if let Ok(copy) = fd.try_clone() {
            kept.push(copy);
        }
        readers.push(std::fs::File::from(fd));
    }
    (kept, readers)
}

/// A side process's stdout and stderr: the kept copies of their read ends
/// (see [`keep_read_ends`]) and a reader for each.
fn output_pipes(child: &mut Child) -> (Vec<OwnedFd>, Option<std::fs::File>, Option<std::fs::File>) {
    let outs: Vec<OwnedFd> = [
        child.stdout.take().map(OwnedFd::from),
        child.stderr.take().map(OwnedFd::from),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (pipes, mut readers) = keep_read_ends(outs);
    let stderr = readers.pop();
    let stdout = readers.pop();
    (pipes, stdout, stderr)
}

/// Why a side channel is refused when the session carries no marker: it
/// could not be found, and a loop over every PTY of the guest would resize
/// other sessions' terminals too (issue 16, bug 3).
pub const UNKNOWN_PTY: &str =
    "this session carries no marker: it cannot be found, and every PTY is never pushed";

/// One exec per push, in flight.
#[derive(Debug)]
pub struct ExecPush {
    pid: u32,
    pipes: Vec<OwnedFd>,
}

impl ExecPush {
    /// Starts the push; [`SideReport::ExecDone`] with `id` reports its end.
    pub fn spawn(
        program: &Path,
        machine: &str,
        id: u64,
        size: Size,
        marker: Option<&str>,
        tx: Sender<Event>,
    ) -> std::io::Result<Self> {
        // Never the seeds' loop over every PTY: other sessions' too.
        let text = marker
            .and_then(|m| script::push_by_marker(size, m))
            .ok_or_else(|| std::io::Error::other(UNKNOWN_PTY))?;
        let mut child: Child = side_command(program, machine, false, &text)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let (pipes, stdout, stderr) = output_pipes(&mut child);
        std::thread::spawn(move || {
            // Read stderr here and stdout on a helper so neither pipe fills up.
            let out = stdout.map(|mut s| {
                std::thread::spawn(move || {
                    let mut buf = String::new();
                    let _ = s.read_to_string(&mut buf);
                    buf
                })
            });
            let mut err = String::new();
            if let Some(mut e) = stderr {
                let _ = e.read_to_string(&mut err);
            }
            let out = out.and_then(|h| h.join().ok()).unwrap_or_default();
            let status = child.wait().ok();
            let _ = tx.send(Event::Side(SideReport::ExecDone {
                id,
                status,
                message: first_line(&out, &err),
            }));
        });
        Ok(Self { pid, pipes })
    }

    /// Its output pipes' read ends (for the hand-off to drain).
    pub fn pipes(&self) -> Vec<RawFd> {
        self.pipes.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// The push's host pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills the push's whole session (timeout); its report follows.
    pub fn kill(&self) {
        kill_group(self.pid);
    }
}

/// The persistent resize channel.
#[derive(Debug)]
pub struct Channel {
    child: Child,
    stdin: Option<ChildStdin>,
    opened: Instant,
    pipes: Vec<OwnedFd>,
}

impl Channel {
    /// Opens the channel. Its answers arrive as [`SideReport::ChannelLine`],
    /// its stderr as [`SideReport::ChannelStderr`], its end as
    /// [`SideReport::ChannelEof`].
    pub fn open(
        program: &Path,
        machine: &str,
        marker: Option<&str>,
        tx: Sender<Event>,
    ) -> std::io::Result<Self> {
        let text = marker
            .and_then(script::channel_by_marker)
            .ok_or_else(|| std::io::Error::other(UNKNOWN_PTY))?;
        let mut child = side_command(program, machine, true, &text)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let (pipes, stdout, stderr) = output_pipes(&mut child);
        if let Some(out) = stdout {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(Event::Side(SideReport::ChannelLine(line))).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Event::Side(SideReport::ChannelEof));
            });
        }
        if let Some(err) = stderr {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    if tx
                        .send(Event::Side(SideReport::ChannelStderr(line)))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        Ok(Self {
            child,
            stdin,
            opened: Instant::now(),
            pipes,
        })
    }

    /// The channel's host pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How long ago it was opened.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Sends push `id`.
    pub fn send(&mut self, id: u64, size: Size) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("channel closed"))?;
        // One write per request (a few bytes, far below PIPE_BUF): atomic.
        stdin.write_all(script::request(id, size).as_bytes())?;
        stdin.flush()
    }

    /// Closes the pipe so the guest loop ends on EOF (and removes its PTY
    /// record), gives the channel `grace` to exit by itself, then kills its
    /// whole session and reaps it. Returns its exit status.
    ///
    /// Only for a channel past its bring-up: killing a client mid-bring-up
    /// does not stop the bring-up in the VM (see [`Channel::abandon`]).
    pub fn close(mut self, grace: Duration) -> Option<ExitStatus> {
        drop(self.stdin.take());
        let deadline = Instant::now() + grace;
        let mut status = None;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    status = Some(st);
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(_) => break,
            }
        }
        // Also reaps stragglers of the session if the client itself exited.
        kill_group(self.child.id());
        status.or_else(|| self.child.wait().ok())
    }

    /// Closes stdin (so the channel ends by itself) and lets it go without
    /// killing it: the hand-off of a channel still in its bring-up. Returns
    /// its pid (also its process group) and its output pipes' read ends,
    /// which the caller must keep open until the supervisor has them.
    pub fn abandon(mut self) -> (u32, Vec<OwnedFd>) {
        drop(self.stdin.take());
        (self.child.id(), std::mem::take(&mut self.pipes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_argv_keeps_the_machine_name_as_one_word() {
        let evil = "$(touch /tmp/pwned); rm -rf /";
        let argv = side_argv(Path::new("smolvm"), evil, false, "SCRIPT");
        assert_eq!(
            argv,
            ["smolvm", "machine", "exec", "--name", evil, "--", "sh", "-c", "SCRIPT"]
        );
        let argv = side_argv(Path::new("/x/smolvm"), "m", true, "S");
        assert_eq!(
            argv,
            [
                "/x/smolvm",
                "machine",
                "exec",
                "-i",
                "--name",
                "m",
                "--",
                "sh",
                "-c",
                "S"
            ]
        );
    }

    #[test]
    fn failure_description_prefers_stderr() {
        use std::os::unix::process::ExitStatusExt;
        let st = ExitStatus::from_raw(1 << 8);
        assert_eq!(describe_status(st), "exit-1");
        assert_eq!(describe_status(ExitStatus::from_raw(9)), "signal-9");
        assert_eq!(
            first_line("out\n", "\n Error: vm not found: x\n"),
            "Error: vm not found: x"
        );
        assert_eq!(first_line("out\n", ""), "out");
        assert_eq!(first_line("", ""), "");
    }
}
