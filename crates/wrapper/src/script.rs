//! The `sh -c` scripts that run in the guest (pure).
//!
//! Only numbers and the session's marker (16 hex digits, checked) ever vary
//! in these scripts: the size (cols, rows) and the marker. The machine name
//! and anything from the environment are passed to smolvm as separate argv
//! elements and never reach a shell. Nothing is ever written into the guest:
//! every push finds the session by its marker (`-e PTY_RESIZE_SESSION=<id>`
//! on the main exec), at VM level or from a container exec alike, so no
//! record is left behind in a persistent overlay, and no script ever loops
//! over `/dev/pts/*` (other sessions' terminals).

use crate::size::Size;

/// How the prologues end: `exec` the command, after checking it exists, so
/// a missing program reads `pty-resize: PROG: not found in the guest` (exit
/// 127, as a shell would) instead of the prologue shell's own `sh: 1: exec:
/// PROG: not found`, which names a `sh` the user never typed.
pub const EXEC_CHECKED: &str = "command -v -- \"$1\" >/dev/null 2>&1 || \
{ printf 'pty-resize: %s: not found in the guest\\n' \"$1\" >&2; exit 127; }; exec \"$@\"";

/// The environment variable the main exec gets (`-e NAME=<id>`) on the
/// agent transport: the mark by which a VM-level script finds the session.
pub const MARKER_VAR: &str = "PTY_RESIZE_SESSION";

/// [`find_and_size`]'s exit code for "the session's program is not there
/// yet" (its container does not run yet, or the prologue has not `exec`'d
/// the command yet). Any other non-zero code is a failure.
pub const NOT_YET: i32 = 10;

/// [`find_and_size`]'s exit code when `stty` failed on the session's PTY.
pub const STTY_FAILED: i32 = 11;

/// How many times one [`find_and_size`] scans `/proc` before it answers
/// [`NOT_YET`], and the pause between scans (seconds, for `sleep`): a probe
/// sees the program within one scan and pause of its container running,
/// without a round trip per look; and it ends within ~0.1 s, so a resize
/// made while it is out (its size is fixed when sent) waits little for the
/// next probe, which carries it.
const SCANS: u32 = 8;
const PAUSE: &str = "0.01";

/// The first word of the agent transport's prologue: how [`find_and_size`]
/// tells "the prologue is still running" (its `stty` could still land after
/// a push) from "the command runs".
const PROLOGUE_MARK: &str = ": pty-resize-prologue";

/// The prologue the guest command is started through (`sh -c <prologue> sh
/// CMD…`): it sizes the PTY for the first frame and `exec`s the command
/// unchanged (signals, exit codes and the process tree stay the command's
/// own), and writes nothing into the guest (a persistent overlay would keep
/// a file forever). Its first word lets [`find_and_size`] see it is still
/// running.
pub fn prologue(size: Size) -> String {
    format!(
        "{PROLOGUE_MARK}; stty cols {c} rows {r} 2>/dev/null; {EXEC_CHECKED}",
        c = size.cols,
        r = size.rows,
    )
}

