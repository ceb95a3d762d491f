//! Real full-screen programs in the guest, beside guest-tui: `vim`, `less`
//! and `top` (programs nobody here wrote) inside the fake guest, in a PTY and
//! in tmux.
//!
//! - Through `pty-resize` their first frame is at the host's 100x30, and they
//!   follow a resize to 80x24 then 120x40.
//! - Under bare smolvm 0.8.0 (`machine exec -t`, no wrapper) the guest PTY is
//!   0x0, and each falls back to its terminfo default, 80x24: vim's ruler
//!   and top's process list end on row 24 of the 100x30 screen (less's
//!   prompt on row 23: it leaves a long line's wrapping to the terminal,
//!   which wraps at 100), vim wraps lines at 80, top's column header is 80
//!   wide, and rows 25–30 stay blank.
//!
//! Each reads its size from the guest PTY only: the guest's environment has
//! no `COLUMNS`/`LINES`, and `HOME` points at an empty folder (no vimrc,
//! toprc or lesskey). A program missing on this machine fails the test in
//! CI (CI installs them: Debian's `vim`, `less` and `procps`; `vim-tiny` alone
//! is not enough, it installs `vi` and `vim.tiny` but no `vim`) and is
//! skipped with a note elsewhere.

use std::path::Path;
use std::time::Duration;

use e2e::place::{Place, Screen};
use e2e::snapshot::Grid;
use e2e::{execs, Exit, Machine};

/// Resizes reach the guest ~2 s after smolvm's `started` at the earliest.
const DEADLINE: Duration = Duration::from_secs(30);

/// The first line of the file vim and less show: 200 columns with a mark
/// every 5, so where it wraps shows the width the program believes.
fn ruler() -> String {
    (1..=200)
        .map(|i| match i {
            i if i % 10 == 0 => char::from(b'0' + (i / 10 % 10) as u8),
            i if i % 5 == 0 => '+',
            _ => '.',
        })
        .collect()
}

/// The file vim and less open: the ruler, then `line 2` … `line 60`.
const FILE: &str = "notes.txt";
const FILE_LINES: usize = 60;

fn file_text() -> String {
    let mut text = ruler();
    text.push('\n');
    for n in 2..=FILE_LINES {
        text.push_str(&format!("line {n}\n"));
    }
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    Vim,
    Less,
    Top,
}

