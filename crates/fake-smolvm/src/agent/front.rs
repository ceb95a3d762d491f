//! The agent's front, in the host's namespaces: accepts each connection on
//! `agent.sock`, asks the kernel who connected, and hands the connection and
//! that description to the guest server.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::handoff;
use super::peer::Peer;

/// Serves until the guest server is gone (its end of `channel` closes).
/// At most [`handoff::MAX_CONNECTIONS`] connections are with the server at
/// once: with all of them taken the listener is not even polled, so the next
/// client's connection waits in the backlog, unaccepted and unanswered — for
/// everyone, as in smolvm's agent.
pub fn serve(listener: &UnixListener, channel: &OwnedFd) {
    let mut busy = 0usize;
    loop {
        let mut fds = vec![PollFd::new(channel.as_fd(), PollFlags::POLLIN)];
        if busy < handoff::MAX_CONNECTIONS {
            fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("agent: front: poll failed: {e}");
                return;
            }
        }
        let guest = fds[0].revents().unwrap_or(PollFlags::empty());
        let ready = fds
            .get(1)
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        drop(fds);
        if !guest.is_empty() {
            // A connection done, or the server's hang-up.
            match handoff::recv_done(channel.as_fd()) {
                Ok(Some(n)) => busy = busy.saturating_sub(n),
                Ok(None) | Err(_) => return,
            }
        }
        if !ready.contains(PollFlags::POLLIN) {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let peer = Peer::of(&stream);
                match handoff::send(channel.as_fd(), stream.as_fd(), &peer) {
                    Ok(()) => busy += 1,
                    Err(e) => eprintln!(
                        "agent: front: cannot hand the connection of pid {} to the guest: {e}",
                        peer.pid
                    ),
                }
            }
            Err(e) => eprintln!("agent: front: accept failed: {e}"),
        }
    }
}
