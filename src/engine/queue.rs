use std::collections::VecDeque;
use std::future::poll_fn;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::Bytes;

use super::frame::Frame;
use super::sessions::Counters;
use crate::flv::live::{BodyFraming, FrameHead};
use crate::media::PacketKind;

/// What a player's writer takes from its queue.
#[derive(Clone)]
pub enum Item {
    Frame(Rc<Frame>),
    /// The stream has a publisher (sent first when one exists, and again on republish).
    Live,
    /// The publisher left; the player may wait for the next one.
    Unpublished,
    /// The rest of a frame the feed began writing itself and the socket took only in part
    /// (see [`DirectWrite`]): already framed, written before anything else.
    Unsent(Bytes),
}

/// A player's socket the feed may write to itself while the player's writer is idle: a frame
/// then goes out from the fan-out loop in one send, without a queue entry and without waking
/// the writer task (which, for a thousand players, costs as much as the send). Anything that is
/// not a clean, complete send (a full socket, an error) falls back to the queue and the writer,
/// which owns the error handling and the write timeout.
pub struct DirectWrite {
    /// The writer's half of the socket. Only used while the writer waits in
    /// [`ready_or_direct`], which the writer does only while it holds that half.
    pub fd: RawFd,
    pub counters: Rc<Counters>,
    pub wire: DirectWire,
}

/// What a direct write sends for a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectWire {
    /// The frame's RTMP chunks.
    Rtmp,
    /// The frame's FLV tag in the viewer's body framing (HTTP-FLV, WebSocket-FLV).
    Flv(BodyFraming),
}

/// Why a player's queue was closed by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The player stayed behind even after its video was dropped down to audio.
    TooSlow,
    /// The connection's other half ended (peer closed, error).
    Disconnected,
    Shutdown,
}

/// Bounds that decide when a player is slow.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Media time the queue may hold before video is dropped to the next keyframe.
    pub max_lag_ms: u32,
    /// Queued bytes beyond which the player is disconnected (it cannot catch up).
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_lag_ms: 10_000,
            max_bytes: 64 << 20,
        }
    }
}

/// A player's bounded queue. Filled by the feed (never blocks it), drained by the player's
/// writer task. Slow players lose whole GOPs of video, never audio, metadata or sequence
/// headers, and never out of order; a player that stays behind anyway is closed.
pub struct PlayerQueue {
    items: VecDeque<Item>,
    bytes: usize,
    limits: QueueLimits,
    /// After a drop, video is skipped until the next keyframe.
    skipping_video: bool,
    /// A player that joined a video stream with no cached GOP: audio and video both wait
    /// for the next keyframe, so playback starts in sync.
    awaiting_keyframe: bool,
    closed: Option<CloseReason>,
    waker: Option<Waker>,
    direct: Option<DirectWrite>,
    /// The writer is idle in [`ready_or_direct`]: frames may go out through `direct`.
    armed: bool,
    pub dropped_packets: u64,
}

impl PlayerQueue {
    pub fn new(limits: QueueLimits) -> Self {
        PlayerQueue {
            items: VecDeque::with_capacity(64),
            bytes: 0,
            limits,
            skipping_video: false,
            awaiting_keyframe: false,
            closed: None,
            waker: None,
            direct: None,
            armed: false,
            dropped_packets: 0,
        }
    }

    /// Lets the queue hold at least `ms` of media before it counts as slow (a late joiner's
    /// GOP-cache replay arrives all at once).
    pub fn allow_lag(&mut self, ms: u32) {
        self.limits.max_lag_ms = self.limits.max_lag_ms.max(ms);
    }

    /// Holds back audio and video (not sequence headers or metadata) until a video keyframe.
    pub fn start_at_next_keyframe(&mut self) {
        self.awaiting_keyframe = true;
    }

    /// Lets the feed write frames straight to this player's socket while its writer idles.
    pub fn enable_direct(&mut self, direct: DirectWrite) {
        self.direct = Some(direct);
    }

    pub fn push_event(&mut self, item: Item) {
        if self.closed.is_some() {
            return;
        }
        self.items.push_back(item);
        self.wake();
    }

