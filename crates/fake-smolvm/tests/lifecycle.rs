//! CLI behaviour: happy paths, smolvm 0.8.0's messages and exit codes, bad
//! input, and that `machine stop` leaves nothing running.

mod common;

use std::process::Stdio;

use common::*;

fn not_running(name: &str) -> String {
    format!(
        "Error: agent operation failed: connect: machine '{name}' is not running. Use 'smolvm machine start --name {name}' first.\n"
    )
}

#[test]
fn version_prints_the_modelled_smolvm() {
    let fake = Fake::new();
    let out = fake.run(["--version"]);
    assert_eq!(text(&out.stdout), "smolvm 0.8.0\n");
    let mut c = fake.cmd(["--version"]);
    c.env("FAKE_SMOLVM_COMPAT", "0.8.1");
    assert_eq!(text(&run_output(c).stdout), "smolvm 0.8.1\n");
}

#[test]
fn help_documents_every_switch() {
    let fake = Fake::new();
    for args in [vec!["--help"], vec!["machine", "exec", "--help"]] {
        let out = fake.run(&args);
        assert!(out.status.success());
        let help = text(&out.stdout);
        for var in SWITCHES
            .iter()
            .chain(["FAKE_SMOLVM_SHARED_STDIN_DELAY_MS"].iter())
        {
            assert!(help.contains(var), "{args:?} help lacks {var}:\n{help}");
        }
    }
}

