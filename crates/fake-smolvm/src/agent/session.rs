//! One exec inside the guest: bring-up (fault 2), shared-stdin check (fault 3),
//! spawning the command (on a guest PTY for `-t`: fault 1), relaying, ending.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::exec_log::{self, monotonic_ms, ExecRecord, Fault};
use crate::oci::{self, Ledger, WriteMode};
use crate::settings::{Compat, RaceMode, Resolved, Switches};
use crate::wire::{self, Request, Response, RunRequest};

/// How long the agent waits, after its final response, for the client to
/// confirm its exec.log line (`logged`) or hang up. Generous, because a
/// client only has to append one line; bounded, so a stuck client cannot pin
/// an agent thread forever.
const CONFIRM_DEADLINE: Duration = Duration::from_secs(5);

/// How an exec ended, seen from the agent: who owes exec.log its line.
enum Ending {
    /// The final response reached the client's socket: the client writes the
    /// line and confirms it; if it does not, the agent writes this record.
    Told(ExecRecord),
    /// The client hung up before the final response could be delivered: the
    /// agent writes this record.
    Vanished(ExecRecord),
}

/// What the client's side of the connection said after the final response.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hangup {
    /// `logged` arrived: the client's line is in exec.log.
    Confirmed,
    /// EOF or a read error without `logged`.
    Closed,
    /// [`CONFIRM_DEADLINE`] passed without either.
    Deadline,
}

/// The machine-wide state shared by every exec thread.
pub struct Agent {
    machine: String,
    dir: PathBuf,
    defaults: Switches,
    next_id: AtomicU64,
    shared: Mutex<Shared>,
}

#[derive(Default)]
struct Shared {
    ledger: Ledger,
    /// Live interactive execs with a terminal as stdin: id -> (st_rdev, control).
    live: HashMap<u64, (u64, Arc<Ctl>)>,
}

/// Kill control of one exec's guest process group.
#[derive(Default)]
struct Ctl {
    inner: Mutex<CtlInner>,
}

#[derive(Default)]
struct CtlInner {
    pgid: Option<i32>,
    /// Set once: the fault that killed (or will kill) the guest process.
    fault: Option<Fault>,
    /// A kill was requested (by a fault or a vanished client).
    kill: bool,
    finished: bool,
}

impl Ctl {
    fn kill(&self, fault: Option<Fault>) {
        let mut c = self.inner.lock().unwrap();
        if c.finished {
            return;
        }
        if c.fault.is_none() {
            c.fault = fault;
        }
        c.kill = true;
        if let Some(pgid) = c.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }

