//! The operator's terminal is handed back as it was. smolvm 0.8.0's client,
//! killed by a signal mid-session, restores neither raw mode nor the
//! `O_NONBLOCK` it set on fd 0 (`../shared/smolvm-0.8.0.md`); `pty-resize`
//! saves both before the session and restores them whenever the session ends
//! by a signal. And a SIGKILLed wrapper leaves no smolvm or guest behind.
//!
//! Each case runs the wrapper under `sh`, which records the terminal's mode
//! (`stty -g`) and fd 0's open-file flags (`/proc/self/fdinfo/0`) before and
//! after: what the operator's shell would find.

use std::path::Path;
use std::time::Duration;

use e2e::place::{Place, Screen};
use e2e::proctree;
use e2e::wait::wait_for;
use e2e::{guest, hermetic, shell, Exit, Machine, Term};

const DEADLINE: Duration = Duration::from_secs(30);

/// The terminal's state as a shell sees it: `stty -g` and fd 0's flags.
const STATE: &str =
    r#"printf '%s %s\n' "$(stty -g)" "$(sed -n 's/^flags:[[:space:]]*//p' /proc/self/fdinfo/0)""#;

/// A session under `sh` that writes the terminal's state to `before` and
/// `after` around the wrapper.
fn session(machine: &Machine, label: &str) -> (Term, std::path::PathBuf) {
    let dir = machine.home();
    let argv = machine.wrapped_argv(&[], &guest::tui_exec_args(label, &[]));
    let script = format!(
        "{STATE} > {before}; {wrapped}; rc=$?; {STATE} > {after}; echo $rc > {rc}",
        before = dir.join("before").display(),
        after = dir.join("after").display(),
        rc = dir.join("rc").display(),
        wrapped = shell::join(&argv),
    );
    let mut cmd = hermetic::command("sh");
    cmd.arg("-c").arg(script).envs(machine.env());
    let mut term = Term::spawn(100, 30, cmd);
    term.watch(machine);
    term.wait_for_text(&guest::first_frame(100, 30), DEADLINE);
    (term, dir.to_path_buf())
}

/// The pids of the wrapper and of smolvm's client in `term`'s session.
fn wrapper_and_client(term: &Term) -> (i32, i32) {
    let procs = proctree::tree(term.pid() as i32);
    let find = |name: &str| {
        procs
            .iter()
            .map(|(_, p)| p)
            .find(|p| {
                p.cmdline
                    .split(' ')
                    .next()
                    .is_some_and(|a| a.ends_with(name))
            })
            .map(|p| p.pid)
            .unwrap_or_else(|| panic!("no {name} in:\n{}", proctree::render(term.pid() as i32)))
    };
    let client = e2e::bins::smolvm_client();
    let client = client.file_name().unwrap().to_string_lossy().into_owned();
    (find("pty-resize"), find(&client))
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// Signals `who` (the wrapper or smolvm's client) mid-session; the shell's
/// terminal afterwards equals the one before, and the wrapper's code says
/// what ended the session.
fn terminal_is_handed_back(kill_client: bool, signal: nix::sys::signal::Signal, code: i32) {
    let machine = Machine::start("term", &[]);
    let (mut term, dir) = session(&machine, "restore");
    let (wrapper, client) = wrapper_and_client(&term);
    // Mid-session: smolvm has the terminal raw and fd 0 O_NONBLOCK.
    let target = if kill_client { client } else { wrapper };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(target), signal).unwrap();
    wait_for(
        "the shell to record the terminal after the session",
        DEADLINE,
        || read(&dir, "rc").ends_with('\n'),
        || format!("screen:\n{}", term.contents()),
    );
    assert_eq!(read(&dir, "rc").trim(), code.to_string(), "wrapper's code");
    let (before, after) = (read(&dir, "before"), read(&dir, "after"));
    assert!(!before.is_empty(), "no state recorded before");
    assert_eq!(after, before, "the terminal (stty -g, fd 0 flags) changed");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
    let restored = Machine::wrapper_events(&machine.wrapper_log_path())
        .into_iter()
        .find(|r| r.event == "restore");
    assert!(restored.is_some(), "{}", machine.wrapper_log());
}

