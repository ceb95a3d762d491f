//! [`Lab`]: one variant under test, with its own fake machine (default
//! timings), its own `XDG_CACHE_HOME` and a folder for record files and logs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use e2e::{hermetic, Machine, Term};
use fake_smolvm::exec_log::{monotonic_ms, ExecRecord};
use tempfile::TempDir;

use crate::procs;

/// What runs between the terminal and `smolvm machine exec -t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `pty-resize --mode channel`.
    Channel,
    /// `pty-resize --mode exec`.
    Exec,
    /// `scripts/naive-bridge` with its defaults.
    Naive,
    /// Nothing: the smolvm argv run directly.
    Direct,
}

impl Variant {
    /// Short name, used as a JSON key and in the machine's name.
    pub fn key(self) -> &'static str {
        match self {
            Variant::Channel => "channel",
            Variant::Exec => "exec",
            Variant::Naive => "naive",
            Variant::Direct => "direct",
        }
    }

    /// What a person reads in the table.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Channel => "pty-resize --mode channel",
            Variant::Exec => "pty-resize --mode exec",
            Variant::Naive => "naive bridge",
            Variant::Direct => "smolvm alone",
        }
    }

    /// Whether this is one of pty-resize's modes.
    pub fn is_wrapper(self) -> bool {
        matches!(self, Variant::Channel | Variant::Exec)
    }
}

/// The programs the bench runs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The release `pty-resize`.
    pub pty_resize: PathBuf,
    /// `fake-smolvm`.
    pub fake: PathBuf,
    /// `guest-tui`.
    pub guest_tui: PathBuf,
    /// The naive bridge script.
    pub naive: PathBuf,
}

/// How long the exec log must stay unchanged (no client alive) before the
/// machine counts as idle: one default bring-up (250 ms) and a margin.
pub const QUIET: Duration = Duration::from_millis(320);

/// One variant's machine, cache and work folder.
pub struct Lab {
    /// The variant.
    pub variant: Variant,
    /// Its fake machine.
    pub machine: Machine,
    tools: Tools,
    cache: TempDir,
    work: TempDir,
    seq: AtomicU32,
}

/// A session just started on a PTY.
pub struct Launch {
    /// The program on its PTY (dropping it kills its process group).
    pub term: Term,
    /// Monotonic ms just before the spawn.
    pub launch_ms: f64,
    /// The wrapper's `--log`, for pty-resize variants.
    pub log: Option<PathBuf>,
}

impl Lab {
    /// Starts the variant's machine (named after the bench's pid, so its
    /// clients can be told apart from any other machine's).
    pub fn new(variant: Variant, tools: &Tools) -> anyhow::Result<Lab> {
        let name = format!("bench-{}-{}", std::process::id(), variant.key());
        Ok(Lab {
            variant,
            machine: Machine::start(&name, &[]),
            tools: tools.clone(),
            cache: tempfile::Builder::new().prefix("bench-cache-").tempdir()?,
            work: tempfile::Builder::new().prefix("bench-work-").tempdir()?,
            seq: AtomicU32::new(0),
        })
    }

    /// A fresh file name in the work folder.
    pub fn fresh_path(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.work.path().join(format!("{what}-{n}"))
    }

    /// `guest-tui --record FILE`.
    pub fn guest_tui(&self, record: &Path) -> Vec<String> {
        vec![
            self.tools.guest_tui.to_string_lossy().into_owned(),
            "--record".into(),
            record.to_string_lossy().into_owned(),
        ]
    }

    /// The whole command line of a session running `guest` (program first).
    pub fn argv(&self, guest: &[String], log: Option<&Path>) -> Vec<String> {
        let fake = self.tools.fake.to_string_lossy().into_owned();
        let name = self.machine.name().to_string();
        let mut smolvm = vec![fake, "machine".into(), "exec".into(), "--name".into()];
        smolvm.extend([name.clone(), "-t".into(), "--".into()]);
        smolvm.extend(guest.iter().cloned());
        let mut argv = match self.variant {
            Variant::Channel | Variant::Exec => {
                let mut a = vec![
                    self.tools.pty_resize.to_string_lossy().into_owned(),
                    "--mode".into(),
                    self.variant.key().into(),
                ];
                if let Some(log) = log {
                    a.extend(["--log".into(), log.to_string_lossy().into_owned()]);
                }
                a
            }
            Variant::Naive => vec![self.tools.naive.to_string_lossy().into_owned()],
            Variant::Direct => return smolvm,
        };
        argv.extend([name, "--".into()]);
        argv.extend(smolvm);
        argv
    }

