//! [`Tmux`]: a program in a pane of a private tmux server.
//!
//! Each `Tmux` has its own server: its own `TMUX_TMPDIR` temp folder, its own
//! `-L` socket name, its own config file (written into that folder, so the
//! user's `~/.tmux.conf` is never read), and an environment built from
//! scratch. The server is killed on drop, pass or fail.
//!
//! The command inside the pane does get `TMUX` and `TMUX_PANE` from tmux:
//! that is the point (the fake's shared-stdin fault fires only under tmux).
//!
//! Every byte the pane's program writes is recorded (see
//! [`crate::tmux_stream`]): the pane's command waits, on a `tmux wait-for`
//! channel, until `pipe-pane` is in place, so the recording starts at its
//! very first byte. A failed wait writes a failure folder like
//! [`crate::Term`]'s; its colours come from tmux itself (`capture-pane -e`).
//!
//! This file is the pane's life and how a test drives it (start, keys,
//! resize, reads, drop); reaching the server is [`crate::tmux_server`]'s job,
//! waiting and failing [`crate::tmux_wait`]'s.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::cast::Recorder;
use crate::failure::Context;
use crate::snapshot::Grid;
use crate::tmux_server::{Server, CONFIG, SESSION};
use crate::tmux_stream::PaneStream;

/// The `TERM` programs inside the pane see.
pub const INNER_TERM: &str = "screen";

/// How long a capture must stay unchanged to count as settled.
pub(crate) const SETTLE_QUIET: Duration = Duration::from_millis(150);

/// The `tmux wait-for` channel the pane's command waits on until its
/// output is being recorded.
const GO: &str = "e2e-recording";

/// A tmux server with one session running one command.
pub struct Tmux {
    // Declared first, so it is dropped (its thread joined) before the
    // folder holding its FIFO goes.
    pub(crate) stream: Option<PaneStream>,
    dir: TempDir,
    pub(crate) server: Server,
    pub(crate) command: String,
    pub(crate) context: Context,
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
        let server = Server {
            dir: dir.path().to_path_buf(),
            socket,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let stream = {
            let server = server.clone();
            PaneStream::open(
                &dir.path().join("pane.fifo"),
                Recorder::new(cols, rows, &[("TERM", INNER_TERM), ("SHELL", "/bin/sh")]),
                SETTLE_QUIET,
                move || server.grid().ok().map(|g| g.render()),
            )
            .unwrap_or_else(|e| panic!("e2e: cannot open the pane's recording FIFO: {e}"))
        };
        let mut tmux = Tmux {
            stream: Some(stream),
            dir,
            server,
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
            "tmux wait-for {GO}; sh '{}'; echo $? > '{}'",
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
        // `exec`: the writer is `cat` itself, which ends when tmux closes the
        // pipe (the pane or the server goes).
        let pipe = format!(
            "exec cat > '{}'",
            tmux.dir.path().join("pane.fifo").display()
        );
        if let Err(e) = tmux
            .server
            .try_run(&["pipe-pane", "-O", "-t", SESSION, &pipe])
        {
            // Unrecorded rather than not at all: the test can still run.
            tmux.stream = None;
            eprintln!("e2e: the pane will not be recorded: {e}");
        }
        // A signal before the pane waits is kept by tmux: no race.
        tmux.run(&["wait-for", "-S", GO]);
        tmux
    }

    pub(crate) fn exit_file(&self) -> PathBuf {
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
        self.server.command()
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
        if let Some(stream) = &self.stream {
            let mut s = stream.lock();
            s.cast.resize(cols, rows);
            s.changed();
        }
        self.run(&["resize-window", "-t", SESSION, "-x", &c, "-y", &r]);
        let size = self.size();
        assert_eq!(
            size,
            (cols, rows),
            "e2e: tmux pane did not take the new size"
        );
    }

    /// Records keys sent, as an `i` event.
    fn record_input(&self, bytes: &[u8]) {
        if let Some(stream) = &self.stream {
            stream.lock().cast.input(bytes);
        }
    }

    /// Types `keys` literally (no tmux key names).
    pub fn send_keys(&self, keys: &str) {
        self.record_input(keys.as_bytes());
        self.run(&["send-keys", "-t", SESSION, "-l", keys]);
    }

    /// Sends tmux key names (`Enter`, `C-c`, …).
    pub fn send_key_names(&self, names: &[&str]) {
        for name in names {
            self.record_input(&key_bytes(name));
        }
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend_from_slice(names);
        self.run(&args);
    }

    /// The pane as a grid (visible screen, cursor, screen and input modes).
    pub fn grid(&self) -> Grid {
        self.server
            .grid()
            .unwrap_or_else(|e| panic!("e2e: reading the pane: {e}"))
    }

    /// The pane with its colours and attributes (see [`Grid::styled`]).
    pub fn grid_styled(&self) -> Grid {
        let screen = self
            .server
            .screen()
            .unwrap_or_else(|e| panic!("e2e: reading the pane: {e}"));
        self.grid().styled(screen.screen())
    }

    /// The session so far as an asciicast v2 recording (empty if the pane
    /// could not be recorded).
    pub fn cast(&self) -> String {
        self.stream
            .as_ref()
            .map(|s| s.lock().cast.text().to_string())
            .unwrap_or_default()
    }

    /// The pane's text, rows joined by newlines.
    pub fn contents(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", SESSION])
    }

    /// The pane in snapshot format, once two captures [`SETTLE_QUIET`]
    /// apart are the same (tmux shows no byte stream to watch); at most 5 s.
    pub fn snapshot(&self) -> String {
        self.settle();
        self.grid().render()
    }

    /// Like [`Tmux::snapshot`], with the colours and attributes of every
    /// cell as a run list under the rows (see [`crate::style`]).
    pub fn snapshot_styled(&self) -> String {
        self.settle();
        self.grid_styled().render()
    }
}

/// The bytes a tmux key name sends, for the recording: the common names and
/// `C-x`; any other name is recorded as `<name>`.
fn key_bytes(name: &str) -> Vec<u8> {
    match name {
        "Enter" => b"\r".to_vec(),
        "Escape" => b"\x1b".to_vec(),
        "Tab" => b"\t".to_vec(),
        "BSpace" => b"\x7f".to_vec(),
        "Space" => b" ".to_vec(),
        "Up" => b"\x1b[A".to_vec(),
        "Down" => b"\x1b[B".to_vec(),
        "Right" => b"\x1b[C".to_vec(),
        "Left" => b"\x1b[D".to_vec(),
        _ => match name.strip_prefix("C-").map(str::as_bytes) {
            Some(&[c]) if c.is_ascii_alphabetic() => vec![c.to_ascii_lowercase() - b'a' + 1],
            _ => format!("<{name}>").into_bytes(),
        },
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
