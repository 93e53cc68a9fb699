//! A shard-wide clock: every task waiting on it wakes at the same instant.
//!
//! Used to merge writes: a player that waits for the next tick before sending takes everything
//! queued since its last write in one `sendmsg`, and all players of the shard wake together, so
//! a thousand players cost one timer per tick instead of one per player per write.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

pub struct SharedTick {
    interval: Duration,
    /// Ticks so far; a waiter is done once this moved past the value it saw first.
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    running: Cell<bool>,
}

impl SharedTick {
    pub fn new(interval: Duration) -> Rc<Self> {
        Rc::new(Self {
            interval,
            generation: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            running: Cell::new(false),
        })
    }

    /// Resolves at the shard's next tick (at most `interval` from now).
    pub async fn next(self: &Rc<Self>) {
        let seen = self.generation.get();
        let mut registered = false;
        poll_fn(|cx| {
            if self.generation.get() != seen {
                return Poll::Ready(());
            }
            if !registered {
                self.waiters.borrow_mut().push(cx.waker().clone());
                registered = true;
            }
            if !self.running.replace(true) {
                let me = self.clone();
                glommio::spawn_local(async move { me.run().await }).detach();
            }
            Poll::Pending
        })
        .await
    }

    async fn run(self: Rc<Self>) {
        loop {
            glommio::timer::Timer::new(self.interval).await;
            self.generation.set(self.generation.get().wrapping_add(1));
            let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
            if waiters.is_empty() {
                // Nobody waits: stop ticking until somebody does.
                self.running.set(false);
                return;
            }
            for w in waiters {
                w.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn waiters_wake_together_and_the_clock_stops_when_idle() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(64 << 10)
            .make()
            .unwrap()
            .run(async {
                let tick = SharedTick::new(Duration::from_millis(20));
                let woke = Rc::new(RefCell::new(Vec::new()));
                let mut tasks = Vec::new();
                let start = Instant::now();
                for i in 0..10 {
                    let tick = tick.clone();
                    let woke = woke.clone();
                    tasks.push(glommio::spawn_local(async move {
                        tick.next().await;
                        woke.borrow_mut()
                            .push((i, start.elapsed(), tick.generation.get()));
                    }));
                }
                for t in tasks {
                    t.await;
                }
                let times: Vec<Duration> = woke.borrow().iter().map(|w| w.1).collect();
                assert_eq!(times.len(), 10);
                // Together: all woke on the first tick (exact, whatever the machine's load)...
                let gens: Vec<u64> = woke.borrow().iter().map(|w| w.2).collect();
                assert!(gens.iter().all(|&g| g == 1), "woke on ticks {gens:?}");
                let first = *times.iter().min().unwrap();
                let last = *times.iter().max().unwrap();
                assert!(first >= Duration::from_millis(15), "woke early: {first:?}");
                // ...and in one burst (slack for a loaded machine preempting the executor).
                assert!(
                    last - first < Duration::from_millis(50),
                    "not together: {times:?}"
                );
                // One more interval with no waiter and the ticker stops (polled: a loaded
                // machine may run the ticker's last timer late).
                let deadline = Instant::now() + Duration::from_secs(2);
                while tick.running.get() {
                    assert!(Instant::now() < deadline, "the idle ticker kept running");
                    glommio::timer::Timer::new(Duration::from_millis(20)).await;
                }
                assert_eq!(tick.generation.get(), 2, "ticked while idle");
                // ...and starts again for the next waiter.
                let t = Instant::now();
                tick.next().await;
                assert!(t.elapsed() <= Duration::from_secs(1));
            });
    }
}
