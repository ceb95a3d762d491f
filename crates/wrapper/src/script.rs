//! The `sh -c` scripts that run in the guest (pure).
//!
//! Only numbers ever vary in these scripts: the size (cols, rows) and the
//! session token. The machine name and anything from the environment are
//! passed to smolvm as separate argv elements and never reach a shell.

use crate::size::Size;

/// Where the prologue records this session's guest PTY path.
pub fn token_path(token: u64) -> String {
    format!("/tmp/.pty-resize-{token}")
}

/// Where the prologue records this session's command's pid (the prologue's
/// own `$$`: it `exec`s the command).
pub fn pid_path(token: u64) -> String {
    format!("{}.pid", token_path(token))
}

/// The prologue the guest command is started through: it sizes its own PTY
/// before the command draws its first frame, records which PTY it is (so later
/// pushes resize only this session) and the command's pid, then `exec`s the
/// command unchanged (so signals, exit codes and the process tree are the
/// command's own).
///
/// Used as `sh -c <prologue> sh CMD…`.
pub fn prologue(size: Size, token: u64) -> String {
    format!(
        "stty cols {c} rows {r} 2>/dev/null; tty >{path} 2>/dev/null; echo $$ >{pid} 2>/dev/null; exec \"$@\"",
        c = size.cols,
        r = size.rows,
        path = token_path(token),
        pid = pid_path(token),
    )
}

/// One more SIGWINCH to the session command's process group (pid in `$g`,
/// digits only), a moment after a push. Why: `stty cols C rows R` is two
/// `TIOCSWINSZ` calls; a program that redraws on the first (new cols, old
/// rows) may take the second while still drawing and only act on it at its
/// next input (less does), staying half-sized. A signal that comes once it
/// is idle again makes it read the final size.
const LATE_WINCH: &str = "case \"$g\" in ''|*[!0-9]*) ;; *) sleep 0.1 2>/dev/null; \
kill -s WINCH -- \"-$g\" 2>/dev/null || kill -s WINCH \"$g\" 2>/dev/null;; esac";

/// Resizes every PTY of the guest: the seeds' loop, used when this session's
/// PTY is not known. Succeeds if at least one PTY took the size.
/// (`[0-9]*` skips `/dev/pts/ptmx`, whose failure would mask real successes.)
fn loop_all(cols: &str, rows: &str) -> String {
    format!(
        "ok=; for p in /dev/pts/[0-9]*; do stty -F \"$p\" cols {cols} rows {rows} 2>/dev/null && ok=1; done; [ -n \"$ok\" ]"
    )
}

/// Resizes the recorded PTY in `$f` if it looks like one, else every PTY.
fn apply(cols: &str, rows: &str) -> String {
    format!(
        "case \"$f\" in /dev/pts/[0-9]*) stty -F \"$f\" cols {cols} rows {rows};; *) {all};; esac",
        all = loop_all(cols, rows)
    )
}

/// The script of a one-shot side-channel push (`machine exec -- sh -c <script>`).
///
/// With a token (the prologue ran), it targets the PTY the prologue recorded
/// (then sends the late SIGWINCH) and falls back to every PTY if the record
/// is missing; without one it is the seeds' loop over every PTY.
pub fn push(size: Size, token: Option<u64>) -> String {
    let (c, r) = (size.cols.to_string(), size.rows.to_string());
    match token {
        Some(t) => format!(
            "f=$(cat {path} 2>/dev/null); g=$(cat {pid} 2>/dev/null); {apply} && {{ {LATE_WINCH}; true; }}",
            path = token_path(t),
            pid = pid_path(t),
            apply = apply(&c, &r)
        ),
        None => loop_all(&c, &r),
    }
}

