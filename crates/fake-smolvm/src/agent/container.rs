//! A container exec as the agent drives the fake's crun (`crate::crun`):
//! `run` sets a container up at the start of the crun window and starts the
//! command on `go` at its end; `exec` joins the main container at once.
//! The command's stdio is the crun's (pipes, `/dev/null`) or a PTY made in
//! the container's own devpts, whose master crun hands back.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::guest::{take_output_pipes, Ctl, Output, SpawnError, Spawned, StdinSink};
use crate::crun::{self, Go, Msg};

/// What a container exec's crun is asked to do.
pub enum Mode {
    /// `crun run`: a new container; `Some(size)` with `-t` (`None`: 0×0).
    Run(Option<Option<(u16, u16)>>),
    /// `crun exec` into the container whose init is this VM-level pid.
    Exec {
        /// The main container's init.
        target: i32,
        /// `-t`.
        tty: bool,
    },
}

/// A crun set up and waiting for `go`.
pub struct Pending {
    child: Child,
    ctl: OwnedFd,
    master: Option<File>,
    interactive: bool,
    exec: bool,
    /// The container's init (`run`).
    pub init_pid: Option<i32>,
}

fn failed(message: String) -> SpawnError {
    SpawnError { code: 1, message }
}

/// This binary, for `__crun` (read once: the guest's `/proc` is its own).
fn exe() -> &'static PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| std::env::current_exe().unwrap_or_else(|_| "fake-smolvm".into()))
}

/// Spawns crun and waits until it is ready for `go`. Its process groups go
/// to `ctl` as they appear, so a kill during the window reaches them.
pub fn prepare(mode: Mode, interactive: bool, ctl: &Ctl) -> Result<Pending, SpawnError> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| failed(format!("crun: socketpair: {e}")))?;
    let mut cmd = Command::new(exe());
    cmd.arg("__crun").env_clear().env(
        "PATH",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
    );
    let exec = matches!(mode, Mode::Exec { .. });
    let tty = match &mode {
        Mode::Run(pty) => {
            cmd.arg("run");
            if let Some(size) = pty {
                let (c, r) = size.unwrap_or((0, 0));
                cmd.args(["--pty", &format!("{c}x{r}")]);
            }
            pty.is_some()
        }
        Mode::Exec { target, tty } => {
            cmd.args(["exec", "--target", &target.to_string()]);
            if *tty {
                cmd.arg("--tty");
            }
            *tty
        }
    };
    if tty {
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
    } else if interactive {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    } else {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    }
    // crun's own complaints (and a `-t` command's never: it has its PTY)
    // go to the agent's log unless the command's stderr is a pipe.
    if tty {
        cmd.stderr(Stdio::inherit());
    } else {
        cmd.stderr(Stdio::piped());
    }
    let fd = theirs.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::dup2(fd, crun::CTL_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| failed(format!("crun: spawn: {e}")))?;
    drop(theirs);
    ctl.started(child.id() as i32);
    let mut pending = Pending {
        child,
        ctl: ours,
        master: None,
        interactive,
        exec,
        init_pid: None,
    };
    let mut ready = false;
    loop {
        match crun::recv(pending.ctl.as_fd(), false) {
            Ok(Some((Msg::Init { pid }, _))) => {
                pending.init_pid = Some(pid);
                ctl.set_init(pid);
                if ready {
                    return Ok(pending);
                }
            }
            Ok(Some((Msg::Pty, Some(fd)))) => pending.master = Some(File::from(fd)),
            // `run`: the init's pid (from crun) and `ready` (from the init)
            // come in either order; both are needed.
            Ok(Some((Msg::Ready, _))) if exec || pending.init_pid.is_some() => return Ok(pending),
            Ok(Some((Msg::Ready, _))) => ready = true,
            Ok(Some((Msg::Error { message }, _))) => {
                pending.reap();
                return Err(failed(format!("crun: {message}")));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                pending.reap();
                return Err(failed("crun: exited during set-up".into()));
            }
        }
    }
}

