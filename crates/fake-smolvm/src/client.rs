//! `machine exec` on the host: connect to the agent, run, relay, record.

use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::sys::termios::{self, SetArg, Termios};

use crate::exec_log::{self, monotonic_ms, ExecRecord, Fault};
use crate::fail::{fail, Fail};
use crate::machine::{self, Home};
use crate::settings::{Compat, Switches, ENV_TEST_DIE_BEFORE_LOG};
use crate::stdin_kind;
use crate::wire::{self, Request, Response, RunRequest, StdinInfo};

/// Everything `machine exec` was asked to do (validated by the CLI).
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Machine name.
    pub name: String,
    /// `-i`.
    pub interactive: bool,
    /// `-t`.
    pub tty: bool,
    /// `-e` entries that had a `=`.
    pub env: Vec<(String, String)>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `--timeout`, ms.
    pub timeout_ms: Option<u64>,
    /// The guest command.
    pub argv: Vec<String>,
}

/// Splits `-e` values: `KEY=VALUE` kept (split at the first `=`), anything
/// without `=` (or with an empty key) dropped silently, as smolvm 0.8.0 does.
pub fn parse_env(entries: &[String]) -> Vec<(String, String)> {
    entries
        .iter()
        .filter_map(|e| e.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// How the exec ended, for the exit code and the exec log.
#[derive(Debug, Default)]
struct Outcome {
    exit_code: i32,
    signal: Option<i32>,
    fault: Option<Fault>,
    error: Option<String>,
    bringup: Option<(f64, f64)>,
    /// The agent's final response (`exited`/`completed`/`error`) arrived.
    answered: bool,
}

impl Outcome {
    /// The agent answered with `error`.
    fn error(message: String, fault: Option<Fault>, bringup: Option<(f64, f64)>) -> Outcome {
        Outcome {
            answered: true,
            ..Outcome::failed(message, fault, bringup)
        }
    }

    /// The exec failed without a final response from the agent.
    fn failed(message: String, fault: Option<Fault>, bringup: Option<(f64, f64)>) -> Outcome {
        Outcome {
            exit_code: 1,
            error: Some(message),
            fault,
            bringup,
            ..Default::default()
        }
    }
}

/// Runs `machine exec`; returns the process exit code (output already printed).
pub fn exec(home: &Home, opts: ExecOptions) -> i32 {
    let start_ms = monotonic_ms();
    let stdin = stdin_kind::stdin_info();
    let tmux = std::env::var_os("TMUX").is_some();
    let record = |dir: &Path, o: &Outcome| {
        let rec = ExecRecord {
            pid: std::process::id(),
            argv: opts.argv.clone(),
            tty: opts.tty,
            interactive: opts.interactive || opts.tty,
            stdin: stdin.kind.clone(),
            tmux,
            start_ms,
            bringup_start_ms: o.bringup.map(|b| b.0),
            bringup_end_ms: o.bringup.map(|b| b.1),
            end_ms: monotonic_ms(),
            exit_code: o.exit_code,
            signal: o.signal,
            fault: o.fault,
            error: o.error.clone(),
        };
        exec_log::append(&dir.join("exec.log"), &rec).is_ok()
    };
    let switches = match Switches::from_env() {
        Ok(s) => s,
        Err(e) => return report(&fail(e)),
    };
    let dir = match machine::require(home, &opts.name) {
        Ok((dir, _)) => dir,
        Err(e) => return report(&e),
    };
    let stream = match UnixStream::connect(dir.join("agent.sock")) {
        Ok(s) => s,
        Err(_) => {
            let msg = format!(
                "agent operation failed: connect: machine '{0}' is not running. Use 'smolvm machine start --name {0}' first.",
                opts.name
            );
            let o = Outcome::failed(msg, None, None);
            report(&fail(o.error.clone().unwrap_or_default()));
            record(&dir, &o);
            return o.exit_code;
        }
    };
    let run = RunRequest {
        argv: opts.argv.clone(),
        env: opts.env.clone(),
        workdir: opts.workdir.clone(),
        interactive: opts.interactive || opts.tty,
        tty: opts.tty,
        stdin: stdin.clone(),
        tmux,
        term: std::env::var("TERM").ok(),
        client_pid: std::process::id(),
        start_ms,
        timeout_ms: opts.timeout_ms,
        switches,
    };
    // Why a clone: the relay consumes the stream, the confirmation needs it after.
    let confirm = stream.try_clone();
    let outcome = if run.interactive {
        interactive(stream, run, &stdin)
    } else {
        buffered(stream, run)
    };
    if outcome.answered && std::env::var_os(ENV_TEST_DIE_BEFORE_LOG).is_some_and(|v| v == "1") {
        // Test-only: die in the window between the final response and the
        // exec.log line, where only the agent's fallback record can save it.
        // SAFETY: raising a signal on ourselves.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    if let Some(msg) = &outcome.error {
        report(&fail(msg.clone()));
    }
    // Confirm only a line that really landed: an unconfirmed exec is logged
    // by the agent, so confirming a failed append would lose it, and
    // confirming before the append would leave a window with no line at all.
    if record(&dir, &outcome) {
        if let Ok(mut s) = confirm {
            let _ = wire::write_frame(&mut s, &Request::Logged);
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    outcome.exit_code
}

fn report(f: &Fail) -> i32 {
    eprintln!("{f}");
    f.code
}

fn lost(e: Option<io::Error>, bringup: Option<(f64, f64)>) -> Outcome {
    let why = e
        .map(|e| e.to_string())
        .unwrap_or_else(|| "connection closed".into());
    Outcome::failed(format!("agent operation failed: {why}"), None, bringup)
}

/// Non-interactive: wait for `completed`, print stdout then stderr.
fn buffered(mut stream: UnixStream, run: RunRequest) -> Outcome {
    if let Err(e) = wire::write_frame(&mut stream, &Request::Run(Box::new(run))) {
        return lost(Some(e), None);
    }
    let completed = until_response(&mut stream, |r| match r {
        Response::Completed {
            exit_code,
            signal,
            fault,
            stdout,
            stderr,
            bringup_start_ms,
            bringup_end_ms,
        } => {
            let _ = io::stdout().write_all(&wire::decode(&stdout).unwrap_or_default());
            let _ = io::stdout().flush();
            let _ = io::stderr().write_all(&wire::decode(&stderr).unwrap_or_default());
            Some(Outcome {
                exit_code,
                signal,
                fault,
                error: None,
                bringup: Some((bringup_start_ms, bringup_end_ms)),
                answered: true,
            })
        }
        _ => None,
    });
    completed.unwrap_or_else(|failed| failed)
}

/// Reads responses until `want` takes one (it returns `Some`); the others are
/// skipped. An `error` response, EOF or a read failure first ends the exec:
/// `Err` then holds the outcome to report.
fn until_response<T>(
    stream: &mut UnixStream,
    mut want: impl FnMut(Response) -> Option<T>,
) -> Result<T, Outcome> {
    loop {
        match wire::read_frame::<_, Response>(stream) {
            Ok(Some(Response::Error {
                message,
                fault,
                bringup_start_ms,
                bringup_end_ms,
            })) => {
                return Err(Outcome::error(
                    message,
                    fault,
                    bringup_start_ms.zip(bringup_end_ms),
                ))
            }
            Ok(Some(r)) => {
                if let Some(v) = want(r) {
                    return Ok(v);
                }
            }
            Ok(None) => return Err(lost(None, None)),
            Err(e) => return Err(lost(Some(e), None)),
        }
    }
}

/// Restores the host terminal on every exit path (smolvm uses TCSAFLUSH both ways).
struct RawGuard {
    saved: Termios,
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(stdin_fd(), SetArg::TCSAFLUSH, &self.saved);
    }
}

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

fn enter_raw() -> Option<RawGuard> {
    let saved = termios::tcgetattr(stdin_fd()).ok()?;
    let mut raw = saved.clone();
    termios::cfmakeraw(&mut raw);
    termios::tcsetattr(stdin_fd(), SetArg::TCSAFLUSH, &raw).ok()?;
    Some(RawGuard { saved })
}

fn host_size() -> Option<(u16, u16)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the struct we own.
    let rc = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some((ws.ws_col, ws.ws_row))
}

type Writer = Arc<Mutex<UnixStream>>;

fn send(w: &Writer, msg: &Request) -> io::Result<()> {
    wire::write_frame(&mut *w.lock().unwrap(), msg)
}

/// Interactive: `started`, raw mode (with `-t` on a terminal), relay until `exited`.
fn interactive(stream: UnixStream, run: RunRequest, stdin: &StdinInfo) -> Outcome {
    let tty = run.tty;
    let mut reader = match stream.try_clone() {
        Ok(r) => r,
        Err(e) => return lost(Some(e), None),
    };
    let writer: Writer = Arc::new(Mutex::new(stream));
    if let Err(e) = send(&writer, &Request::Run(Box::new(run))) {
        return lost(Some(e), None);
    }
    // Bring-up: wait for `started` (or an error).
    let started = until_response(&mut reader, |r| match r {
        Response::Started {
            bringup_start_ms,
            bringup_end_ms,
            compat,
        } => Some(((bringup_start_ms, bringup_end_ms), compat)),
        _ => None,
    });
    let (bringup, compat) = match started {
        Ok(v) => v,
        Err(failed) => return failed,
    };
    let on_tty = stdin.tty_rdev.is_some();
    let _raw = if tty && on_tty { enter_raw() } else { None };
    if tty && on_tty && compat == Compat::V081 {
        forward_sizes(writer.clone());
    }
    pump_stdin(writer.clone(), stdin.kind == "closed");
    let mut out = io::stdout();
    let mut err = io::stderr();
    loop {
        match wire::read_frame::<_, Response>(&mut reader) {
            Ok(Some(Response::Stdout { data })) => {
                let _ = out.write_all(&wire::decode(&data).unwrap_or_default());
                let _ = out.flush();
            }
            Ok(Some(Response::Stderr { data })) => {
                let _ = err.write_all(&wire::decode(&data).unwrap_or_default());
            }
            Ok(Some(Response::Exited {
                exit_code,
                signal,
                fault,
            })) => {
                return Outcome {
                    exit_code,
                    signal,
                    fault,
                    error: None,
                    bringup: Some(bringup),
                    answered: true,
                }
            }
            Ok(Some(Response::Error { message, fault, .. })) => {
                return Outcome::error(message, fault, Some(bringup))
            }
            Ok(Some(_)) => {}
            Ok(None) => return lost(None, Some(bringup)),
            Err(e) => return lost(Some(e), Some(bringup)),
        }
    }
}

/// 0.8.1: the initial size right after `started`, then every SIGWINCH.
fn forward_sizes(writer: Writer) {
    let signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH]);
    if let Some((cols, rows)) = host_size() {
        let _ = send(&writer, &Request::Resize { cols, rows });
    }
    if let Ok(mut signals) = signals {
        std::thread::spawn(move || {
            for _ in signals.forever() {
                if let Some((cols, rows)) = host_size() {
                    if send(&writer, &Request::Resize { cols, rows }).is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// Host stdin -> `stdin` frames; EOF -> one empty frame. The thread is left
/// blocked in read(2) when the exec ends; the process exits right after.
fn pump_stdin(writer: Writer, closed: bool) {
    std::thread::spawn(move || {
        if closed {
            let _ = send(
                &writer,
                &Request::Stdin {
                    data: String::new(),
                },
            );
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reading into our own buffer from fd 0.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let data = if n <= 0 {
                String::new()
            } else {
                wire::encode(&buf[..n as usize])
            };
            let eof = data.is_empty();
            if send(&writer, &Request::Stdin { data }).is_err() || eof {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_entries_without_equals_are_dropped() {
        let got = parse_env(&[
            "A=1".into(),
            "NOEQ".into(),
            "B=x=y".into(),
            "=v".into(),
            "C=".into(),
        ]);
        assert_eq!(
            got,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("C".into(), String::new())
            ]
        );
    }
}
