//! The one owner of the push transport: the persistent channel or one exec
//! per push, the side processes, and the machine lock each side bring-up holds.
//!
//! The state machine decides *what* to push and owns "which push is in
//! flight"; the pusher only carries pushes out and reports how they ended
//! ([`PushReport`]). The channel is lazy: it is opened by the first push that
//! needs it, so a session never resized never starts a side channel. Every
//! side bring-up (opening the channel, each exec) holds the machine lock
//! until it is known to run (the channel's first answer, the exec's end);
//! one still in its bring-up when the session ends is handed off
//! ([`crate::handoff`]) rather than killed.
//!
//! The agent transport ([`Mode::Agent`]) is one short `vm_exec` per probe or
//! push on the machine's agent socket, on a thread of its own (the state
//! machine keeps one in flight, so a session never has two connections
//! open). It takes no machine lock: a VM-level command cannot hurt a
//! bring-up. [`Pusher::fallback`] switches to the CLI transports for good.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::agent;
use crate::cli::{Mode, CLI_FALLBACK};
use crate::event::{Event, Purpose, PushReport, SideReport};
use crate::handoff::{self, Handoff};
use crate::lock;
use crate::log::Log;
use crate::log_event::LogEvent;
use crate::script::{self, Answer};
use crate::side::{self, Channel, ExecPush};
use crate::size::Size;
use crate::state::{AgentOutcome, Outcome};

/// How long a running channel may take to end by itself after its stdin
/// closed, before it is killed (when the session ends).
const CHANNEL_GRACE: Duration = Duration::from_millis(100);

/// Where and how side channels reach the machine.
#[derive(Debug, Clone)]
pub struct Target {
    /// The smolvm program for side channels.
    pub program: PathBuf,
    /// The machine name (one argv element, never seen by a shell).
    pub machine: String,
    /// The machine's lock file (`None`: uncoordinated).
    pub lock_path: Option<PathBuf>,
    /// How long a side bring-up left behind may take (the push timeout).
    pub handoff_deadline: Duration,
    /// The session's marker (`PTY_RESIZE_SESSION`): every push finds the
    /// session by it. `None`: the session could not be marked, and no push
    /// is ever sent (only this session's PTY may be resized).
    pub marker: Option<String>,
    /// The machine's agent socket (agent transport).
    pub socket: Option<PathBuf>,
}

/// How long after the channel's end the session may still end for that
/// end to count as the session's own (smolvm 0.8.0 kills every exec of the
/// machine's container when the main command ends: the channel reports EOF
/// and 137 just before the main client exits). Past it the channel died.
pub const EOF_GRACE: Duration = Duration::from_millis(500);

/// `timeout_ms` of one agent `vm_exec`: the script scans `/proc` and runs
/// `stty` once, milliseconds of work; the agent kills it (124) after this.
pub const AGENT_TIMEOUT_MS: u64 = 2000;

/// How long the wrapper waits for an agent's answer: the agent's own
/// timeout plus a second for the answer to travel.
pub const AGENT_DEADLINE: Duration = Duration::from_millis(AGENT_TIMEOUT_MS + 1000);

#[derive(Debug)]
struct Open {
    channel: Channel,
    /// Its first answer arrived: past its bring-up.
    running: bool,
    stderr: Option<String>,
}

/// The push transport. See the module doc.
#[derive(Debug)]
pub struct Pusher {
    target: Target,
    mode: Mode,
    tx: Sender<Event>,
    channel: Option<Open>,
    exec: Option<ExecPush>,
    /// A push waiting for the machine lock before its bring-up.
    waiting: Option<(u64, Size)>,
    /// The lock held by the side bring-up under way.
    side_lock: Option<(File, Instant)>,
    /// A channel that ended within [`EOF_GRACE`]: its status and last
    /// stderr line, until the session ends (`channel-closed`) or the grace
    /// passes (`channel-dead`).
    ended: Option<(Option<String>, Option<String>)>,
}

impl Pusher {
    /// A pusher using `mode`; nothing is started until the first push.
    pub fn new(target: Target, mode: Mode, tx: Sender<Event>) -> Self {
        Self {
            target,
            mode,
            tx,
            channel: None,
            exec: None,
            waiting: None,
            side_lock: None,
            ended: None,
        }
    }

