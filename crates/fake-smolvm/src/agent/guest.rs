//! The guest command of one exec: spawned on a guest PTY (`-t`) or pipes,
//! its own process group, and the control that kills it.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Condvar, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::exec_log::Fault;

/// Kill control of one exec: reaches its guest process group once there is
/// one, and wakes an exec still waiting in its crun window.
#[derive(Default)]
pub struct Ctl {
    inner: Mutex<CtlInner>,
    woken: Condvar,
}

#[derive(Default)]
struct CtlInner {
    /// Process groups to kill (each also killed as a process: a container's
    /// init, killed, ends its whole pid namespace).
    groups: Vec<i32>,
    /// The container's init, when this exec made one (`crun run`).
    init: Option<i32>,
    /// A group a hang-up of the client does not kill: the main container
    /// of a `-t` session, which outlives its killed crun.
    survivor: Option<i32>,
    /// The kill came from the client hanging up (no fault).
    hangup: bool,
    /// Set once: the fault that killed (or will kill) the exec.
    fault: Option<Fault>,
    /// A kill was requested (a fault, or a vanished client).
    kill: bool,
    finished: bool,
}

fn kill_group(pgid: i32) {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    let _ = nix::sys::signal::kill(Pid::from_raw(pgid), Signal::SIGKILL);
}

impl Ctl {
    /// Kills the exec (now, or as soon as its command starts), noting why.
    pub fn kill(&self, fault: Option<Fault>) {
        let mut c = self.inner.lock().unwrap();
        if c.finished {
            return;
        }
        if c.fault.is_none() {
            c.fault = fault;
        }
        c.kill = true;
        c.hangup = c.fault.is_none();
        let spared = c.survivor.filter(|_| c.hangup);
        c.groups
            .iter()
            .copied()
            .filter(|g| Some(*g) != spared)
            .for_each(kill_group);
        self.woken.notify_all();
    }

    /// A hang-up of the client leaves group `pid` (the main container's
    /// init) alive: smolvm's agent kills crun, not the container (its pid 1
    /// ignores the SIGHUP) — smolvm-0.8.0.md, last section.
    pub fn keep_on_hangup(&self, pid: i32) {
        self.inner.lock().unwrap().survivor = Some(pid);
    }

    /// The group left alive by a hang-up, if that is how the exec ended.
    pub fn orphaned(&self) -> Option<i32> {
        let c = self.inner.lock().unwrap();
        c.survivor.filter(|_| c.kill && c.hangup)
    }

    /// Whether a kill was requested, and for which fault.
    pub fn killed(&self) -> Option<Option<Fault>> {
        let c = self.inner.lock().unwrap();
        c.kill.then_some(c.fault)
    }

    /// Waits up to `window` unless a fault kills the exec first; true if one
    /// did. A client hanging up does not end the wait: the bring-up goes on in
    /// the guest without it, as in a real VM.
    pub fn wait_fault(&self, window: Duration) -> bool {
        let c = self.inner.lock().unwrap();
        let (c, _) = self
            .woken
            .wait_timeout_while(c, window, |c| !(c.kill && c.fault.is_some()))
            .unwrap();
        c.kill && c.fault.is_some()
    }

    /// A process group of the exec (the command, crun, the container's
    /// init) exists: a kill reaches it from now on.
    pub fn started(&self, pgid: i32) {
        let mut c = self.inner.lock().unwrap();
        c.groups.push(pgid);
        if c.kill {
            kill_group(pgid);
        }
    }

    /// The container this exec made has its init at VM-level pid `pid`.
    pub fn set_init(&self, pid: i32) {
        self.inner.lock().unwrap().init = Some(pid);
        self.started(pid);
    }

    /// The init of the container this exec made, if any.
    pub fn init(&self) -> Option<i32> {
        self.inner.lock().unwrap().init
    }

    /// The main process is reaped: stop targeting it, kill what it left in
    /// its group, and say which fault (if any) ended it.
    pub fn finish(&self) -> Option<Fault> {
        let mut c = self.inner.lock().unwrap();
        c.finished = true;
        // Why: like a container, an exec's leftovers die with its main process
        // (but not a main container a hang-up left running).
        let spared = c.survivor.filter(|_| c.kill && c.hangup);
        c.groups
            .drain(..)
            .filter(|g| Some(*g) != spared)
            .for_each(kill_group);
        c.fault
    }
}

/// Where the guest process's stdin goes.
pub enum StdinSink {
    /// The PTY master.
    Pty(File),
    /// A pipe (`-i`); `None` once closed.
    Pipe(Option<ChildStdin>),
    /// Nothing (non-interactive: `/dev/null`).
    None,
}

/// One of the guest process's output pipes.
pub type GuestReader = Box<dyn Read + Send>;

/// The guest process's output, to be relayed or collected.
pub enum Output {
    /// A PTY master (`-t`): one stream.
    Pty(File),
    /// Pipes relayed as they come (`-i`).
    Streams(Option<GuestReader>, Option<GuestReader>),
    /// Pipes collected whole (non-interactive).
    Buffered(Option<GuestReader>, Option<GuestReader>),
}

