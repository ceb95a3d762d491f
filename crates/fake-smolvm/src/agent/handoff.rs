//! Handing an accepted connection from the front (host namespaces) to the
//! guest server (inside the machine's namespaces): one `SOCK_SEQPACKET`
//! message per connection, the socket as `SCM_RIGHTS` and the [`Peer`] as
//! JSON.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

use super::peer::Peer;

/// At most this many connections are served at once
/// (`MAX_CONCURRENT_CONNECTIONS`, smolvm v0.8.0 `main.rs` 1431; the accept
/// loop takes a permit per connection and blocks without one, 1502).
pub const MAX_CONNECTIONS: usize = 8;

/// Largest peer description a message carries.
const MAX_MESSAGE: usize = 64 * 1024;

/// A connected pair: the front keeps one end, the guest server the other.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

/// Sends `conn` and what is known of its peer.
pub fn send(channel: BorrowedFd<'_>, conn: BorrowedFd<'_>, peer: &Peer) -> io::Result<()> {
    let body = serde_json::to_vec(peer).map_err(io::Error::other)?;
    if body.len() > MAX_MESSAGE {
        return Err(io::Error::other("peer description too large"));
    }
    let fds = [conn.as_raw_fd()];
    sendmsg::<()>(
        channel.as_raw_fd(),
        &[IoSlice::new(&body)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(|_| ())
    .map_err(io::Error::from)
}

/// The server tells the front that one connection is over (a permit back).
pub fn done(channel: BorrowedFd<'_>) {
    let _ = nix::sys::socket::send(channel.as_raw_fd(), b"d", MsgFlags::MSG_NOSIGNAL);
}

/// The front reads what the server sent: `Ok(n)` connections done, or
/// `Ok(None)`: the server is gone. Blocks until there is something.
pub fn recv_done(channel: BorrowedFd<'_>) -> io::Result<Option<usize>> {
    let mut buf = [0u8; 64];
    loop {
        match nix::sys::socket::recv(channel.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(1)),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one connection. `Ok(None)`: the front is gone.
pub fn recv(channel: BorrowedFd<'_>) -> io::Result<Option<(OwnedFd, Peer)>> {
    let mut body = vec![0u8; MAX_MESSAGE];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (len, fd) = {
        let mut iov = [IoSliceMut::new(&mut body)];
        let msg = recvmsg::<()>(
            channel.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut fd = None;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: the kernel just installed this descriptor for us;
                    // nothing else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        (msg.bytes, fd)
    };
    if len == 0 && fd.is_none() {
        return Ok(None);
    }
    let fd = fd.ok_or_else(|| io::Error::other("handoff message without a descriptor"))?;
    let peer = serde_json::from_slice(&body[..len]).map_err(io::Error::other)?;
    Ok(Some((fd, peer)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_connection_and_its_peer_cross_over() {
        let (front, guest) = pair().unwrap();
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let peer = Peer {
            pid: 7,
            program: "smolvm".into(),
            ..Peer::default()
        };
        send(front.as_fd(), theirs.as_fd(), &peer).unwrap();
        drop(theirs);
        let (fd, got) = recv(guest.as_fd()).unwrap().unwrap();
        assert_eq!(got, peer);
        let mut passed = UnixStream::from(fd);
        ours.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        passed.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        drop(front);
        assert!(recv(guest.as_fd()).unwrap().is_none(), "front gone");
    }
}