    /// Carries push `id` out (or queues it behind the machine lock).
    pub fn push(&mut self, id: u64, size: Size, log: &mut Log) -> Option<PushReport> {
        let transport = self.mode.as_str();
        log.event(&LogEvent::Push {
            id,
            size,
            transport,
        });
        if self.mode == Mode::Agent {
            return self.agent_exec(id, Some(size));
        }
        if self.target.marker.is_none() {
            // No bring-up for a push that could only hit every PTY.
            return Some(PushReport::Done {
                id,
                outcome: Outcome::Failed(side::UNKNOWN_PTY.into()),
            });
        }
        if let Some(open) = self.channel.as_mut().filter(|o| o.running) {
            return match open.channel.send(id, size) {
                Ok(()) => None,
                Err(_) => self.channel_dead("write", log),
            };
        }
        let Some(path) = self.target.lock_path.clone() else {
            return self.start(id, size, log);
        };
        match lock::try_lock(&path) {
            Ok(Some(file)) => {
                log.event(&LogEvent::Lock {
                    purpose: Purpose::Side.as_str(),
                    waited: Duration::ZERO,
                    path: path.display().to_string(),
                });
                self.side_lock = Some((file, Instant::now()));
                self.start(id, size, log)
            }
            Ok(None) => {
                log.event(&LogEvent::LockWait {
                    purpose: Purpose::Side.as_str(),
                    path: path.display().to_string(),
                });
                self.waiting = Some((id, size));
                lock::wait_in_background(path, Purpose::Side, self.tx.clone());
                None
            }
            Err(e) => {
                log.event(&LogEvent::LockUnavailable {
                    purpose: Purpose::Side.as_str(),
                    reason: e.to_string(),
                });
                self.start(id, size, log)
            }
        }
    }

    /// Readiness probe `id` (agent transport): look for the session's
    /// program, and size its PTY to `size` if given.
    pub fn probe(&mut self, id: u64, size: Option<Size>) -> Option<PushReport> {
        self.agent_exec(id, size)
    }