    pub fn push_frame(&mut self, frame: &Rc<Frame>) {
        if self.closed.is_some() {
            return;
        }
        let p = &frame.packet;
        if self.awaiting_keyframe && !p.sequence_header && p.kind != PacketKind::Meta {
            if p.keyframe {
                self.awaiting_keyframe = false;
            } else {
                return;
            }
        }
        if self.skipping_video && p.is_video() && !p.sequence_header {
            if p.keyframe {
                self.skipping_video = false;
            } else {
                self.dropped_packets += 1;
                return;
            }
        }
        if self.armed && self.items.is_empty() && self.send_direct(frame) {
            return;
        }
        self.bytes += frame.wire_len();
        self.items.push_back(Item::Frame(frame.clone()));
        if self.lag_ms() > self.limits.max_lag_ms {
            self.drop_video();
            if self.lag_ms() > self.limits.max_lag_ms.saturating_mul(2) {
                self.close(CloseReason::TooSlow);
                return;
            }
        }
        if self.bytes > self.limits.max_bytes {
            self.close(CloseReason::TooSlow);
            return;
        }
        self.wake();
    }

    /// Tries to write `frame` straight to the idle player's socket. True when the frame is
    /// taken care of (sent whole, or sent in part with the rest queued for the writer).
    fn send_direct(&mut self, frame: &Frame) -> bool {
        let Some(d) = &self.direct else {
            return false;
        };
        let (head, body, tail) = match d.wire {
            DirectWire::Rtmp => (FrameHead::EMPTY, frame.rtmp(), &[][..]),
            DirectWire::Flv(framing) => {
                let body = frame.flv();
                (framing.head(body.len()), body, framing.tail())
            }
        };
        let n = match shards::conn::send_parts(d.fd, &[&head, body, tail]) {
            Ok(n) if n > 0 => n,
            // Full socket or an error: the writer takes the frame from the queue and deals
            // with either.
            _ => return false,
        };
        let p = &frame.packet;
        if p.kind != PacketKind::Meta {
            d.counters.add_media(p.is_video(), p.payload.len());
        }
        d.counters.add_wire(n);
        if n < head.len() + body.len() + tail.len() {
            let body = body.clone();
            self.queue_unsent(n, &head, body, tail);
            self.wake();
        }
        true
    }

    /// Queues what a direct write left of `head`, `body` and `tail` after its first `sent`
    /// bytes, for the writer to send before anything else.
    fn queue_unsent(&mut self, mut sent: usize, head: &[u8], body: Bytes, tail: &'static [u8]) {
        if sent < head.len() {
            // Rare (a socket with room for less than a framing head): the copy is a few bytes.
            let rest = Bytes::copy_from_slice(&head[sent..]);
            self.items.push_back(Item::Unsent(rest));
            sent = 0;
        } else {
            sent -= head.len();
        }
        if sent < body.len() {
            self.items.push_back(Item::Unsent(body.slice(sent..)));
            sent = 0;
        } else {
            sent -= body.len();
        }
        if sent < tail.len() {
            self.items
                .push_back(Item::Unsent(Bytes::from_static(&tail[sent..])));
        }
    }

    /// Media time between the oldest and the newest queued frame (0 when the newest is behind).
    /// Stream timestamps wrap modulo 2^32 (see `TimestampNormaliser`): the difference is taken
    /// in wrapping arithmetic and read as signed, exact for frames less than 2^31 ms apart,
    /// which a queue this bounded always holds.
    fn lag_ms(&self) -> u32 {
        let ts = |it: &Item| match it {
            Item::Frame(f) => Some(f.packet.timestamp),
            _ => None,
        };
        let first = self.items.iter().find_map(ts);
        let last = self.items.iter().rev().find_map(ts);
        match (first, last) {
            (Some(a), Some(b)) => (b.wrapping_sub(a) as i32).max(0) as u32,
            _ => 0,
        }
    }

    fn drop_video(&mut self) {
        let before = self.items.len();
        let mut bytes = self.bytes;
        self.items.retain(|it| match it {
            Item::Frame(f) if f.packet.is_video() && !f.packet.sequence_header => {
                bytes -= f.wire_len();
                false
            }
            _ => true,
        });
        self.bytes = bytes;
        self.dropped_packets += (before - self.items.len()) as u64;
        self.skipping_video = true;
    }

    pub fn close(&mut self, reason: CloseReason) {
        if self.closed.is_none() {
            self.closed = Some(reason);
            self.items.clear();
            self.bytes = 0;
        }
        self.wake();
    }

