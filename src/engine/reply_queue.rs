//! Replies a connection's reader hands to its writer (RTMP acks and pongs, WebSocket pongs, a
//! push relay's answers to its remote), bounded in bytes.
//!
//! A peer that keeps asking while it does not read what it is sent would otherwise grow them
//! for as long as the writer waits on its full socket (`write_timeout`): about 2.6 times its
//! upload rate for RTMP pings. Past [`MAX_REPLY_BYTES`] the reader stops reading until the
//! writer has taken the replies. That passes the wait on to the peer (its own sends block),
//! never disconnects a peer that reads, and leaves ending a stuck one to the writer's timeout.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::task::{Poll, Waker};

use bytes::Bytes;

/// Replies that may wait for the writer, in bytes (see [`ReplyQueue::cost`]).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// What one queued reply costs besides its bytes (its slot and its allocation), so that many
/// tiny replies (a 2-byte WebSocket pong per 6-byte ping) count for the memory they hold.
const ENTRY_COST: usize = 64;

#[derive(Default)]
pub struct ReplyQueue {
    items: VecDeque<Bytes>,
    /// Accounted size of `items`: their bytes plus `ENTRY_COST` each.
    cost: usize,
    /// The reader, waiting for the writer to take the replies.
    reader: Option<Waker>,
    /// The writer is done: the reader must not wait for it.
    closed: bool,
}

impl ReplyQueue {
    pub fn push(&mut self, reply: Bytes) {
        self.cost += reply.len() + ENTRY_COST;
        self.items.push_back(reply);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Accounted size of what is queued.
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// Everything queued, for the writer's next batch; lets a waiting reader read on.
    pub fn take_all(&mut self) -> std::collections::vec_deque::Drain<'_, Bytes> {
        self.cost = 0;
        self.wake_reader();
        self.items.drain(..)
    }

    /// The writer is done: a reader waiting in [`wait_for_room`] returns.
    pub fn close(&mut self) {
        self.closed = true;
        self.wake_reader();
    }

    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }
}

/// The reader's wait after queueing replies: returns at once while they are within
/// [`MAX_REPLY_BYTES`], else when the writer has taken them (`true`) or is done (`false`: the
/// reader stops).
pub async fn wait_for_room(queue: &RefCell<ReplyQueue>) -> bool {
    std::future::poll_fn(|cx| {
        let mut q = queue.borrow_mut();
        if q.closed {
            Poll::Ready(false)
        } else if q.cost <= MAX_REPLY_BYTES {
            Poll::Ready(true)
        } else {
            q.reader = Some(cx.waker().clone());
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn the_reader_waits_past_the_bound_until_the_writer_takes_or_closes() {
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let q = RefCell::new(ReplyQueue::default());
        q.borrow_mut().push(Bytes::from_static(b"pong"));
        assert_eq!(q.borrow().cost(), 4 + ENTRY_COST);
        assert_eq!(pin!(wait_for_room(&q)).poll(&mut cx), Poll::Ready(true));
        while q.borrow().cost() <= MAX_REPLY_BYTES {
            q.borrow_mut().push(Bytes::from_static(b"pong"));
        }
        {
            let mut wait = pin!(wait_for_room(&q));
            assert_eq!(wait.as_mut().poll(&mut cx), Poll::Pending);
            let taken = q.borrow_mut().take_all().count();
            assert!(taken >= MAX_REPLY_BYTES / (4 + ENTRY_COST), "{taken}");
            assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
            assert_eq!(wait.poll(&mut cx), Poll::Ready(true));
        }
        while q.borrow().cost() <= MAX_REPLY_BYTES {
            q.borrow_mut().push(Bytes::from_static(b"pong"));
        }
        let mut wait = pin!(wait_for_room(&q));
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Pending);
        q.borrow_mut().close();
        assert_eq!(wakes.0.load(Ordering::Relaxed), 2);
        assert_eq!(wait.poll(&mut cx), Poll::Ready(false));
        assert!(!q.borrow().is_empty());
    }
}
