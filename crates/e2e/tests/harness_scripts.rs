//! The scripts share no state that changes what another shows: each run of
//! `scripts/lib.sh`'s `fake_machine_up` gets its own smolvm state folders,
//! lock folder and pty-resize version cache. The case that bit a user:
//! `scripts/repro-in-tmux compat-081` (a fake that says 0.8.1) before
//! `scripts/demo` made the demo's wrapper take the 0.8.1 path from a shared
//! version cache.

use std::path::Path;
use std::time::Duration;

use e2e::{bins, hermetic, shell, Exit, Machine, Term};

const DEADLINE: Duration = Duration::from_secs(60);

/// Runs, in a terminal, what a script does: `fake_machine_up` with `env`,
/// one wrapped session logging to `log`, then `fake_machine_down`.
fn script_run(env: &str, log: &Path) {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lib.sh");
    let bin = bins::pty_resize().parent().unwrap().to_path_buf();
    // Built by bins: fake-smolvm and guest-tui live beside pty-resize.
    let _ = (bins::fake_smolvm(), bins::guest_tui());
    let script = format!(
        "set -e; source {lib}; {env} fake_machine_up {bin} repro; trap fake_machine_down EXIT; \
         {bin}/pty-resize --log {log} repro -- {bin}/fake-smolvm machine exec --name repro -t -- true",
        lib = shell::quote(&lib.to_string_lossy()),
        bin = shell::quote(&bin.to_string_lossy()),
        log = shell::quote(&log.to_string_lossy()),
    );
    let mut cmd = hermetic::command("bash");
    cmd.arg("-c").arg(script);
    let mut term = Term::spawn(80, 24, cmd);
    term.add_context("pty-resize.log", log);
    assert_eq!(
        term.wait_exit(DEADLINE),
        Exit::Code(0),
        "{}",
        term.contents()
    );
}

/// The version the wrapper acted on, and where it came from.
fn version(log: &Path) -> (String, String) {
    let rec = Machine::wrapper_events(log)
        .into_iter()
        .find(|r| r.event == "version")
        .unwrap_or_else(|| panic!("no version event in {}", log.display()));
    let get = |k: &str| rec.get(k).unwrap_or_default().to_string();
    (get("version"), get("source"))
}

#[test]
fn a_compat_081_run_first_does_not_change_what_the_next_run_sees() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first.log"), dir.path().join("second.log"));
    script_run("export FAKE_SMOLVM_COMPAT=0.8.1;", &first);
    script_run("", &second);
    assert_eq!(version(&first).0, "0.8.1");
    assert_eq!(
        version(&second),
        ("0.8.0".to_string(), "query".to_string()),
        "the second run asked its own smolvm, not a cache the first one filled"
    );
}
