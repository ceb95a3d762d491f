//! A bridged session: set it up, then route every event between the state
//! machine (decisions), the pusher (side channels), the child and the log.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::agent;
use crate::cli::{Mode, CLI_FALLBACK};
use crate::error::Error;
use crate::event::{Event, Purpose, PushReport, Sig};
use crate::guardian::Guardian;
use crate::launch::{self, LockWait, MainLock};
use crate::log::Log;
use crate::log_event::LogEvent;
use crate::pusher::{Pusher, Target};
use crate::readiness;
use crate::size;
use crate::smolvm_argv::ExecArgv;
use crate::state::{Action, AgentTiming, Config, Machine, Watch};
use crate::terminal::{self, Saved};

/// How often the terminal is polled while waiting for smolvm's switch.
const READINESS_POLL: Duration = Duration::from_millis(5);

/// Agent transport: from the start of one readiness probe to the next
/// (each is one `vm_exec` of a few ms; a start-up resize then lands within
/// one period and one push of the container running).
const AGENT_POLL: Duration = Duration::from_millis(25);

/// Agent transport: how long from launch the session's program may stay
/// unseen before the CLI transports take over. Far above any bring-up and
/// crun window seen (seconds), below a person's patience.
const AGENT_GIVE_UP: Duration = Duration::from_secs(30);

/// Everything the entry decided for a bridged session.
#[derive(Debug)]
pub struct Plan {
    /// The wrapped argv.
    pub argv: Vec<String>,
    /// What it asks smolvm to do.
    pub exec: ExecArgv,
    /// The resolved main program.
    pub main_path: PathBuf,
    /// The resolved side-channel program.
    pub side_path: PathBuf,
    /// The machine.
    pub machine: String,
    /// How pushes travel; `None`: smolvm forwards sizes itself (0.8.1+).
    pub mode: Option<Mode>,
    /// The state machine's tunables.
    pub config: Config,
    /// `--no-prologue`.
    pub no_prologue: bool,
}

/// How the wrapper ends: with an exit code, or by dying of the signal that
/// ended the session, as plain smolvm would have (an enclosing shell loop
/// stops on a child killed by SIGINT, and goes on after an `exit 130`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Exit with this code.
    Code(i32),
    /// Restore nothing more, then die of signal N (default action).
    Signal(i32),
}

impl Ending {
    /// The shell convention's code for it: N, or 128+N for signal N.
    pub fn code(self) -> i32 {
        match self {
            Self::Code(c) => c,
            Self::Signal(n) => 128 + n,
        }
    }

    /// The ending that mirrors the child's status (pure): a death by one of
    /// the signals that ask a process to stop (Ctrl-C, Ctrl-\, a hang-up,
    /// `kill`) is passed on; any other signal (SIGKILL, a crash) is only a
    /// code, so the wrapper never dumps core or fakes a crash of its own.
    pub fn of(status: ExitStatus) -> Self {
        match status.signal() {
            Some(n) if PASSED_ON.contains(&n) => Self::Signal(n),
            _ => Self::Code(exit_code(status)),
        }
    }
}

/// The signals a session that ended by them passes on by dying of them.
pub const PASSED_ON: [i32; 4] = [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP];

/// The shell convention for a status: the code, or 128+N for signal N.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

struct Session {
    log: Log,
    start: Instant,
    sm: Machine,
    pusher: Option<Pusher>,
    main_lock: Option<MainLock>,
    child: Pid,
    /// fd 0's O_NONBLOCK at start (for the `nonblock` sighting).
    nonblock_at_start: Option<bool>,
    saved: Saved,
    /// A termination signal was forwarded: the terminal is restored at the end.
    forwarded: bool,
    /// Hands the terminal back should the wrapper die without a word;
    /// disarmed when the session (and so this field) is dropped.
    _guardian: Option<Guardian>,
    /// How a keeper of an abandoned start-up's lock can see it over: the
    /// agent socket and the marker (agent transport only).
    probe: Option<(PathBuf, String)>,
    /// The longest a start-up the session abandoned may still take.
    bring_up_bound: Duration,
}

