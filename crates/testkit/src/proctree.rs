//! The process tree under a pid, read from `/proc`: what was still running,
//! and in what state, when a wait gave up (a failure report shows it).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::procs::parse_stat;

/// One process as `/proc/PID/stat` and `cmdline` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Its pid.
    pub pid: i32,
    /// Its parent's pid.
    pub ppid: i32,
    /// The state letter (`R`, `S`, `D`, `Z`, `T`, …).
    pub state: char,
    /// Its arguments joined by spaces, or `[comm]` when it has none (a
    /// kernel thread, a zombie).
    pub cmdline: String,
}

fn read(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (pid, comm, state, ppid) = parse_stat(&stat)?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cmdline = if args.is_empty() {
        format!("[{comm}]")
    } else {
        args.join(" ")
    };
    Some(Proc {
        pid,
        ppid,
        state,
        cmdline,
    })
}

/// Every process in the system now (those that vanish meanwhile skipped).
fn all() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read)
        .collect()
}

/// `root` and its descendants, depth first, each with its depth.
pub fn tree(root: i32) -> Vec<(usize, Proc)> {
    let procs = all();
    let mut children: BTreeMap<i32, Vec<&Proc>> = BTreeMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let Some(top) = procs.iter().find(|p| p.pid == root) else {
        return out;
    };
    let mut stack = vec![(0, top)];
    while let Some((depth, p)) = stack.pop() {
        out.push((depth, p.clone()));
        if let Some(kids) = children.get(&p.pid) {
            // Reversed so the lowest pid comes out of the stack first.
            stack.extend(kids.iter().rev().map(|k| (depth + 1, *k)));
        }
    }
    out
}

/// The tree under `root` as text: a header, then one line per process,
/// indented by depth.
pub fn render(root: i32) -> String {
    let mut out = String::from("  PID  PPID S CMDLINE\n");
    let procs = tree(root);
    if procs.is_empty() {
        let _ = writeln!(out, "(pid {root} is gone)");
    }
    for (depth, p) in procs {
        let _ = writeln!(
            out,
            "{:>5} {:>5} {} {}{}",
            p.pid,
            p.ppid,
            p.state,
            "  ".repeat(depth),
            p.cmdline
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_of_this_process_holds_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let text = render(std::process::id() as i32);
        let _ = child.kill();
        let _ = child.wait();
        let line = text
            .lines()
            .find(|l| l.contains("sleep 30"))
            .unwrap_or_else(|| panic!("no child in:\n{text}"));
        assert!(line.contains(&child.id().to_string()), "{text}");
    }
}