/// A spawned guest command.
pub struct Spawned {
    /// The process.
    pub child: Child,
    /// Its stdin.
    pub sink: StdinSink,
    /// Its output.
    pub output: Output,
    /// The PTY master, for `resize` (with `-t`).
    pub master: Option<File>,
    /// A container exec: the fake crun's control socket, which reports how
    /// the command ended (`child` is crun).
    pub crun: Option<OwnedFd>,
}

/// What the guest command needs.
pub struct Spec<'a> {
    /// The command.
    pub argv: &'a [String],
    /// `-e` entries.
    pub env: &'a [(String, String)],
    /// `-w`.
    pub workdir: Option<&'a str>,
    /// The machine name (`HOSTNAME`).
    pub hostname: &'a str,
    /// `TERM` for a `-t` command.
    pub term: Option<&'a str>,
    /// `-i`/`-t`.
    pub interactive: bool,
    /// `-t`: its PTY's size at start (`None`: 0×0, nobody sizes it).
    pub tty: Option<Option<(u16, u16)>>,
}

/// A failure to start: the exit code a container runtime reports and its message.
pub struct SpawnError {
    /// 127 not found, 126 not runnable, 1 anything else.
    pub code: i32,
    /// The message.
    pub message: String,
}

fn spawn_error(code: i32, message: String) -> SpawnError {
    SpawnError { code, message }
}

/// What is checked before anything starts: the working directory exists and
/// there is a command. Returns the working directory.
pub fn preflight<'a>(spec: &Spec<'a>) -> Result<&'a str, SpawnError> {
    let workdir = spec.workdir.unwrap_or("/");
    if !std::path::Path::new(workdir).is_dir() {
        return Err(spawn_error(
            1,
            format!("exec failed: workdir {workdir}: no such directory"),
        ));
    }
    if spec.argv.is_empty() {
        return Err(spawn_error(1, "empty command".into()));
    }
    Ok(workdir)
}

/// The command's whole environment: `PATH` (the agent's), `HOME`,
/// `HOSTNAME`, `TERM` with `-t`, then the `-e` entries (later ones win).
pub fn environment(spec: &Spec) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| {
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
            }),
        ),
        ("HOME".into(), "/root".into()),
        ("HOSTNAME".into(), spec.hostname.into()),
    ];
    if spec.tty.is_some() {
        env.push(("TERM".into(), spec.term.unwrap_or("xterm").into()));
    }
    for (k, v) in spec.env {
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// Starts the guest command at the VM level (`vm_exec`), in its own
/// session (and so process group).
pub fn spawn(spec: &Spec) -> Result<Spawned, SpawnError> {
    let workdir = preflight(spec)?;
    let program = &spec.argv[0];
    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(environment(spec))
        .current_dir(workdir);
    let tty = spec.tty.is_some();
    // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if tty && libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let not_started = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => spawn_error(
            127,
            format!("exec: \"{program}\": executable file not found in $PATH"),
        ),
        io::ErrorKind::PermissionDenied => {
            spawn_error(126, format!("exec: \"{program}\": permission denied"))
        }
        _ => spawn_error(1, format!("exec failed: {e}")),
    };
    let failed = |e: io::Error| spawn_error(1, format!("exec failed: {e}"));
    if let Some(size) = spec.tty {
        let size = size.map(|(cols, rows)| nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(size.as_ref(), None)
            .map_err(|e| spawn_error(1, format!("exec failed: openpty: {e}")))?;
        let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
        cmd.stdin(dup(&pty.slave).map_err(failed)?)
            .stdout(dup(&pty.slave).map_err(failed)?)
            .stderr(dup(&pty.slave).map_err(failed)?);
        let child = cmd.spawn().map_err(not_started)?;
        drop(cmd);
        drop(pty.slave);
        let master = File::from(pty.master);
        let reader = master.try_clone().map_err(failed)?;
        let resizer = master.try_clone().map_err(failed)?;
        Ok(Spawned {
            child,
            sink: StdinSink::Pty(master),
            output: Output::Pty(reader),
            master: Some(resizer),
            crun: None,
        })
    } else if spec.interactive {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(not_started)?;
        let stdin = child.stdin.take();
        let (o, e) = take_output_pipes(&mut child);
        Ok(Spawned {
            child,
            sink: StdinSink::Pipe(stdin),
            output: Output::Streams(o, e),
            master: None,
            crun: None,
        })
    } else {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(not_started)?;
        let (o, e) = take_output_pipes(&mut child);
        Ok(Spawned {
            child,
            sink: StdinSink::None,
            output: Output::Buffered(o, e),
            master: None,
            crun: None,
        })
    }
}

pub(super) fn take_output_pipes(child: &mut Child) -> (Option<GuestReader>, Option<GuestReader>) {
    let o = child.stdout.take().map(|s| Box::new(s) as GuestReader);
    let e = child.stderr.take().map(|s| Box::new(s) as GuestReader);
    (o, e)
}

/// Sets a PTY's size.
pub fn set_winsize(master: &File, cols: u16, rows: u16) {
    let ws = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let _ = rustix::termios::tcsetwinsize(master, ws);
}

/// Waits for the main process; on `--timeout` expiry kills its group (fault timeout).
pub fn wait_with_timeout(mut child: Child, timeout_ms: Option<u64>, ctl: &Ctl) -> ExitStatus {
    let (tx, rx) = mpsc::channel();
    // Why a thread: Child::wait has no timeout; the reaper reports back here.
    std::thread::spawn(move || {
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