impl Program {
    fn name(self) -> &'static str {
        match self {
            Program::Vim => "vim",
            Program::Less => "less",
            Program::Top => "top",
        }
    }

    /// The guest command.
    fn argv(self) -> Vec<&'static str> {
        match self {
            // No vimrc, no viminfo, no swap file; the ruler on the last row.
            Program::Vim => vec![
                "vim",
                "-u",
                "NONE",
                "-N",
                "-i",
                "NONE",
                "-n",
                "-c",
                "set ruler",
                FILE,
            ],
            // The long prompt: file, the lines shown, of how many.
            Program::Less => vec!["less", "-M", FILE],
            // Interactive (not -b): one refresh a minute, so the frames seen
            // are the first one and those a resize causes.
            Program::Top => vec!["top", "-d", "60"],
        }
    }

    /// The keys that quit it.
    fn quit(self) -> &'static str {
        match self {
            Program::Vim => ":q!\r",
            Program::Less | Program::Top => "q",
        }
    }

    /// Whether `g` shows a complete frame drawn at `cols`x`rows` (the size
    /// the program believes, whatever the screen's), with `why` the first
    /// thing that does not match.
    fn frame_at(self, g: &Grid, cols: u16, rows: u16) -> Result<(), String> {
        let (c, r) = (usize::from(cols), usize::from(rows));
        let row = |i: usize| -> &str { g.lines.get(i).map_or("", |l| l.trim_end()) };
        let expect = |i: usize, want: &str| -> Result<(), String> {
            if row(i) == want {
                Ok(())
            } else {
                Err(format!("row {i} is {:?}, not {want:?}", row(i)))
            }
        };
        match self {
            Program::Vim | Program::Less => {
                // The ruler wraps at the believed width…
                let ruler = ruler();
                let wraps = ruler.len().div_ceil(c);
                // (vim writes the first character of a wrapped row at the
                // end of the row above as well, for the terminal's
                // autowrap: on a wider screen it shows one column further).
                for w in 0..wraps - 1 {
                    let want = &ruler[w * c..(w + 1) * c];
                    if !row(w).starts_with(want) {
                        return Err(format!("row {w} is {:?}, not {want:?}…", row(w)));
                    }
                }
                let w = wraps - 1;
                expect(w, &ruler[w * c..])?;
                // …the file fills every row above the last one…
                let last_line = r - wraps;
                expect(r - 2, &format!("line {last_line}"))?;
                // …and the last row is vim's ruler (18 columns from the
                // right edge) or less's prompt.
                let last = row(r - 1);
                let ok = match self {
                    Program::Vim => {
                        last.len() == c - 1
                            && last.get(c - 18..).is_some_and(|t| t.starts_with("1,1 "))
                            && last.ends_with("Top")
                    }
                    _ => last.starts_with(&format!("{FILE} lines 1-{last_line}/{FILE_LINES} ")),
                };
                if !ok {
                    return Err(format!("last row {} is {last:?}", r - 1));
                }
                Ok(())
            }
            Program::Top => {
                // The column header, in inverse video exactly as wide as
                // the believed width.
                if !row(6).starts_with("    PID USER") {
                    return Err(format!("row 6 is {:?}, not top's column header", row(6)));
                }
                let style = header_style(g).unwrap_or_default();
                let want = format!("r6: 0-{} inverse", c - 1);
                let rest = style.strip_prefix(&want);
                if !rest.is_some_and(|r| r.is_empty() || r.starts_with("; ")) {
                    return Err(format!("the header's style is {style:?}, not {want:?}…"));
                }
                // The process list fills the rows below it (or holds every
                // task, on a machine with fewer tasks than rows).
                let tasks = tasks_total(row(1))
                    .ok_or_else(|| format!("row 1 is {:?}, not top's Tasks line", row(1)))?;
                let listed = (7..g.lines.len()).filter(|&i| !row(i).is_empty()).count();
                let want = (r - 7).min(tasks);
                let contiguous = (7..7 + listed).all(|i| !row(i).is_empty());
                if listed != want || !contiguous {
                    return Err(format!(
                        "{listed} process rows (contiguous: {contiguous}), not {want} ({tasks} tasks)"
                    ));
                }
                Ok(())
            }
        }
    }

    /// Whether `g`, a 100x30 screen, shows the program's frame under bare
    /// smolvm 0.8.0: the guest PTY is 0x0, so the program drew at its
    /// terminfo default, 80x24, and the screen's rows 25–30 are blank.
    fn bare_frame_at_80x24(self, g: &Grid) -> Result<(), String> {
        let row = |i: usize| -> &str { g.lines.get(i).map_or("", |l| l.trim_end()) };
        if let Some(i) = (24..g.lines.len()).find(|&i| !row(i).is_empty()) {
            return Err(format!("row {i} is {:?}, not blank", row(i)));
        }
        match self {
            // less counts the ruler as 3 rows (80 wide) but lets the
            // terminal wrap it, at 100: 2 rows. Its page ends one row early,
            // with the prompt on row 23 of 30.
            Program::Less => {
                let want = format!("{FILE} lines 1-21/{FILE_LINES} ");
                if row(21) == "line 21" && row(22).starts_with(&want) && row(23).is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "rows 21-23 are {:?} {:?} {:?}, not `line 21`, less's prompt {want:?}, blank",
                        row(21),
                        row(22),
                        row(23)
                    ))
                }
            }
            _ => self.frame_at(g, 80, 24),
        }
    }

    /// The snapshot, with what changes from run to run masked.
    fn masked(self, snapshot: &str) -> String {
        match self {
            Program::Vim | Program::Less => snapshot.to_string(),
            Program::Top => mask_top(snapshot),
        }
    }
}

/// The style of row 6 (top's column header) in `g`'s run list.
fn header_style(g: &Grid) -> Option<String> {
    g.styles
        .as_ref()?
        .iter()
        .find(|l| l.starts_with("r6: "))
        .cloned()
}

