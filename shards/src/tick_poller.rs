//! Read readiness of many sockets collected once per tick, for a shard with many busy senders.
//!
//! A publisher sends one small message every few milliseconds. Read through glommio, each
//! arrival is one io_uring poll completion, and on an otherwise idle shard one park and wake of
//! the executor; glommio precedes every park with a `membarrier` IPI broadcast. With a hundred
//! publishers on a shard that park/wake cycle, not the protocol work, is most of the CPU (see
//! docs/PERFORMANCE.md, "Ingest profile").
//!
//! [`TickPoller`] trades a bounded delay for fewer wake-ups: registered sockets sit in one epoll
//! set (level-triggered) that a ticker task polls with `epoll_wait(0)` every `interval`, waking
//! the readers whose sockets have bytes. A shard then wakes once per tick however many
//! publishers sent in between, and readers `recv` with `MSG_DONTWAIT` directly.
//!
//! Ticking has a fixed cost, so it only runs while the shard is busy: readers report each read
//! ([`TickPoller::note_read`]); at [`TickPoller::batch_above`] reads per second the poller turns
//! batching on, below half of that it turns it off again, wakes its waiters, and stops ticking.
//! Readers check [`TickPoller::batching`] before each read and otherwise read the usual way.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// How often the rate of reads is re-evaluated.
const RATE_WINDOW: Duration = Duration::from_millis(250);
/// How often waiting readers are checked against their idle limit.
const IDLE_SWEEP: Duration = Duration::from_millis(500);
/// epoll events taken per `epoll_wait` call; more ready sockets take more calls in the same tick.
const EVENTS_PER_WAIT: usize = 256;

#[derive(Default)]
struct Slot {
    in_use: bool,
    fd: RawFd,
    ready: bool,
    /// Batching ended while this reader waited: it should go back to reading the usual way.
    released: bool,
    timed_out: bool,
    waker: Option<Waker>,
    idle_limit: Option<Duration>,
    /// When the reader began its current wait, to the tick's precision.
    waiting_since: Option<Instant>,
}

struct Inner {
    slots: Vec<Slot>,
    free: Vec<usize>,
    ticking: bool,
    reads: u64,
    window_start: Instant,
    last_sweep: Instant,
    /// The clock as of the last tick or rate evaluation: readers stamp their waits with it
    /// instead of reading the clock per read.
    now: Instant,
}

/// One per shard; shared by its reader tasks as `Rc<TickPoller>`.
pub struct TickPoller {
    epoll: OwnedFd,
    interval: Duration,
    batch_above: u64,
    batching: Cell<bool>,
    inner: RefCell<Inner>,
}

/// What one batched read returned.
#[derive(Debug, PartialEq, Eq)]
pub enum TickRead {
    /// Bytes were read into the buffer.
    Data(usize),
    /// The peer closed its side.
    Eof,
    /// Batching was turned off while waiting: read the usual way.
    Unbatched,
}

impl TickPoller {
    /// `interval`: the tick (the most a batched read is delayed); `batch_above`: reads per second
    /// on this shard from which batching pays. An `interval` of zero never batches.
    pub fn new(interval: Duration, batch_above: u64) -> io::Result<Rc<Self>> {
        // SAFETY: epoll_create1 with a valid flag; the fd is owned below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let now = Instant::now();
        Ok(Rc::new(Self {
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            interval,
            batch_above: batch_above.max(1),
            batching: Cell::new(false),
            inner: RefCell::new(Inner {
                slots: Vec::new(),
                free: Vec::new(),
                ticking: false,
                reads: 0,
                window_start: now,
                last_sweep: now,
                now,
            }),
        }))
    }

    /// Whether readers should read through the poller right now.
    pub fn batching(&self) -> bool {
        self.batching.get()
    }