impl Pending {
    fn reap(&mut self) {
        if let Some(init) = self.init_pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(init),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ends a crun that will never get `go` (the window's fault, or a torn
    /// `config.json`): the caller's `Ctl` kill took its groups already.
    pub fn abandon(mut self) {
        self.reap();
    }

    /// Starts the command. For `exec -t` the PTY is made now, at
    /// `go.pty_size`.
    pub fn go(mut self, go: Go, ctl: &Ctl) -> Result<Spawned, SpawnError> {
        crun::send(self.ctl.as_fd(), &Msg::Go(go), None)
            .map_err(|e| failed(format!("crun: go: {e}")))?;
        // `exec`: its PTY (made now, in the container's devpts), then the
        // command's pid — its own group, outside crun's, for the kill.
        while self.exec {
            match crun::recv(self.ctl.as_fd(), false) {
                Ok(Some((Msg::Pty, Some(fd)))) => self.master = Some(File::from(fd)),
                Ok(Some((Msg::Command { pid }, _))) => {
                    ctl.started(pid);
                    break;
                }
                Ok(Some((Msg::Error { message }, _))) => {
                    self.reap();
                    return Err(failed(format!("crun: {message}")));
                }
                Ok(Some(_)) => {}
                // The command could not start: crun's status says how.
                Ok(None) | Err(_) => break,
            }
        }
        let (sink, output, master) = match self.master.take() {
            Some(m) => {
                let reader = m.try_clone().map_err(|e| failed(e.to_string()))?;
                let resizer = m.try_clone().map_err(|e| failed(e.to_string()))?;
                (StdinSink::Pty(m), Output::Pty(reader), Some(resizer))
            }
            None => {
                let stdin = self.child.stdin.take();
                let (o, e) = take_output_pipes(&mut self.child);
                if self.interactive {
                    (StdinSink::Pipe(stdin), Output::Streams(o, e), None)
                } else {
                    (StdinSink::None, Output::Buffered(o, e), None)
                }
            }
        };
        Ok(Spawned {
            child: self.child,
            sink,
            output,
            master,
            crun: Some(self.ctl),
        })
    }
}

/// How the command ended: crun's report if it made one, else crun's own
/// status (killed, or the command could not start).
pub fn status(crun: &OwnedFd, own: ExitStatus) -> ExitStatus {
    while let Ok(Some((msg, _))) = crun::recv(crun.as_fd(), true) {
        if let Msg::Status { raw } = msg {
            return ExitStatus::from_raw(raw);
        }
    }
    own
}

/// A main container whose session's client is gone: crun was killed, the
/// container goes on, and later `-t` execs join it (smolvm-0.8.0.md, last
/// section). Its PTY master is held and drained so its terminal never hangs
/// up; when its init ends, the machine's main container has ended.
pub struct Orphan {
    init: i32,
    master: Option<File>,
}

impl Orphan {
    /// The container whose init is VM-level pid `init`, its PTY master.
    pub fn new(init: i32, master: Option<File>) -> Orphan {
        Orphan { init, master }
    }

    /// Watches the container on a thread of its own until its init ends,
    /// then ends main container `id` (its joined execs die with it).
    pub fn watch(self, machine: &super::state::Machine, id: super::timeline::ExecId) {
        eprintln!(
            "agent: exec {id}: client gone; container {} goes on as the main container",
            self.init
        );
        // SAFETY: pidfd_open takes a pid and flags; no memory is passed.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, self.init, 0) } as i32;
        if raw < 0 {
            // Already gone.
            for joined in machine.timeline.lock().unwrap().exited(id) {
                joined.kill(Some(crate::exec_log::Fault::MainExited));
            }
            return;
        }
        // SAFETY: the kernel just returned this descriptor to us.
        let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        if let Some(mut master) = self.master {
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 4096];
                while matches!(master.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
        let timeline = machine.timeline_handle();
        std::thread::spawn(move || {
            let mut fds = [nix::poll::PollFd::new(
                pidfd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            while let Err(nix::errno::Errno::EINTR) =
                nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE)
            {}
            for joined in timeline.lock().unwrap().exited(id) {
                joined.kill(Some(crate::exec_log::Fault::MainExited));
            }
        });
    }
}
