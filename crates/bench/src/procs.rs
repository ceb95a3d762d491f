//! Waiting until a machine is idle: no `machine exec` client alive and the
//! exec log quiet for longer than one bring-up.
//!
//! Why: a side channel killed by its wrapper leaves its bring-up running in
//! the guest agent, which writes the exec's record only when that bring-up
//! ends. A next launch started before then would overlap it and lose its
//! session to the config.json race: the bench would measure itself.

use std::path::Path;
use std::time::{Duration, Instant};

/// Whether `argv` is a fake-smolvm `machine exec` client of `machine`.
pub fn is_client(argv: &[String], machine: &str) -> bool {
    let is_fake = argv
        .first()
        .and_then(|p| Path::new(p).file_name())
        .is_some_and(|n| n == "fake-smolvm");
    is_fake
        && argv.iter().any(|a| a == "exec")
        && argv.windows(2).any(|w| w[0] == "--name" && w[1] == machine)
}

/// How many live `machine exec` clients of `machine` there are.
pub fn live_clients(machine: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|raw| {
            let argv: Vec<String> = raw
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            is_client(&argv, machine)
        })
        .count()
}

/// Waits until `machine` has no live client and `exec_log` has not changed
/// for `quiet`; gives up (returns false) after `deadline`.
pub fn quiesce(machine: &str, exec_log: &Path, quiet: Duration, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    let len = || std::fs::metadata(exec_log).map(|m| m.len()).unwrap_or(0);
    let mut last_len = len();
    let mut calm_since = Instant::now();
    loop {
        let now_len = len();
        if now_len != last_len || live_clients(machine) > 0 {
            last_len = now_len;
            calm_since = Instant::now();
        } else if calm_since.elapsed() >= quiet {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Peak resident set size (`VmHWM`) of `pid` in KiB, from `/proc`.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm(&status)
}

/// The `VmHWM:` value (KiB) of a `/proc/PID/status` text.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn clients_are_fake_smolvm_execs_of_this_machine() {
        let m = "bench-1-exec";
        assert!(is_client(
            &v(&[
                "/t/release/fake-smolvm",
                "machine",
                "exec",
                "--name",
                m,
                "--",
                "sh"
            ]),
            m
        ));
        assert!(!is_client(
            &v(&[
                "/t/release/fake-smolvm",
                "machine",
                "exec",
                "--name",
                "other"
            ]),
            m
        ));
        // The wrapper's and the naive bridge's own command lines name the
        // machine too, but they are not clients.
        assert!(!is_client(
            &v(&[
                "/t/pty-resize",
                m,
                "--",
                "/t/fake-smolvm",
                "machine",
                "exec",
                "--name",
                m
            ]),
            m
        ));
        assert!(!is_client(
            &v(&["/t/release/fake-smolvm", "__agent", "/d", m]),
            m
        ));
    }

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status =
            "Name:\tpty-resize\nVmPeak:\t  9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1900 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
    }

    #[test]
    fn own_peak_rss_is_readable() {
        assert!(peak_rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
