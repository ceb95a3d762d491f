//! Process state read from `/proc`: has a process exited, and which live
//! processes carry an argument (to prove that nothing a test started
//! outlives what should have ended it).

/// Whether `pid` has exited: gone, a zombie not reaped yet (`Z`) or dead
/// (`X`). The one definition every test uses: a process that can no longer
/// run counts as exited, whoever is yet to reap it.
pub fn has_exited(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| matches!(state_letter(&s), Some('Z' | 'X')))
        .unwrap_or(true)
}

/// Pids of running (not exited, see [`has_exited`]) processes one of whose
/// arguments contains `needle`. Give it something unique to the test, e.g.
/// a temp path.
pub fn running_with_arg(needle: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            cmdline
                .split(|b| *b == 0)
                .any(|arg| String::from_utf8_lossy(arg).contains(needle))
                && !has_exited(*pid)
        })
        .collect()
}

/// The fields of a `/proc/PID/stat` line a test needs: pid, comm, state
/// letter, ppid. The `(comm)` field may itself hold spaces and parentheses,
/// hence the split at the last `)`.
pub fn parse_stat(stat: &str) -> Option<(i32, String, char, i32)> {
    let (head, tail) = stat.rsplit_once(')')?;
    let (pid, comm) = head.split_once(" (")?;
    let mut fields = tail.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((pid.trim().parse().ok()?, comm.to_string(), state, ppid))
}

/// The state letter of a `/proc/PID/stat` line.
fn state_letter(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn stat_fields_past_a_comm_with_spaces_and_parentheses() {
        assert_eq!(state_letter("12 (a b) c) Z 1 2"), Some('Z'));
        assert_eq!(state_letter("12 (sh) S 1"), Some('S'));
        assert_eq!(state_letter("garbage"), None);
        assert_eq!(
            parse_stat("42 (a) b (c) S 7 42 42 0"),
            Some((42, "a) b (c".to_string(), 'S', 7))
        );
        assert_eq!(parse_stat("nonsense"), None);
    }

    #[test]
    fn running_then_zombie_then_gone() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(!has_exited(pid));
        child.kill().unwrap();
        // Killed but not reaped: a zombie, which has exited.
        crate::wait::wait_for(
            "the killed child to be a zombie",
            std::time::Duration::from_secs(10),
            || has_exited(pid),
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default(),
        );
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        assert_eq!(state_letter(&stat), Some('Z'));
        child.wait().unwrap();
        assert!(has_exited(pid));
    }

    #[test]
    fn finds_itself_by_an_argument() {
        let me = std::process::id() as i32;
        let arg0 = std::env::args().next().unwrap();
        assert!(running_with_arg(&arg0).contains(&me));
        assert!(running_with_arg("no-such-argument-\u{1}").is_empty());
    }
}
