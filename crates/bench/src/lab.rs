//! [`Lab`]: one variant under test, with its own fake machine (default
//! timings) and a folder for record files and logs. The machine's private
//! state folders ([`Machine::env`]) also hold pty-resize's version cache and
//! per-machine lock, so no two variants share either.

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
    /// `pty-resize --mode agent` (`vm_exec` on the machine's agent socket).
    Agent,
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
            Variant::Agent => "agent",
            Variant::Channel => "channel",
            Variant::Exec => "exec",
            Variant::Naive => "naive",
            Variant::Direct => "direct",
        }
    }

    /// What a person reads in the table.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Agent => "pty-resize --mode agent",
            Variant::Channel => "pty-resize --mode channel",
            Variant::Exec => "pty-resize --mode exec",
            Variant::Naive => "naive bridge",
            Variant::Direct => "smolvm alone",
        }
    }

    /// Whether this is one of pty-resize's modes.
    pub fn is_wrapper(self) -> bool {
        matches!(self, Variant::Agent | Variant::Channel | Variant::Exec)
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

/// Where the labs' work folders go: `$BENCH_WORK_DIR`, else the
/// workspace's `target/bench/work`. Never under `/tmp`: a fake machine's
/// guest has a private `/tmp` (an overlay whose writes stay in the machine's
/// folder), so a frame record guest-tui wrote there would never reach the
/// bench.
pub fn work_root() -> PathBuf {
    std::env::var_os("BENCH_WORK_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench/work"))
}

/// How long the exec log must stay unchanged (no client alive) before the
/// machine counts as idle: one default bring-up (250 ms) and a margin.
pub const QUIET: Duration = Duration::from_millis(320);

/// One variant's machine and work folder.
pub struct Lab {
    /// The variant.
    pub variant: Variant,
    /// Its fake machine.
    pub machine: Machine,
    tools: Tools,
    work: TempDir,
    seq: AtomicU32,
}

/// A session just started on a PTY.
pub struct Launch {
    /// The program on its PTY (dropping it kills its process group).
    pub term: Term,
    /// Monotonic ms just before the spawn.
    pub launch_ms: f64,
    /// The wrapper's `--log` (pty-resize variants).
    pub log: Option<PathBuf>,
}

impl Lab {
    /// Starts the variant's machine (named after the bench's pid, so its
    /// clients can be told apart from any other machine's).
    pub fn new(variant: Variant, tools: &Tools) -> anyhow::Result<Lab> {
        Lab::with_crun(variant, tools, None)
    }

