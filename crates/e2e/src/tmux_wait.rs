//! Waiting on a [`Tmux`] pane: until it settles, until a condition holds,
//! until its command exits; and the failure report (with its folder) when a
//! wait runs out of time.

use std::time::{Duration, Instant};

use crate::exit::Exit;
use crate::failure::{self, Evidence, Report};
use crate::tmux::{Tmux, SETTLE_QUIET};
use crate::wait::poll_until;

impl Tmux {
    /// Waits until two captures [`SETTLE_QUIET`] apart are the same; at
    /// most 5 s.
    pub(crate) fn settle(&self) {
        let deadline = Duration::from_secs(5);
        let end = Instant::now() + deadline;
        let mut last = self.grid().render();
        loop {
            std::thread::sleep(SETTLE_QUIET);
            let now = self.grid().render();
            if now == last {
                return;
            }
            if Instant::now() >= end {
                self.fail("the pane to stay unchanged", deadline);
            }
            last = now;
        }
    }

    /// Waits until `pred` holds for the pane's text; panics with the failure
    /// report on timeout. Also gives up early once the pane's command has
    /// ended and tmux shows its last output, since the pane can no longer
    /// change.
    pub fn wait_until(&self, description: &str, deadline: Duration, pred: impl Fn(&str) -> bool) {
        let mut ended = false;
        let outcome = poll_until(deadline, || {
            if pred(&self.contents()) {
                return Some(true);
            }
            if ended {
                return Some(false);
            }
            // One more look after the end: tmux may still be drawing.
            if self.try_exit().is_some() {
                self.snapshot();
                ended = true;
            }
            None
        });
        if outcome != Some(true) {
            self.fail(description, deadline);
        }
    }

    /// Waits until the pane shows `text`.
    pub fn wait_for_text(&self, text: &str, deadline: Duration) {
        self.wait_until(&format!("{text:?} in the pane"), deadline, |s| {
            s.contains(text)
        });
    }

    /// How the pane's command ended, if it has, as its shell saw it: a
    /// command killed by signal N shows as `Exit::Code(128 + N)`.
    pub fn try_exit(&self) -> Option<Exit> {
        let text = std::fs::read_to_string(self.exit_file()).ok()?;
        // Written by `echo`: complete once it ends with a newline.
        let code = text.strip_suffix('\n')?.trim().parse().ok()?;
        Some(Exit::Code(code))
    }

    /// Waits for the pane's command to end and for tmux to have shown its
    /// last output; panics with the report on timeout.
    pub fn wait_exit(&self, deadline: Duration) -> Exit {
        let exit = poll_until(deadline, || self.try_exit())
            .unwrap_or_else(|| self.fail("the pane's command to exit", deadline));
        // tmux reads the pane's output asynchronously: let it catch up.
        self.snapshot();
        exit
    }

    pub(crate) fn fail(&self, description: &str, deadline: Duration) -> ! {
        let pane_pid = self.display("#{pane_pid}");
        let status = match self.try_exit() {
            Some(exit) => exit.to_string(),
            None => {
                // What the kernel says, in case tmux missed the exit.
                let pid = &pane_pid;
                let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.split(' ').nth(2).map(str::to_string))
                    .unwrap_or_else(|| "gone".to_string());
                format!("running; pane pid {pid} state {state}")
            }
        };
        let screen = self.grid().render();
        let report = Report {
            what: description,
            deadline,
            program: format!("tmux pane: {} ({status})", self.command),
            screen: screen.clone(),
            raw_tail: None,
            context: &self.context,
        }
        .render();
        let title = format!("waiting for: {description}");
        let svg = match self.server.screen() {
            Ok(parser) => crate::svg::render(parser.screen(), &title),
            Err(e) => format!("<svg xmlns=\"http://www.w3.org/2000/svg\"><!-- {e} --></svg>\n"),
        };
        let (cast, screens) = match &self.stream {
            Some(stream) => {
                let s = stream.lock();
                let screens = s.screens.render((s.cast.elapsed(), &screen));
                (s.cast.text().to_string(), screens)
            }
            None => (String::new(), screen.clone()),
        };
        let evidence = Evidence {
            cast,
            screens,
            svg,
            processes: pane_pid.parse().map_or_else(
                |_| format!("no pane pid: {pane_pid:?}\n"),
                crate::proctree::render,
            ),
        };
        panic!(
            "{}",
            failure::report_with_folder(&report, &evidence, &self.context)
        );
    }
}