    pub fn closed(&self) -> Option<CloseReason> {
        self.closed
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn pop(&mut self) -> Option<Item> {
        let it = self.items.pop_front()?;
        if let Item::Frame(f) = &it {
            self.bytes -= f.wire_len();
        }
        Some(it)
    }

    fn wake(&mut self) {
        self.armed = false;
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// Shared handle to a player's queue (the feed pushes, the writer pops, same shard).
pub type QueueRef = Rc<std::cell::RefCell<PlayerQueue>>;

/// Waits until the queue has something to take or was closed, or `extra` says to wake (the
/// writer also has to send what the RTMP session produced).
pub async fn ready(queue: &QueueRef, extra: impl Fn() -> bool) {
    ready_or_direct(queue, false, extra).await
}

/// Like [`ready`], and with `allow_direct` lets the feed write frames to the socket itself (see
/// [`DirectWrite`]; a no-op without [`PlayerQueue::enable_direct`]). The caller must have
/// written everything it took from the queue: direct frames follow them on the wire.
pub async fn ready_or_direct(queue: &QueueRef, allow_direct: bool, extra: impl Fn() -> bool) {
    /// Disarms however the wait ends, including the writer's future being dropped: after
    /// that the writer may be gone and its socket closed.
    struct Disarm<'a>(&'a QueueRef);
    impl Drop for Disarm<'_> {
        fn drop(&mut self) {
            self.0.borrow_mut().armed = false;
        }
    }
    let _disarm = Disarm(queue);
    poll_fn(|cx| {
        let mut q = queue.borrow_mut();
        if !q.items.is_empty() || q.closed.is_some() || extra() {
            q.armed = false;
            Poll::Ready(())
        } else {
            q.waker = Some(cx.waker().clone());
            q.armed = allow_direct && q.direct.is_some();
            Poll::Pending
        }
    })
    .await
}

/// Wakes a writer waiting in [`ready`] (used when the `extra` condition becomes true).
pub fn nudge(queue: &QueueRef) {
    // Disarms too: what the writer is woken for goes out before any further frame.
    queue.borrow_mut().wake();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Packet;
    use bytes::Bytes;

    fn frame(kind: u8, ts: u32, key: bool) -> Rc<Frame> {
        let body = match kind {
            9 if key => vec![0x17, 1, 0, 0, 0, 0],
            9 => vec![0x27, 1, 0, 0, 0, 0],
            _ => vec![0xaf, 1, 0],
        };
        Rc::new(Frame::new(
            Packet::from_message(kind, ts, Bytes::from(body)).unwrap(),
        ))
    }

    fn drain(q: &mut PlayerQueue) -> Vec<(u8, u32)> {
        let mut out = vec![];
        while let Some(it) = q.pop() {
            if let Item::Frame(f) = it {
                out.push((f.packet.type_id(), f.packet.timestamp));
            }
        }
        out
    }

    #[test]
    fn slow_player_loses_video_until_keyframe_keeps_audio_in_order() {
        let mut q = PlayerQueue::new(QueueLimits {
            max_lag_ms: 100,
            max_bytes: 1 << 20,
        });
        q.push_frame(&frame(9, 0, true));
        for ts in (10..=120).step_by(10) {
            q.push_frame(&frame(if ts % 20 == 0 { 9 } else { 8 }, ts, false));
        }
        // lag passed 100 ms at ts 110: queued video dropped, audio kept in order
        for ts in [130, 140] {
            q.push_frame(&frame(9, ts, false)); // skipped: waiting for a keyframe
        }
        // the writer catches up on the (small) audio, then the next GOP flows again
        let mut got = drain(&mut q);
        q.push_frame(&frame(9, 150, true));
        q.push_frame(&frame(9, 160, false));
        got.extend(drain(&mut q));
        let audio: Vec<_> = got.iter().filter(|f| f.0 == 8).map(|f| f.1).collect();
        assert_eq!(audio, vec![10, 30, 50, 70, 90, 110]);
        let video: Vec<_> = got.iter().filter(|f| f.0 == 9).map(|f| f.1).collect();
        assert_eq!(video, vec![150, 160]);
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(q.dropped_packets >= 7);
    }

    struct CountWakes(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for CountWakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A queue with direct writes to one end of a socket pair, and a writer idle in
    /// `ready_or_direct` (polled once, kept alive by the caller).
    fn direct_queue(
        wire: DirectWire,
    ) -> (
        QueueRef,
        Rc<Counters>,
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    ) {
        use std::os::fd::AsRawFd;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let counters = Rc::new(Counters::default());
        let q: QueueRef = Rc::new(std::cell::RefCell::new(PlayerQueue::new(
            QueueLimits::default(),
        )));
        q.borrow_mut().enable_direct(DirectWrite {
            fd: ours.as_raw_fd(),
            counters: counters.clone(),
            wire,
        });
        (q, counters, ours, theirs)
    }

    fn poll_once(
        fut: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
        wakes: &std::sync::Arc<CountWakes>,
    ) -> Poll<()> {
        let waker = Waker::from(wakes.clone());
        fut.poll(&mut std::task::Context::from_waker(&waker))
    }

    #[test]
    fn idle_writer_lets_the_feed_send_frames_itself_in_order() {
        use std::io::Read;
        let (q, counters, _ours, mut theirs) = direct_queue(DirectWire::Rtmp);
        let wakes = std::sync::Arc::new(CountWakes(Default::default()));
        let fut = std::pin::pin!(ready_or_direct(&q, true, || false));
        let mut fut = fut;
        assert!(poll_once(fut.as_mut(), &wakes).is_pending());
        let (a, b) = (frame(9, 0, true), frame(8, 20, false));
        q.borrow_mut().push_frame(&a);
        q.borrow_mut().push_frame(&b);
        assert!(q.borrow().is_empty(), "sent, not queued");
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), 0);
        let want = [a.rtmp().as_ref(), b.rtmp().as_ref()].concat();
        let mut got = vec![0u8; want.len()];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
        assert_eq!(counters.wire_bytes.get(), want.len() as u64);
        assert_eq!(counters.video_bytes.get(), 6);
        assert_eq!(counters.audio_bytes.get(), 3);
    }

