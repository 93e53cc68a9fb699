//! Cooperative shutdown.
//!
//! The stop request comes from a foreign thread (main, after SIGTERM). Waking glommio tasks from a
//! foreign thread works, but a waker can outlive the executor it belongs to once shards start
//! exiting, so instead each shard runs one watcher task that polls the shared flag every
//! [`STOP_POLL`] and wakes that shard's waiters locally, so every waker stays on its own thread.
//! The poll is not free: each wake-up of an idle shard ends in a park, and glommio issues a
//! `membarrier` (an IPI to every CPU of the process, costly on VMs) before each park; at a 20 ms
//! poll that was about half of all parks of a lightly loaded server. 200 ms keeps shutdown prompt.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How often each shard's watcher looks at the stop flag; bounds the stop latency.
pub const STOP_POLL: Duration = Duration::from_millis(200);

/// The sending side of a stop request: `Send + Sync`, usable from any thread.
#[derive(Clone, Debug, Default)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
}

impl StopHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every [`StopSignal`] derived from this handle to resolve (within ~[`STOP_POLL`]).
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Release);
    }

    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// A waitable signal for the calling shard. Must be called on a glommio executor thread;
    /// clone the result to hand it to tasks of the same shard.
    pub fn signal(&self) -> StopSignal {
        StopSignal {
            flag: self.flag.clone(),
            local: Rc::new(LocalWaiters::default()),
        }
    }
}

#[derive(Default)]
struct LocalWaiters {
    watcher_started: Cell<bool>,
    next_key: Cell<u64>,
    wakers: RefCell<HashMap<u64, Waker>>,
}

/// Per-shard view of the stop request. Cheap to clone (an `Rc` and an `Arc`).
#[derive(Clone)]
pub struct StopSignal {
    flag: Arc<AtomicBool>,
    local: Rc<LocalWaiters>,
}

impl std::fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopSignal")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl StopSignal {
    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Resolves once a stop was requested. Cancel-safe. Must be awaited on a glommio executor.
    pub async fn wait(&self) {
        if self.is_stopped() {
            return;
        }
        self.ensure_watcher();
        let key = self.local.next_key.get();
        self.local.next_key.set(key.wrapping_add(1));
        WaitStop { signal: self, key }.await
    }

    fn ensure_watcher(&self) {
        if self.local.watcher_started.replace(true) {
            return;
        }
        let flag = self.flag.clone();
        let local = self.local.clone();
        glommio::spawn_local(async move {
            while !flag.load(Ordering::Acquire) {
                glommio::timer::sleep(STOP_POLL).await;
            }
            // Take the map first: waking may run nothing now, but keeps the borrow short.
            let wakers = std::mem::take(&mut *local.wakers.borrow_mut());
            for (_, w) in wakers {
                w.wake();
            }
        })
        .detach();
    }
}

struct WaitStop<'a> {
    signal: &'a StopSignal,
    key: u64,
}

impl Future for WaitStop<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_stopped() {
            self.signal.local.wakers.borrow_mut().remove(&self.key);
            return Poll::Ready(());
        }
        self.signal
            .local
            .wakers
            .borrow_mut()
            .insert(self.key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for WaitStop<'_> {
    fn drop(&mut self) {
        self.signal.local.wakers.borrow_mut().remove(&self.key);
    }
}