#[test]
fn sigterm_to_the_wrapper_hands_the_terminal_back_as_it_was() {
    if e2e::backend::fake_only("the fake's guest pid files and exec.log") {
        return;
    }
    terminal_is_handed_back(false, nix::sys::signal::Signal::SIGTERM, 143);
}

#[test]
fn sighup_to_the_wrapper_hands_the_terminal_back_as_it_was() {
    if e2e::backend::fake_only("the fake's guest pid files and exec.log") {
        return;
    }
    terminal_is_handed_back(false, nix::sys::signal::Signal::SIGHUP, 129);
}

#[test]
fn smolvm_killed_mid_session_hands_the_terminal_back_as_it_was() {
    if e2e::backend::fake_only("the fake's guest pid files and exec.log") {
        return;
    }
    terminal_is_handed_back(true, nix::sys::signal::Signal::SIGKILL, 137);
}

/// SIGKILL runs none of the wrapper's code, and smolvm's client dies by its
/// parent-death signal without restoring: only the guardian, a process
/// outside the session, can hand the terminal back. Under `sh` in `place`,
/// which records the terminal before, then polls it (bounded) after the
/// wrapper's death and records how long it took to be as before.
fn a_sigkilled_wrapper_hands_the_terminal_back_within_a_second(place: Place) {
    let machine = Machine::start("k9-term", &[]);
    let dir = machine.home();
    let argv = machine.wrapped_argv(&[], &guest::tui_exec_args("k9-term", &[]));
    let script = format!(
        "{STATE} > {before}; {wrapped}; rc=$?; t0=$(date +%s%N); n=0; \
         while [ \"$({STATE})\" != \"$(cat {before})\" ] && [ $n -lt 400 ]; do n=$((n+1)); done; \
         echo $(( ($(date +%s%N) - t0) / 1000000 )) > {ms}; {STATE} > {after}; echo $rc > {rc}",
        before = dir.join("before").display(),
        after = dir.join("after").display(),
        ms = dir.join("ms").display(),
        rc = dir.join("rc").display(),
        wrapped = shell::join(&argv),
    );
    let sh = vec!["sh".to_string(), "-c".to_string(), script];
    let mut screen = Screen::open(place, &machine, 100, 30, &sh, None);
    screen.wait_for_text(&guest::first_frame(100, 30), DEADLINE);
    let events = Machine::wrapper_events(&machine.wrapper_log_path());
    let wrapper: i32 = events
        .iter()
        .find(|r| r.event == "open")
        .and_then(|r| r.get("pid")?.parse().ok())
        .expect("the wrapper's pid in its log");
    assert!(
        events
            .iter()
            .any(|r| r.event == "guardian" && r.get("pid").is_some()),
        "{}",
        machine.wrapper_log()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(wrapper),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(
        "the shell to record the terminal after the killed wrapper",
        DEADLINE,
        || read(dir, "rc").ends_with('\n'),
        || format!("screen:\n{}", screen.contents()),
    );
    assert_eq!(read(dir, "rc").trim(), "137", "the shell saw the SIGKILL");
    let (before, after) = (read(dir, "before"), read(dir, "after"));
    assert!(!before.is_empty(), "no state recorded before");
    assert_eq!(after, before, "the terminal (stty -g, fd 0 flags) changed");
    let ms: u64 = read(dir, "ms").trim().parse().unwrap_or(u64::MAX);
    assert!(ms <= 1000, "handed back after {ms} ms, not within a second");
    assert_eq!(screen.wait_exit(DEADLINE), Exit::Code(0));
}

#[test]
fn a_sigkilled_wrapper_at_raw_mode_has_the_terminal_handed_back_within_a_second() {
    a_sigkilled_wrapper_hands_the_terminal_back_within_a_second(Place::Pty);
}

#[test]
fn in_tmux_a_sigkilled_wrapper_has_the_pane_handed_back_within_a_second() {
    a_sigkilled_wrapper_hands_the_terminal_back_within_a_second(Place::Tmux);
}

#[test]
fn without_the_wrapper_a_killed_smolvm_leaves_the_terminal_raw_and_nonblocking() {
    if e2e::backend::fake_only("the fake's guest pid files and exec.log") {
        return;
    }
    // The reference: the client alone, killed, restores nothing.
    let machine = Machine::start("bare-kill", &[]);
    let dir = machine.home();
    let argv = machine.exec_argv(&guest::tui_exec_args("alone", &[]));
    let script = format!(
        "{STATE} > {b}; {cmd}; {STATE} > {a}; echo done > {rc}",
        b = dir.join("before").display(),
        a = dir.join("after").display(),
        rc = dir.join("rc").display(),
        cmd = shell::join(&argv),
    );
    let mut cmd = hermetic::command("sh");
    cmd.arg("-c").arg(script).envs(machine.env());
    let mut term = Term::spawn(100, 30, cmd);
    term.watch(&machine);
    term.wait_for_text("guest-tui alone size 0x0", DEADLINE);
    let procs = proctree::tree(term.pid() as i32);
    let client = procs
        .iter()
        .find(|(_, p)| p.cmdline.contains(" machine exec "))
        .map(|(_, p)| p.pid)
        .expect("the client runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(client),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for(
        "the shell to record the terminal",
        DEADLINE,
        || read(dir, "rc") == "done\n",
        || term.contents(),
    );
    let (before, after) = (read(dir, "before"), read(dir, "after"));
    assert_ne!(after, before, "a killed smolvm leaves the terminal changed");
    let flags =
        |s: &str| u32::from_str_radix(s.split_whitespace().last().unwrap_or("0"), 8).unwrap_or(0);
    assert_ne!(
        flags(&after) & libc::O_NONBLOCK as u32,
        0,
        "fd 0 left O_NONBLOCK: {after}"
    );
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
}

#[test]
fn a_sigkilled_wrapper_leaves_no_smolvm_client_after_a_second() {
    if e2e::backend::fake_only("the fake's guest pid files and exec.log") {
        return;
    }
    // Under a shell, as from a job-control shell: the wrapper is not the
    // session leader, so its death sends no SIGHUP to anyone; only the
    // wrapper's own parent-death signal can take smolvm with it.
    let machine = Machine::start("k9", &[]);
    let argv = machine.wrapped_argv(&[], &guest::tui_exec_args("sigkilled-wrapper", &[]));
    let done = machine.home().join("done");
    let script = format!(
        "{}; echo done > {}; exec sleep 600",
        shell::join(&argv),
        done.display()
    );
    let mut cmd = hermetic::command("sh");
    cmd.arg("-c").arg(script).envs(machine.env());
    let mut term = Term::spawn(100, 30, cmd);
    term.watch(&machine);
    term.wait_for_text(&guest::first_frame(100, 30), DEADLINE);
    let (wrapper, client) = wrapper_and_client(&term);
    let session: Vec<i32> = proctree::tree(wrapper)
        .into_iter()
        .map(|(_, p)| p.pid)
        .filter(|p| *p != wrapper)
        .collect();
    // The guest's processes carry its label (so does the outer shell's script).
    let shell_pid = term.pid() as i32;
    let guest: Vec<i32> = e2e::procs::running_with_arg("sigkilled-wrapper")
        .into_iter()
        .filter(|p| *p != shell_pid)
        .collect();
    assert!(
        session.contains(&client) && !guest.is_empty(),
        "client and guest run"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(wrapper),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(
        "the shell to go on after the wrapper",
        DEADLINE,
        || done.exists(),
        || term.contents(),
    );
    // Only the wrapper's side must end: smolvm 0.8.0's agent keeps a killed
    // client's `-t` container running as the machine's main container
    // (smolvm-0.8.0.md, last section; the fake does the same), so the guest
    // goes on, as with plain smolvm.
    let everyone: Vec<i32> = session.clone();
    wait_for(
        "the session's smolvm client to end within a second",
        Duration::from_secs(1),
        || everyone.iter().all(|p| e2e::procs::has_exited(*p)),
        || {
            let left: Vec<String> = everyone
                .iter()
                .filter(|p| !e2e::procs::has_exited(**p))
                .map(|p| {
                    let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
                })
                .collect();
            format!("still running:\n{}", left.join("\n"))
        },
    );
}
