//! The agent's front, in the host's namespaces: accepts each connection on
//! `agent.sock`, asks the kernel who connected, and hands the connection and
//! that description to the guest server.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::handoff;
use super::peer::Peer;

/// Serves until the guest server is gone (its end of `channel` closes).
pub fn serve(listener: &UnixListener, channel: &OwnedFd) {
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(channel.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("agent: front: poll failed: {e}");
                return;
            }
        }
        let guest = fds[1].revents().unwrap_or(PollFlags::empty());
        if !guest.is_empty() {
            // The server never writes to the front: any event is its hang-up.
            return;
        }
        let ready = fds[0].revents().unwrap_or(PollFlags::empty());
        if !ready.contains(PollFlags::POLLIN) {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let peer = Peer::of(&stream);
                if let Err(e) = handoff::send(channel.as_fd(), stream.as_fd(), &peer) {
                    eprintln!(
                        "agent: front: cannot hand the connection of pid {} to the guest: {e}",
                        peer.pid
                    );
                }
            }
            Err(e) => eprintln!("agent: front: accept failed: {e}"),
        }
    }
}
