//! One session's screen, in a real PTY ([`Term`]) or a tmux pane ([`Tmux`]),
//! behind one small API, so a scenario can run in both places.

use std::time::Duration;

use crate::{Exit, Machine, Term, Tmux};

/// Where a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A PTY the harness creates.
    Pty,
    /// A pane of a private tmux server.
    Tmux,
}

/// A running session's screen.
pub enum Screen {
    /// In a PTY.
    Pty(Term),
    /// In a tmux pane.
    Tmux(Tmux),
}

impl Screen {
    /// Starts `argv` at `cols`x`rows` in `place`, with the machine's
    /// environment, its logs watched (plus `extra_log`, if given).
    pub fn open(
        place: Place,
        machine: &Machine,
        cols: u16,
        rows: u16,
        argv: &[String],
        extra_log: Option<&std::path::Path>,
    ) -> Screen {
        match place {
            Place::Pty => {
                let mut cmd = crate::hermetic::command(&argv[0]);
                cmd.args(&argv[1..]).envs(machine.env());
                let mut term = Term::spawn(cols, rows, cmd);
                term.watch(machine);
                if let Some(log) = extra_log {
                    term.add_context("session.log", log);
                }
                Screen::Pty(term)
            }
            Place::Tmux => {
                let mut tmux = machine.tmux(cols, rows, argv);
                if let Some(log) = extra_log {
                    tmux.add_context("session.log", log);
                }
                Screen::Tmux(tmux)
            }
        }
    }

    /// Waits until the screen shows `text`.
    pub fn wait_for_text(&mut self, text: &str, deadline: Duration) {
        match self {
            Screen::Pty(t) => t.wait_for_text(text, deadline),
            Screen::Tmux(t) => t.wait_for_text(text, deadline),
        }
    }

    /// Resizes the terminal (the PTY, or the tmux window).
    pub fn resize(&mut self, cols: u16, rows: u16) {
        match self {
            Screen::Pty(t) => t.resize(cols, rows),
            Screen::Tmux(t) => t.resize(cols, rows),
        }
    }

    /// Types `keys`.
    pub fn send_keys(&mut self, keys: &str) {
        match self {
            Screen::Pty(t) => t.send_keys(keys),
            Screen::Tmux(t) => t.send_keys(keys),
        }
    }

    /// Waits for the session's program to end.
    pub fn wait_exit(&mut self, deadline: Duration) -> Exit {
        match self {
            Screen::Pty(t) => t.wait_exit(deadline),
            Screen::Tmux(t) => t.wait_exit(deadline),
        }
    }

    /// How it ended, if it has.
    pub fn try_exit(&mut self) -> Option<Exit> {
        match self {
            Screen::Pty(t) => t.try_exit(),
            Screen::Tmux(t) => t.try_exit(),
        }
    }

    /// The screen's text.
    pub fn contents(&self) -> String {
        match self {
            Screen::Pty(t) => t.contents(),
            Screen::Tmux(t) => t.contents(),
        }
    }
}
