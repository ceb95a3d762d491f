//! Self-tests of `e2e::Machine` against the fake-smolvm binary.

use std::time::Duration;

use e2e::{bins, Exit, Machine, Term};

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn a_machine_runs_an_exec_and_logs_it() {
    let machine = Machine::start("m1", &[("FAKE_SMOLVM_BRINGUP_MS", "50")]);
    // Where smolvm keeps it: the folder holds the name, the registry the record.
    assert_eq!(
        std::fs::read_to_string(machine.dir().join("name")).unwrap(),
        "m1"
    );
    assert!(machine.data_dir().join("smolvm/server/smolvm.db").is_file());
    let out = machine
        .exec_command(&["--", "sh", "-c", "echo hello from the guest"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the guest\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = machine.exec_log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].argv, ["sh", "-c", "echo hello from the guest"]);
    assert_eq!(log[0].exit_code, 0);
    assert!(!log[0].tty);
}

#[test]
fn guest_tui_through_the_fake_shows_the_0x0_bug() {
    let machine = Machine::start("m2", &[("FAKE_SMOLVM_BRINGUP_MS", "50")]);
    let guest_tui = bins::guest_tui();
    let cmd = machine.exec_command(&["-t", "--", guest_tui.to_str().unwrap(), "--label", "vm"]);
    let mut term = Term::spawn(100, 30, cmd);
    term.add_context("exec.log", &machine.exec_log_path());
    term.wait_for_text("guest-tui vm size 0x0 first 0x0", DEADLINE);
    term.send_keys("q");
    assert_eq!(term.wait_exit(DEADLINE), Exit::Code(0));
    let log = machine.exec_log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].tty && log[0].stdin.starts_with("tty:"), "{log:?}");
}

#[test]
fn drop_stops_the_machine() {
    let machine = Machine::start("m3", &[]);
    let pid_file = machine.dir().join("agent.pid");
    let first_line = |file: &str| -> i32 {
        let text = std::fs::read_to_string(machine.dir().join(file)).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    };
    let (front, guest) = (first_line("agent.pid"), first_line("guest.pid"));
    assert!(pid_file.is_file());
    let home = machine.home().to_path_buf();
    drop(machine);
    assert!(!home.exists(), "temp home left behind");
    for pid in [front, guest] {
        e2e::wait::wait_for(
            &format!("agent process {pid} to end with its Machine"),
            DEADLINE,
            || e2e::procs::has_exited(pid),
            String::new,
        );
    }
}