    /// Counts one read of any registered or unregistered reader of this shard; may turn
    /// batching on (and start the ticker).
    pub fn note_read(self: &Rc<Self>) {
        let check = {
            let mut inner = self.inner.borrow_mut();
            inner.reads += 1;
            // Reading the clock on every read would cost more than it tells.
            inner.reads.is_multiple_of(64)
        };
        if check {
            self.evaluate(Instant::now());
        }
    }

    /// Adds `fd` to the epoll set. The registration removes it again when dropped. `idle_limit`:
    /// a batched read fails with `TimedOut` when no byte came for that long.
    pub fn register(
        self: &Rc<Self>,
        fd: RawFd,
        idle_limit: Option<Duration>,
    ) -> io::Result<Registration> {
        let mut inner = self.inner.borrow_mut();
        let token = match inner.free.pop() {
            Some(t) => t,
            None => {
                inner.slots.push(Slot::default());
                inner.slots.len() - 1
            }
        };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: token as u64,
        };
        // SAFETY: epoll_ctl on our epoll fd with a live event struct.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            inner.free.push(token);
            return Err(io::Error::last_os_error());
        }
        inner.slots[token] = Slot {
            in_use: true,
            fd,
            idle_limit,
            ..Slot::default()
        };
        Ok(Registration {
            poller: self.clone(),
            token,
        })
    }

    /// Re-evaluates the read rate at most once per window; turns batching on or off.
    fn evaluate(self: &Rc<Self>, now: Instant) {
        if self.interval.is_zero() {
            return;
        }
        let start_ticker = {
            let mut inner = self.inner.borrow_mut();
            inner.now = now;
            let elapsed = now.saturating_duration_since(inner.window_start);
            if elapsed < RATE_WINDOW {
                return;
            }
            let rate = inner.reads.saturating_mul(1000) / (elapsed.as_millis().max(1) as u64);
            inner.reads = 0;
            inner.window_start = now;
            let was = self.batching.get();
            let on = if was {
                rate * 2 >= self.batch_above
            } else {
                rate >= self.batch_above
            };
            self.batching.set(on);
            if on != was {
                tracing::debug!(
                    reads_per_sec = rate,
                    "batched reads {}",
                    if on { "on" } else { "off" }
                );
            }
            if !on && was {
                release_all(&mut inner);
            }
            on && !inner.ticking
        };
        if start_ticker {
            self.inner.borrow_mut().ticking = true;
            let me = self.clone();
            glommio::spawn_local(async move { me.tick_loop().await }).detach();
        }
    }

    async fn tick_loop(self: Rc<Self>) {
        loop {
            glommio::timer::Timer::new(self.interval).await;
            let now = Instant::now();
            self.collect();
            self.evaluate(now);
            if !self.batching.get() {
                self.inner.borrow_mut().ticking = false;
                return;
            }
            self.sweep_idle(now);
        }
    }

    /// One round of `epoll_wait(0)`: marks and wakes every reader with bytes (or an error or
    /// hang-up) waiting.
    fn collect(&self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
        // A level-triggered set reports a socket until it is drained, so one pass per tick takes
        // at most the sockets present; bounded so a flood cannot hold the shard.
        for _ in 0..64 {
            // SAFETY: `events` is a live array of EVENTS_PER_WAIT entries; timeout 0 never blocks.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS_PER_WAIT as libc::c_int,
                    0,
                )
            };
            if n <= 0 {
                return;
            }
            let mut inner = self.inner.borrow_mut();
            for ev in &events[..n as usize] {
                let token = ev.u64 as usize;
                if let Some(slot) = inner.slots.get_mut(token).filter(|s| s.in_use) {
                    slot.ready = true;
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
            }
            if (n as usize) < EVENTS_PER_WAIT {
                return;
            }
        }
    }

    fn sweep_idle(&self, now: Instant) {
        let mut inner = self.inner.borrow_mut();
        if now.saturating_duration_since(inner.last_sweep) < IDLE_SWEEP {
            return;
        }
        inner.last_sweep = now;
        for slot in inner
            .slots
            .iter_mut()
            .filter(|s| s.in_use && s.waker.is_some())
        {
            let idle = match (slot.idle_limit, slot.waiting_since) {
                (Some(limit), Some(last)) => now.saturating_duration_since(last) >= limit,
                _ => false,
            };
            if idle {
                slot.timed_out = true;
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
        }
    }
}