    fn started(&self, pgid: i32) {
        let mut c = self.inner.lock().unwrap();
        c.pgid = Some(pgid);
        if c.kill {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }

    /// The main process is reaped: stop targeting it, and kill what it left in its group.
    fn finish(&self) -> Option<Fault> {
        let mut c = self.inner.lock().unwrap();
        c.finished = true;
        if let Some(pgid) = c.pgid.take() {
            // Why: like a container, an exec's leftovers die with its main process.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        c.fault
    }
}

/// Writes frames to the client; remembers whether the client is gone.
struct Out {
    stream: Mutex<UnixStream>,
    gone: AtomicBool,
}

impl Out {
    fn send(&self, msg: &Response) -> bool {
        let mut s = self.stream.lock().unwrap();
        match wire::write_frame(&mut *s, msg) {
            Ok(()) => true,
            Err(_) => {
                self.gone.store(true, Ordering::SeqCst);
                false
            }
        }
    }
}

/// Where the guest process's stdin goes.
enum StdinSink {
    Pty(File),
    Pipe(Option<std::process::ChildStdin>),
    None,
}

struct Bringup {
    start_ms: f64,
    end_ms: f64,
    torn: Option<String>,
}

impl Agent {
    /// A new agent for machine `machine` in folder `dir`.
    pub fn new(machine: String, dir: PathBuf, defaults: Switches) -> Agent {
        Agent {
            machine,
            dir,
            defaults,
            next_id: AtomicU64::new(1),
            shared: Mutex::new(Shared::default()),
        }
    }

    /// Serves one connection: one `run`, then its stdin/resize frames.
    pub fn handle(&self, stream: UnixStream) {
        let mut reader = match stream.try_clone() {
            Ok(r) => r,
            Err(_) => return,
        };
        let run = match wire::read_frame::<_, Request>(&mut reader) {
            Ok(Some(Request::Run(run))) => *run,
            _ => return, // a liveness probe, or garbage: nothing to do
        };
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mark = format!("{}-{id}", run.client_pid);
        // Brackets everything this exec does, its exec.log append included:
        // exec_log::read_settled waits while an exec whose client is gone
        // has no closing mark yet.
        eprintln!("{}{mark}", exec_log::EXEC_OPEN);
        let cfg = run.switches.or(&self.defaults).resolve();
        let ctl = Arc::new(Ctl::default());
        let out = Arc::new(Out {
            stream: Mutex::new(stream),
            gone: AtomicBool::new(false),
        });
        let (hangup_tx, hangup_rx) = mpsc::channel();
        self.check_shared_stdin(id, &run, &cfg, &ctl);
        let ending = self.exec(id, &run, &cfg, &ctl, &out, reader, hangup_tx);
        self.shared.lock().unwrap().live.remove(&id);
        let exec = format!("exec {}-{id}", run.client_pid);
        let (record, note) = match ending {
            Ending::Vanished(record) => (
                Some(record),
                "client gone before the final response; record written by the agent".to_string(),
            ),
            Ending::Told(mut record) => {
                let hangup = match hangup_rx.recv_timeout(CONFIRM_DEADLINE) {
                    Ok(true) => Hangup::Confirmed,
                    Ok(false) | Err(mpsc::RecvTimeoutError::Disconnected) => Hangup::Closed,
                    Err(mpsc::RecvTimeoutError::Timeout) => Hangup::Deadline,
                };
                if hangup == Hangup::Confirmed {
                    (None, "client confirmed its record".to_string())
                } else {
                    // The client's end is the closest thing to now we can see.
                    record.end_ms = monotonic_ms();
                    (
                        Some(record),
                        format!("client did not confirm its record ({hangup:?}); record written by the agent"),
                    )
                }
            }
        };
        // Why: after a deadline the input thread is still blocked reading a
        // stuck client; shutting the socket down ends that read.
        let _ = out.stream.lock().unwrap().shutdown(Shutdown::Both);
        if let Some(record) = record {
            if let Err(e) = exec_log::append(&self.dir.join("exec.log"), &record) {
                eprintln!("agent: cannot append exec.log: {e}");
            }
        }
        // Why after the append: once this line is in agent.log, exec.log is
        // final for this exec (tests wait on it).
        eprintln!("agent: {exec}: {note}");
        eprintln!("{}{mark}", exec_log::EXEC_CLOSED);
    }

    /// Fault 3: a new exec on the terminal of a live interactive session kills
    /// that session after the configured delay (when the mode allows).
    fn check_shared_stdin(&self, id: u64, run: &RunRequest, cfg: &Resolved, ctl: &Arc<Ctl>) {
        let Some(rdev) = run.stdin.tty_rdev else {
            return;
        };
        let mut shared = self.shared.lock().unwrap();
        if cfg.shared_stdin.fires(run.tmux) {
            let delay = Duration::from_millis(cfg.shared_stdin_delay_ms);
            for (_, (other_rdev, other)) in shared.live.iter() {
                if *other_rdev == rdev {
                    let other = other.clone();
                    thread::spawn(move || {
                        thread::sleep(delay);
                        other.kill(Some(Fault::SharedStdin));
                    });
                }
            }
        }
        if run.interactive {
            shared.live.insert(id, (rdev, ctl.clone()));
        }
    }

    /// Fault 2: write this exec's config.json as the ledger says, wait, load it.
    fn bringup(&self, id: u64, run: &RunRequest, cfg: &Resolved) -> Bringup {
        let path = self.dir.join("config.json");
        let exec_id = format!("{}-{id}", run.client_pid);
        let env: Vec<String> = run.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let doc = oci::config_document(
            &self.machine,
            &exec_id,
            &run.argv,
            &env,
            run.workdir.as_deref().unwrap_or("/"),
            run.tty,
        );
        let start_ms = monotonic_ms();
        {
            let mut shared = self.shared.lock().unwrap();
            let mode = shared.ledger.begin(id);
            let file = match mode {
                WriteMode::Truncate => OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path),
                WriteMode::Append => OpenOptions::new().append(true).create(true).open(&path),
            };
            if let Err(e) = file.and_then(|mut f| f.write_all(doc.as_bytes())) {
                eprintln!("agent: cannot write {}: {e}", path.display());
            }
        }
        thread::sleep(Duration::from_millis(cfg.bringup_ms));
        let mut shared = self.shared.lock().unwrap();
        let overlapped = shared.ledger.end(id);
        let loaded = fs::read_to_string(&path)
            .map_err(|e| format!("load `config.json`: {e}"))
            .and_then(|text| oci::load_config(&text));
        drop(shared);
        let torn = match loaded {
            Ok(owner) if owner == exec_id => None,
            Ok(owner) => Some(format!(
                "load `config.json`: document belongs to exec {owner}, not {exec_id}"
            )),
            Err(msg) => Some(msg),
        };
        debug_assert_eq!(torn.is_some(), overlapped, "ledger and file disagree");
        Bringup {
            start_ms,
            end_ms: monotonic_ms(),
            torn,
        }
    }

    /// Runs the exec and sends its final response. The client's frames are
    /// read (by the input thread) until it hangs up; `hangup` gets `true` when
    /// it confirms its exec.log line, `false` on EOF without that.
    #[allow(clippy::too_many_arguments)]
    fn exec(
        &self,
        id: u64,
        run: &RunRequest,
        cfg: &Resolved,
        ctl: &Arc<Ctl>,
        out: &Arc<Out>,
        reader: UnixStream,
        hangup: mpsc::Sender<bool>,
    ) -> Ending {
        let b = self.bringup(id, run, cfg);
        // Before a guest process exists there is nothing to feed: the input
        // thread then only watches for the client's confirmation or hang-up.
        let watch = |reader| {
            spawn_input(
                reader,
                StdinSink::None,
                None,
                cfg.compat,
                ctl.clone(),
                out.clone(),
                hangup.clone(),
            )
        };
        let mut race_kill = false;
        if let Some(msg) = &b.torn {
            match cfg.race {
                RaceMode::Off => {}
                RaceMode::Sigkill => race_kill = true,
                RaceMode::Exit1 => {
                    let delivered = out.send(&Response::Error {
                        message: msg.clone(),
                        fault: Some(Fault::ConfigRace),
                        bringup_start_ms: Some(b.start_ms),
                        bringup_end_ms: Some(b.end_ms),
                    });
                    if !delivered {
                        return Ending::Vanished(self.vanished(
                            run,
                            &b,
                            None,
                            Some(Fault::ConfigRace),
                        ));
                    }
                    watch(reader);
                    return Ending::Told(self.told(
                        run,
                        &b,
                        1,
                        None,
                        Some(Fault::ConfigRace),
                        Some(msg.clone()),
                    ));
                }
            }
        }

        let spawned = self.spawn(run, cfg, race_kill);
        let (child, sink, outputs) = match spawned {
            Ok(s) => s,
            Err((code, msg)) => {
                let ending = self.spawn_failed(run, &b, out, code, msg);
                if let Ending::Told(_) = ending {
                    watch(reader);
                }
                return ending;
            }
        };
        ctl.started(child.id() as i32);
        if race_kill {
            ctl.kill(Some(Fault::ConfigRace));
        }
        if run.interactive
            && !out.send(&Response::Started {
                bringup_start_ms: b.start_ms,
                bringup_end_ms: b.end_ms,
                compat: cfg.compat,
            })
        {
            ctl.kill(None);
        }
        let master_for_resize = match &sink {
            StdinSink::Pty(f) => f.try_clone().ok(),
            _ => None,
        };
        let outputs = outputs.start(out);
        spawn_input(
            reader,
            sink,
            master_for_resize,
            cfg.compat,
            ctl.clone(),
            out.clone(),
            hangup.clone(),
        );

        let status = wait_with_timeout(child, run.timeout_ms, ctl);
        let fault = ctl.finish();
        let (stdout, stderr) = outputs.finish();
        let signal = status.signal();
        let exit_code = match (fault, status.code(), signal) {
            (Some(Fault::Timeout), _, _) => 124,
            (_, Some(code), _) => code,
            (_, None, Some(sig)) => 128 + sig,
            _ => 1,
        };
        let final_msg = if run.interactive {
            Response::Exited {
                exit_code,
                signal,
                fault,
            }
        } else {
            Response::Completed {
                exit_code,
                signal,
                fault,
                stdout: wire::encode(&stdout),
                stderr: wire::encode(&stderr),
                bringup_start_ms: b.start_ms,
                bringup_end_ms: b.end_ms,
            }
        };
        let delivered = !out.gone.load(Ordering::SeqCst) && out.send(&final_msg);
        if delivered {
            Ending::Told(self.told(run, &b, exit_code, signal, fault, None))
        } else {
            Ending::Vanished(self.vanished(run, &b, signal, fault))
        }
    }

    fn spawn_failed(
        &self,
        run: &RunRequest,
        b: &Bringup,
        out: &Out,
        code: i32,
        msg: String,
    ) -> Ending {
        let error = (code == 1).then(|| msg.clone());
        let delivered = if code == 1 {
            out.send(&Response::Error {
                message: msg,
                fault: None,
                bringup_start_ms: Some(b.start_ms),
                bringup_end_ms: Some(b.end_ms),
            })
        } else if run.interactive {
            out.send(&Response::Started {
                bringup_start_ms: b.start_ms,
                bringup_end_ms: b.end_ms,
                compat: Compat::default(),
            }) && out.send(&Response::Stderr {
                data: wire::encode(format!("{msg}\r\n").as_bytes()),
            }) && out.send(&Response::Exited {
                exit_code: code,
                signal: None,
                fault: None,
            })
        } else {
            out.send(&Response::Completed {
                exit_code: code,
                signal: None,
                fault: None,
                stdout: String::new(),
                stderr: wire::encode(format!("{msg}\n").as_bytes()),
                bringup_start_ms: b.start_ms,
                bringup_end_ms: b.end_ms,
            })
        };
        if delivered {
            Ending::Told(self.told(run, b, code, None, None, error))
        } else {
            Ending::Vanished(self.vanished(run, b, None, None))
        }
    }

    /// The record the agent writes for a client that vanished before the end:
    /// exit_code 137, as a client killed by SIGKILL (the usual cause) reports.
    fn vanished(
        &self,
        run: &RunRequest,
        b: &Bringup,
        signal: Option<i32>,
        fault: Option<Fault>,
    ) -> ExecRecord {
        ExecRecord {
            error: Some(
                "client disconnected before the exec ended (record written by the agent)".into(),
            ),
            ..self.told(run, b, 137, signal, fault, None)
        }
    }

    /// The record of an exec whose final response reached the client: what
    /// the client would have logged (the agent writes it only if the client
    /// does not confirm its own line; `end_ms` is then updated).
    fn told(
        &self,
        run: &RunRequest,
        b: &Bringup,
        exit_code: i32,
        signal: Option<i32>,
        fault: Option<Fault>,
        error: Option<String>,
    ) -> ExecRecord {
        ExecRecord {
            pid: run.client_pid,
            argv: run.argv.clone(),
            tty: run.tty,
            interactive: run.interactive,
            stdin: run.stdin.kind.clone(),
            tmux: run.tmux,
            start_ms: run.start_ms,
            bringup_start_ms: Some(b.start_ms),
            bringup_end_ms: Some(b.end_ms),
            end_ms: monotonic_ms(),
            exit_code,
            signal,
            fault,
            error,
        }
    }

    /// Starts the guest command. Err: (exit code, message) — 127/126 like a
    /// container runtime for a missing/unrunnable command, 1 for anything else.
    fn spawn(
        &self,
        run: &RunRequest,
        cfg: &Resolved,
        die_at_start: bool,
    ) -> Result<(Child, StdinSink, Outputs), (i32, String)> {
        let workdir = run.workdir.clone().unwrap_or_else(|| "/".into());
        if !std::path::Path::new(&workdir).is_dir() {
            return Err((
                1,
                format!("exec failed: workdir {workdir}: no such directory"),
            ));
        }
        let mut cmd = Command::new(&run.argv[0]);
        cmd.args(&run.argv[1..])
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| {
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
                }),
            )
            .env("HOME", "/root")
            .env("HOSTNAME", &self.machine)
            .current_dir(&workdir);
        if run.tty {
            cmd.env("TERM", run.term.as_deref().unwrap_or("xterm"));
        }
        for (k, v) in &run.env {
            cmd.env(k, v);
        }
        let tty = run.tty;
        // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if tty && libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                if die_at_start {
                    // Fault 2, `sigkill` mode: the container is torn down as it
                    // starts. Dying here, before exec, makes that deterministic.
                    libc::raise(libc::SIGKILL);
                }
                Ok(())
            });
        }
        let spawn_err = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => (
                127,
                format!(
                    "exec: \"{}\": executable file not found in $PATH",
                    run.argv[0]
                ),
            ),
            io::ErrorKind::PermissionDenied => {
                (126, format!("exec: \"{}\": permission denied", run.argv[0]))
            }
            _ => (1, format!("exec failed: {e}")),
        };
        if run.tty {
            // 0.8.0: a fresh PTY is 0x0 and nothing sets it. 0.8.1: 80x24 default.
            let size = (cfg.compat == Compat::V081).then_some(nix::pty::Winsize {
                ws_row: 24,
                ws_col: 80,
                ws_xpixel: 0,
                ws_ypixel: 0,
            });
            let pty = nix::pty::openpty(size.as_ref(), None)
                .map_err(|e| (1, format!("exec failed: openpty: {e}")))?;
            let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
            let stdio =
                (|| Ok::<_, io::Error>((dup(&pty.slave)?, dup(&pty.slave)?, dup(&pty.slave)?)))()
                    .map_err(|e| (1, format!("exec failed: {e}")))?;
            cmd.stdin(stdio.0).stdout(stdio.1).stderr(stdio.2);
            let child = cmd.spawn().map_err(spawn_err)?;
            drop(cmd);
            drop(pty.slave);
            let master = File::from(pty.master);
            let reader = master
                .try_clone()
                .map_err(|e| (1, format!("exec failed: {e}")))?;
            Ok((child, StdinSink::Pty(master), Outputs::Pty(reader)))
        } else if run.interactive {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().map_err(spawn_err)?;
            let stdin = child.stdin.take();
            let (o, e) = take_output_pipes(&mut child);
            Ok((child, StdinSink::Pipe(stdin), Outputs::Streams(o, e)))
        } else {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().map_err(spawn_err)?;
            let (o, e) = take_output_pipes(&mut child);
            Ok((child, StdinSink::None, Outputs::Buffered(o, e)))
        }
    }
}

