//! The one place an exec's `exec.log` line is built.

use super::peer::Peer;
use crate::exec_log::{monotonic_ms, ExecPath, ExecRecord, Fault};
use crate::wire::ExecRequest;

/// When each step of an exec happened (monotonic ms).
#[derive(Debug, Default)]
pub struct Progress {
    /// The request arrived.
    pub bringup_start: Option<f64>,
    /// It touched the machine (config.json, main container).
    pub touched: Option<f64>,
    /// `started` was sent.
    pub started: Option<f64>,
    /// Its crun window opened.
    pub window_start: Option<f64>,
    /// Its crun window closed.
    pub window_end: Option<f64>,
    /// Its command started.
    pub running: Option<f64>,
    /// It joined the main container.
    pub joined: bool,
}

/// How an exec ended, as the agent reported it.
#[derive(Debug, Default)]
pub struct Ending {
    /// The exit code reported (1 with an `error` response).
    pub exit_code: i32,
    /// The signal that killed the command.
    pub signal: Option<i32>,
    /// The fault that fired.
    pub fault: Option<Fault>,
    /// The `error` response's message.
    pub error: Option<String>,
}

impl Ending {
    /// An ending with a code.
    pub fn code(exit_code: i32, signal: Option<i32>, fault: Option<Fault>) -> Ending {
        Ending {
            exit_code,
            signal,
            fault,
            error: None,
        }
    }
}

/// The exec's record.
pub fn build(
    peer: &Peer,
    req: &ExecRequest,
    path: ExecPath,
    p: &Progress,
    ending: &Ending,
    client_gone: bool,
) -> ExecRecord {
    ExecRecord {
        pid: peer.pid,
        program: peer.program.clone(),
        argv: req.command.clone(),
        tty: req.tty,
        interactive: req.interactive,
        path,
        level: path.into(),
        joined: p.joined,
        stdin: peer
            .stdin
            .as_ref()
            .map(|s| s.kind.clone())
            .unwrap_or_else(|| "closed".into()),
        tmux: peer.tmux,
        start_ms: peer.start_ms,
        bringup_start_ms: p.bringup_start,
        touched_ms: p.touched,
        started_ms: p.started,
        window_start_ms: p.window_start,
        window_end_ms: p.window_end,
        bringup_end_ms: p.running,
        end_ms: monotonic_ms(),
        exit_code: ending.exit_code,
        signal: ending.signal,
        fault: ending.fault,
        error: ending.error.clone(),
        client_gone,
    }
}
