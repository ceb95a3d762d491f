//! `scripts/real-machine up/down` with the real 0.8.0 client and agent:
//! create + start, `exec`, `exec -t` in a 100x30 PTY (the guest's PTY is
//! 0x0: busybox `stty size` fails), a `vm_exec` written directly on
//! `agent.sock`, a `crun` delay, then `down` leaving no process, mount or
//! loop device. Skipped (`skipped: <reason>`) where `real-machine check`
//! says this machine cannot run it.

use base64::Engine as _;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn script() -> PathBuf {
    testkit::bins::workspace_root().join("scripts/real-machine")
}

fn client() -> PathBuf {
    let shared = std::env::var_os("REAL_MACHINE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| testkit::bins::workspace_root().join("../shared/smolvm-0.8.0"));
    shared.join("smolvm")
}

/// `Some(reason)` when this machine cannot run a real machine.
fn cannot() -> Option<String> {
    let out = Command::new(script())
        .arg("check")
        .output()
        .expect("run real-machine check");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match out.status.code() {
        Some(0) => {
            assert_eq!(text, "ok");
            None
        }
        Some(3) => Some(text.trim_start_matches("cannot: ").to_string()),
        other => panic!("check: unexpected exit {other:?}: {text}"),
    }
}

/// The machine of one test: `down` on drop, whatever happened.
struct Machine {
    name: String,
    state: PathBuf,
    env: Vec<(String, String)>,
}

impl Machine {
    fn up(name: &str, extra: &[&str]) -> Machine {
        let parent = tempfile::tempdir().expect("tempdir").keep();
        let state = parent.join("state");
        let t0 = Instant::now();
        let out = Command::new(script())
            .args(["up", name, "--state"])
            .arg(&state)
            .args(extra)
            .output()
            .expect("run real-machine up");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "up failed: {}\nstdout: {stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("up {name}: {} ms", t0.elapsed().as_millis());
        let mut env = Vec::new();
        for line in stdout.lines() {
            let kv = line
                .strip_prefix("export ")
                .unwrap_or_else(|| panic!("not an export line: {line:?}"));
            let (k, v) = kv.split_once('=').expect("K=V");
            env.push((k.to_string(), v.to_string()));
        }
        for k in [
            "XDG_CACHE_HOME",
            "XDG_DATA_HOME",
            "SMOLVM_LIB_DIR",
            "REAL_MACHINE_STATE",
        ] {
            assert!(
                env.iter().any(|(n, _)| n == k),
                "no export of {k}: {stdout}"
            );
        }
        Machine {
            name: name.to_string(),
            state,
            env,
        }
    }

    fn client(&self) -> Command {
        let mut c = Command::new(client());
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    fn exec(&self, args: &[&str]) -> Output {
        self.client()
            .args(["machine", "exec", "--name", &self.name])
            .args(args)
            .output()
            .expect("run smolvm")
    }

    fn socket(&self) -> PathBuf {
        let cache = &self
            .env
            .iter()
            .find(|(k, _)| k == "XDG_CACHE_HOME")
            .unwrap()
            .1;
        let vms = Path::new(cache).join("smolvm/vms");
        let dir = std::fs::read_dir(&vms)
            .expect("vms dir")
            .flatten()
            .next()
            .expect("one machine dir");
        dir.path().join("agent.sock")
    }

    fn down(&mut self) -> Output {
        let out = Command::new(script())
            .args(["down", &self.name, "--state"])
            .arg(&self.state)
            .output()
            .expect("run real-machine down");
        self.name.clear();
        out
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            let _ = self.down();
        }
    }
}

/// One `vm_exec` on the agent socket: 4-byte BE length + JSON each way.
fn vm_exec(sock: &Path, shell: &str) -> serde_json::Value {
    let mut s = UnixStream::connect(sock).expect("connect agent.sock");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = serde_json::json!({"method": "vm_exec", "command": ["sh", "-c", shell], "timeout_ms": 3000});
    let body = serde_json::to_vec(&req).unwrap();
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("answer length");
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).expect("answer body");
    serde_json::from_slice(&buf).expect("answer JSON")
}

fn b64(v: &serde_json::Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or(""))
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What `down` must leave: nothing of `state` in processes, mounts, loops.
fn leftovers(state: &Path) -> Vec<String> {
    let needle = state.to_string_lossy().to_string();
    let mut left = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        if let Ok(c) = std::fs::read(p.join("cmdline")) {
            if String::from_utf8_lossy(&c).contains(&needle) {
                left.push(format!("process {}", p.display()));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    left.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&needle))
            .map(|l| format!("mount {l}")),
    );
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if b.contains(&needle) {
                left.push(format!("loop {}: {b}", e.file_name().to_string_lossy()));
            }
        }
    }
    left
}