/// One of the guest process's output pipes.
type GuestReader = Box<dyn Read + Send>;

/// The child's piped stdout and stderr, as readers for [`Outputs`].
fn take_output_pipes(child: &mut Child) -> (Option<GuestReader>, Option<GuestReader>) {
    let o = child.stdout.take().map(|s| Box::new(s) as GuestReader);
    let e = child.stderr.take().map(|s| Box::new(s) as GuestReader);
    (o, e)
}

/// The guest process's output, not yet wired up to a destination.
enum Outputs {
    Pty(File),
    Streams(Option<GuestReader>, Option<GuestReader>),
    Buffered(Option<GuestReader>, Option<GuestReader>),
    Running(Vec<JoinHandle<Vec<u8>>>, Arc<AtomicBool>),
}

impl Outputs {
    /// Starts the relay/collector threads for this output.
    fn start(self, out: &Arc<Out>) -> Outputs {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = match self {
            Outputs::Pty(master) => {
                let (out, stop2) = (out.clone(), stop.clone());
                vec![thread::spawn(move || {
                    relay_pty(master, &out, &stop2);
                    Vec::new()
                })]
            }
            Outputs::Streams(o, e) => [(o, true), (e, false)]
                .into_iter()
                .filter_map(|(r, is_out)| r.map(|r| (r, is_out)))
                .map(|(mut r, is_out)| {
                    let out = out.clone();
                    thread::spawn(move || {
                        let mut buf = [0u8; 8192];
                        while let Ok(n) = r.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            let data = wire::encode(&buf[..n]);
                            out.send(&if is_out {
                                Response::Stdout { data }
                            } else {
                                Response::Stderr { data }
                            });
                        }
                        Vec::new()
                    })
                })
                .collect(),
            Outputs::Buffered(o, e) => [o, e]
                .into_iter()
                .map(|r| {
                    thread::spawn(move || {
                        let mut all = Vec::new();
                        if let Some(mut r) = r {
                            let _ = r.read_to_end(&mut all);
                        }
                        all
                    })
                })
                .collect(),
            running @ Outputs::Running(..) => return running,
        };
        Outputs::Running(handles, stop)
    }

    /// Waits for the output threads (the group is dead by now, so they end);
    /// returns buffered stdout and stderr (empty when relayed).
    fn finish(self) -> (Vec<u8>, Vec<u8>) {
        let Outputs::Running(handles, stop) = self else {
            return (Vec::new(), Vec::new());
        };
        // A PTY relay ends on EIO once every slave fd is closed; the stop flag
        // is the backstop if a descendant escaped the process group.
        let stopper = {
            let stop = stop.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_secs(2));
                stop.store(true, Ordering::SeqCst);
            })
        };
        drop(stopper);
        let mut results = handles.into_iter().map(|h| h.join().unwrap_or_default());
        let o = results.next().unwrap_or_default();
        let e = results.next().unwrap_or_default();
        (o, e)
    }
}

