//! The machine-wide facts every exec on an image machine consults, and the
//! rules that turn a second exec inside a session's crun window into a fault.
//!
//! Modelled on smolvm v0.8.0 `crates/smolvm-agent/src/main.rs`:
//! - every non-interactive exec, and every interactive exec that finds no
//!   running main container, rewrites the machine's one bundle `config.json`
//!   (`storage.rs:2159`, `main.rs:3186`; plain truncate + write);
//! - an interactive exec that finds none records itself as the machine's main
//!   container *before* crun has created it (`main.rs:3198-3207`), spawns
//!   `crun run` and sends `started` at once (`main.rs:2699`); crun then loads
//!   `config.json` and sets the container up;
//! - any exec first resolves the main container (`main.rs:3118-3138`):
//!   running → it joins with `crun exec`; recorded but not running → "stale":
//!   the record is removed and `crun delete -f` kills a container still being
//!   set up.
//!
//! The rules are pure: the caller passes a kill handle `K` and acts on what
//! comes back.

use crate::settings::RaceMode;

/// One exec on the machine.
pub type ExecId = u64;

/// Where the machine's main container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MainState {
    /// Recorded; crun is loading `config.json` and setting it up.
    SettingUp,
    /// `crun state` would say running: others join it.
    Running,
    /// Its command has ended.
    Ended,
}

#[derive(Debug)]
struct Main<K> {
    id: ExecId,
    handle: K,
    race: RaceMode,
    state: MainState,
    joined: Vec<(ExecId, K)>,
}

/// What [`Timeline::resolve_main`] found.
#[derive(Debug, PartialEq)]
pub enum Resolve<K> {
    /// A running main container: join it (`crun exec`), no `config.json`, no window.
    Join(ExecId),
    /// None running: create a container. `stale` is a session to kill now
    /// (`crun delete -f` of a container still being set up: exit 137).
    Fresh {
        /// The session killed by the stale-container cleanup, if any.
        stale: Option<K>,
    },
}

/// What crun's load of `config.json` found at the end of an exec's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// This exec's own document: the container runs.
    Clean,
    /// Another exec rewrote the file while crun read it.
    Torn,
}

/// The machine's main container and the owner of `config.json`.
#[derive(Debug)]
pub struct Timeline<K> {
    config_owner: Option<ExecId>,
    main: Option<Main<K>>,
}

impl<K> Default for Timeline<K> {
    fn default() -> Self {
        Timeline {
            config_owner: None,
            main: None,
        }
    }
}

impl<K: Clone> Timeline<K> {
    /// Exec `id` truncates and rewrites `config.json`.
    pub fn write_config(&mut self, id: ExecId) {
        self.config_owner = Some(id);
    }

    /// `resolve_main_container`: join a running main, or clean up a stale one.
    /// Whether the cleanup kills the session being set up is that session's
    /// race mode: `sigkill` (crun had created it) or not (`exit1`: crun was
    /// still reading `config.json`, which the caller's write then tears).
    pub fn resolve_main(&mut self) -> Resolve<K> {
        match &self.main {
            Some(m) if m.state == MainState::Running => Resolve::Join(m.id),
            Some(_) => {
                let m = self.main.take().expect("checked");
                let stale = (m.state == MainState::SettingUp && m.race == RaceMode::Sigkill)
                    .then_some(m.handle);
                Resolve::Fresh { stale }
            }
            None => Resolve::Fresh { stale: None },
        }
    }

    /// The handle of main container `id`, while it is running.
    pub fn main_handle(&self, id: ExecId) -> Option<K> {
        self.main
            .as_ref()
            .filter(|m| m.id == id && m.state == MainState::Running)
            .map(|m| m.handle.clone())
    }

    /// Exec `id` records itself as the main container, before crun runs.
    pub fn record_main(&mut self, id: ExecId, handle: K, race: RaceMode) {
        self.main = Some(Main {
            id,
            handle,
            race,
            state: MainState::SettingUp,
            joined: Vec::new(),
        });
    }

    /// Exec `id` joins main container `main`; false if it is no longer running.
    pub fn join(&mut self, main: ExecId, id: ExecId, handle: K) -> bool {
        match &mut self.main {
            Some(m) if m.id == main && m.state == MainState::Running => {
                m.joined.push((id, handle));
                true
            }
            _ => false,
        }
    }