    #[test]
    fn flv_viewers_get_each_tag_in_their_framing() {
        use std::io::Read;
        for framing in [
            BodyFraming::Chunked,
            BodyFraming::WebSocket,
            BodyFraming::Plain,
        ] {
            let (q, counters, _ours, mut theirs) = direct_queue(DirectWire::Flv(framing));
            let wakes = std::sync::Arc::new(CountWakes(Default::default()));
            let mut fut = std::pin::pin!(ready_or_direct(&q, true, || false));
            assert!(poll_once(fut.as_mut(), &wakes).is_pending());
            let frames = [frame(9, 0, true), frame(8, 20, false)];
            let mut want = Vec::new();
            for f in &frames {
                q.borrow_mut().push_frame(f);
                want.extend_from_slice(&framing.head(f.flv().len()));
                want.extend_from_slice(f.flv());
                want.extend_from_slice(framing.tail());
            }
            assert!(q.borrow().is_empty(), "{framing:?}: sent, not queued");
            let mut got = vec![0u8; want.len()];
            theirs.read_exact(&mut got).unwrap();
            assert_eq!(got, want, "{framing:?}");
            assert_eq!(counters.wire_bytes.get(), want.len() as u64);
        }
    }

    proptest::proptest! {
        /// Whatever part of a framed frame a send took, the queued rest is exactly the remainder.
        #[test]
        fn a_partial_send_queues_exactly_the_rest(
            head in proptest::collection::vec(proptest::num::u8::ANY, 0..18),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            tail_len in 0usize..=2,
            sent_pick in proptest::num::usize::ANY,
        ) {
            let tail = &b"\r\n"[..tail_len];
            let whole = [&head[..], &body[..], tail].concat();
            let sent = sent_pick % (whole.len() + 1);
            let mut q = PlayerQueue::new(QueueLimits::default());
            q.queue_unsent(sent, &head, Bytes::from(body.clone()), tail);
            let mut rest = Vec::new();
            while let Some(it) = q.pop() {
                let Item::Unsent(b) = it else { panic!("only unsent bytes are queued") };
                proptest::prop_assert!(!b.is_empty());
                rest.extend_from_slice(&b);
            }
            proptest::prop_assert_eq!(&rest[..], &whole[sent..]);
        }
    }

    #[test]
    fn frames_queue_when_direct_is_not_allowed_or_the_wait_ended() {
        let (q, counters, _ours, _theirs) = direct_queue(DirectWire::Rtmp);
        let wakes = std::sync::Arc::new(CountWakes(Default::default()));
        {
            let mut fut = std::pin::pin!(ready_or_direct(&q, false, || false));
            assert!(poll_once(fut.as_mut(), &wakes).is_pending());
            q.borrow_mut().push_frame(&frame(9, 0, true));
        }
        assert_eq!(q.borrow().items.len(), 1, "not allowed: queued");
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        q.borrow_mut().pop();
        {
            let mut fut = std::pin::pin!(ready_or_direct(&q, true, || false));
            assert!(poll_once(fut.as_mut(), &wakes).is_pending());
        }
        // The wait was dropped (the writer may be gone): nothing may touch the socket.
        q.borrow_mut().push_frame(&frame(9, 40, false));
        assert_eq!(q.borrow().items.len(), 1);
        assert_eq!(counters.wire_bytes.get(), 0);
    }

