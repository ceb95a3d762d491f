//! The two ways of pushing a size into the guest.
//!
//! - [`ExecPush`]: one `<smolvm> machine exec --name M -- sh -c <script>` per
//!   size (stdin `/dev/null`, output captured).
//! - [`Channel`]: one long-lived `<smolvm> machine exec -i --name M -- sh -c
//!   <loop>` fed `COLS ROWS` lines through a pipe, answering `ok COLS ROWS`.
//!
//! Both run in their own session (`setsid`): they have no controlling
//! terminal, are not in the terminal's foreground process group, and can be
//! killed as a group. Neither ever gets the terminal as stdin (the shared-stdin
//! abort of smolvm 0.8.0), and their output only reaches the decision log.
//! Results come back to the event loop as [`Event`]s.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::run::Event;
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
fn kill_group(pid: u32) {
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// One exec per push, in flight.
#[derive(Debug)]
pub struct ExecPush {
    pid: u32,
}

impl ExecPush {
    /// Starts the push; [`Event::ExecDone`] with `id` reports its end.
    pub fn spawn(
        program: &Path,
        machine: &str,
        id: u64,
        size: Size,
        token: Option<u64>,
        tx: Sender<Event>,
    ) -> std::io::Result<Self> {
        let mut child = side_command(program, machine, false, &script::push(size, token))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        std::thread::spawn(move || {
            // Read stderr on this thread and stdout on a helper so neither pipe can fill up.
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
            let status = child.wait();
            let _ = tx.send(Event::ExecDone {
                id,
                status: status.map_err(|e| e.to_string()),
                stdout: out,
                stderr: err,
            });
        });
        Ok(Self { pid })
    }

    /// Kills the push's whole session (timeout or wrapper exit).
    pub fn kill(&self) {
        kill_group(self.pid);
    }
}

/// The persistent resize channel.
#[derive(Debug)]
pub struct Channel {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Channel {
    /// Opens the channel. Its answers arrive as [`Event::ChannelLine`], its
    /// stderr as [`Event::ChannelStderr`], its end as [`Event::ChannelEof`].
    pub fn open(
        program: &Path,
        machine: &str,
        token: Option<u64>,
        tx: Sender<Event>,
    ) -> std::io::Result<Self> {
        let mut child = side_command(program, machine, true, &script::channel(token))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(Event::ChannelLine(line)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Event::ChannelEof);
            });
        }
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(Event::ChannelStderr(line)).is_err() {
                        return;
                    }
                }
            });
        }
        Ok(Self { child, stdin })
    }

    /// The channel's host pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one size request.
    pub fn send(&mut self, size: Size) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("channel closed"))?;
        // One write per request (a few bytes, far below PIPE_BUF): atomic.
        stdin.write_all(format!("{} {}\n", size.cols, size.rows).as_bytes())?;
        stdin.flush()
    }

    /// Closes the pipe so the guest loop ends on EOF (and removes its PTY
    /// record), gives the channel `grace` to exit by itself, then kills its
    /// whole session and reaps it. Returns its exit status.
    ///
    /// Why a grace period: killing smolvm's client outright may leave the
    /// guest loop waiting on a stdin nobody closes; an orderly EOF lets the
    /// guest side finish. The grace is short because the wrapper exits right
    /// after this and must not outlive the session noticeably.
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
}