    /// crun (for exec `id`) loads `config.json` at the end of its window.
    /// Under `off` a torn file is tolerated. A clean load of the main makes
    /// it running.
    pub fn load(&mut self, id: ExecId, race: RaceMode) -> Load {
        let torn = self.config_owner != Some(id) && race != RaceMode::Off;
        if torn {
            return Load::Torn;
        }
        if let Some(m) = self.main.as_mut().filter(|m| m.id == id) {
            m.state = MainState::Running;
        }
        Load::Clean
    }

    /// Exec `id`'s command ended. When it was the main container's, every
    /// exec joined to it dies with it (its pid namespace ends): their handles
    /// come back to be killed.
    pub fn exited(&mut self, id: ExecId) -> Vec<K> {
        match &mut self.main {
            Some(m) if m.id == id => {
                m.state = MainState::Ended;
                m.joined.drain(..).map(|(_, k)| k).collect()
            }
            Some(m) => {
                m.joined.retain(|(j, _)| *j != id);
                Vec::new()
            }
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session as the agent runs it: resolve, write, record, load.
    fn session(t: &mut Timeline<&'static str>, id: ExecId, race: RaceMode) -> Option<&'static str> {
        let stale = match t.resolve_main() {
            Resolve::Fresh { stale } => stale,
            Resolve::Join(_) => panic!("expected no running main"),
        };
        t.write_config(id);
        t.record_main(id, "session", race);
        stale
    }

    #[test]
    fn a_session_alone_runs_and_is_joined_afterwards() {
        let mut t = Timeline::default();
        assert_eq!(session(&mut t, 1, RaceMode::Exit1), None);
        assert_eq!(t.load(1, RaceMode::Exit1), Load::Clean);
        // A side channel after the window: writes config.json (harmless), joins.
        t.write_config(2);
        assert_eq!(t.resolve_main(), Resolve::Join(1));
        assert!(t.join(1, 2, "side"));
    }

    #[test]
    fn a_second_exec_inside_the_window_tears_config_json_under_exit1() {
        let mut t = Timeline::default();
        session(&mut t, 1, RaceMode::Exit1);
        // A non-interactive side channel: write, then resolve.
        t.write_config(2);
        assert_eq!(t.resolve_main(), Resolve::Fresh { stale: None });
        assert_eq!(
            t.load(2, RaceMode::Exit1),
            Load::Clean,
            "the writer reads its own"
        );
        assert_eq!(
            t.load(1, RaceMode::Exit1),
            Load::Torn,
            "the session is torn"
        );
    }

    #[test]
    fn a_second_exec_inside_the_window_kills_the_session_under_sigkill() {
        let mut t = Timeline::default();
        session(&mut t, 1, RaceMode::Sigkill);
        // An interactive exec: resolve first.
        assert_eq!(session(&mut t, 2, RaceMode::Sigkill), Some("session"));
    }

    #[test]
    fn off_tolerates_both() {
        let mut t = Timeline::default();
        session(&mut t, 1, RaceMode::Off);
        t.write_config(2);
        assert_eq!(t.resolve_main(), Resolve::Fresh { stale: None });
        assert_eq!(t.load(1, RaceMode::Off), Load::Clean);
    }

    #[test]
    fn an_ended_main_is_cleaned_up_without_a_kill() {
        let mut t = Timeline::default();
        session(&mut t, 1, RaceMode::Sigkill);
        t.load(1, RaceMode::Sigkill);
        assert!(t.exited(1).is_empty());
        assert_eq!(
            session(&mut t, 2, RaceMode::Sigkill),
            None,
            "back-to-back session"
        );
    }

    #[test]
    fn joined_execs_die_with_the_main() {
        let mut t = Timeline::default();
        session(&mut t, 1, RaceMode::Exit1);
        t.load(1, RaceMode::Exit1);
        assert!(t.join(1, 2, "a"));
        assert!(t.join(1, 3, "b"));
        assert!(t.exited(2).is_empty(), "a joined exec ending kills nobody");
        assert_eq!(t.exited(1), ["b"]);
        assert!(!t.join(1, 4, "c"), "no joining an ended main");
    }

    #[test]
    fn overlapping_plain_execs_tear_the_earlier_one() {
        let mut t: Timeline<&str> = Timeline::default();
        t.write_config(1);
        t.write_config(2);
        assert_eq!(
            t.load(1, RaceMode::Sigkill),
            Load::Torn,
            "only the tear applies"
        );
        assert_eq!(t.load(2, RaceMode::Sigkill), Load::Clean);
    }
}