#[test]
fn up_exec_tty_vm_exec_down_leave_nothing() {
    if let Some(reason) = cannot() {
        println!("skipped: {reason}");
        return;
    }
    let mut m = Machine::up("rm-itest", &[]);
    let state = m.state.clone();

    let out = m.exec(&["--", "echo", "hi"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());

    // -t in a 100x30 PTY: the container's PTY is 0x0, which busybox's
    // `stty size` reports as an error; /proc/self/status proves it ran.
    let mut cmd = m.client();
    cmd.args([
        "machine",
        "exec",
        "--name",
        "rm-itest",
        "-t",
        "--",
        "sh",
        "-c",
        "stty size; grep ^Name /proc/self/status",
    ]);
    let term = testkit::term::Term::spawn(100, 30, cmd).expect("spawn on a PTY");
    let status = term
        .wait_exit(Duration::from_secs(30))
        .expect("exec -t ended");
    let text = String::from_utf8_lossy(&term.lock().raw).to_string();
    assert!(status.success(), "exec -t: {status:?}\n{text}");
    assert!(
        text.contains("stty: standard input"),
        "the guest PTY is not 0x0:\n{text}"
    );
    assert!(
        text.contains("Name:\tgrep"),
        "no /proc/self/status:\n{text}"
    );

    let answer = vm_exec(&m.socket(), "echo hi; cat /proc/1/comm");
    assert_eq!(answer["status"], "completed", "{answer}");
    assert_eq!(answer["exit_code"], 0, "{answer}");
    // pid 1 is the agent, exec'd as /sbin/init.
    assert_eq!(b64(&answer["stdout"]), "hi\ninit\n", "{answer}");

    let t0 = Instant::now();
    let out = m.down();
    eprintln!("down: {} ms", t0.elapsed().as_millis());
    assert!(
        out.status.success(),
        "down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = leftovers(&state);
    assert!(left.is_empty(), "down left: {left:#?}");
    assert!(!state.exists(), "state folder kept");
}

#[test]
fn a_crun_delay_lets_a_side_exec_take_the_sessions_spec() {
    if let Some(reason) = cannot() {
        println!("skipped: {reason}");
        return;
    }
    let m = Machine::up("rm-delay", &["--crun-delay-ms", "600"]);
    // The session's crun waits 600 ms before loading config.json; a side
    // exec in that time rewrites the file: the session runs the side's spec.
    let mut cmd = m.client();
    cmd.args([
        "machine",
        "exec",
        "--name",
        "rm-delay",
        "-t",
        "--",
        "sh",
        "-c",
        "echo session-ran",
    ]);
    let term = testkit::term::Term::spawn(100, 30, cmd).expect("spawn on a PTY");
    // The client got `started` (it switches the terminal to raw mode): the
    // session's crun now waits its 600 ms before loading config.json.
    let raw = testkit::wait::poll_until(Duration::from_secs(30), || {
        use std::os::fd::AsRawFd;
        // SAFETY: a zeroed termios filled by tcgetattr on our PTY's master
        // (which reports the terminal's mode).
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::tcgetattr(term.master().as_raw_fd(), &mut t) } == 0;
        (ok && t.c_lflag & libc::ICANON == 0).then_some(())
    });
    assert!(raw.is_some(), "the session never went raw");
    let side = m.exec(&["--", "echo", "side-ran"]);
    let status = term
        .wait_exit(Duration::from_secs(30))
        .expect("session ended");
    let text = String::from_utf8_lossy(&term.lock().raw).to_string();
    assert!(
        side.status.success(),
        "side: {}",
        String::from_utf8_lossy(&side.stderr)
    );
    assert!(
        !text.contains("session-ran"),
        "the session's own command ran ({status:?}):\n{text}"
    );
    assert!(
        text.contains("side-ran"),
        "the session did not run the side's spec ({status:?}):\n{text}"
    );
}

#[test]
fn the_safety_gate_refuses_an_agent_without_proc_and_up_leaves_nothing() {
    if let Some(reason) = cannot() {
        println!("skipped: {reason}");
        return;
    }
    let parent = tempfile::tempdir().expect("tempdir");
    let state = parent.path().join("state");
    // The guest's pid 1 leaves /proc out: the agent would mount the host's
    // devtmpfs; the gate must refuse and `up` fail cleanly.
    let out = Command::new(script())
        .args(["up", "rm-refuse", "--state"])
        .arg(&state)
        .env("KRUN_STANDIN_TEST_OMIT", "proc")
        .output()
        .expect("run real-machine up");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("REFUSED"), "no refusal reported: {stderr}");
    assert!(!state.exists(), "state folder kept");
    let left = leftovers(&state);
    assert!(left.is_empty(), "a failed up left: {left:#?}");
}

#[test]
fn a_killed_boot_process_leaves_no_loop_device_mount_or_process() {
    if let Some(reason) = cannot() {
        println!("skipped: {reason}");
        return;
    }
    let m = Machine::up("rm-kill", &[]);
    let vm_dir = m.socket().parent().unwrap().to_path_buf();
    let pid_text = std::fs::read_to_string(vm_dir.join("agent.pid")).expect("agent.pid");
    let pid: i32 = pid_text
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("pid");
    // What `machine stop` does last, and what a killed test does: SIGKILL to
    // the `_boot-vm` pid. The guest dies with it (PDEATHSIG); the janitor
    // detaches the loops and removes the private root.
    // SAFETY: plain kill of the machine's boot process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let private_root = vm_dir.join("krun-standin/root");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut left = leftovers(&m.state);
    while (!left.is_empty() || private_root.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = leftovers(&m.state);
    }
    assert!(
        left.is_empty(),
        "after SIGKILL of the boot process: {left:#?}"
    );
    assert!(!private_root.exists(), "private root kept");
}
