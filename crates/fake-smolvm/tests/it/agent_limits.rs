//! The agent's limits, as in smolvm 0.8.0's source: at most 8 connections
//! served at once (`main.rs` 1431, 1502), a half-closed `vm_exec` client is
//! gone (command killed, 129, no answer: `main.rs` 4484-4502, 1739), a
//! signal-killed `vm_exec` command reports -1, and a connection may carry
//! several `vm_exec` requests in turn.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use fake_smolvm::exec_log::Level;
use fake_smolvm::wire::{self, Request, Response};

use crate::common::*;
use crate::vm_level::{vm_exec, vm_exec_request};

fn ping(s: &mut UnixStream) -> std::io::Result<Option<Response>> {
    wire::write_frame(s, &Request::Ping)?;
    wire::read_frame::<_, Response>(s)
}

#[test]
fn with_eight_connections_held_the_ninth_is_not_served_until_one_goes() {
    let home = Home::new();
    let m = home.machine("limit", true);
    let sock = m.dir().join("agent.sock");
    let mut held: Vec<UnixStream> = (0..8)
        .map(|i| {
            let mut s = UnixStream::connect(&sock).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // Answered: this connection holds one of the eight places.
            let got = ping(&mut s).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            assert!(matches!(got, Some(Response::Pong { .. })), "{i}: {got:?}");
            s
        })
        .collect();
    let mut ninth = UnixStream::connect(&sock).unwrap();
    ninth
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    // A bounded wait for something that must not happen.
    let err = ping(&mut ninth).expect_err("the ninth connection was served");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    // One connection goes: the ninth is accepted and its ping answered.
    drop(held.pop());
    ninth
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let got = wire::read_frame::<_, Response>(&mut ninth).unwrap();
    assert!(matches!(got, Some(Response::Pong { .. })), "{got:?}");
    drop(held);
    m.stop_and_check();
}

#[test]
fn a_half_closed_vm_exec_client_is_gone_its_command_killed_with_no_answer() {
    let home = Home::new();
    let m = home.machine("halfclose", true);
    let mark = marker("half");
    let script = format!("touch /tmp/{mark}; while :; do sleep 0.05; done");
    let mut s = UnixStream::connect(m.dir().join("agent.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    wire::write_frame(
        &mut s,
        &vm_exec_request(&["sh", "-c", &script, &mark], None),
    )
    .unwrap();
    let flag = m.guest_tmp(format!("/tmp/{mark}"));
    wait_until(30, || flag.exists(), || m.context());
    assert!(!pids_with(&mark).is_empty(), "the command is not running");
    s.shutdown(std::net::Shutdown::Write).unwrap();
    // No answer: the agent closes the connection without a frame.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "an answer came: {rest:?}");
    wait_until(30, || pids_with(&mark).is_empty(), || m.context());
    wait_until(10, || !m.log().is_empty(), || m.context());
    let rec = m.log().pop().unwrap();
    assert_eq!(
        (rec.level, rec.exit_code, rec.client_gone),
        (Level::Vm, 129, true),
        "{rec:?}"
    );
    m.stop_and_check();
}

#[test]
fn a_signal_killed_vm_exec_command_reports_minus_one_and_one_connection_carries_several() {
    let home = Home::new();
    let m = home.machine("minus1", true);
    let got = vm_exec(
        &m.dir().join("agent.sock"),
        &["sh", "-c", "kill -9 $$"],
        None,
    )
    .unwrap();
    assert_eq!(got.code, -1, "{got:?}");
    // Two requests in turn on one connection.
    let mut s = UnixStream::connect(m.dir().join("agent.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for n in ["1", "2"] {
        wire::write_frame(&mut s, &vm_exec_request(&["echo", n], None)).unwrap();
        match wire::read_frame::<_, Response>(&mut s).unwrap() {
            Some(Response::Completed {
                exit_code, stdout, ..
            }) => {
                assert_eq!((exit_code, text(&stdout.0)), (0, format!("{n}\n")));
            }
            other => panic!("{n}: {other:?}"),
        }
    }
    wait_until(10, || m.log().len() == 3, || m.context());
    let log = m.log();
    assert_eq!((log[0].exit_code, log[0].signal), (-1, Some(9)), "{log:?}");
    m.stop_and_check();
}