#[test]
fn machine_lifecycle_happy_path() {
    let fake = Fake::new();
    let out = fake.run(["machine", "ls"]);
    assert_eq!(text(&out.stdout), "No machines found\n");

    let out = fake.run(["machine", "create", "m1"]);
    assert_eq!(text(&out.stdout), "Created machine: m1\n");
    assert!(out.status.success());
    let out = fake.run(["machine", "status", "--name", "m1"]);
    assert_eq!(text(&out.stdout), "Machine 'm1': created\n");

    let out = fake.run(["vm", "start", "-n", "m1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "Starting machine 'm1'...\n");
    let pid: i32 = std::fs::read_to_string(fake.machine_dir("m1").join("agent.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let guard = Machine {
        fake: &fake,
        name: "m1".into(),
        init_pid: pid,
    };
    assert_eq!(
        text(&out.stdout),
        format!("Machine 'm1' running (PID: {pid})\n")
    );
    assert!(alive(pid));

    let out = fake.run(["machine", "status", "-n", "m1"]);
    assert_eq!(
        text(&out.stdout),
        format!("Machine 'm1': running (PID: {pid})\n")
    );
    let out = fake.run(["machine", "ls", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["name"], "m1");
    assert_eq!(rows[0]["state"], "running");
    assert_eq!(rows[0]["pid"], pid);

    let out = run_output(guard.exec(["--", "sh", "-c", "echo out; echo err >&2; exit 3"]));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");

    let out = run_output(guard.exec([
        "-e",
        "A=1",
        "-e",
        "NOEQ",
        "-e",
        "B=x=y",
        "-w",
        "/tmp",
        "--",
        "sh",
        "-c",
        "echo \"$A|${NOEQ-unset}|$B|$(pwd)\"",
    ]));
    assert_eq!(
        text(&out.stdout),
        "1|unset|x=y|/tmp\n",
        "{}",
        text(&out.stderr)
    );
    assert!(out.status.success());

    let out = fake.run(["machine", "stop", "--name", "m1"]);
    assert_eq!(text(&out.stdout), "Stopped machine: m1\n");
    assert_eq!(text(&out.stderr), "Stopping machine 'm1'...\n");
    assert!(!alive(pid), "guest init {pid} survived stop");
    assert!(!fake.machine_dir("m1").join("agent.sock").exists());

    let out = fake.run(["machine", "stop", "--name", "m1"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "Machine 'm1' is not running (state: stopped)\n"
    );

    let out = run_output(guard.exec(["--", "true"]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), not_running("m1"));

    let out = fake.run(["machine", "delete", "m1"]);
    assert_eq!(text(&out.stdout), "Deleted machine: m1\n");
    assert_eq!(
        text(&fake.run(["machine", "ls"]).stdout),
        "No machines found\n"
    );
}

#[test]
fn create_without_a_name_generates_one() {
    let fake = Fake::new();
    let out = fake.run(["machine", "create"]);
    let line = text(&out.stdout);
    let name = line.trim().strip_prefix("Created machine: ").unwrap();
    assert!(name.starts_with("vm-") && name.len() == 11, "{line}");
    assert!(fake.machine_dir(name).join("machine.json").is_file());
}

#[test]
fn unknown_machine_is_vm_not_found() {
    let fake = Fake::new();
    for args in [
        vec!["machine", "exec", "--name", "nope", "--", "true"],
        vec!["machine", "start", "--name", "nope"],
        vec!["machine", "stop", "--name", "nope"],
        vec!["machine", "status", "--name", "nope"],
        vec!["machine", "delete", "nope"],
    ] {
        let out = fake.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(text(&out.stderr), "Error: vm not found: nope\n", "{args:?}");
    }
}

#[test]
fn exec_on_a_stopped_machine_fails_and_is_logged() {
    let fake = Fake::new();
    fake.run(["machine", "create", "idle"]);
    let out = fake.run(["machine", "exec", "--name", "idle", "--", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), not_running("idle"));
    assert_eq!(text(&out.stdout), "");
    let log = fake.log("idle");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].exit_code, 1);
    assert_eq!(log[0].bringup_start_ms, None);
    assert_eq!(log[0].stdin, "devnull");
    assert!(log[0]
        .error
        .as_deref()
        .unwrap()
        .starts_with("agent operation failed"));
}

#[test]
fn usage_errors_exit_2() {
    let fake = Fake::new();
    fake.run(["machine", "create", "u"]);
    let zero_timeout = vec![
        "machine",
        "exec",
        "--name",
        "u",
        "--timeout",
        "0s",
        "--",
        "true",
    ];
    for args in [
        vec!["machine", "exec", "--name", "u"],
        zero_timeout.clone(),
        vec![
            "machine",
            "exec",
            "--name",
            "u",
            "--timeout",
            "soon",
            "--",
            "true",
        ],
        vec!["machine", "frobnicate"],
        vec!["machine", "delete"],
    ] {
        let out = fake.run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("error:"), "{args:?}");
    }
    let out = fake.run(&zero_timeout);
    assert!(
        text(&out.stderr).contains("greater than zero"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_switch_value_is_an_error() {
    let fake = Fake::new();
    fake.run(["machine", "create", "b"]);
    let mut c = fake.cmd(["machine", "exec", "--name", "b", "--", "true"]);
    c.env("FAKE_SMOLVM_RACE", "sometimes");
    let out = run_output(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("Error: invalid FAKE_SMOLVM_RACE=\"sometimes\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unwritable_home_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let home = file.join("home");
    let mut c = std::process::Command::new(BIN);
    c.env("FAKE_SMOLVM_HOME", &home)
        .args(["machine", "create", "x"])
        .stdin(Stdio::null());
    let out = run_output(c);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("Error: cannot create state directory ")
            && err.contains(&home.display().to_string())
            && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn delete_of_a_running_machine_needs_force() {
    let fake = Fake::new();
    let m = fake.machine("d");
    let out = fake.run(["machine", "delete", "d"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: machine 'd' is running; stop it first or use --force\n"
    );
    assert!(alive(m.init_pid));
    let out = fake.run(["machine", "delete", "d", "-f"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Deleted machine: d\n");
    assert!(!alive(m.init_pid));
    assert!(!fake.machine_dir("d").exists());
}

#[test]
fn start_twice_reports_the_running_machine() {
    let fake = Fake::new();
    let m = fake.machine("twice");
    let out = fake.run(["machine", "start", "--name", "twice"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("Machine 'twice' is already running (PID: {})\n", m.init_pid)
    );
}

#[test]
fn guest_exit_codes_pass_through() {
    let fake = Fake::new();
    let m = fake.machine("codes");
    let out = run_output(m.exec(["--", "sh", "-c", "kill -TERM $$"]));
    assert_eq!(out.status.code(), Some(143));
    let out = run_output(m.exec(["--", "definitely-not-a-command-xyz"]));
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains("executable file not found"),
        "{}",
        text(&out.stderr)
    );
    let out = run_output(m.exec(["-w", "/no/such/dir", "--", "true"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("Error: exec failed: workdir /no/such/dir"));
    let log = m.log();
    assert_eq!(
        log.iter().map(|r| r.exit_code).collect::<Vec<_>>(),
        [143, 127, 1]
    );
    assert_eq!(log[0].signal, Some(15));
}

#[test]
fn timeout_kills_the_guest_command_with_124() {
    let fake = Fake::new();
    let m = fake.machine("slow");
    let mark = marker("timeout");
    let out = run_output(m.exec(["--timeout", "300ms", "--", "sh", "-c", "sleep 1000", &mark]));
    assert_eq!(out.status.code(), Some(124));
    let log = m.log();
    assert_eq!(log[0].fault, Some(fake_smolvm::exec_log::Fault::Timeout));
    assert_eq!(log[0].exit_code, 124);
    assert!(
        pids_with(&mark).is_empty(),
        "timed-out guest command survived"
    );
}

#[test]
fn interactive_pipes_relay_stdin_and_eof() {
    let fake = Fake::new();
    let m = fake.machine("pipes");
    let mut c = m.exec(["-i", "--", "sh", "-c", "tr a-z A-Z; echo done >&2"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello guest\n").unwrap();
    } // dropped: EOF
    let status = wait_child(&mut child, 30);
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(out, "HELLO GUEST\n");
    assert_eq!(err, "done\n");
    let rec = &m.log()[0];
    assert!(rec.interactive && !rec.tty);
    assert_eq!(rec.stdin, "pipe");
}

#[test]
fn stop_leaves_no_guest_process() {
    let fake = Fake::new();
    let m = fake.machine("clean");
    let mark = marker("stop");
    let mut c = m.exec(["-i", "--", "sh", "-c", "sleep 100000; echo never", &mark]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut client = c.spawn().unwrap();
    wait_until(
        30,
        || pids_with(&mark).len() >= 2,
        || format!("{:?}", pids_with(&mark)),
    );
    let out = fake.run(["machine", "stop", "--name", "clean"]);
    assert!(out.status.success());
    assert!(!alive(m.init_pid), "init {} still alive", m.init_pid);
    assert!(
        pids_with(&mark).is_empty(),
        "left running: {:?}",
        pids_with(&mark)
    );
    // The client loses its agent and reports it; it does not hang.
    let status = wait_child(&mut client, 10);
    assert_eq!(status.code(), Some(1));
    assert!(pids_with("__agent").iter().all(|p| {
        std::fs::read_to_string(format!("/proc/{p}/cmdline"))
            .map(|c| !c.contains(&m.dir().display().to_string()))
            .unwrap_or(true)
    }));
}
