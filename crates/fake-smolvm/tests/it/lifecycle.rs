//! `machine create/start/stop/status/ls/delete`: smolvm 0.8.0's messages and
//! exit codes, where the state lives, and that `stop` leaves nothing running.

use std::process::Stdio;

use crate::common::*;

pub fn not_running(name: &str) -> String {
    format!(
        "Error: agent operation failed: connect: machine '{name}' is not running. Use 'smolvm machine start --name {name}' first.\n"
    )
}

#[test]
fn version_prints_the_modelled_smolvm() {
    let home = Home::new();
    let out = home.run(["--version"]);
    assert_eq!(text(&out.stdout), "smolvm 0.8.0\n");
    let mut c = home.cmd(["--version"]);
    c.env("FAKE_SMOLVM_COMPAT", "0.8.1");
    assert_eq!(text(&run_output(c).stdout), "smolvm 0.8.1\n");
}

#[test]
fn help_documents_every_switch() {
    let home = Home::new();
    for args in [vec!["--help"], vec!["machine", "exec", "--help"]] {
        let out = home.run(&args);
        assert!(out.status.success());
        let help = text(&out.stdout);
        for var in SWITCHES {
            assert!(help.contains(var), "{args:?} help lacks {var}:\n{help}");
        }
        assert!(!help.contains("FAKE_SMOLVM_HOME"), "{help}");
    }
}

