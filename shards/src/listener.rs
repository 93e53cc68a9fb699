//! Per-shard listeners on a shared port.
//!
//! Every data shard binds the same address with SO_REUSEPORT, so the kernel hashes incoming
//! connections over the shards' accept queues: no shared accept lock, no cross-shard hand-off
//! for the common case. The socket is built with socket2 (glommio's own `bind` sets no
//! SO_REUSEADDR and offers no backlog choice) and then handed to glommio on the calling shard.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog per shard socket.
pub const BACKLOG: i32 = 1024;

/// Binds `addr` with SO_REUSEADDR + SO_REUSEPORT and returns a glommio listener owned by the
/// calling shard. Must be called on a glommio executor thread. Port 0 picks a free port; other
/// shards then bind the port reported by `local_addr()`.
pub fn reuseport_listener(addr: SocketAddr) -> io::Result<glommio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_cloexec(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    // glommio accepts with a nonblocking accept(2) first (toggling O_NONBLOCK itself around it)
    // and an io_uring accept second. Its own `bind` leaves the listener blocking, so keep that
    // mode: it is the one glommio's io_uring accept path is written and tested for on every
    // kernel (a nonblocking listener works on recent kernels, but that is not glommio's contract).
    socket.set_nonblocking(false)?;
    // SAFETY: the fd comes from a freshly created, bound and listening socket that we own and
    // give away here exactly once.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) })
}