fn release_all(inner: &mut Inner) {
    for slot in inner.slots.iter_mut().filter(|s| s.in_use) {
        if let Some(w) = slot.waker.take() {
            slot.released = true;
            w.wake();
        }
    }
}

/// A socket in a [`TickPoller`]'s set.
pub struct Registration {
    poller: Rc<TickPoller>,
    token: usize,
}

impl Registration {
    /// Reads what the socket has. If it has nothing, waits for the next tick that finds bytes
    /// (or batching to end: [`TickRead::Unbatched`]). `drained_before`: the previous read
    /// returned less than a full buffer, so the socket is known empty and the immediate
    /// `recv` would only cost a syscall.
    pub async fn read(&self, buf: &mut [u8], drained_before: bool) -> io::Result<TickRead> {
        let fd = self.poller.inner.borrow().slots[self.token].fd;
        if !drained_before {
            if let Some(r) = recv_now(fd, buf)? {
                return Ok(r);
            }
        }
        loop {
            let woke = std::future::poll_fn(|cx| {
                let mut inner = self.poller.inner.borrow_mut();
                let now = inner.now;
                let slot = &mut inner.slots[self.token];
                if slot.timed_out {
                    slot.timed_out = false;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no bytes within the read timeout",
                    )));
                }
                if std::mem::take(&mut slot.released) || !self.poller.batching.get() {
                    slot.waiting_since = None;
                    return Poll::Ready(Ok(false));
                }
                if std::mem::take(&mut slot.ready) {
                    slot.waiting_since = None;
                    return Poll::Ready(Ok(true));
                }
                if slot.waiting_since.is_none() {
                    slot.waiting_since = Some(now);
                }
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            })
            .await?;
            if !woke {
                return Ok(TickRead::Unbatched);
            }
            if let Some(r) = recv_now(fd, buf)? {
                return Ok(r);
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.poller.inner.borrow_mut();
        let fd = inner.slots[self.token].fd;
        // SAFETY: epoll_ctl DEL of an fd we added; an error (fd already closed) is harmless.
        unsafe {
            libc::epoll_ctl(
                self.poller.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
        }
        inner.slots[self.token] = Slot::default();
        inner.free.push(self.token);
    }
}

