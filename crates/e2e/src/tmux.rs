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

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cast::Recorder;
use crate::exit::Exit;
use crate::failure::{self, Context, Evidence, Report};
use crate::hermetic;
use crate::snapshot::Grid;
use crate::tmux_stream::PaneStream;
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

/// The `tmux wait-for` channel the pane's command waits on until its
/// output is being recorded.
const GO: &str = "e2e-recording";

/// The pane's state flags that the snapshot header shows.
const STATE_FORMAT: &str = "#{pane_width} #{pane_height} #{cursor_x} #{cursor_y} #{cursor_flag} \
                            #{alternate_on} #{keypad_flag} #{keypad_cursor_flag}";

/// How to reach one private server: cheap to clone, so the recording thread
/// can capture the pane too.
#[derive(Debug, Clone)]
struct Server {
    dir: PathBuf,
    socket: String,
    env: Vec<(String, String)>,
}

impl Server {
    fn command(&self) -> Command {
        let mut cmd = hermetic::command("tmux");
        cmd.env("TMUX_TMPDIR", &self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("-L")
            .arg(&self.socket)
            .arg("-f")
            .arg(self.dir.join("tmux.conf"));
        cmd
    }

    /// Runs a tmux command; its stdout, or why it failed.
    fn try_run(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(|e| format!("cannot run tmux (is it installed?): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`tmux {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The pane's state numbers ([`STATE_FORMAT`]).
    fn state(&self) -> Result<Vec<u16>, String> {
        let text = self.try_run(&["display-message", "-p", "-t", SESSION, STATE_FORMAT])?;
        Ok(text
            .split_whitespace()
            .map(|n| n.parse().unwrap_or(0))
            .collect())
    }

    /// The pane as a grid (visible screen, cursor, screen and input modes).
    fn grid(&self) -> Result<Grid, String> {
        let n = self.state()?;
        let text = self.try_run(&["capture-pane", "-p", "-N", "-t", SESSION])?;
        let flag = |i: usize| n.get(i) == Some(&1);
        Ok(Grid {
            cols: n[0],
            rows: n[1],
            pty_size: None,
            cursor_col: n[2],
            cursor_row: n[3],
            cursor_visible: flag(4),
            alternate: flag(5),
            app_keypad: flag(6),
            app_cursor: flag(7),
            lines: text.lines().map(str::to_string).collect(),
            styles: None,
        })
    }

    /// The pane rebuilt in a vt100 emulator from tmux's own view of it
    /// (`capture-pane -e`: the cells with their colours and attributes),
    /// with tmux's cursor and modes: the source of styled snapshots and
    /// of the failure folder's SVG.
    fn screen(&self) -> Result<vt100::Parser, String> {
        let n = self.state()?;
        let text = self.try_run(&["capture-pane", "-p", "-e", "-N", "-t", SESSION])?;
        let (cols, rows) = (n[0].max(1), n[1].max(1));
        let mut parser = vt100::Parser::new(
            rows.try_into().expect("non-zero"),
            cols.try_into().expect("non-zero"),
            0,
        );
        if n.get(5) == Some(&1) {
            parser.process(b"\x1b[?1047h");
        }
        for (i, line) in text.lines().take(usize::from(rows)).enumerate() {
            // Each row from its first column, attributes reset: a row is
            // never continued from the one before.
            parser.process(format!("\x1b[{};1H\x1b[m", i + 1).as_bytes());
            parser.process(line.as_bytes());
        }
        parser.process(format!("\x1b[m\x1b[{};{}H", n[3] + 1, n[2] + 1).as_bytes());
        if n.get(4) != Some(&1) {
            parser.process(b"\x1b[?25l");
        }
        if n.get(6) == Some(&1) {
            parser.process(b"\x1b=");
        }
        if n.get(7) == Some(&1) {
            parser.process(b"\x1b[?1h");
        }
        Ok(parser)
    }
}

/// A tmux server with one session running one command.
pub struct Tmux {
    // Declared first, so it is dropped (its thread joined) before the
    // folder holding its FIFO goes.
    stream: Option<PaneStream>,
    dir: TempDir,
    server: Server,
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

    /// Waits until two captures [`SETTLE_QUIET`] apart are the same; at
    /// most 5 s.
    fn settle(&self) {
        let deadline = Duration::from_secs(5);
        let end = Instant::now() + deadline;
        let mut last = self.grid().render();
        loop {
            std::thread::sleep(SETTLE_QUIET);
            let now = self.grid().render();
            if now == last {
                return;
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
        let pane_pid = self.display("#{pane_pid}");
        let status = match self.try_exit() {
            Some(exit) => exit.to_string(),
            None => {
                // What the kernel says, in case tmux missed the exit.
                let pid = &pane_pid;
                let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.split(' ').nth(2).map(str::to_string))
                    .unwrap_or_else(|| "gone".to_string());
                format!("running; pane pid {pid} state {state}")
            }
        };
        let screen = self.grid().render();
        let report = Report {
            what: description,
            deadline,
            program: format!("tmux pane: {} ({status})", self.command),
            screen: screen.clone(),
            raw_tail: None,
            context: &self.context,
        }
        .render();
        let title = format!("waiting for: {description}");
        let svg = match self.server.screen() {
            Ok(parser) => crate::svg::render(parser.screen(), &title),
            Err(e) => format!("<svg xmlns=\"http://www.w3.org/2000/svg\"><!-- {e} --></svg>\n"),
        };
        let (cast, screens) = match &self.stream {
            Some(stream) => {
                let s = stream.lock();
                let screens = s.screens.render((s.cast.elapsed(), &screen));
                (s.cast.text().to_string(), screens)
            }
            None => (String::new(), screen.clone()),
        };
        let evidence = Evidence {
            cast,
            screens,
            svg,
            processes: pane_pid.parse().map_or_else(
                |_| format!("no pane pid: {pane_pid:?}\n"),
                crate::proctree::render,
            ),
        };
        panic!(
            "{}",
            failure::report_with_folder(&report, &evidence, &self.context)
        );
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