/// Starts the terminal's guardian; a session without one still runs (only a
/// SIGKILLed wrapper would then leave the terminal raw), and the log says why.
fn start_guardian(log: &mut Log) -> Option<Guardian> {
    let started = std::env::current_exe()
        .map_err(|e| format!("cannot find this executable: {e}"))
        .and_then(|exe| Guardian::start(&exe));
    let (pid, reason) = match &started {
        Ok(g) => (Some(g.pid()), None),
        Err(e) => (None, Some(e.clone())),
    };
    log.event(&LogEvent::Guardian { pid, reason });
    started.ok()
}

/// Runs a bridged session to its end; returns the exit code.
///
/// `events` is the channel [`launch::catch_signals`] already feeds: signals
/// that came before (during the version probe) are waiting in it.
pub fn run(
    plan: Plan,
    mut log: Log,
    start: Instant,
    events: (Sender<Event>, Receiver<Event>),
) -> Result<Ending, Error> {
    let (tx, rx) = events;
    let saved = Saved::save(0);
    let guardian = start_guardian(&mut log);
    let watch = readiness::watch_for(readiness::stdin_lflags());
    let nonblock_at_start = readiness::stdin_nonblock();
    if !terminal::has_controlling_terminal() {
        log.event(&LogEvent::NoResize {
            reason: "no-controlling-terminal: SIGWINCH never reaches a process without one".into(),
        });
    }
    let lock_path = launch::lock_path(&plan.machine);
    let main_lock = match launch::main_lock(&plan.machine, lock_path.as_deref(), &rx, &tx, &mut log)
    {
        LockWait::Go(lock) => lock,
        LockWait::TimedOut(waited) => {
            return Err(Error::Internal(format!(
                "gave up after {} s waiting for machine '{}': another session's start-up \
                 still holds its lock",
                waited.as_secs(),
                plan.machine
            )));
        }
        LockWait::Ended(sig) => {
            log.event(&LogEvent::Exit {
                code: 128 + sig.raw(),
                status: format!("{} while waiting for the machine lock", sig.name()),
            });
            return Ok(Ending::Signal(sig.raw()));
        }
    };
    // A stop request that came before the lock (during the version probe,
    // say) while there is still no child: end here, as plain smolvm would
    // have died of it.
    if let Some(sig) = launch::pending_stop(&rx) {
        log.event(&LogEvent::Exit {
            code: 128 + sig.raw(),
            status: format!("{} before smolvm started", sig.name()),
        });
        return Ok(Ending::Signal(sig.raw()));
    }
    // Read after the lock wait, so the prologue has the newest size.
    let initial = size::read_host();
    log.event(&LogEvent::Size {
        size: initial.ok(),
        at: "start",
        invalid: initial.err().map(|e| e.to_string()),
    });
    let initial = initial.ok();
    let mut mode = plan.mode;
    let mut config = plan.config;
    // Every bridged session is marked and found by its marker, whatever the
    // transport (nothing is recorded in the guest; no push can reach another
    // session's terminal). No `--` to put the marker before: no push can
    // find the session, so none is ever sent.
    let marker = launch::make_marker();
    let (argv, prologue, marker) =
        match launch::with_marker(&plan.argv, &plan.exec, plan.no_prologue, initial, &marker) {
            Ok((argv, prologue)) => {
                log.event(&LogEvent::Prologue {
                    applied: prologue.ok().and(initial),
                    reason: prologue.err(),
                });
                (argv, prologue.is_ok(), Some(marker))
            }
            Err(reason) => {
                log.event(&LogEvent::Prologue {
                    applied: None,
                    reason: Some("no-command"),
                });
                log.event(&LogEvent::NoResize {
                    reason: reason.into(),
                });
                (plan.argv.clone(), false, None)
            }
        };
    // The agent transport: the machine's socket, or why not (then a CLI
    // transport, with raw + settle).
    let mut socket = None;
    if mode == Some(Mode::Agent) {
        let found = match &marker {
            None => Err("the session carries no marker".to_string()),
            Some(m) => agent::find_socket(&plan.machine)
                .map(|path| (path, m.clone()))
                .map_err(|u| u.to_string()),
        };
        match found {
            Ok((path, marker)) => {
                log.event(&LogEvent::Agent {
                    socket: path.display().to_string(),
                    marker,
                });
                config.agent = Some(AgentTiming {
                    poll: AGENT_POLL,
                    give_up: AGENT_GIVE_UP,
                });
                socket = Some(path);
            }
            Err(reason) => {
                log.event(&LogEvent::AgentFallback { reason });
                mode = Some(CLI_FALLBACK);
            }
        }
    }
    let mut child = launch::spawn_child(&plan.main_path, &argv).map_err(|e| {
        let err = Error::CannotRun {
            program: argv[0].clone(),
            reason: e.to_string(),
        };
        log.event(&LogEvent::Exit {
            code: err.exit_code(),
            status: err.to_string(),
        });
        err
    })?;
    // From here on nothing is written to the terminal: the child owns it.
    let pid = child.id();
    let guardian = guardian.map(|mut g| {
        g.watch(pid);
        g
    });
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(Event::ChildExited(status));
            }
        });
    }
    log.event(&LogEvent::Start {
        pid,
        size: initial,
        prologue,
        readiness: watch.as_str(),
        settle: config.settle,
        fallback: config.fallback,
        transport: mode.map_or("native", Mode::as_str),
    });
    let probe = match (mode, &socket, &marker) {
        (Some(Mode::Agent), Some(s), Some(m)) => Some((s.clone(), m.clone())),
        _ => None,
    };
    let pusher = mode.map(|mode| {
        let target = Target {
            program: plan.side_path.clone(),
            machine: plan.machine.clone(),
            lock_path,
            handoff_deadline: config.push_timeout,
            marker,
            socket,
        };
        Pusher::new(target, mode, tx.clone())
    });
    let mut sm = Machine::new(config);
    sm.start(start.elapsed(), initial, prologue, watch);
    let mut s = Session {
        log,
        start,
        sm,
        pusher,
        main_lock,
        child: Pid::from_raw(pid as i32),
        nonblock_at_start,
        saved,
        forwarded: false,
        _guardian: guardian,
        probe,
        bring_up_bound: config.push_timeout,
    };
    drop(tx);
    Ok(s.route(&rx))
}

