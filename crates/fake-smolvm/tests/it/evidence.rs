//! What a machine leaves behind, for assertions: its exec.log (settled),
//! agent.log, the context a panic shows, one client's record, and nothing
//! of it left after a stop.

use std::time::Duration;

use fake_smolvm::exec_log::{self, ExecRecord};

use crate::machine::Machine;
use crate::procs::{alive, text};

impl Machine<'_> {
    /// exec.log, once every exec of a client that is gone has its line.
    pub fn log(&self) -> Vec<ExecRecord> {
        exec_log::read_settled(&self.dir(), Duration::from_secs(10)).unwrap()
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("agent.log")).unwrap_or_default()
    }

    /// exec.log and the tail of agent.log, for panic messages.
    pub fn context(&self) -> String {
        let log = std::fs::read_to_string(self.dir().join("exec.log")).unwrap_or_default();
        let agent = self.agent_log();
        let lines: Vec<&str> = agent.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("--- exec.log ---\n{log}--- agent.log (tail) ---\n{tail}")
    }

    /// The single exec.log record of the client with pid `pid`.
    #[track_caller]
    pub fn record_of(&self, pid: u32) -> ExecRecord {
        let log = self.log();
        let mine: Vec<&ExecRecord> = log.iter().filter(|r| r.pid == pid).collect();
        assert_eq!(mine.len(), 1, "records of pid {pid}\n{}", self.context());
        mine[0].clone()
    }

    /// Stops the machine and checks nothing of it is left: front, guest
    /// init, socket.
    #[track_caller]
    pub fn stop_and_check(&self) {
        let out = self.home.run(["machine", "stop", "--name", &self.name]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(!alive(self.front_pid), "front {} survived", self.front_pid);
        assert!(!alive(self.guest_pid), "guest {} survived", self.guest_pid);
        assert!(!self.dir().join("agent.sock").exists(), "socket left");
    }
}
