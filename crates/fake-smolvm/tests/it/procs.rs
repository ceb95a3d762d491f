//! Processes and waits: a command run to completion with its pipes
//! collected, waits for a condition or an exit with a deadline whose panic
//! shows what was seen, and whether a process is alive or carries a marker.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use testkit::procs::{has_exited, running_with_arg};
use testkit::wait::{child_exit, poll_every, POLL};

/// Writes a line where the test harness does not capture it.
pub fn notice(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
/// Polls `cond` every `step` until it holds or `secs` pass; panics with `what()` then.
pub fn wait_until_every(
    secs: u64,
    step: Duration,
    mut cond: impl FnMut() -> bool,
    what: impl Fn() -> String,
) {
    let deadline = Duration::from_secs(secs);
    if poll_every(step, deadline, || cond().then_some(())).is_none() {
        panic!("timed out after {secs}s waiting; saw:\n{}", what());
    }
}

/// [`wait_until_every`] with the kit's step ([`testkit::wait::POLL`]).
pub fn wait_until(secs: u64, cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    wait_until_every(secs, POLL, cond, what)
}

/// Waits for a child with a deadline; kills it and panics with `context()` on timeout.
pub fn wait_child_or(child: &mut Child, secs: u64, context: impl Fn() -> String) -> ExitStatus {
    if let Some(status) = child_exit(child, Duration::from_secs(secs)) {
        return status;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "process {} did not exit within {secs}s\n{}",
        child.id(),
        context()
    );
}

/// Runs a command with a 30 s deadline, capturing stdout and stderr.
pub fn run_output(mut c: Command) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let (t1, t2) = collect_pipes(&mut child);
    let status = wait_child_or(&mut child, 30, String::new);
    Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// Threads collecting a child's stdout and stderr.
pub(crate) type Collectors = (JoinHandle<Vec<u8>>, JoinHandle<Vec<u8>>);
pub(crate) fn collect_pipes(child: &mut Child) -> Collectors {
    let collect = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let so = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn Read + Send>);
    let se = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn Read + Send>);
    (collect(so), collect(se))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
/// Whether `pid` exists and has not exited (see [`has_exited`]).
pub fn alive(pid: i32) -> bool {
    !has_exited(pid)
}

/// Host pids of live processes one of whose arguments contains `marker`.
pub fn pids_with(marker: &str) -> Vec<i32> {
    running_with_arg(marker)
}

/// A unique marker string for /proc scans.
pub fn marker(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("fsm-marker-{tag}-{}-{n}", std::process::id())
}
