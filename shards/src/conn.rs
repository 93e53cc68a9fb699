//! A connection as two halves, for a reader task and a writer task of the same shard.
//!
//! glommio's `TcpStream` needs `&mut self` for both reading and writing, so one task cannot read
//! while another writes. The write half therefore owns a `dup` of the socket wrapped in its own
//! glommio stream: each half can await readiness independently, and closing either fd alone does
//! not close the connection.
//!
//! glommio has no writev, and a player's queue is many small `Bytes` (shared, refcounted chunks).
//! [`WriteHalf::write_vectored_all`] sends them with `sendmsg(MSG_DONTWAIT)` straight from the
//! queue (no copy into one buffer). When the socket buffer is full it waits through glommio's own
//! write path, which sends as soon as the kernel takes bytes; then it goes back to `sendmsg`.
//! glommio has no cooperative budget, so a writer that had to wait yields after every batch:
//! one player with a fast socket must not starve the shard's other tasks.
//!
//! [`WriteHalf::write_vectored_within`] is the fan-out path: one player's write per published
//! packet. It sends synchronously while the kernel takes bytes and arms its timeout only when
//! the socket buffer is full; a timer per write (a timer-tree insert and removal plus a clock read
//! per player per packet) was a measurable share of the fan-out's CPU.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

/// iovecs per sendmsg, from the stack (Linux takes up to 1024); a longer queue takes several calls.
const IOV_BATCH: usize = 256;

/// Bytes of the front buffer offered to glommio's write while waiting for writability; small so
/// that the wait ends as soon as the kernel has a little room, and sendmsg takes over again.
const WAIT_WRITE_CHUNK: usize = 64 << 10;

/// Splits a stream into a read half (the original stream) and a write half (a dup of its fd).
/// Must be called on the shard that owns `stream`.
pub fn split(stream: TcpStream) -> io::Result<(ReadHalf, WriteHalf)> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an fd borrowed from a live stream.
    let fd = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that the new stream takes ownership of.
    let write = unsafe { TcpStream::from_raw_fd(fd) };
    Ok((
        ReadHalf { stream },
        WriteHalf {
            stream: write,
            stalls: 0,
        },
    ))
}

fn shutdown_fd(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor we own; errors (e.g. ENOTCONN) are irrelevant here.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// The reading side. Also `AsyncRead`.
pub struct ReadHalf {
    stream: TcpStream,
}

impl ReadHalf {
    /// Reads some bytes; `Ok(0)` at end of stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf).await
    }

    /// Shuts the connection down in both directions (wakes a writer blocked on it too).
    pub fn shutdown(&self) {
        shutdown_fd(self.stream.as_raw_fd());
    }

    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.stream.peer_addr().map_err(Into::into)
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.stream.local_addr().map_err(Into::into)
    }
}

impl AsRawFd for ReadHalf {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

/// The writing side, on its own fd.
pub struct WriteHalf {
    stream: TcpStream,
    stalls: u64,
}

impl AsRawFd for WriteHalf {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

impl WriteHalf {
    /// How many times a vectored write found the socket buffer full and had to wait: a measure
    /// of how far behind the peer is.
    pub fn stalls(&self) -> u64 {
        self.stalls
    }

    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.stream.write_all(buf).await
    }

    /// Shuts the connection down in both directions, so a reader blocked in `read` returns.
    pub fn shutdown(&self) {
        shutdown_fd(self.stream.as_raw_fd());
    }