impl Session {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Whether the terminal must be polled for smolvm's switch.
    fn polling(&self) -> bool {
        !self.sm.is_ready()
            && !self.sm.observed()
            && match self.sm.watch() {
                Watch::Raw => true,
                Watch::Timer => self.nonblock_at_start == Some(false),
            }
    }

    fn route(&mut self, rx: &Receiver<Event>) -> Ending {
        loop {
            let now = self.now();
            let mut wait = self.sm.next_deadline().map(|d| d.saturating_sub(now));
            if self.polling() {
                wait = Some(wait.map_or(READINESS_POLL, |w| w.min(READINESS_POLL)));
            }
            let event = match wait {
                Some(w) => match rx.recv_timeout(w) {
                    Ok(ev) => Some(ev),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return Ending::Code(1),
                },
                None => match rx.recv() {
                    Ok(ev) => Some(ev),
                    Err(_) => return Ending::Code(1),
                },
            };
            if let Some(ev) = event {
                if let Some(ending) = self.handle(ev) {
                    return ending;
                }
            }
            if self.polling() {
                let seen = readiness::observe(
                    self.sm.watch(),
                    readiness::stdin_lflags(),
                    readiness::stdin_nonblock(),
                    self.nonblock_at_start,
                );
                if let Some(via) = seen {
                    let actions = self.sm.started(self.now(), via);
                    self.execute(actions);
                }
            }
            let actions = self.sm.tick(self.now());
            self.execute(actions);
        }
    }

    /// Handles one event; `Some(ending)` ends the session.
    fn handle(&mut self, ev: Event) -> Option<Ending> {
        match ev {
            Event::ChildExited(status) => return Some(self.finish(status)),
            Event::Signal(sig) => self.signal(sig),
            Event::Locked {
                purpose: Purpose::Side,
                file,
                waited,
            } => {
                let report = self
                    .pusher
                    .as_mut()
                    .and_then(|p| p.locked(file, waited, &mut self.log));
                self.report(report);
            }
            // The main lock is only waited for before the child starts.
            Event::Locked { .. } => {}
            Event::Side(side) => {
                let report = self
                    .pusher
                    .as_mut()
                    .and_then(|p| p.on_side(side, &mut self.log));
                self.report(report);
            }
        }
        None
    }

