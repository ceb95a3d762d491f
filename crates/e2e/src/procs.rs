//! Finding live processes by their command line, to prove that nothing a
//! test started outlives what should have ended it.

/// Pids of running (not zombie) processes one of whose arguments contains
/// `needle`. Give it something unique to the test, e.g. a temp path.
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

/// Whether `pid` has exited: gone, or a zombie not reaped yet.
pub fn has_exited(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| state_letter(&s) == Some('Z'))
        .unwrap_or(true)
}

/// The state letter of a `/proc/PID/stat` line (after the `(comm)` field,
/// which may itself contain spaces and parentheses).
fn state_letter(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_letter_skips_a_comm_with_spaces() {
        assert_eq!(state_letter("12 (a b) c) Z 1 2"), Some('Z'));
        assert_eq!(state_letter("12 (sh) S 1"), Some('S'));
        assert_eq!(state_letter("garbage"), None);
    }

    #[test]
    fn finds_itself_by_an_argument() {
        let me = std::process::id() as i32;
        let arg0 = std::env::args().next().unwrap();
        assert!(running_with_arg(&arg0).contains(&me));
        assert!(running_with_arg("no-such-argument-\u{1}").is_empty());
    }
}