/// The script that finds the session by its marker and sizes its PTY, run
/// as `sh -c <this> sh ID [COLS ROWS]` (busybox `sh`; at VM level through
/// `vm_exec`, or inside the container through a CLI exec).
///
/// The session's program is the process that carries `MARKER_VAR=ID` in
/// `/proc/<pid>/environ`, is a session leader (`stat` field 6 = pid) with a
/// terminal (field 7 ≠ 0) and whose parent does not carry the marker (its
/// children inherit it; one of them may lead a session of its own). `stat`
/// is split after its last `)`: the command name may hold spaces and
/// parentheses (the slow longest match `##*)` only then). One scan is one
/// `grep -lF` over every `/proc/*/environ` (C, not a shell loop: it stays
/// cheap with hundreds of processes): the marker is exactly 16 hex digits,
/// so `MARKER_VAR=ID` as a substring is this session's variable. Only the
/// few files it names (the program and its children) are looked at
/// further, with builtins: a parent is "marked" if its file is among them,
/// and `read` of `cmdline` (NULs dropped, by dash and busybox alike) shows
/// the prologue. No `grep -z`: the guest's busybox 1.36.1 has none
/// (checked with the binary from `agent-rootfs.tar`); its `grep -F` does
/// match across the NULs of an environment.
///
/// It looks up to [`SCANS`] times, [`PAUSE`] s apart, before it gives up.
/// Exit 0: found (and, with a size, `stty -F /proc/<pid>/fd/N` applied it,
/// N the first of 0, 1, 2 that is a terminal — busybox `less` puts the file
/// it shows on fd 0 — then one late SIGWINCH to its group 0.1 s later, in
/// the background and in a session of its own — an agent may kill what the
/// command leaves in its group when it ends, as the fake does. Why: `stty
/// cols C rows R` is two `TIOCSWINSZ` calls; a program that redraws on the
/// first may take the second mid-redraw and only act on it at its next
/// input (less does), staying half-sized. The group of pid 1 (the session
/// leader as seen from inside its container, on a CLI push) gets the signal
/// on pid 1 alone: `kill -- -1` would signal every process.)
/// [`NOT_YET`]: no such process, or it is still the prologue.
/// [`STTY_FAILED`]: `stty` failed.
///
/// The marker is an argument, never in the script's own environment (or the
/// scan would find itself); ID, COLS and ROWS are checked to be hex and
/// digits before any use.
pub fn find_and_size() -> String {
    format!(
        "i=$1 c=$2 r=$3; \
case \"$i\" in *[!0-9a-f]*) exit 2;; ????????????????) ;; *) exit 2;; esac; \
case \"$c:$r\" in :) ;; *[!0-9:]*|:*|*:) exit 2;; esac; \
m={MARKER_VAR}=$i; k=0; \
while :; do \
h=\" $(grep -lF \"$m\" /proc/[0-9]*/environ 2>/dev/null | tr '\\n' ' ')\"; \
for e in $h; do \
d=${{e%/environ}}; p=${{d#/proc/}}; \
read -r x n t pp pg se tt x 2>/dev/null <\"$d/stat\" || continue; \
case \"$n$t\" in *')'[A-Za-z]) ;; *) read -r s <\"$d/stat\" || continue; \
set -- ${{s##*\\)}}; pp=$2 se=$4 tt=$5;; esac; \
[ \"$se\" = \"$p\" ] && [ \"$tt\" != 0 ] || continue; \
case \"$h\" in *\" /proc/$pp/environ \"*) continue;; esac; \
read -r a 2>/dev/null <\"$d/cmdline\"; case \"$a\" in *'{PROLOGUE_MARK}'*) break;; esac; \
[ -z \"$c\" ] && exit 0; \
f=; for n in 0 1 2; do stty -F \"$d/fd/$n\" cols \"$c\" rows \"$r\" 2>/dev/null && f=$n && break; done; \
[ -n \"$f\" ] || {{ echo \"pty-resize: no terminal on fd 0, 1 or 2 of $p\" >&2; exit {STTY_FAILED}; }}; \
setsid sh -c 'sleep 0.1; case $1 in 1) kill -s WINCH 1;; *) kill -s WINCH -- \"-$1\" || kill -s WINCH \"$1\";; esac' sh \"$p\" </dev/null >/dev/null 2>&1 & \
exit 0; \
done; \
k=$((k+1)); [ \"$k\" -lt {SCANS} ] || exit {NOT_YET}; sleep {PAUSE}; \
done"
    )
}

/// The argv of one VM-level push (`size`) or readiness probe (`None`).
/// `marker` must be hex (the wrapper makes it so); the size is digits.
pub fn agent_command(marker: &str, size: Option<Size>) -> Vec<String> {
    let mut argv = vec![
        "sh".to_string(),
        "-c".to_string(),
        find_and_size(),
        "sh".to_string(),
        marker.to_string(),
    ];
    if let Some(s) = size {
        argv.push(s.cols.to_string());
        argv.push(s.rows.to_string());
    }
    argv
}

/// [`find_and_size`] with its arguments set inside the text, for a CLI push
/// after a fall-back from the agent transport (the prologue recorded
/// nothing, so the session is found by its marker there too). Only hex and
/// digits are spliced in; anything else is refused (`None`).
pub fn push_by_marker(size: Size, marker: &str) -> Option<String> {
    valid_marker(marker).then(|| {
        format!(
            "set -- {marker} {} {}; {}",
            size.cols,
            size.rows,
            find_and_size()
        )
    })
}

/// The persistent channel's loop when the session is found by its marker
/// (see [`channel`] for the protocol; each request runs [`find_and_size`]
/// in a subshell, so its `exit` ends only that request).
pub fn channel_by_marker(marker: &str) -> Option<String> {
    valid_marker(marker).then(|| {
        format!(
            "while read -r i c r; do \
case \"$i:$c:$r\" in :*|*::*|*:|*[!0-9:]*) echo bad; continue;; esac; \
if (set -- {marker} \"$c\" \"$r\"; {body}); then echo \"ok $i $c $r\"; else echo \"fail $i $c $r\"; fi; \
done",
            body = find_and_size()
        )
    })
}

