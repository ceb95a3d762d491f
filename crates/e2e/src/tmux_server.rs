//! How to reach one private tmux server and read its one pane: the
//! hermetic `tmux` command, the server's config, and the pane's state, text
//! grid and styled screen as tmux itself shows them.

use std::path::PathBuf;
use std::process::Command;

use crate::hermetic;
use crate::snapshot::Grid;

/// The server's whole configuration. Set before the session exists, so the
/// options already hold when its command starts (and perhaps exits at once).
/// No `window-size manual` here: tmux 3.3a's server dies at start with it in
/// the config; `resize-window` sets it for the window by itself. The empty
/// `remain-on-exit-format` keeps a dead pane's screen as the program left it
/// (by default tmux scrolls it up to add a "Pane is dead" line); the exit
/// status is read from the file the pane's wrapper shell writes instead.
pub(crate) const CONFIG: &str = "\
set -g remain-on-exit on
set -g remain-on-exit-format ''
set -g status off
set -g default-terminal screen
set -g history-limit 2000
";

/// The session's name.
pub(crate) const SESSION: &str = "main";

/// The pane's state flags that the snapshot header shows.
const STATE_FORMAT: &str = "#{pane_width} #{pane_height} #{cursor_x} #{cursor_y} #{cursor_flag} \
                            #{alternate_on} #{keypad_flag} #{keypad_cursor_flag}";

/// How to reach one private server: cheap to clone, so the recording thread
/// can capture the pane too.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) dir: PathBuf,
    pub(crate) socket: String,
    pub(crate) env: Vec<(String, String)>,
}

impl Server {
    pub(crate) fn command(&self) -> Command {
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
    pub(crate) fn try_run(&self, args: &[&str]) -> Result<String, String> {
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
    pub(crate) fn grid(&self) -> Result<Grid, String> {
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
    pub(crate) fn screen(&self) -> Result<vt100::Parser, String> {
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