    /// Sends every buffer in `bufs` like [`Self::write_vectored_all`], failing with
    /// `ErrorKind::TimedOut` if the peer takes longer than `timeout` once the socket buffer is
    /// full. A write the kernel takes at once costs no timer and no task switch, only a yield
    /// when the executor's time slice is up.
    pub async fn write_vectored_within(
        &mut self,
        bufs: &mut VecDeque<Bytes>,
        timeout: Duration,
    ) -> io::Result<usize> {
        let sent = self.send_now(bufs)?;
        if bufs.is_empty() {
            glommio::yield_if_needed().await;
            return Ok(sent);
        }
        let rest = self.write_vectored_all(bufs);
        let deadline = async {
            glommio::timer::Timer::new(timeout).await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "peer took no bytes within the write timeout",
            ))
        };
        Ok(sent + futures_lite::future::or(rest, deadline).await?)
    }

    /// Sends from the front of `bufs` while the kernel takes bytes, without waiting. Returns the
    /// bytes sent; `bufs` holds the rest (empty when everything went out).
    fn send_now(&mut self, bufs: &mut VecDeque<Bytes>) -> io::Result<usize> {
        let fd = self.stream.as_raw_fd();
        let mut total = 0usize;
        loop {
            while bufs.front().is_some_and(|b| b.is_empty()) {
                bufs.pop_front();
            }
            if bufs.is_empty() {
                return Ok(total);
            }
            match sendmsg_batch(fd, bufs) {
                Ok(n) => {
                    advance(bufs, n);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stalls += 1;
                    return Ok(total);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends every buffer in `bufs`, front first, popping them as they go out. Returns the number
    /// of bytes sent. On error, `bufs` holds exactly the unsent remainder (the front buffer may
    /// have been advanced past its sent prefix).
    pub async fn write_vectored_all(&mut self, bufs: &mut VecDeque<Bytes>) -> io::Result<usize> {
        let mut total = 0usize;
        loop {
            total += self.send_now(bufs)?;
            if bufs.is_empty() {
                return Ok(total);
            }
            // The socket is full: wait for room, then let the shard's other tasks run.
            total += self.wait_writable(bufs).await?;
            futures_lite::future::yield_now().await;
        }
    }

    /// Waits until the kernel takes bytes again by writing part of the front buffer through
    /// glommio (which polls for writability on its ring). Returns the bytes it sent.
    async fn wait_writable(&mut self, bufs: &mut VecDeque<Bytes>) -> io::Result<usize> {
        let Some(front) = bufs.front() else {
            return Ok(0);
        };
        let len = front.len().min(WAIT_WRITE_CHUNK);
        let chunk = front.slice(..len);
        let n = self.stream.write(&chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        advance(bufs, n);
        Ok(n)
    }
}

/// One nonblocking send of up to IOV_BATCH non-empty buffers from the front of `bufs`.
fn sendmsg_batch(fd: RawFd, bufs: &VecDeque<Bytes>) -> io::Result<usize> {
    send_slices::<IOV_BATCH>(fd, bufs.iter().map(|b| &b[..]))
}

/// One nonblocking send of the first `N` non-empty slices of `bufs`, in order: a plain `send`
/// for one (most live writes are one message), else one `sendmsg` with the iovecs on the stack
/// (no allocation per player per packet). Bytes taken by the kernel, `WouldBlock` for none.
fn send_slices<'a, const N: usize>(
    fd: RawFd,
    bufs: impl Iterator<Item = &'a [u8]>,
) -> io::Result<usize> {
    // Only the first `count` entries are ever read; leaving the rest uninitialised spares a
    // memset of the whole array (4 KiB for IOV_BATCH) per write.
    let mut iov = [std::mem::MaybeUninit::<libc::iovec>::uninit(); N];
    let mut count = 0;
    let mut only: &[u8] = &[];
    for b in bufs.filter(|b| !b.is_empty()).take(N) {
        iov[count].write(libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        });
        only = b;
        count += 1;
    }
    match count {
        0 => Ok(0),
        1 => send_one(fd, only),
        // SAFETY: the first `count` iovecs are initialised and point into slices borrowed for
        // the duration of the call.
        _ => unsafe { sendmsg_iov(fd, &iov[..count]) },
    }
}

/// One nonblocking sendmsg of the buffers `iov` describes.
///
/// # Safety
/// Every entry must be initialised and point to `iov_len` readable bytes for the duration of
/// the call (the kernel only reads them).
unsafe fn sendmsg_iov(fd: RawFd, iov: &[std::mem::MaybeUninit<libc::iovec>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // sendmsg never writes through msg_iov; the cast to *mut is what the C signature wants.
    msg.msg_iov = iov.as_ptr().cast::<libc::iovec>().cast_mut();
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: the caller guarantees the iovecs; `msg` lives across the call.
    let rc = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// One nonblocking `send` of `buf`: bytes taken by the kernel, `WouldBlock` when it took none.
pub fn send_one(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live slice for the duration of the call; the kernel only reads it.
    let rc = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// Most pieces [`send_parts`] sends at once (a frame with its framing head and tail).
pub const MAX_PARTS: usize = 4;

/// One nonblocking send of `parts` in order (the empty ones skipped; at most [`MAX_PARTS`]):
/// bytes taken by the kernel, `WouldBlock` when it took none.
pub fn send_parts(fd: RawFd, parts: &[&[u8]]) -> io::Result<usize> {
    debug_assert!(parts.len() <= MAX_PARTS);
    send_slices::<MAX_PARTS>(fd, parts.iter().copied())
}

/// Drops `n` sent bytes from the front of `bufs`: whole buffers are popped, a partially sent one
/// is advanced. Empty buffers reached on the way are popped too, so the front is never an empty
/// buffer with bytes still behind it.
fn advance(bufs: &mut VecDeque<Bytes>, mut n: usize) {
    while let Some(front) = bufs.front_mut() {
        if front.len() <= n {
            n -= front.len();
            bufs.pop_front();
        } else {
            front.advance(n);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn advance_leaves_exactly_the_unsent_suffix(
            parts in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..30),
            cut in 0usize..2000,
        ) {
            let all: Vec<u8> = parts.iter().flatten().copied().collect();
            let mut q: VecDeque<Bytes> = parts.into_iter().map(Bytes::from).collect();
            advance(&mut q, cut);
            let rest: Vec<u8> = q.iter().flat_map(|b| b.iter().copied()).collect();
            proptest::prop_assert_eq!(&rest[..], &all[cut.min(all.len())..]);
            // A partially sent buffer stays at the front; fully sent ones are gone.
            if cut > 0 && cut < all.len() {
                proptest::prop_assert!(q.front().is_some_and(|b| !b.is_empty()));
            }
        }
    }

    fn deque(parts: &[&'static str]) -> VecDeque<Bytes> {
        parts
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect()
    }

    #[test]
    fn advance_pops_and_splits() {
        let mut q = deque(&["abc", "", "defg", "h"]);
        advance(&mut q, 5);
        assert_eq!(q.len(), 2);
        assert_eq!(&q[0][..], b"fg");
        advance(&mut q, 2);
        assert_eq!(q.len(), 1);
        assert_eq!(&q[0][..], b"h");
        advance(&mut q, 10);
        assert!(q.is_empty());

        // A cut that ends right before empty buffers leaves the next bytes at the front.
        let mut q = deque(&["a", "", "", "b"]);
        advance(&mut q, 1);
        assert_eq!(q.len(), 1);
        assert_eq!(&q[0][..], b"b");
    }
}