/// The script of the persistent resize channel (`machine exec -i -- sh -c <script>`).
///
/// It reads `ID COLS ROWS` lines from stdin, applies each, and answers one
/// line per request: `ok ID COLS ROWS` or `fail ID COLS ROWS` (`bad` for a
/// malformed line, which the wrapper never sends). The id travels with the
/// request so the answer names the push it completes. The values read are
/// checked to be digits before use, so the script's only variable text is
/// still numbers. On EOF (the wrapper closed the pipe) it removes the
/// session's PTY record.
pub fn channel(token: Option<u64>) -> String {
    let (record, cleanup) = match token {
        Some(t) => (
            format!(
                "[ -n \"$f\" ] || f=$(cat {} 2>/dev/null); [ -n \"$g\" ] || g=$(cat {} 2>/dev/null); ",
                token_path(t),
                pid_path(t)
            ),
            format!("; rm -f {} {}", token_path(t), pid_path(t)),
        ),
        None => (String::new(), String::new()),
    };
    let apply = if token.is_some() {
        apply("\"$c\"", "\"$r\"")
    } else {
        loop_all("\"$c\"", "\"$r\"")
    };
    // The answer goes out first: the late SIGWINCH delays the next request
    // a little, never this one's answer.
    let late = if token.is_some() {
        format!("{LATE_WINCH}; ")
    } else {
        String::new()
    };
    format!(
        "f=; g=; while read -r i c r; do \
case \"$i:$c:$r\" in :*|*::*|*:|*[!0-9:]*) echo bad; continue;; esac; \
{record}if {apply}; then echo \"ok $i $c $r\"; {late}else echo \"fail $i $c $r\"; fi; \
done{cleanup}"
    )
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

    #[test]
    fn prologue_exact_text() {
        assert_eq!(
            prologue(Size::new(120, 40), 42),
            "stty cols 120 rows 40 2>/dev/null; tty >/tmp/.pty-resize-42 2>/dev/null; \
echo $$ >/tmp/.pty-resize-42.pid 2>/dev/null; exec \"$@\""
        );
    }

    #[test]
    fn push_without_token_is_the_seed_loop() {
        assert_eq!(
            push(Size::new(100, 30), None),
            "ok=; for p in /dev/pts/[0-9]*; do stty -F \"$p\" cols 100 rows 30 2>/dev/null && ok=1; done; [ -n \"$ok\" ]"
        );
    }

    #[test]
    fn push_with_token_targets_the_recorded_pty() {
        assert_eq!(
            push(Size::new(100, 30), Some(7)),
            format!(
                "f=$(cat /tmp/.pty-resize-7 2>/dev/null); g=$(cat /tmp/.pty-resize-7.pid 2>/dev/null); \
case \"$f\" in /dev/pts/[0-9]*) stty -F \"$f\" cols 100 rows 30;; \
*) ok=; for p in /dev/pts/[0-9]*; do stty -F \"$p\" cols 100 rows 30 2>/dev/null && ok=1; done; [ -n \"$ok\" ];; esac \
&& {{ {LATE_WINCH}; true; }}"
            )
        );
    }

    #[test]
    fn channel_exact_text() {
        assert_eq!(
            channel(Some(9)),
            format!(
                "f=; g=; while read -r i c r; do case \"$i:$c:$r\" in :*|*::*|*:|*[!0-9:]*) echo bad; continue;; esac; \
[ -n \"$f\" ] || f=$(cat /tmp/.pty-resize-9 2>/dev/null); [ -n \"$g\" ] || g=$(cat /tmp/.pty-resize-9.pid 2>/dev/null); \
if case \"$f\" in /dev/pts/[0-9]*) stty -F \"$f\" cols \"$c\" rows \"$r\";; \
*) ok=; for p in /dev/pts/[0-9]*; do stty -F \"$p\" cols \"$c\" rows \"$r\" 2>/dev/null && ok=1; done; [ -n \"$ok\" ];; esac; \
then echo \"ok $i $c $r\"; {LATE_WINCH}; else echo \"fail $i $c $r\"; fi; done; \
rm -f /tmp/.pty-resize-9 /tmp/.pty-resize-9.pid"
            )
        );
        assert!(!channel(None).contains("/tmp/"));
        assert!(!channel(None).contains("WINCH"), "no pid without a token");
        assert!(channel(None).contains("stty -F \"$p\" cols \"$c\" rows \"$r\""));
    }

    /// Runs the scripts with the host's `sh` on a PTY the test creates, so the
    /// shell syntax (quoting, `case`, `if case`) is proven, not just the text.
    #[test]
    fn scripts_really_resize_a_pty() {
        use std::io::Write;
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};

        let pty = nix::pty::openpty(None, None).unwrap();
        let path = nix::unistd::ttyname(&pty.slave).unwrap();
        let token: u64 = 1_000_000 + u64::from(std::process::id());
        std::fs::write(token_path(token), format!("{}\n", path.display())).unwrap();
        let winsize = |fd: &std::os::fd::OwnedFd| {
            use std::os::fd::AsRawFd;
            crate::size::read_fd(fd.as_raw_fd()).unwrap()
        };

        // The session's command: its own process group, counting SIGWINCH.
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("winch");
        let mut command = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "trap 'echo w >> {}' WINCH; while :; do sleep 0.05; done",
                    seen.display()
                ),
            ])
            .process_group(0)
            .spawn()
            .unwrap();
        std::fs::write(pid_path(token), format!("{}\n", command.id())).unwrap();

        let st = Command::new("sh")
            .args(["-c", &push(Size::new(91, 27), Some(token))])
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(winsize(&pty.slave), (91, 27));
        // After both ioctls, the command's group got one late SIGWINCH.
        let got = testkit::wait::poll_until(std::time::Duration::from_secs(10), || {
            std::fs::read_to_string(&seen)
                .ok()
                .filter(|s| !s.is_empty())
        });
        let _ = command.kill();
        let _ = command.wait();
        assert_eq!(got.as_deref(), Some("w\n"), "one SIGWINCH after the push");

        let mut child = Command::new("sh")
            .args(["-c", &channel(Some(token))])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{}1;x 2 3\n5 6\n", request(4, Size::new(77, 21))).as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text, "ok 4 77 21\nbad\nbad\n");
        assert_eq!(winsize(&pty.slave), (77, 21));
        // EOF removed the records.
        assert!(!std::path::Path::new(&token_path(token)).exists());
        assert!(!std::path::Path::new(&pid_path(token)).exists());
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
