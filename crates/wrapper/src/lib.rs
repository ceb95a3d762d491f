//! pty-resize: keeps a smolvm guest's PTY at the host terminal's size.
//!
//! `pty-resize [OPTIONS] <MACHINE> -- <SMOLVM ARGV…>` runs the smolvm command
//! as a child on the same terminal and bridges the window size into the
//! guest. One job per module:
//!
//! - entry: [`entry`] (parse, passthrough-or-bridge, run), [`error`] (errors
//!   and their exit codes), [`cli`] (the command line and its checks);
//! - a session: [`session`] (the routing loop), [`launch`] (set-up: signals,
//!   the main lock, the prologue, the child), [`event`] (what the loop reacts to);
//! - decisions: [`state`] (the pure state machine), [`readiness`] (watching
//!   the terminal switch);
//! - the agent transport: [`agent`] (the socket, one `vm_exec`),
//!   [`agent_wire`] (the frames, pure);
//! - side channels: [`pusher`] (the one owner of the transport), [`side`]
//!   (the processes), [`handoff`] (bring-ups left to finish), [`hold`] (an
//!   abandoned start-up's lock), [`lock`] (one
//!   bring-up per machine);
//! - pure helpers: [`script`], [`smolvm_argv`], [`size`], [`version`];
//! - the terminal hand-back: [`terminal`], and [`guardian`] should the
//!   wrapper be SIGKILLed; the decision log: [`log`], [`log_event`].

pub mod agent;
pub mod agent_wire;
pub mod cli;
pub mod doctor;
pub mod entry;
pub mod error;
pub mod event;
pub mod guardian;
pub mod handoff;
pub mod hold;
pub mod launch;
pub mod lock;
pub mod log;
pub mod log_event;
pub mod pusher;
pub mod readiness;
pub mod script;
pub mod session;
pub mod side;
pub mod size;
pub mod smolvm_argv;
pub mod state;
pub mod terminal;
pub mod version;