/// A nonblocking `recv`: `None` when the socket has nothing yet.
fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<TickRead>> {
    loop {
        // SAFETY: recv into a live, writable buffer of `buf.len()` bytes.
        let rc = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if rc > 0 {
            return Ok(Some(TickRead::Data(rc as usize)));
        }
        if rc == 0 {
            return Ok(Some(TickRead::Eof));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    fn run<F: std::future::Future<Output = ()> + 'static>(f: F) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(64 << 10)
            .make()
            .unwrap()
            .run(f);
    }

    #[test]
    fn busy_readers_are_batched_and_get_every_byte_then_fall_back() {
        run(async {
            // Any read in a window keeps batching on; a window without one ends it.
            let poller = TickPoller::new(Duration::from_millis(2), 1).unwrap();
            let (mut tx, rx) = pair();
            let reg = poller.register(rx.as_raw_fd(), None).unwrap();
            assert!(!poller.batching());
            // 64 reads after a full window: the rate is evaluated and batching turns on.
            std::thread::sleep(RATE_WINDOW);
            for _ in 0..64 {
                poller.note_read();
            }
            assert!(poller.batching());
            let writer = std::thread::spawn(move || {
                for i in 0..50u8 {
                    tx.write_all(&[i; 100]).unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
                tx
            });
            // Keep the rate up while the writer runs, so batching stays on even if the writer
            // thread is descheduled for a rate window on a loaded machine (bounded, and shorter
            // than the read deadline, so a poller whose ticks never deliver ends up turning
            // batching off and fails the `from_ticks` check below instead of hanging).
            let done = Rc::new(Cell::new(false));
            let pump = {
                let (poller, done) = (poller.clone(), done.clone());
                glommio::spawn_local(async move {
                    let until = Instant::now() + Duration::from_secs(5);
                    while !done.get() && Instant::now() < until {
                        poller.note_read();
                        glommio::timer::Timer::new(Duration::from_millis(5)).await;
                    }
                })
            };
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            let mut drained = false;
            // Reads that waited for a tick and got bytes from it: the batched path at work.
            let mut from_ticks = 0;
            let mut fallbacks = 0;
            let deadline = Instant::now() + Duration::from_secs(10);
            while got.len() < 5000 && Instant::now() < deadline {
                let n = match reg.read(&mut buf, drained).await.unwrap() {
                    TickRead::Data(n) => {
                        if drained {
                            from_ticks += 1;
                        }
                        n
                    }
                    // Batching ended anyway (the executor itself stalled for a rate window):
                    // read the usual way, as a reader does.
                    TickRead::Unbatched => {
                        fallbacks += 1;
                        let left = deadline.saturating_duration_since(Instant::now());
                        rx.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                            .unwrap();
                        loop {
                            match (&rx).read(&mut buf) {
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                                r => break r.unwrap(),
                            }
                        }
                    }
                    TickRead::Eof => panic!("EOF after {} bytes", got.len()),
                };
                assert!(n > 0, "EOF after {} bytes", got.len());
                got.extend_from_slice(&buf[..n]);
                drained = n < buf.len();
                // Keep the rate up so batching stays on for the test.
                poller.note_read();
            }
            done.set(true);
            pump.await;
            let _open = writer.join().unwrap();
            let want: Vec<u8> = (0..50u8).flat_map(|i| [i; 100]).collect();
            assert_eq!(got, want, "{fallbacks} unbatched fallbacks");
            assert!(
                from_ticks > 0,
                "no read was served by a tick ({fallbacks} unbatched fallbacks)"
            );
            // No reads for a while: the ticker turns batching off and a waiting reader is told.
            let r = reg.read(&mut buf, true).await.unwrap();
            assert_eq!(r, TickRead::Unbatched);
            assert!(!poller.batching());
        });
    }

    #[test]
    fn end_of_stream_and_idle_limit() {
        run(async {
            let poller = TickPoller::new(Duration::from_millis(1), 1).unwrap();
            let (tx, rx) = pair();
            let (_tx2, rx2) = pair();
            let reg = poller.register(rx.as_raw_fd(), None).unwrap();
            let idle = poller
                .register(rx2.as_raw_fd(), Some(Duration::from_millis(100)))
                .unwrap();
            std::thread::sleep(RATE_WINDOW);
            for _ in 0..64 {
                poller.note_read();
            }
            assert!(poller.batching());
            drop(tx);
            let mut buf = [0u8; 16];
            assert_eq!(reg.read(&mut buf, true).await.unwrap(), TickRead::Eof);
            // Keep batching on while the idle reader waits past its limit.
            let keep = poller.clone();
            let pump = glommio::spawn_local(async move {
                for _ in 0..200 {
                    keep.note_read();
                    glommio::timer::Timer::new(Duration::from_millis(5)).await;
                }
            });
            let started = Instant::now();
            let err = idle.read(&mut buf, true).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert!(started.elapsed() >= Duration::from_millis(90));
            drop(pump);
        });
    }

    #[test]
    fn zero_interval_never_batches() {
        run(async {
            let poller = TickPoller::new(Duration::ZERO, 1).unwrap();
            std::thread::sleep(RATE_WINDOW);
            for _ in 0..640 {
                poller.note_read();
            }
            assert!(!poller.batching());
        });
    }
}