/// `N` from top's `Tasks: N total, …`.
fn tasks_total(row: &str) -> Option<usize> {
    row.strip_prefix("Tasks:")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The labels of top's five summary rows.
const TOP_LABELS: [&str; 5] = ["top - ", "Tasks:", "%Cpu(s):", "MiB Mem :", "MiB Swap:"];

/// A styled snapshot of top reduced to its stable part: the header with the
/// cursor masked (it ends after the last process row), the five summary
/// rows with only their labels (clock, uptime, load, counts and memory
/// change), the blank row and the column header, and the column header's
/// style. The process rows depend on what runs on the machine; their
/// number is checked by [`Program::frame_at`].
fn mask_top(snapshot: &str) -> String {
    let mut lines = snapshot.lines();
    let header = lines.next().unwrap_or_default();
    let mut out = String::new();
    match (
        header.find(" cursor row "),
        header.find(" hidden").or(header.find(" visible")),
    ) {
        (Some(a), Some(b)) => {
            out.push_str(&header[..a]);
            out.push_str(" cursor *");
            out.push_str(&header[b..]);
        }
        _ => out.push_str(header),
    }
    out.push('\n');
    let rows: Vec<&str> = lines.clone().take_while(|l| l.starts_with('|')).collect();
    for (i, row) in rows.iter().take(7).enumerate() {
        let inner = &row[1..row.len() - 1];
        let width = inner.chars().count();
        let kept = match TOP_LABELS.get(i) {
            Some(label) if inner.starts_with(label) => format!("{} *", label.trim_end()),
            _ => inner.trim_end().to_string(),
        };
        let pad = width.saturating_sub(kept.chars().count());
        out.push_str(&format!("|{kept}{}|\n", " ".repeat(pad)));
    }
    out.push_str(&format!(
        "(rows 7-{}: the process list, not kept)\n",
        rows.len() - 1
    ));
    for line in lines.skip(rows.len()) {
        if line.starts_with("styles") || line.starts_with("r6: ") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Whether `program` is on the `PATH` the guest gets (the host's: the
/// fake's guest runs host binaries). Missing in CI is a failure; elsewhere
/// the test says it was skipped.
fn available(program: Program) -> bool {
    let name = program.name();
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| d.join(name).is_file()) {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !ci,
        "`{name}` is not installed, and CI must run this scenario: install Debian's \
         `vim` (not just `vim-tiny`), `less` and `procps`"
    );
    e2e::note(&format!("skipped: `{name}` is not installed here"));
    false
}

/// The `machine exec` arguments: a TTY, the machine's home as the working
/// directory (where the file is) and as `HOME`, no history file for less.
fn exec_args(machine: &Machine, program: Program) -> Vec<String> {
    let home = machine.home().join("guest-home");
    std::fs::create_dir_all(&home).expect("guest home");
    std::fs::write(machine.home().join(FILE), file_text()).expect("write the file");
    let dir = |p: &Path| p.to_string_lossy().into_owned();
    let mut args = vec![
        "-t".to_string(),
        "-w".into(),
        dir(machine.home()),
        "-e".into(),
        format!("HOME={}", dir(&home)),
        "-e".into(),
        "LESSHISTFILE=-".into(),
        "--".into(),
    ];
    args.extend(program.argv().iter().map(|a| a.to_string()));
    args
}

/// The screen with its styles, as a grid.
fn grid(screen: &Screen) -> Grid {
    match screen {
        Screen::Pty(t) => t.with_screen(|s| Grid::from_vt100(s).styled(s)),
        Screen::Tmux(t) => t.grid_styled(),
    }
}

/// Waits until the screen shows `program`'s frame at `cols`x`rows`. Each
/// new reason it does not yet is printed (shown when the test fails).
fn wait_frame(screen: &mut Screen, program: Program, cols: u16, rows: u16) {
    let what = format!("{} drawn at {cols}x{rows}", program.name());
    wait_grid(screen, &what, |g| program.frame_at(g, cols, rows));
}

/// Waits until `check` accepts the screen's styled grid.
fn wait_grid(screen: &mut Screen, what: &str, check: impl Fn(&Grid) -> Result<(), String>) {
    let last = std::sync::Mutex::new(String::new());
    let ok = |g: &Grid| match check(g) {
        Ok(()) => true,
        Err(why) => {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if *last != why {
                eprintln!("not yet {what}: {why}");
                *last = why;
            }
            false
        }
    };
    match screen {
        Screen::Pty(t) => t.wait_until(what, DEADLINE, |s| ok(&Grid::from_vt100(s).styled(s))),
        Screen::Tmux(t) => t.wait_until(what, DEADLINE, |_| ok(&t.grid_styled())),
    }
}

/// The settled screen in snapshot format, masked for `program`.
fn snapshot(screen: &mut Screen, program: Program) -> String {
    let text = match screen {
        Screen::Pty(t) => t.snapshot_styled(),
        Screen::Tmux(t) => t.snapshot_styled(),
    };
    // Styles only for top (its column header); vim and less as plain text.
    let text = match program {
        Program::Top => text,
        _ => text
            .split_once("styles (rows not listed are default):\n")
            .map_or(text.clone(), |(grid, _)| grid.to_string()),
    };
    program.masked(&text)
}

fn place_name(place: Place) -> &'static str {
    match place {
        Place::Pty => "pty",
        Place::Tmux => "tmux",
    }
}

/// Quits `program` with its keys; it must exit 0, and so must the exec.
fn quit(screen: &mut Screen, machine: &Machine, program: Program) {
    screen.send_keys(program.quit());
    // less handles a SIGWINCH that came while it was drawing only at its
    // next input, and that input is then taken by the redraw: a key typed
    // right after a resize can be lost, as it would be for a person. Type
    // it again once (never more) if the program is still there after 5 s.
    let gone = e2e::wait::poll_until(Duration::from_secs(5), || screen.try_exit());
    if gone.is_none() {
        screen.send_keys(program.quit());
    }
    assert_eq!(
        screen.wait_exit(DEADLINE),
        Exit::Code(0),
        "{}",
        program.name()
    );
    let log = machine.exec_log();
    let main = execs::main_exec(&log);
    assert_eq!(main.fault, None, "{log:#?}");
    assert_eq!(main.exit_code, 0, "{log:#?}");
    assert!(execs::faulted(&log).is_empty(), "{log:#?}");
}

/// Through pty-resize: the first frame at 100x30, then each resize followed.
fn wrapped(program: Program, place: Place) {
    if !available(program) {
        return;
    }
    let name = format!("{}-{}", program.name(), place_name(place));
    let machine = Machine::start(&name, &[]);
    let argv = machine.wrapped_argv(&[], &exec_args(&machine, program));
    let mut screen = Screen::open(place, &machine, 100, 30, &argv, None);
    wait_frame(&mut screen, program, 100, 30);
    // The first frame: the prologue sized the guest PTY before the program
    // ran, and nothing has been pushed since (no resize yet), so the frame
    // on screen is the one the program drew first.
    let events = Machine::wrapper_events(&machine.wrapper_log_path());
    let log = machine.wrapper_log();
    assert!(
        events.iter().any(|r| r.event == "prologue"
            && r.get("applied") == Some("true")
            && r.get("size") == Some("100x30")),
        "{log}"
    );
    assert!(!events.iter().any(|r| r.event == "push"), "{log}");
    program
        .frame_at(&grid(&screen), 100, 30)
        .unwrap_or_else(|e| panic!("{e}"));
    // One snapshot for both places: the PTY and the tmux pane show the same.
    let snap = format!("{}_wrapped_100x30", program.name());
    insta::assert_snapshot!(snap, snapshot(&mut screen, program));

    for (cols, rows) in [(80, 24), (120, 40)] {
        screen.resize(cols, rows);
        wait_frame(&mut screen, program, cols, rows);
    }
    let settled = snapshot(&mut screen, program);
    program
        .frame_at(&grid(&screen), 120, 40)
        .unwrap_or_else(|e| panic!("after the resizes: {e}"));
    let snap = format!("{}_wrapped_resized_120x40", program.name());
    insta::assert_snapshot!(snap, settled);
    quit(&mut screen, &machine, program);
}

/// Under bare smolvm 0.8.0: the guest PTY is 0x0, the program draws at its
/// 80x24 default in the 100x30 screen, and rows 25–30 stay blank.
fn bare(program: Program, place: Place) {
    if !available(program) {
        return;
    }
    let name = format!("{}-bare-{}", program.name(), place_name(place));
    let machine = Machine::start(&name, &[]);
    let argv = machine.exec_argv(&exec_args(&machine, program));
    let mut screen = Screen::open(place, &machine, 100, 30, &argv, None);
    let what = format!("{} drawn at its 80x24 default", program.name());
    wait_grid(&mut screen, &what, |g| program.bare_frame_at_80x24(g));
    let settled = snapshot(&mut screen, program);
    let g = grid(&screen);
    assert_eq!((g.cols, g.rows), (100, 30), "the screen is 100x30");
    program
        .bare_frame_at_80x24(&g)
        .unwrap_or_else(|e| panic!("once settled: {e}"));
    let snap = format!("{}_bare_0x0_in_100x30", program.name());
    insta::assert_snapshot!(snap, settled);
    quit(&mut screen, &machine, program);
    let log = machine.exec_log();
    assert_eq!(log.len(), 1, "no wrapper, so no side channel: {log:#?}");
}

#[test]
fn vim_through_pty_resize_in_a_pty_starts_at_100x30_and_follows_80x24_then_120x40() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    wrapped(Program::Vim, Place::Pty);
}

#[test]
fn vim_through_pty_resize_in_tmux_starts_at_100x30_and_follows_80x24_then_120x40() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    wrapped(Program::Vim, Place::Tmux);
}