    /// What the state machine makes of a pusher's report.
    fn actions_for(&mut self, report: Option<PushReport>) -> Vec<Action> {
        let now = self.now();
        match report {
            Some(PushReport::Done { id, outcome }) => self.sm.push_done(now, id, outcome),
            Some(PushReport::TransportDied { reason }) => self.sm.transport_died(now, &reason),
            Some(PushReport::Agent { id, outcome }) => self.sm.agent_done(now, id, outcome),
            None => Vec::new(),
        }
    }

    fn report(&mut self, report: Option<PushReport>) {
        let actions = self.actions_for(report);
        self.execute(actions);
    }

    fn signal(&mut self, sig: Sig) {
        match sig {
            Sig::Winch => {
                let actions = self.sm.winch(self.now(), size::read_host());
                self.execute(actions);
            }
            Sig::Term | Sig::Hup => {
                let r = kill(self.child, Signal::try_from(sig.raw()).ok());
                self.forwarded = true;
                self.log.event(&LogEvent::Signal {
                    signal: sig.name().into(),
                    action: "forwarded",
                    ok: Some(r.is_ok()),
                });
            }
            Sig::Int | Sig::Quit => {
                // The terminal sends them to the child too: the wrapper
                // outlives them and exits with the child.
                self.log.event(&LogEvent::Signal {
                    signal: sig.name().into(),
                    action: "ignored",
                    ok: None,
                });
            }
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let report = match action {
                Action::Log(e) => {
                    self.log.event(&e);
                    None
                }
                Action::Ready => {
                    if let Some(lock) = self.main_lock.take() {
                        lock.release(&mut self.log);
                    }
                    None
                }
                Action::Push { id, size } => self
                    .pusher
                    .as_mut()
                    .and_then(|p| p.push(id, size, &mut self.log)),
                Action::Abort { id } => self
                    .pusher
                    .as_mut()
                    .and_then(|p| p.abort(id, &mut self.log)),
                Action::Nudge => {
                    let _ = kill(self.child, Signal::SIGWINCH);
                    None
                }
                Action::Probe { id, size } => self.pusher.as_mut().and_then(|p| p.probe(id, size)),
                Action::Fallback => {
                    if let Some(p) = self.pusher.as_mut() {
                        p.fallback();
                    }
                    None
                }
            };
            let more = self.actions_for(report);
            queue.extend(more);
        }
    }

    /// The child ended: hand the terminal back if a signal was involved,
    /// leave side channels in their bring-up to finish, return the code.
    fn finish(&mut self, status: ExitStatus) -> Ending {
        if status.signal().is_some() || self.forwarded {
            let (termios, flags) = self.saved.restore();
            self.log.event(&LogEvent::Restore {
                termios: termios.as_str(),
                flags: flags.as_str(),
            });
        }
        if let Some(p) = self.pusher.take() {
            p.finish(&mut self.log);
        }
        // Killed before it was ready: its bring-up may go on in the VM
        // (killing the client does not stop it), so the lock is kept for it.
        // A client that exited by itself got the agent's answer: nothing of
        // its exec goes on.
        if let Some(lock) = self.main_lock.take() {
            if status.signal().is_some() {
                lock.hand_over(&mut self.log, self.bring_up_bound, self.probe.take());
            } else {
                lock.release(&mut self.log);
            }
        }
        let ending = Ending::of(status);
        self.log.event(&LogEvent::Exit {
            code: ending.code(),
            status: crate::side::describe_status(status),
        });
        ending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGTERM)), 143);
    }

    #[test]
    fn a_death_by_a_stop_request_is_passed_on_and_other_signals_are_codes() {
        let of = |raw| Ending::of(ExitStatus::from_raw(raw));
        assert_eq!(of(libc::SIGINT), Ending::Signal(libc::SIGINT));
        assert_eq!(of(libc::SIGQUIT | 0x80), Ending::Signal(libc::SIGQUIT));
        assert_eq!(of(libc::SIGTERM), Ending::Signal(libc::SIGTERM));
        assert_eq!(of(libc::SIGHUP), Ending::Signal(libc::SIGHUP));
        assert_eq!(of(libc::SIGKILL), Ending::Code(137));
        assert_eq!(of(libc::SIGSEGV | 0x80), Ending::Code(139));
        assert_eq!(of(130 << 8), Ending::Code(130));
        assert_eq!(Ending::Signal(libc::SIGINT).code(), 130);
    }
}
