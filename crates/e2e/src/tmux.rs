//! [`Tmux`]: a program in a pane of a private tmux server.
//!
//! Each `Tmux` has its own server: its own `TMUX_TMPDIR` temp folder, its own
//! `-L` socket name, its own config file (written into that folder, so the
//! user's `~/.tmux.conf` is never read), and an environment built from
//! scratch. The server is killed on drop, pass or fail.
//!
//! The command inside the pane does get `TMUX` and `TMUX_PANE` from tmux:
//! that is the point (the fake's shared-stdin fault fires only under tmux).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::exit::Exit;
use crate::failure::{Context, Report};
use crate::hermetic;
use crate::snapshot::Grid;
use crate::wait::poll_until;

/// The `TERM` programs inside the pane see.
pub const INNER_TERM: &str = "screen";

/// The server's whole configuration. Set before the session exists, so the
/// options already hold when its command starts (and perhaps exits at once).
/// No `window-size manual` here: tmux 3.3a's server dies at start with it in
/// the config; `resize-window` sets it for the window by itself. The empty
/// `remain-on-exit-format` keeps a dead pane's screen as the program left it
/// (by default tmux scrolls it up to add a "Pane is dead" line); the exit
/// status is read from the file the pane's wrapper shell writes instead.
const CONFIG: &str = "\
set -g remain-on-exit on
set -g remain-on-exit-format ''
set -g status off
set -g default-terminal screen
set -g history-limit 2000
";

/// The session's name.
const SESSION: &str = "main";

/// How long a capture must stay unchanged to count as settled.
const SETTLE_QUIET: Duration = Duration::from_millis(150);

/// A tmux server with one session running one command.
pub struct Tmux {
    dir: TempDir,
    socket: String,
    env: Vec<(String, String)>,
    command: String,
    context: Context,
}