    /// One `vm_exec` on a thread; its end comes back as [`SideReport::Agent`].
    fn agent_exec(&mut self, id: u64, size: Option<Size>) -> Option<PushReport> {
        let (Some(socket), Some(marker)) = (self.target.socket.clone(), &self.target.marker) else {
            return Some(PushReport::Agent {
                id,
                outcome: AgentOutcome::Broken("no agent socket".into()),
            });
        };
        let command = script::agent_command(marker, size);
        let deadline = AGENT_DEADLINE.min(self.target.handoff_deadline);
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            let result = agent::vm_exec(&socket, &command, AGENT_TIMEOUT_MS, deadline);
            let outcome = agent::outcome_of(result);
            let _ = tx.send(Event::Side(SideReport::Agent { id, outcome }));
        });
        None
    }

    /// Gives the agent transport up: later pushes use the CLI ones.
    pub fn fallback(&mut self) {
        if self.mode == Mode::Agent {
            self.mode = CLI_FALLBACK;
        }
    }

    /// The machine lock waited for arrived.
    pub fn locked(&mut self, file: File, waited: Duration, log: &mut Log) -> Option<PushReport> {
        let (id, size) = self.waiting.take()?;
        log.event(&LogEvent::Lock {
            purpose: Purpose::Side.as_str(),
            waited,
            path: self
                .target
                .lock_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        });
        self.side_lock = Some((file, Instant::now()));
        self.start(id, size, log)
    }

    /// Starts a side bring-up for push `id` (the lock, if any, is held).
    fn start(&mut self, id: u64, size: Size, log: &mut Log) -> Option<PushReport> {
        let t = &self.target;
        match self.mode {
            // Never with a lock: agent pushes do not come here.
            Mode::Agent => Some(PushReport::Done {
                id,
                outcome: Outcome::Failed("agent transport in a CLI start".into()),
            }),
            Mode::Channel => {
                match Channel::open(&t.program, &t.machine, t.marker.as_deref(), self.tx.clone()) {
                    Ok(mut channel) => {
                        log.event(&LogEvent::ChannelOpen { pid: channel.pid() });
                        // The request waits in the pipe until the loop runs.
                        let sent = channel.send(id, size);
                        self.channel = Some(Open {
                            channel,
                            running: false,
                            stderr: None,
                        });
                        match sent {
                            Ok(()) => None,
                            Err(_) => self.channel_dead("write", log),
                        }
                    }
                    Err(e) => {
                        self.mode = Mode::Exec;
                        self.unlock(log);
                        log.event(&LogEvent::ChannelDead {
                            reason: format!("spawn: {e}"),
                            status: None,
                            stderr: None,
                        });
                        Some(PushReport::TransportDied {
                            reason: "channel spawn".into(),
                        })
                    }
                }
            }
            Mode::Exec => {
                match ExecPush::spawn(
                    &t.program,
                    &t.machine,
                    id,
                    size,
                    t.marker.as_deref(),
                    self.tx.clone(),
                ) {
                    Ok(p) => {
                        self.exec = Some(p);
                        None
                    }
                    Err(e) => {
                        self.unlock(log);
                        Some(PushReport::Done {
                            id,
                            outcome: Outcome::Failed(format!("spawn: {e}")),
                        })
                    }
                }
            }
        }
    }

    fn unlock(&mut self, log: &mut Log) {
        if let Some((file, since)) = self.side_lock.take() {
            drop(file);
            log.event(&LogEvent::Unlock {
                purpose: Purpose::Side.as_str(),
                held: since.elapsed(),
            });
        }
    }

    /// Push `id` timed out: kill what carries it (its report follows) or
    /// stop waiting for the lock.
    pub fn abort(&mut self, id: u64, log: &mut Log) -> Option<PushReport> {
        if self.mode == Mode::Agent {
            // The thread's own deadline ends it; its report follows.
            return None;
        }
        if self.waiting.is_some_and(|(w, _)| w == id) {
            self.waiting = None;
            return Some(PushReport::Done {
                id,
                outcome: Outcome::Failed("timeout waiting for the machine lock".into()),
            });
        }
        if let Some(p) = &self.exec {
            p.kill();
            return None;
        }
        if self.channel.is_some() {
            return self.channel_dead("timeout", log);
        }
        None
    }

    /// Routes a side process's report.
    pub fn on_side(&mut self, report: SideReport, log: &mut Log) -> Option<PushReport> {
        match report {
            SideReport::Agent { id, outcome } => Some(PushReport::Agent { id, outcome }),
            SideReport::ExecDone {
                id,
                status,
                message,
            } => {
                self.exec = None;
                self.unlock(log);
                let outcome = match status {
                    Some(st) if st.success() => Outcome::Ok,
                    Some(st) if message.is_empty() => Outcome::Failed(side::describe_status(st)),
                    Some(st) => {
                        Outcome::Failed(format!("{}: {message}", side::describe_status(st)))
                    }
                    None => Outcome::Failed("wait failed".into()),
                };
                Some(PushReport::Done { id, outcome })
            }
            SideReport::ChannelLine(line) => {
                let answer = script::parse_answer(&line)?;
                let (id, outcome) = match answer {
                    Answer::Ok { id, .. } => (id, Outcome::Ok),
                    Answer::Fail { id, line } => (id, Outcome::Failed(format!("channel: {line}"))),
                    Answer::Other(_) => return None,
                };
                if let Some(open) = self.channel.as_mut().filter(|o| !o.running) {
                    // It answered: its bring-up is over, the machine is free.
                    open.running = true;
                    let (pid, after) = (open.channel.pid(), open.channel.age());
                    log.event(&LogEvent::ChannelRunning { pid, after });
                    self.unlock(log);
                }
                Some(PushReport::Done { id, outcome })
            }
            SideReport::ChannelStderr(line) => {
                if let Some(open) = self.channel.as_mut() {
                    open.stderr = Some(line);
                }
                None
            }
            SideReport::ChannelEof => self.channel_ended(log),
            SideReport::ChannelEofSettled => {
                let (status, stderr) = self.ended.take()?;
                log.event(&LogEvent::ChannelDead {
                    reason: "eof".into(),
                    status,
                    stderr,
                });
                Some(PushReport::TransportDied {
                    reason: "channel eof".into(),
                })
            }
        }
    }

    /// The channel's output ended. At a normal quit smolvm has just killed
    /// it with the session's container (137): that is not a failure, so the
    /// verdict waits [`EOF_GRACE`] — the session ending meanwhile logs
    /// `channel-closed reason=session-ended` ([`Pusher::finish`]), else
    /// `channel-dead reason=eof` and the fall-back to one exec per push.
    /// Later pushes use exec at once either way.
    fn channel_ended(&mut self, log: &mut Log) -> Option<PushReport> {
        let open = self.channel.take()?;
        if !open.running {
            // Never answered: it died in its bring-up, no session end explains it.
            self.channel = Some(open);
            return self.channel_dead("eof", log);
        }
        self.mode = Mode::Exec;
        let status = open
            .channel
            .close(Duration::ZERO)
            .map(side::describe_status);
        self.unlock(log);
        self.ended = Some((status, open.stderr));
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            std::thread::sleep(EOF_GRACE);
            let _ = tx.send(Event::Side(SideReport::ChannelEofSettled));
        });
        None
    }

    /// Kills the channel, logs why, and switches to one exec per push.
    fn channel_dead(&mut self, reason: &str, log: &mut Log) -> Option<PushReport> {
        let open = self.channel.take()?;
        self.mode = Mode::Exec;
        let status = open
            .channel
            .close(Duration::ZERO)
            .map(side::describe_status);
        self.unlock(log);
        log.event(&LogEvent::ChannelDead {
            reason: reason.to_string(),
            status,
            stderr: open.stderr,
        });
        Some(PushReport::TransportDied {
            reason: format!("channel {reason}"),
        })
    }

    /// The session ended: close a running channel, hand off a side channel
    /// still in its bring-up, and return at once.
    pub fn finish(mut self, log: &mut Log) {
        self.waiting = None;
        if let Some((status, _)) = self.ended.take() {
            log.event(&LogEvent::ChannelClosed {
                reason: "session-ended".into(),
                status,
            });
        }
        // The exec's pipes stay open while `exec` lives (until we return).
        let exec = self.exec.take();
        let mut bringing_up = exec.as_ref().map(|p| (p.pid(), p.pipes()));
        let mut _kept = Vec::new();
        if let Some(open) = self.channel.take() {
            if open.running {
                open.channel.close(CHANNEL_GRACE);
            } else {
                let (pid, pipes) = open.channel.abandon();
                bringing_up = Some((pid, pipes.iter().map(AsRawFd::as_raw_fd).collect()));
                _kept = pipes;
            }
        }
        if let Some((pid, drain)) = bringing_up {
            self.hand_off(pid, drain, log);
        }
    }

    fn hand_off(&mut self, pid: u32, drain: Vec<std::os::fd::RawFd>, log: &mut Log) {
        let h = Handoff {
            pid,
            pidfd: handoff::pidfd_open(pid),
            lock_fd: self.side_lock.as_ref().map(|(f, _)| f.as_raw_fd()),
            log_fd: log.raw_fd(),
            drain,
            deadline: self.target.handoff_deadline,
            t0: log.elapsed(),
        };
        log.event(&LogEvent::Handoff {
            pid,
            deadline: h.deadline,
        });
        if let Err(e) = h.spawn() {
            // No supervisor: the old behaviour, kill it, rather than leave a
            // process that nothing bounds.
            side::kill_group(pid);
            log.event(&LogEvent::HandoffDone {
                pid,
                outcome: "killed",
                after: Duration::ZERO,
                ignored: None,
            });
            log.event(&LogEvent::ChannelDead {
                reason: format!("handoff: {e}"),
                status: None,
                stderr: None,
            });
        }
        if let Some(fd) = h.pidfd {
            // SAFETY: our own pidfd; the supervisor has its inherited copy.
            unsafe { libc::close(fd) };
        }
    }
}