    /// [`Lab::new`] with the fake's crun window set to `crun_ms`
    /// (`FAKE_SMOLVM_CRUN_MS`; `None`: its default), on a machine of its own.
    pub fn with_crun(variant: Variant, tools: &Tools, crun_ms: Option<u64>) -> anyhow::Result<Lab> {
        let mut name = format!("bench-{}-{}", std::process::id(), variant.key());
        let crun = crun_ms.map(|ms| ms.to_string());
        let mut env = Vec::new();
        if let Some(ms) = &crun {
            name.push_str(&format!("-crun{ms}"));
            env.push(("FAKE_SMOLVM_CRUN_MS", ms.as_str()));
        }
        Ok(Lab {
            variant,
            machine: Machine::start(&name, &env),
            tools: tools.clone(),
            work: {
                let root = work_root();
                std::fs::create_dir_all(&root)?;
                tempfile::Builder::new()
                    .prefix("bench-work-")
                    .tempdir_in(root)?
            },
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
            Variant::Agent | Variant::Channel | Variant::Exec => {
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

    /// The variables a session needs: the machine's (its state folders,
    /// which smolvm's client finds the machine through).
    pub fn env(&self) -> Vec<(String, String)> {
        self.machine.env()
    }

    /// Starts a session running `guest` on a new `cols` x `rows` PTY.
    pub fn launch(&self, size: (u16, u16), guest: &[String]) -> Launch {
        self.launch_with(size, guest, &[])
    }

    /// [`Lab::launch`] with `extra` variables in the session's environment.
    pub fn launch_with(
        &self,
        size: (u16, u16),
        guest: &[String],
        extra: &[(&str, &str)],
    ) -> Launch {
        let log = self
            .variant
            .is_wrapper()
            .then(|| self.fresh_path("wrapper.log"));
        let argv = self.argv(guest, log.as_deref());
        let mut cmd: Command = hermetic::command(&argv[0]);
        cmd.args(&argv[1..])
            .envs(self.env())
            .envs(extra.iter().copied());
        let launch_ms = monotonic_ms();
        let term = Term::spawn(size.0, size.1, cmd);
        Launch {
            term,
            launch_ms,
            log,
        }
    }

    /// The records of a launch's wrapper log so far (pty-resize variants).
    pub fn wrapper_log(log: Option<&Path>) -> Option<Vec<pty_resize::log::Record>> {
        log.and_then(|l| pty_resize::log::read(l).ok())
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

    /// Exec records whose client started at or after `since_ms`.
    pub fn records_since(&self, since_ms: f64) -> Vec<ExecRecord> {
        self.machine
            .exec_log()
            .into_iter()
            .filter(|r| started_since(r, since_ms))
            .collect()
    }
}

/// The resolution of `ExecRecord::start_ms`: the client's start time comes
/// from `/proc/PID/stat` in clock ticks (10 ms), rounded down.
pub const START_RESOLUTION_MS: f64 = 10.0;

/// Whether `r`'s client started at or after `since_ms`, given
/// [`START_RESOLUTION_MS`]. A launch made just after `since_ms` can have a
/// `start_ms` up to one tick before it; the records of earlier launches are
/// further back, as the bench waits for a quiet machine between them.
pub fn started_since(r: &ExecRecord, since_ms: f64) -> bool {
    r.start_ms + START_RESOLUTION_MS > since_ms
}

/// When the agent received the exec's request and began its bring-up (a
/// precise monotonic time, unlike `start_ms`), falling back to `start_ms`.
pub fn arrival_ms(r: &ExecRecord) -> f64 {
    r.bringup_start_ms.unwrap_or(r.start_ms)
}

/// The main exec of a session: the one with a terminal. Unlike
/// [`e2e::execs::main_exec`] it does not panic when there is none: a round
/// with no main exec recorded is a result the bench reports, not a harness failure.
pub fn main_exec(records: &[ExecRecord]) -> Option<&ExecRecord> {
    records.iter().find(|r| r.tty)
}

/// The main exec of the session whose guest records its frames to `record`
/// (its argv names that file): how a session is told from its neighbours.
pub fn main_exec_of<'a>(records: &'a [ExecRecord], record: &Path) -> Option<&'a ExecRecord> {
    let record = record.to_string_lossy();
    records
        .iter()
        .find(|r| r.tty && r.argv.iter().any(|a| *a == record))
}

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
    fn a_session_is_found_by_its_record_file() {
        let mut a = rec(true, 0.0, 9.0);
        a.argv = vec!["guest-tui".into(), "--record".into(), "/w/frames-1".into()];
        let mut b = a.clone();
        b.argv[2] = "/w/frames-2".into();
        let records = [a, b, rec(false, 1.0, 2.0)];
        let found = main_exec_of(&records, Path::new("/w/frames-2")).unwrap();
        assert_eq!(found.argv[2], "/w/frames-2");
        assert!(main_exec_of(&records, Path::new("/w/frames-3")).is_none());
    }

    #[test]
    fn main_exec_and_side_channels_split_on_the_terminal() {
        let records = [
            rec(false, 0.0, 1.0),
            rec(true, 0.0, 9.0),
            rec(false, 2.0, 3.0),
        ];
        assert!(main_exec(&records).unwrap().tty);
        assert_eq!(e2e::execs::side_channels(&records).len(), 2);
    }

    #[test]
    fn a_start_rounded_down_to_the_tick_still_counts() {
        let r = rec(true, 1000.0, 2000.0);
        assert!(started_since(&r, 1004.2));
        assert!(started_since(&r, 1000.0));
        assert!(!started_since(&r, 1010.0));
        assert!(!started_since(&r, 1300.0));
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