    #[test]
    fn full_socket_falls_back_to_the_queue_and_wakes_the_writer() {
        let (q, counters, ours, _theirs) = direct_queue(DirectWire::Rtmp);
        ours.set_nonblocking(true).unwrap();
        let filler = vec![0u8; 64 * 1024];
        for _ in 0..10_000 {
            if std::io::Write::write(&mut &ours, &filler).is_err() {
                break;
            }
        }
        let wakes = std::sync::Arc::new(CountWakes(Default::default()));
        let mut fut = std::pin::pin!(ready_or_direct(&q, true, || false));
        assert!(poll_once(fut.as_mut(), &wakes).is_pending());
        q.borrow_mut().push_frame(&frame(9, 0, true));
        assert_eq!(q.borrow().items.len(), 1);
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(counters.wire_bytes.get(), 0);
        // Woken, the writer finds the frame; later frames queue behind it, not beside it.
        q.borrow_mut().push_frame(&frame(8, 10, false));
        assert_eq!(q.borrow().items.len(), 2);
        assert!(poll_once(fut.as_mut(), &wakes).is_ready());
    }

    #[test]
    fn lag_check_works_across_the_timestamp_wrap() {
        // The scenario of the slow player above, on a timeline that wraps modulo 2^32 (as a
        // stream's does after 49.7 days) between the 50 ms and 60 ms frames.
        let at = |ms: u32| (u32::MAX - 55).wrapping_add(ms);
        let mut q = PlayerQueue::new(QueueLimits {
            max_lag_ms: 100,
            max_bytes: 1 << 20,
        });
        q.push_frame(&frame(9, at(0), true));
        for ts in (10..=120).step_by(10) {
            q.push_frame(&frame(if ts % 20 == 0 { 9 } else { 8 }, at(ts), false));
        }
        for ts in [130, 140] {
            q.push_frame(&frame(9, at(ts), false));
        }
        let mut got = drain(&mut q);
        q.push_frame(&frame(9, at(150), true));
        q.push_frame(&frame(9, at(160), false));
        got.extend(drain(&mut q));
        let audio: Vec<_> = got.iter().filter(|f| f.0 == 8).map(|f| f.1).collect();
        assert_eq!(audio, [10, 30, 50, 70, 90, 110].map(at));
        let video: Vec<_> = got.iter().filter(|f| f.0 == 9).map(|f| f.1).collect();
        assert_eq!(video, [at(150), at(160)]);
        assert!(q.closed().is_none());

        // A queue spanning the wrap but within its bound keeps everything.
        let mut q = PlayerQueue::new(QueueLimits {
            max_lag_ms: 100,
            max_bytes: 1 << 20,
        });
        for ts in (0..=100).step_by(10) {
            q.push_frame(&frame(9, at(ts), ts == 0));
        }
        assert_eq!(q.lag_ms(), 100);
        assert_eq!(drain(&mut q).len(), 11);
        assert_eq!(q.dropped_packets, 0);

        // And a hopeless one is still closed.
        let mut q = PlayerQueue::new(QueueLimits {
            max_lag_ms: 100,
            max_bytes: 1 << 20,
        });
        for ts in (0..=300).step_by(10) {
            q.push_frame(&frame(8, at(ts), false));
        }
        assert_eq!(q.closed(), Some(CloseReason::TooSlow));
    }

    #[test]
    fn newest_frame_behind_the_oldest_is_no_lag() {
        let mut q = PlayerQueue::new(QueueLimits {
            max_lag_ms: 100,
            max_bytes: 1 << 20,
        });
        q.push_frame(&frame(9, 1000, true));
        q.push_frame(&frame(8, 980, false));
        assert_eq!(q.lag_ms(), 0);
    }

    #[test]
    fn hopeless_player_is_closed() {
        let mut q = PlayerQueue::new(QueueLimits {
            max_lag_ms: 100,
            max_bytes: 1 << 20,
        });
        for ts in (0..=300).step_by(10) {
            q.push_frame(&frame(8, ts, false));
        }
        assert_eq!(q.closed(), Some(CloseReason::TooSlow));
        assert!(q.is_empty());
    }
}