fn relay_pty(mut master: File, out: &Out, stop: &AtomicBool) {
    let mut buf = [0u8; 8192];
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.send(&Response::Stdout {
                    data: wire::encode(&buf[..n]),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break, // EIO: every slave fd is closed
        }
    }
}

/// Reads the client's frames: stdin bytes to the guest, resizes (0.8.1 only)
/// to the PTY; the client hanging up kills the guest process. `hangup` gets
/// `true` as soon as `logged` arrives and `false` at EOF (the receiver takes
/// the first).
fn spawn_input(
    mut reader: UnixStream,
    mut sink: StdinSink,
    master: Option<File>,
    compat: Compat,
    ctl: Arc<Ctl>,
    out: Arc<Out>,
    hangup: mpsc::Sender<bool>,
) {
    thread::spawn(move || loop {
        match wire::read_frame::<_, Request>(&mut reader) {
            Ok(Some(Request::Stdin { data })) => {
                let bytes = wire::decode(&data).unwrap_or_default();
                match &mut sink {
                    StdinSink::Pty(m) if bytes.is_empty() => {
                        // EOF on a terminal is the VEOF character, as typed.
                        let _ = m.write_all(b"\x04");
                    }
                    StdinSink::Pty(m) => {
                        let _ = m.write_all(&bytes);
                    }
                    StdinSink::Pipe(p) if bytes.is_empty() => *p = None,
                    StdinSink::Pipe(Some(p)) => {
                        let _ = p.write_all(&bytes);
                    }
                    _ => {}
                }
            }
            Ok(Some(Request::Resize { cols, rows })) => {
                if let (Compat::V081, Some(m)) = (compat, &master) {
                    set_winsize(m.as_raw_fd(), cols, rows);
                }
            }
            Ok(Some(Request::Run(_))) => {}
            Ok(Some(Request::Logged)) => {
                let _ = hangup.send(true);
            }
            Ok(None) | Err(_) => {
                out.gone.store(true, Ordering::SeqCst);
                ctl.kill(None);
                let _ = hangup.send(false);
                return;
            }
        }
    });
}

fn set_winsize(fd: i32, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct we own; fd is an open PTY master.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// Waits for the main process; on `--timeout` expiry kills its group (fault timeout).
fn wait_with_timeout(mut child: Child, timeout_ms: Option<u64>, ctl: &Ctl) -> ExitStatus {
    let (tx, rx) = mpsc::channel();
    // Why a thread: Child::wait has no timeout; the reaper reports back here.
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match timeout_ms {
        Some(ms) => match rx.recv_timeout(Duration::from_millis(ms)) {
            Ok(status) => status,
            Err(_) => {
                ctl.kill(Some(Fault::Timeout));
                rx.recv().unwrap_or_else(|e| Err(io::Error::other(e)))
            }
        },
        None => rx.recv().unwrap_or_else(|e| Err(io::Error::other(e))),
    };
    status.unwrap_or_else(|_| ExitStatus::from_raw(libc::SIGKILL))
}
