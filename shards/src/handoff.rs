//! Moving a live connection to another shard.
//!
//! A glommio `TcpStream` is bound to the executor that created it (it holds that reactor), so a
//! connection cannot be sent to another shard as is. What can move is the socket itself: the fd
//! is duplicated, the glommio stream is dropped (cancelling its pending io_uring polls on this
//! shard), and the receiving shard wraps the fd in its own `TcpStream`. The socket's kernel
//! state (buffers, unread bytes) is untouched; bytes the old shard already read are the caller's
//! to forward along with the fd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use glommio::net::TcpStream;

/// Detaches the socket from this shard. The returned fd is `Send`; pass it to [`attach`] on the
/// target shard.
pub fn detach(stream: TcpStream) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an fd we borrow from a live stream.
    let fd = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    drop(stream);
    Ok(owned)
}

/// Adopts a detached socket on the calling shard. Must be called on a glommio executor thread.
pub fn attach(fd: OwnedFd) -> TcpStream {
    // SAFETY: ownership of the fd moves into the stream, which closes it on drop.
    unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
}