#[test]
fn vim_under_bare_smolvm_0_8_0_in_a_pty_draws_at_80x24_in_100x30() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    bare(Program::Vim, Place::Pty);
}

#[test]
fn vim_under_bare_smolvm_0_8_0_in_tmux_draws_at_80x24_in_100x30() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    bare(Program::Vim, Place::Tmux);
}

#[test]
fn less_through_pty_resize_in_a_pty_starts_at_100x30_and_follows_80x24_then_120x40() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    wrapped(Program::Less, Place::Pty);
}

#[test]
fn less_through_pty_resize_in_tmux_starts_at_100x30_and_follows_80x24_then_120x40() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    wrapped(Program::Less, Place::Tmux);
}

#[test]
fn less_under_bare_smolvm_0_8_0_in_a_pty_draws_at_80x24_in_100x30() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    bare(Program::Less, Place::Pty);
}

#[test]
fn less_under_bare_smolvm_0_8_0_in_tmux_draws_at_80x24_in_100x30() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    bare(Program::Less, Place::Tmux);
}

#[test]
fn top_through_pty_resize_in_a_pty_starts_at_100x30_and_follows_80x24_then_120x40() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    wrapped(Program::Top, Place::Pty);
}

#[test]
fn top_through_pty_resize_in_tmux_starts_at_100x30_and_follows_80x24_then_120x40() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    wrapped(Program::Top, Place::Tmux);
}