/// A marker as the wrapper makes them: 16 lowercase hex digits (the script
/// relies on the length: a marker is never a prefix of another).
pub fn valid_marker(marker: &str) -> bool {
    marker.len() == 16
        && marker
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One request line of the channel protocol.
pub fn request(id: u64, size: Size) -> String {
    format!("{id} {} {}\n", size.cols, size.rows)
}

/// An answer of the persistent channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `ok ID COLS ROWS`: push `id` applied `size`.
    Ok {
        /// The push.
        id: u64,
        /// The size the guest applied.
        size: Size,
    },
    /// `fail ID …`: push `id` failed; the line is the reason.
    Fail {
        /// The push.
        id: u64,
        /// The whole line.
        line: String,
    },
    /// Anything else that is not empty (noise, `bad`).
    Other(String),
}

/// Parses one line of the channel's stdout; `None` for an empty line.
pub fn parse_answer(line: &str) -> Option<Answer> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let id = words.get(1).and_then(|w| w.parse().ok());
    let cols = words.get(2).and_then(|w| w.parse().ok());
    let rows = words.get(3).and_then(|w| w.parse().ok());
    Some(match (words[0], id, cols, rows, words.len()) {
        ("ok", Some(id), Some(c), Some(r), 4) => Answer::Ok {
            id,
            size: Size::new(c, r),
        },
        ("fail", Some(id), _, _, _) => Answer::Fail {
            id,
            line: line.to_string(),
        },
        _ => Answer::Other(line.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16, bug 8: a missing guest program is named as the user typed
    /// it, by pty-resize, not by a `sh` they never typed; exit 127. Run with
    /// the host's `sh` (dash here; the guest's busybox ash has `command -v`).
    #[test]
    fn a_missing_program_is_named_by_pty_resize_with_127() {
        let out = std::process::Command::new("sh")
            .args(["-c", &prologue(Size::new(80, 24)), "sh"])
            .args(["no-such-prog-pty-resize", "--x"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(127), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "pty-resize: no-such-prog-pty-resize: not found in the guest\n"
        );
        // A program that exists runs with its arguments untouched.
        let out = std::process::Command::new("sh")
            .args(["-c", &prologue(Size::new(80, 24)), "sh"])
            .args(["printf", "%s|", "a b", "--"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|--|");
        assert!(prologue(Size::new(1, 1)).ends_with(EXEC_CHECKED));
    }

    /// Issue 16, bugs 3 and 6: no script ever loops over every PTY of the
    /// guest (other sessions' terminals), and none writes into the guest.
    #[test]
    fn no_script_resizes_every_pty_or_writes_a_file() {
        let size = Size::new(100, 30);
        for text in [
            prologue(size),
            push_by_marker(size, "00000000deadbeef").unwrap(),
            channel_by_marker("00000000deadbeef").unwrap(),
            find_and_size(),
        ] {
            assert!(!text.contains("/dev/pts"), "{text}");
            assert!(!text.contains("/tmp"), "{text}");
            // Output goes nowhere but /dev/null, stderr, or back to the wrapper.
            let rest = text
                .replace(">/dev/null", "")
                .replace("2>&1", "")
                .replace(">&2", "");
            assert!(!rest.contains('>'), "{text}");
        }
    }

    #[test]
    fn the_marker_scripts_splice_in_only_hex_and_digits() {
        let argv = agent_command("0123abcd", Some(Size::new(100, 30)));
        assert_eq!(argv[..2], ["sh", "-c"]);
        assert_eq!(argv[3..], ["sh", "0123abcd", "100", "30"]);
        assert_eq!(agent_command("ab", None)[3..], ["sh", "ab"]);
        // The script itself has no variable part at all.
        assert_eq!(argv[2], find_and_size());
        assert!(!find_and_size().contains("0123abcd"));
        for bad in ["", "AB", "a;b", "$(x)", "a b", "g"] {
            assert!(push_by_marker(Size::new(1, 1), bad).is_none(), "{bad:?}");
            assert!(channel_by_marker(bad).is_none(), "{bad:?}");
        }
        assert!(push_by_marker(Size::new(90, 25), "00000000deadbeef")
            .unwrap()
            .starts_with("set -- 00000000deadbeef 90 25; "));
        assert!(
            push_by_marker(Size::new(90, 25), "deadbeef").is_none(),
            "16 digits"
        );
        assert_eq!(
            prologue(Size::new(120, 40)),
            format!(": pty-resize-prologue; stty cols 120 rows 40 2>/dev/null; {EXEC_CHECKED}")
        );
        assert!(!prologue(Size::new(1, 1)).contains("/tmp"));
    }

    /// A session leader with `pty`'s slave as its controlling terminal and
    /// stdin, carrying `env`, running `sh -c <script> <args>`.
    fn leader(
        pty: &nix::pty::OpenptyResult,
        env: &[(&str, &str)],
        script: &str,
        args: &[&str],
    ) -> std::process::Child {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let slave = pty.slave.try_clone().unwrap();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", script, "sh"])
            .args(args)
            .envs(env.iter().copied());
        cmd.stdin(std::process::Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let _ = pty.master.as_raw_fd();
        cmd.spawn().unwrap()
    }

    /// Runs [`find_and_size`] with the host's `sh` against real local
    /// processes: the scan, the `stat` parsing, the environ and cmdline
    /// checks and the exit codes are proven, not just the text.
    #[test]
    fn find_and_size_really_finds_the_marked_leader_and_sizes_its_pty() {
        use std::os::fd::AsRawFd;
        use std::process::Command;
        let winsize =
            |pty: &nix::pty::OpenptyResult| crate::size::read_fd(pty.slave.as_raw_fd()).unwrap();
        let run = |args: &[&str]| {
            Command::new("sh")
                .args(["-c", &find_and_size(), "sh"])
                .args(args)
                .env_remove(MARKER_VAR)
                .status()
                .unwrap()
                .code()
        };
        // A random marker per run: parallel runs never see each other's.
        let id = format!("{:016x}", 0xfeed_0000_u64 + u64::from(std::process::id()));
        let var = MARKER_VAR.to_string();
        assert_eq!(run(&[&id]), Some(NOT_YET), "nobody carries it yet");

        // The prologue still running (its own `stty` may land later): not yet.
        // (`; :` so that no shell execs the last command in place: busybox does.)
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut pro = leader(
            &pty,
            &[(&var, &id)],
            &format!("{PROLOGUE_MARK}; sleep 30; :"),
            &[],
        );
        let seen = testkit::wait::poll_until(std::time::Duration::from_secs(10), || {
            std::fs::read(format!("/proc/{}/environ", pro.id()))
                .ok()
                .filter(|e| e.windows(id.len()).any(|w| w == id.as_bytes()))
        });
        assert!(seen.is_some());
        assert_eq!(
            run(&[&id, "90", "27"]),
            Some(NOT_YET),
            "prologue still running"
        );
        let _ = pro.kill();
        let _ = pro.wait();

        // The command runs: a leader named with a space and parentheses
        // (`stat` split after the last `)`), with a marked child of its own.
        let pty = nix::pty::openpty(None, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a b) (c");
        std::os::unix::fs::symlink("/bin/sleep", &odd).unwrap();
        let mut cmd = leader(
            &pty,
            &[(&var, &id)],
            &format!("sleep 30 & exec '{}' 30", odd.display()),
            &[],
        );
        let ready = testkit::wait::poll_until(std::time::Duration::from_secs(10), || {
            std::fs::read_to_string(format!("/proc/{}/stat", cmd.id()))
                .ok()
                .filter(|s| s.contains("a b) (c"))
        });
        assert!(ready.is_some(), "the command did not exec");
        assert_eq!(run(&[&id]), Some(0), "found, no size: a probe");
        assert_ne!(winsize(&pty), (91, 27));
        assert_eq!(run(&[&id, "91", "27"]), Some(0));
        assert_eq!(winsize(&pty), (91, 27));
        let other = format!("{:016x}", 0xbeef_0000_u64 + u64::from(std::process::id()));
        assert_eq!(run(&[&other]), Some(NOT_YET), "another marker");
        // Only whole markers: a prefix of one is refused, not matched.
        assert_eq!(run(&[&id[..15]]), Some(2));
        // Anything but hex and digits is refused before any use.
        assert_eq!(run(&["x;y"]), Some(2));
        assert_eq!(run(&[&id, "9;", "2"]), Some(2));
        // Through the CLI form (arguments spliced in) and the channel loop.
        let st = Command::new("sh")
            .args(["-c", &push_by_marker(Size::new(70, 20), &id).unwrap()])
            .env_remove(MARKER_VAR)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(winsize(&pty), (70, 20));
        let out = Command::new("sh")
            .args(["-c", &channel_by_marker(&id).unwrap()])
            .env_remove(MARKER_VAR)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b"5 77 21\n6 x 1\n")?;
                c.wait_with_output()
            })
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok 5 77 21\nbad\n");
        assert_eq!(winsize(&pty), (77, 21));
        // The whole group: the leader and its marked child.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(cmd.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = cmd.wait();
    }

    /// busybox `less` puts the file it shows on fd 0 (it reads keys from
    /// `/dev/tty`): the terminal is then found on fd 1. Seen on the real
    /// 0.8.0 agent's guest (scenario_real_agent).
    #[test]
    fn find_and_size_takes_the_first_of_fd_0_1_2_that_is_a_terminal() {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let id = format!("{:016x}", 0xface_0000_u64 + u64::from(std::process::id()));
        let pty = nix::pty::openpty(None, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("shown")).unwrap();
        let slave = pty.slave.try_clone().unwrap();
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30")
            .env(MARKER_VAR, &id)
            .stdin(std::process::Stdio::from(file))
            .stdout(std::process::Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                if libc::ioctl(1, libc::TIOCSCTTY as _, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut less = cmd.spawn().unwrap();
        let run = |c: &str, r: &str| {
            std::process::Command::new("sh")
                .args(["-c", &find_and_size(), "sh", &id, c, r])
                .env_remove(MARKER_VAR)
                .output()
                .unwrap()
        };
        let out = run("83", "21");
        let _ = less.kill();
        let _ = less.wait();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(
            crate::size::read_fd(pty.slave.as_raw_fd()).unwrap(),
            (83, 21)
        );
    }

    /// The late SIGWINCH reaches the session leader's group 0.1 s after a
    /// push: pushing the size it already has (no kernel SIGWINCH then), the
    /// leader still gets exactly one.
    #[test]
    fn a_push_sends_one_late_sigwinch_to_the_sessions_group() {
        let id = format!("{:016x}", 0xbead_0000_u64 + u64::from(std::process::id()));
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("winch");
        let pty = nix::pty::openpty(None, None).unwrap();
        let var = MARKER_VAR.to_string();
        let mut cmd = leader(
            &pty,
            &[(&var, &id)],
            &format!(
                "trap 'echo w >> {}' WINCH; while :; do sleep 0.05; done",
                seen.display()
            ),
            &[],
        );
        let push = || {
            std::process::Command::new("sh")
                .args(["-c", &find_and_size(), "sh", &id, "91", "27"])
                .env_remove(MARKER_VAR)
                .status()
                .unwrap()
                .code()
        };
        let found = testkit::wait::poll_until(std::time::Duration::from_secs(10), || {
            (push() == Some(0)).then_some(())
        });
        assert!(found.is_some(), "the marked leader was never found");
        // Let the first push's signals land, then start counting afresh.
        let quiet = testkit::wait::poll_until(std::time::Duration::from_secs(10), || {
            let before = std::fs::read_to_string(&seen).unwrap_or_default();
            std::thread::sleep(std::time::Duration::from_millis(300));
            (std::fs::read_to_string(&seen).unwrap_or_default() == before).then_some(())
        });
        assert!(quiet.is_some());
        let _ = std::fs::remove_file(&seen);
        assert_eq!(push(), Some(0), "same size again");
        let got = testkit::wait::poll_until(std::time::Duration::from_secs(10), || {
            std::fs::read_to_string(&seen)
                .ok()
                .filter(|s| !s.is_empty())
        });
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(cmd.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = cmd.wait();
        assert_eq!(got.as_deref(), Some("w\n"), "one late SIGWINCH");
    }

    #[test]
    fn answer_parsing() {
        assert_eq!(request(3, Size::new(80, 24)), "3 80 24\n");
        assert_eq!(
            parse_answer("ok 3 80 24\n"),
            Some(Answer::Ok {
                id: 3,
                size: Size::new(80, 24)
            })
        );
        assert_eq!(
            parse_answer("fail 3 80 24"),
            Some(Answer::Fail {
                id: 3,
                line: "fail 3 80 24".into()
            })
        );
        assert_eq!(parse_answer("ok x"), Some(Answer::Other("ok x".into())));
        assert_eq!(
            parse_answer("ok 3 80 24 9"),
            Some(Answer::Other("ok 3 80 24 9".into()))
        );
        assert_eq!(
            parse_answer("ok 3 80"),
            Some(Answer::Other("ok 3 80".into()))
        );
        assert_eq!(parse_answer("fail"), Some(Answer::Other("fail".into())));
        assert_eq!(parse_answer("bad"), Some(Answer::Other("bad".into())));
        assert_eq!(parse_answer("  \n"), None);
    }
}