#[test]
fn machine_lifecycle_happy_path() {
    let home = Home::new();
    let out = home.run(["machine", "ls"]);
    assert_eq!(text(&out.stdout), "No machines found\n");

    let out = home.run(["machine", "create", "m1", "--image", "alpine"]);
    assert_eq!(text(&out.stdout), "Created machine: m1\n");
    assert!(out.status.success());
    // Where smolvm keeps it: the folder keyed by sha256(name), the registry row.
    let dir = home.machine_dir("m1");
    assert_eq!(std::fs::read_to_string(dir.join("name")).unwrap(), "m1");
    assert!(dir.join("agent.config.json").is_file());
    let db = rusqlite::Connection::open(home.registry()).unwrap();
    let (kind, data): (String, Vec<u8>) = db
        .query_row(
            "SELECT typeof(data), data FROM vms WHERE name = 'm1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(kind, "blob");
    let rec: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(rec["image"], "alpine");
    drop(db);
    let out = home.run(["machine", "status", "--name", "m1"]);
    assert_eq!(text(&out.stdout), "Machine 'm1': created\n");

    let out = home.run(["vm", "start", "-n", "m1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "Starting machine 'm1'...\n");
    let m = home.adopt("m1");
    assert_eq!(
        text(&out.stdout),
        format!("Machine 'm1' running (PID: {})\n", m.front_pid)
    );
    assert!(alive(m.front_pid) && alive(m.guest_pid));
    let pidfile = std::fs::read_to_string(dir.join("agent.pid")).unwrap();
    assert_eq!(
        pidfile.lines().count(),
        2,
        "pid and start ticks: {pidfile:?}"
    );

    let out = home.run(["machine", "status", "-n", "m1"]);
    assert_eq!(
        text(&out.stdout),
        format!("Machine 'm1': running (PID: {})\n", m.front_pid)
    );
    let out = home.run(["machine", "ls", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["name"], "m1");
    assert_eq!(rows[0]["state"], "running");
    assert_eq!(rows[0]["pid"], m.front_pid);

    let mut c = m.exec(["-e", "A=1", "-e", "NOEQ", "-e", "B=x=y", "-w", "/tmp"]);
    c.args([
        "--",
        "sh",
        "-c",
        "echo \"$A|${NOEQ-unset}|$B|$(pwd)|$HOSTNAME\"",
    ])
    .envs(QUICK);
    let out = run_output(c);
    assert_eq!(
        text(&out.stdout),
        "1|unset|x=y|/tmp|m1\n",
        "{}",
        text(&out.stderr)
    );
    assert!(out.status.success());

    let out = home.run(["machine", "stop", "--name", "m1"]);
    assert_eq!(text(&out.stdout), "Stopped machine: m1\n");
    assert_eq!(text(&out.stderr), "Stopping machine 'm1'...\n");
    assert!(!alive(m.front_pid), "front {} survived stop", m.front_pid);
    assert!(!alive(m.guest_pid), "guest {} survived stop", m.guest_pid);
    assert!(!dir.join("agent.sock").exists());

    let out = home.run(["machine", "stop", "--name", "m1"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "Machine 'm1' is not running (state: stopped)\n"
    );

    let out = run_output(m.exec(["--", "true"]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), not_running("m1"));

    let out = home.run(["machine", "delete", "m1"]);
    assert_eq!(text(&out.stdout), "Deleted machine: m1\n");
    assert!(!dir.exists());
    assert_eq!(
        text(&home.run(["machine", "ls"]).stdout),
        "No machines found\n"
    );
}

#[test]
fn create_without_a_name_generates_one_and_twice_is_an_error() {
    let home = Home::new();
    let out = home.run(["machine", "create"]);
    let line = text(&out.stdout);
    let name = line.trim().strip_prefix("Created machine: ").unwrap();
    assert!(name.starts_with("vm-") && name.len() == 11, "{line}");
    assert_eq!(
        std::fs::read_to_string(home.machine_dir(name).join("name")).unwrap(),
        name
    );
    let out = home.run(["machine", "create", name]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("Error: machine '{name}' already exists\n")
    );
    let out = home.run(["machine", "create", "../x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: config operation failed: validate machine name: machine name must start with a letter or digit (got: \"../x\")\n"
    );
}

#[test]
fn unknown_machine_is_vm_not_found() {
    let home = Home::new();
    for args in [
        vec!["machine", "exec", "--name", "nope", "--", "true"],
        vec!["machine", "exec", "--name", "nope", "-it", "--", "true"],
        vec!["machine", "start", "--name", "nope"],
        vec!["machine", "stop", "--name", "nope"],
        vec!["machine", "status", "--name", "nope"],
        vec!["machine", "delete", "nope"],
    ] {
        let out = home.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(text(&out.stderr), "Error: vm not found: nope\n", "{args:?}");
        assert_eq!(text(&out.stdout), "", "{args:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let home = Home::new();
    home.run(["machine", "create", "u"]);
    fn exec<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["machine", "exec", "--name", "u"];
        v.extend(extra);
        v
    }
    for args in [
        exec(&[]),
        exec(&["--timeout", "0s", "--", "true"]),
        exec(&["--timeout", "soon", "--", "true"]),
        vec!["machine", "frobnicate"],
        vec!["machine", "delete"],
    ] {
        let out = home.run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("error:"), "{args:?}");
    }
    let out = home.run(exec(&["--timeout", "0s", "--", "true"]));
    assert!(text(&out.stderr).contains("greater than zero"));
}

#[test]
fn a_bad_switch_fails_start_but_only_warns_an_exec() {
    let home = Home::new();
    home.run(["machine", "create", "b"]);
    let mut c = home.cmd(["machine", "start", "--name", "b"]);
    c.env("FAKE_SMOLVM_RACE", "sometimes");
    let out = run_output(c);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("Error: failed to start machine 'b': invalid FAKE_SMOLVM_RACE=\"sometimes\""),
        "{err}"
    );
    assert!(!home.machine_dir("b").join("agent.sock").exists());

    // An exec's switches are read by the agent from the client's
    // environment: any client, so a bad one cannot stop the exec.
    let m = home.machine("b2", true);
    let mut c = m.exec(["--", "echo", "ran"]);
    c.env("FAKE_SMOLVM_RACE", "sometimes").envs(QUICK);
    let out = run_output(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ran\n");
    assert!(
        m.agent_log()
            .contains("invalid FAKE_SMOLVM_RACE=\"sometimes\""),
        "{}",
        m.context()
    );
}

#[test]
fn unwritable_state_folder_is_one_line_naming_the_path() {
    let home = Home::new();
    let file = home.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let mut c = home.cmd(["machine", "create", "x"]);
    c.env("XDG_DATA_HOME", file.join("data"));
    let out = run_output(c);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("Error: cannot create state directory ")
            && err.contains(&file.display().to_string())
            && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn delete_of_a_running_machine_needs_force() {
    let home = Home::new();
    let m = home.machine("d", false);
    let out = home.run(["machine", "delete", "d"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: machine 'd' is running; stop it first or use --force\n"
    );
    assert!(alive(m.front_pid));
    let out = home.run(["machine", "delete", "d", "-f"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Deleted machine: d\n");
    assert!(!alive(m.front_pid) && !alive(m.guest_pid));
    assert!(!home.machine_dir("d").exists());
}

#[test]
fn start_twice_reports_the_running_machine() {
    let home = Home::new();
    let m = home.machine("twice", false);
    let out = home.run(["machine", "start", "--name", "twice"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!(
            "Machine 'twice' is already running (PID: {})\n",
            m.front_pid
        )
    );
}

#[test]
fn guest_exit_codes_pass_through() {
    let home = Home::new();
    let m = home.machine("codes", true);
    let run = |args: &[&str]| {
        let mut c = m.exec(args);
        c.envs(QUICK);
        run_output(c)
    };
    let out = run(&["--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143));
    let out = run(&["--", "definitely-not-a-command-xyz"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains("executable file not found"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["-w", "/no/such/dir", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: agent operation failed: run command: exec failed: workdir /no/such/dir: no such directory\n"
    );
    let log = m.log();
    assert_eq!(
        log.iter().map(|r| r.exit_code).collect::<Vec<_>>(),
        [143, 127, 1],
        "{}",
        m.context()
    );
    assert_eq!(log[0].signal, Some(15));
}

#[test]
fn timeout_kills_the_guest_command_with_124() {
    let home = Home::new();
    let m = home.machine("slow", false);
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
fn stop_leaves_no_guest_process() {
    let home = Home::new();
    let m = home.machine("clean", true);
    let mark = marker("stop");
    let mut c = m.exec(["-i", "--", "sh", "-c", "sleep 100000; echo never", &mark]);
    c.envs(QUICK)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut client = c.spawn().unwrap();
    let client_pid = client.id() as i32;
    let guest = || {
        pids_with(&mark)
            .into_iter()
            .filter(|p| *p != client_pid)
            .collect::<Vec<_>>()
    };
    wait_until(30, || !guest().is_empty(), || m.context());
    m.stop_and_check();
    assert!(guest().is_empty(), "left running: {:?}", guest());
    // The client loses its agent and reports it; it does not hang.
    let status = wait_child_or(&mut client, 10, || m.context());
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(err, "Error: io operation failed: connection closed\n");
}
