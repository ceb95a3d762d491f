//! `pty-resize doctor`: one snapshot per verdict. The machine is a stand-in
//! agent on a Unix socket in smolvm 0.8.0's folder layout (it answers
//! `ping` and `vm_exec` with 0.8.0's frames), smolvm is a script printing
//! its version; the doctor runs on a PTY the test creates (or with no
//! terminal at all). Temp paths are redacted to `[TMP]`.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::output::Output;
use testkit::pty::Wiring;

const DEADLINE: Duration = Duration::from_secs(20);

/// How the stand-in agent answers `vm_exec`.
#[derive(Clone, Copy)]
enum VmExec {
    /// `completed`, exit 0.
    Works,
    /// `error`, as an agent that cannot spawn the command.
    Fails,
}

/// A temp home: smolvm on PATH, XDG folders, optionally a running machine.
struct Home {
    dir: tempfile::TempDir,
    _agent: Option<std::thread::JoinHandle<()>>,
}

impl Home {
    fn new(smolvm_version: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let smolvm = bin.join("smolvm");
        std::fs::write(
            &smolvm,
            format!("#!/bin/sh\necho 'smolvm {smolvm_version}'\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&smolvm, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir, _agent: None }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The machine's folder as smolvm 0.8.0 keeps it, with its `name` file.
    fn machine_dir(&self, name: &str) -> PathBuf {
        let d = pty_resize::agent::machine_dir(&self.path().join("cache"), name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("name"), name).unwrap();
        d
    }

    /// A running machine: an agent answering on its `agent.sock`.
    fn running(mut self, name: &str, vm_exec: VmExec) -> Self {
        let listener = UnixListener::bind(self.machine_dir(name).join("agent.sock")).unwrap();
        self._agent = Some(std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { return };
                let mut len = [0u8; 4];
                if s.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                if s.read_exact(&mut body).is_err() {
                    continue;
                }
                let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let answer = match (req["method"].as_str(), vm_exec) {
                    (Some("ping"), _) => r#"{"status":"pong","version":1}"#,
                    (Some("vm_exec"), VmExec::Works) => {
                        r#"{"status":"completed","exit_code":0,"stdout":"","stderr":""}"#
                    }
                    (Some("vm_exec"), VmExec::Fails) => {
                        r#"{"status":"error","message":"failed to spawn command","code":"SPAWN_FAILED"}"#
                    }
                    _ => r#"{"status":"error","message":"?"}"#,
                };
                let mut frame = (answer.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(answer.as_bytes());
                let _ = s.write_all(&frame);
            }
        }));
        self
    }

    /// A machine that stopped without cleaning up: the socket file stays,
    /// nobody listens.
    fn stale(self, name: &str) -> Self {
        drop(UnixListener::bind(self.machine_dir(name).join("agent.sock")).unwrap());
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pty-resize"));
        let p = |s: &str| self.path().join(s);
        cmd.arg("doctor")
            .args(args)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", p("bin").display()))
            .env("HOME", p("home"))
            .env("XDG_CACHE_HOME", p("cache"))
            .env("XDG_RUNTIME_DIR", p("run"))
            .env("XDG_STATE_HOME", p("state"));
        cmd
    }

    fn redact(&self, text: &str) -> String {
        text.replace('\r', "")
            .replace(&self.path().display().to_string(), "[TMP]")
    }

    /// Runs the doctor on a 100x30 PTY; its exit code and what it printed.
    fn on_a_terminal(&self, args: &[&str]) -> (i32, String) {
        let pty = testkit::pty::Pty::open(100, 30).unwrap();
        let mut cmd = self.command(args);
        testkit::pty::wire(&mut cmd, &pty.slave, Wiring::All).unwrap();
        testkit::pty::new_session(&mut cmd, true);
        let mut child = cmd.spawn().unwrap();
        drop(pty.slave);
        let out = Output::start(std::fs::File::from(pty.master), ());
        let Some(st) = testkit::wait::child_exit(&mut child, DEADLINE) else {
            let _ = child.kill();
            panic!("doctor hung; it showed {:?}", out.text());
        };
        assert!(
            out.wait_until(DEADLINE, |s| s.eof
                || String::from_utf8_lossy(&s.raw).contains("verdict:")),
            "no verdict: {:?}",
            out.text()
        );
        let raw = String::from_utf8_lossy(&out.lock().raw).into_owned();
        (st.code().expect("an exit code"), self.redact(&raw))
    }

    /// Runs the doctor with stdin from /dev/null and stdout a pipe.
    fn without_a_terminal(&self, args: &[&str]) -> (i32, String) {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if testkit::wait::child_exit(&mut child, DEADLINE).is_none() {
            let _ = child.kill();
            panic!("doctor hung");
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.stderr.is_empty(), "{out:?}");
        (
            out.status.code().unwrap(),
            self.redact(&String::from_utf8_lossy(&out.stdout)),
        )
    }
}

#[test]
fn doctor_bridged_with_the_agent_transport() {
    let home = Home::new("0.8.0").running("bottle", VmExec::Works);
    let (code, text) = home.on_a_terminal(&["bottle"]);
    insta::assert_snapshot!("bridged_agent", text);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn doctor_machine_not_running() {
    let home = Home::new("0.8.0");
    let (code, text) = home.on_a_terminal(&["bottle"]);
    insta::assert_snapshot!("not_running", text);
    assert_eq!(code, 1, "{text}");
    // A socket left behind by a machine that is gone: ping fails.
    let home = Home::new("0.8.0").stale("bottle");
    let (code, text) = home.on_a_terminal(&["bottle"]);
    insta::assert_snapshot!("stale_socket", text);
    assert_eq!(code, 1, "{text}");
}

#[test]
fn doctor_not_a_terminal() {
    let home = Home::new("0.8.0").running("default", VmExec::Works);
    // No MACHINE: smolvm's default.
    let (code, text) = home.without_a_terminal(&[]);
    insta::assert_snapshot!("not_a_terminal", text);
    assert_eq!(code, 1, "{text}");
}

#[test]
fn doctor_smolvm_0_8_1_forwards_sizes_itself() {
    let home = Home::new("0.8.1").running("bottle", VmExec::Works);
    let (code, text) = home.on_a_terminal(&["bottle"]);
    insta::assert_snapshot!("native_0_8_1", text);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn doctor_a_failing_vm_exec_means_the_cli_channel() {
    let home = Home::new("0.8.0").running("bottle", VmExec::Fails);
    let (code, text) = home.on_a_terminal(&["bottle"]);
    insta::assert_snapshot!("agent_fallback_channel", text);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn doctor_honours_smolvm_and_says_when_it_is_missing() {
    let home = Home::new("0.8.0").running("bottle", VmExec::Works);
    let (code, text) = home.on_a_terminal(&["--smolvm", "/nonexistent/smolvm", "bottle"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("smolvm     FAIL    cannot run '/nonexistent/smolvm': not found"),
        "{text}"
    );
    assert!(
        text.contains("verdict: not bridged: smolvm cannot be run"),
        "{text}"
    );
}