#[test]
fn top_under_bare_smolvm_0_8_0_in_a_pty_draws_at_80x24_in_100x30() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    bare(Program::Top, Place::Pty);
}

#[test]
fn top_under_bare_smolvm_0_8_0_in_tmux_draws_at_80x24_in_100x30() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    bare(Program::Top, Place::Tmux);
}

#[test]
fn the_ruler_marks_every_fifth_column() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    let r = ruler();
    assert_eq!(r.len(), 200);
    assert_eq!(&r[..20], "....+....1....+....2");
    assert_eq!(&r[190..], "....+....0");
}

#[test]
fn top_is_masked_to_its_stable_rows() {
    if e2e::backend::fake_only("the host's vim, less and top in the fake's guest (the image here has busybox's; scenario_real_agent runs busybox less)") {
        return;
    }
    let snap = "size 12x9 cursor row 8 col 3 hidden normal-screen\n\
                |top - 01:02 |\n|Tasks: 9 tot|\n|%Cpu(s): 1.0|\n|MiB Mem : 12|\n\
                |MiB Swap: 0 |\n|            |\n|    PID USER|\n|  1 root    |\n|  2 root    |\n\
                styles (rows not listed are default):\nr6: 0-11 inverse\nr7: 0-3 bold\n";
    assert_eq!(
        mask_top(snap),
        "size 12x9 cursor * hidden normal-screen\n\
         |top - *     |\n|Tasks: *    |\n|%Cpu(s): *  |\n|MiB Mem : * |\n|MiB Swap: * |\n\
         |            |\n|    PID USER|\n(rows 7-8: the process list, not kept)\n\
         styles (rows not listed are default):\nr6: 0-11 inverse\n"
    );
    assert_eq!(tasks_total("Tasks: 158 total,   3 running"), Some(158));
}