    /// The variables a session needs: the machine's and its own cache.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.machine.env();
        env.push((
            "XDG_CACHE_HOME".into(),
            self.cache.path().to_string_lossy().into_owned(),
        ));
        env
    }

    /// Starts a session running `guest` on a new `cols` x `rows` PTY.
    pub fn launch(&self, size: (u16, u16), guest: &[String]) -> Launch {
        let log = self
            .variant
            .is_wrapper()
            .then(|| self.fresh_path("wrapper.log"));
        let argv = self.argv(guest, log.as_deref());
        let mut cmd: Command = hermetic::command(&argv[0]);
        cmd.args(&argv[1..]).envs(self.env());
        let launch_ms = monotonic_ms();
        let term = Term::spawn(size.0, size.1, cmd);
        Launch {
            term,
            launch_ms,
            log,
        }
    }

    /// Waits until the machine is idle (see [`procs::quiesce`]).
    pub fn quiesce(&self) {
        if !procs::quiesce(
            self.machine.name(),
            &self.machine.exec_log_path(),
            QUIET,
            Duration::from_secs(60),
        ) {
            eprintln!(
                "bench: warning: machine {} still busy after 60 s",
                self.machine.name()
            );
        }
    }

    /// Exec records that started at or after `since_ms`.
    pub fn records_since(&self, since_ms: f64) -> Vec<ExecRecord> {
        self.machine
            .exec_log()
            .into_iter()
            .filter(|r| r.start_ms >= since_ms)
            .collect()
    }

    /// Removes the PTY record the wrapper's prologue left in the guest's
    /// `/tmp` (the fake's guest shares the host's), named in the log.
    pub fn clean_prologue_file(&self, log: Option<&Path>) {
        let Some(text) = log.and_then(|l| std::fs::read_to_string(l).ok()) else {
            return;
        };
        if let Some(token) = prologue_token(&text) {
            let _ = std::fs::remove_file(format!("/tmp/.pty-resize-{token}"));
        }
    }
}

/// The `token=N` of the wrapper log's `prologue` line.
pub fn prologue_token(log: &str) -> Option<u64> {
    log.lines()
        .filter(|l| l.contains("event=prologue"))
        .flat_map(|l| l.split(' '))
        .find_map(|kv| kv.strip_prefix("token="))
        .and_then(|t| t.parse().ok())
}

/// The main exec of a session: the one with a terminal. Unlike
/// [`e2e::execs::main_exec`] it does not panic when there is none: a round
/// with no main exec recorded is a result the bench reports, not a harness failure.
pub fn main_exec(records: &[ExecRecord]) -> Option<&ExecRecord> {
    records.iter().find(|r| r.tty)
}

/// The side channels of a session: the scenarios' own definition.
pub use e2e::execs::side_channels;

/// Whether any two of `records` were alive at the same time.
pub fn any_overlap(records: &[&ExecRecord]) -> bool {
    !e2e::execs::overlapping_lifetimes(records).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tty: bool, start: f64, end: f64) -> ExecRecord {
        ExecRecord {
            pid: 1,
            argv: vec!["sh".into()],
            tty,
            interactive: tty,
            start_ms: start,
            end_ms: end,
            ..ExecRecord::default()
        }
    }

    #[test]
    fn prologue_token_is_read_from_the_log() {
        let log = "t_ms=0.1 event=start readiness=raw-mode\nt_ms=0.2 event=prologue size=100x30 token=4242\n";
        assert_eq!(prologue_token(log), Some(4242));
        assert_eq!(prologue_token("t_ms=0.1 event=start\n"), None);
    }

    #[test]
    fn main_exec_and_side_channels_split_on_the_terminal() {
        let records = [
            rec(false, 0.0, 1.0),
            rec(true, 0.0, 9.0),
            rec(false, 2.0, 3.0),
        ];
        assert!(main_exec(&records).unwrap().tty);
        assert_eq!(side_channels(&records).len(), 2);
    }

    #[test]
    fn overlap_is_any_pair() {
        let (a, b, c) = (
            rec(false, 0.0, 1.0),
            rec(false, 2.0, 3.0),
            rec(false, 2.5, 4.0),
        );
        assert!(!any_overlap(&[&a, &b]));
        assert!(any_overlap(&[&a, &b, &c]));
    }
}