impl Tmux {
    /// Starts a server with a `cols` x `rows` session running `shell_command`
    /// (through `sh -c`, as tmux does), with `env` added to the hermetic
    /// environment. Panics if tmux cannot start.
    pub fn start(cols: u16, rows: u16, shell_command: &str, env: &[(&str, &str)]) -> Tmux {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = tempfile::Builder::new()
            .prefix("e2e-tmux-")
            .tempdir()
            .expect("e2e: temp dir for tmux");
        let socket = format!(
            "e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        std::fs::write(dir.path().join("tmux.conf"), CONFIG).expect("e2e: write tmux.conf");
        let tmux = Tmux {
            dir,
            socket,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            command: shell_command.to_string(),
            context: Context::default(),
        };
        // The command runs from a script under a shell that records its exit
        // status: tmux 3.3a, started from a test process, sometimes never
        // reaps a pane's process (it stays a zombie and the pane never turns
        // dead), so `#{pane_dead_status}` cannot be relied on.
        let script = tmux.dir.path().join("pane.sh");
        std::fs::write(&script, format!("{shell_command}\n")).expect("e2e: write pane.sh");
        let wrapper = format!(
            "sh '{}'; echo $? > '{}'",
            script.display(),
            tmux.exit_file().display()
        );
        let (c, r) = (cols.to_string(), rows.to_string());
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &c,
            "-y",
            &r,
            &wrapper,
        ]);
        tmux
    }

    fn exit_file(&self) -> PathBuf {
        self.dir.path().join("pane-exit-status")
    }

    /// The temp folder of this server (socket, config, the pane's script and
    /// exit status); free for test files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Registers a file (a log) whose tail every failure message shows.
    pub fn add_context(&mut self, name: &str, path: &Path) {
        self.context.add(name, path);
    }

    /// Registers `machine`'s `exec.log` and wrapper log (see
    /// [`crate::Machine::logs`]) for failure messages.
    pub fn watch(&mut self, machine: &crate::Machine) {
        for (name, path) in machine.logs() {
            self.context.add(name, &path);
        }
    }

    /// A `tmux` command aimed at this server, with the hermetic environment.
    pub fn command(&self) -> Command {
        let mut cmd = hermetic::command("tmux");
        cmd.env("TMUX_TMPDIR", self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("-L")
            .arg(&self.socket)
            .arg("-f")
            .arg(self.config_path());
        cmd
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("tmux.conf")
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("e2e: cannot run tmux (is it installed?): {e}"))
    }

    /// Runs a tmux command on this server and returns its stdout; panics
    /// with tmux's stderr if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        if !out.status.success() {
            panic!(
                "e2e: `tmux {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A tmux format (`#{pane_width}` …) evaluated for the pane.
    pub fn display(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", SESSION, format])
            .trim_end_matches('\n')
            .to_string()
    }

    /// The pane's size as (cols, rows).
    pub fn size(&self) -> (u16, u16) {
        let text = self.display("#{pane_width} #{pane_height}");
        let mut it = text.split(' ').map(|n| n.parse().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    /// Resizes the window (and so the pane, the only one) to `cols` x `rows`
    /// and checks that the pane really has that size.
    pub fn resize(&self, cols: u16, rows: u16) {
        let (c, r) = (cols.to_string(), rows.to_string());
        self.run(&["resize-window", "-t", SESSION, "-x", &c, "-y", &r]);
        let size = self.size();
        assert_eq!(
            size,
            (cols, rows),
            "e2e: tmux pane did not take the new size"
        );
    }

    /// Types `keys` literally (no tmux key names).
    pub fn send_keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", SESSION, "-l", keys]);
    }

    /// Sends tmux key names (`Enter`, `C-c`, …).
    pub fn send_key_names(&self, names: &[&str]) {
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend_from_slice(names);
        self.run(&args);
    }

    /// The pane as a grid (visible screen, cursor, alternate screen).
    pub fn grid(&self) -> Grid {
        let info = self.display(
            "#{pane_width} #{pane_height} #{cursor_x} #{cursor_y} #{cursor_flag} #{alternate_on}",
        );
        let n: Vec<u16> = info.split(' ').map(|n| n.parse().unwrap_or(0)).collect();
        let text = self.run(&["capture-pane", "-p", "-N", "-t", SESSION]);
        Grid {
            cols: n[0],
            rows: n[1],
            pty_size: None,
            cursor_col: n[2],
            cursor_row: n[3],
            cursor_visible: n[4] == 1,
            alternate: n[5] == 1,
            lines: text.lines().map(str::to_string).collect(),
        }
    }

    /// The pane's text, rows joined by newlines.
    pub fn contents(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", SESSION])
    }

    /// The pane in snapshot format, once two captures [`SETTLE_QUIET`]
    /// apart are the same (tmux shows no byte stream to watch); at most 5 s.
    pub fn snapshot(&self) -> String {
        let deadline = Duration::from_secs(5);
        let end = Instant::now() + deadline;
        let mut last = self.grid().render();
        loop {
            std::thread::sleep(SETTLE_QUIET);
            let now = self.grid().render();
            if now == last {
                return now;
            }
            if Instant::now() >= end {
                self.fail("the pane to stay unchanged", deadline);
            }
            last = now;
        }
    }

    /// Waits until `pred` holds for the pane's text; panics with the failure
    /// report on timeout. Also gives up early once the pane's command has
    /// ended and tmux shows its last output, since the pane can no longer
    /// change.
    pub fn wait_until(&self, description: &str, deadline: Duration, pred: impl Fn(&str) -> bool) {
        let mut ended = false;
        let outcome = poll_until(deadline, || {
            if pred(&self.contents()) {
                return Some(true);
            }
            if ended {
                return Some(false);
            }
            // One more look after the end: tmux may still be drawing.
            if self.try_exit().is_some() {
                self.snapshot();
                ended = true;
            }
            None
        });
        if outcome != Some(true) {
            self.fail(description, deadline);
        }
    }

    /// Waits until the pane shows `text`.
    pub fn wait_for_text(&self, text: &str, deadline: Duration) {
        self.wait_until(&format!("{text:?} in the pane"), deadline, |s| {
            s.contains(text)
        });
    }

    /// How the pane's command ended, if it has, as its shell saw it: a
    /// command killed by signal N shows as `Exit::Code(128 + N)`.
    pub fn try_exit(&self) -> Option<Exit> {
        let text = std::fs::read_to_string(self.exit_file()).ok()?;
        // Written by `echo`: complete once it ends with a newline.
        let code = text.strip_suffix('\n')?.trim().parse().ok()?;
        Some(Exit::Code(code))
    }

    /// Waits for the pane's command to end and for tmux to have shown its
    /// last output; panics with the report on timeout.
    pub fn wait_exit(&self, deadline: Duration) -> Exit {
        let exit = poll_until(deadline, || self.try_exit())
            .unwrap_or_else(|| self.fail("the pane's command to exit", deadline));
        // tmux reads the pane's output asynchronously: let it catch up.
        self.snapshot();
        exit
    }

    fn fail(&self, description: &str, deadline: Duration) -> ! {
        let status = match self.try_exit() {
            Some(exit) => exit.to_string(),
            None => {
                // What the kernel says, in case tmux missed the exit.
                let pid = self.display("#{pane_pid}");
                let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.split(' ').nth(2).map(str::to_string))
                    .unwrap_or_else(|| "gone".to_string());
                format!("running; pane pid {pid} state {state}")
            }
        };
        let report = Report {
            what: description,
            deadline,
            program: format!("tmux pane: {} ({status})", self.command),
            screen: self.grid().render(),
            raw_tail: None,
            context: &self.context,
        };
        panic!("{}", report.render());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // kill-server only sends SIGHUP to the pane, which a program may
        // ignore: SIGKILL its process group first while it is still alive
        // (tmux has not reaped it, so the id is still its own).
        if let Ok(out) = self
            .command()
            .args([
                "display-message",
                "-p",
                "-t",
                SESSION,
                "#{pane_dead} #{pane_pid}",
            ])
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(pid) = text.trim().strip_prefix("0 ").and_then(|p| p.parse().ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = self.command().arg("kill-server").output();
    }
}
