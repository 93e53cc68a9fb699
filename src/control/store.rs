//! The control shard's key store as an async service.
//!
//! The memory store answers inline. A blocking store (Redis) runs on glommio's blocking thread
//! pool so the control executor never waits on a socket; each call is bounded by
//! [`KeyService::timeout`] and the number of calls queued for the pool is capped, so a slow or
//! dead backend costs callers at most that bound and never grows a queue without limit.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::future;
use glommio::timer::Timer;

use super::keys::{KeyStore, StoreError};

/// Default answer bound for a blocking store.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Calls allowed in the blocking pool at once; beyond it callers get an error at once.
pub const MAX_IN_FLIGHT: usize = 64;

type Blocking = Arc<Mutex<dyn KeyStore + Send>>;

#[derive(Clone)]
enum Backend {
    Local(Rc<RefCell<dyn KeyStore>>),
    Blocking(Blocking),
}

/// The key store as the control shard's tasks use it (cheap to clone).
#[derive(Clone)]
pub struct KeyService {
    backend: Backend,
    name: &'static str,
    timeout: Duration,
    in_flight: Rc<Cell<usize>>,
    errors: Rc<Cell<u64>>,
}

impl KeyService {
    /// A store used inline on the executor (it must never block).
    pub fn local(store: Rc<RefCell<dyn KeyStore>>) -> KeyService {
        Self::make(Backend::Local(store), "memory")
    }

    /// A store whose calls block (network I/O): run on the blocking pool, bounded by `timeout`.
    pub fn blocking(
        store: impl KeyStore + Send + 'static,
        name: &'static str,
        timeout: Duration,
    ) -> KeyService {
        let mut s = Self::make(Backend::Blocking(Arc::new(Mutex::new(store))), name);
        s.timeout = timeout;
        s
    }

    fn make(backend: Backend, name: &'static str) -> KeyService {
        KeyService {
            backend,
            name,
            timeout: DEFAULT_TIMEOUT,
            in_flight: Rc::new(Cell::new(0)),
            errors: Rc::new(Cell::new(0)),
        }
    }

    /// `memory` or `redis`, for metrics.
    pub fn backend_name(&self) -> &'static str {
        self.name
    }

    /// Failed store calls since start (timeouts and overload included).
    pub fn error_count(&self) -> u64 {
        self.errors.get()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `f` against the store and counts its failure, if any.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn KeyStore) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let result = match &self.backend {
            Backend::Local(store) => f(&mut *store.borrow_mut()),
            Backend::Blocking(store) => self.offload(store.clone(), f).await,
        };
        if let Err(e) = &result {
            self.errors.set(self.errors.get() + 1);
            tracing::warn!("key store ({}): {e}", self.name);
        }
        result
    }

    async fn offload<R: Send + 'static>(
        &self,
        store: Blocking,
        f: impl FnOnce(&mut dyn KeyStore) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        if self.in_flight.get() >= MAX_IN_FLIGHT {
            return Err(StoreError::Unavailable(
                "too many requests waiting for the key store".into(),
            ));
        }
        self.in_flight.set(self.in_flight.get() + 1);
        let in_flight = self.in_flight.clone();
        // A detached task owns the pool job, so a caller that gives up at the deadline leaves
        // the count correct when the job eventually ends.
        let job = glommio::spawn_local(async move {
            let r = glommio::executor()
                .spawn_blocking(move || {
                    // A poisoned lock only means an earlier call panicked; the store holds no
                    // invariant that a panic could break (at worst a dropped connection).
                    let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
                    f(&mut *guard)
                })
                .await;
            in_flight.set(in_flight.get() - 1);
            r
        })
        .detach();
        let timeout = self.timeout;
        future::or(
            async move {
                job.await.unwrap_or_else(|| {
                    Err(StoreError::Unavailable("key store call cancelled".into()))
                })
            },
            async move {
                Timer::new(timeout).await;
                Err(StoreError::Unavailable(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                )))
            },
        )
        .await
    }

    pub async fn get_or_create(&self, room: &str) -> Result<String, StoreError> {
        let room = room.to_string();
        self.call(move |s| s.get_or_create(&room)).await
    }

    pub async fn reset(&self, room: &str) -> Result<String, StoreError> {
        let room = room.to_string();
        self.call(move |s| s.reset(&room)).await
    }

    pub async fn delete(&self, room: &str) -> Result<bool, StoreError> {
        let room = room.to_string();
        self.call(move |s| s.delete(&room)).await
    }

    pub async fn room_for_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.call(move |s| s.room_for_key(&key)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::keys::MemoryKeyStore;
    use std::time::Instant;

    /// Answers after `delay`, blocking the calling thread like a slow Redis.
    struct Slow(Duration);
    impl KeyStore for Slow {
        fn get_or_create(&mut self, room: &str) -> Result<String, StoreError> {
            std::thread::sleep(self.0);
            Ok(format!("k-{room}"))
        }
        fn reset(&mut self, room: &str) -> Result<String, StoreError> {
            self.get_or_create(room)
        }
        fn delete(&mut self, _: &str) -> Result<bool, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        fn room_for_key(&mut self, _: &str) -> Result<Option<String>, StoreError> {
            Ok(None)
        }
    }

    fn run<T: Send + 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
        glommio::LocalExecutorBuilder::default()
            .io_memory(64 << 10)
            .ring_depth(64)
            .make()
            .expect("executor")
            .run(f)
    }

    #[test]
    fn blocking_calls_answer_and_time_out_without_blocking_the_executor() {
        run(async {
            // A slow store that answers within the bound (the bound is generous: what is
            // checked is the answer, not how fast a loaded machine delivers it).
            let svc = KeyService::blocking(
                Slow(Duration::from_millis(50)),
                "slow",
                Duration::from_secs(2),
            );
            assert_eq!(svc.get_or_create("a").await, Ok("k-a".into()));
            assert_eq!(svc.error_count(), 0);
            assert!(svc.delete("a").await.is_err());
            assert_eq!(svc.error_count(), 1);

            // A store slower than the bound: the call gives up at the bound, long before the
            // store would answer (10 s, on a pool thread the test does not wait for). The bound
            // is long enough for the ticker below to tick on a loaded machine.
            let svc = KeyService::blocking(
                Slow(Duration::from_secs(10)),
                "slow",
                Duration::from_secs(1),
            );
            // A timer on the executor keeps ticking while the call is stuck in the pool.
            let ticks = Rc::new(Cell::new(0));
            let t = ticks.clone();
            glommio::spawn_local(async move {
                for _ in 0..10 {
                    Timer::new(Duration::from_millis(10)).await;
                    t.set(t.get() + 1);
                }
            })
            .detach();
            let t0 = Instant::now();
            let err = svc.get_or_create("a").await.expect_err("times out");
            let waited = t0.elapsed();
            assert!(waited < Duration::from_secs(3), "{waited:?}");
            assert_eq!(
                err,
                StoreError::Unavailable("no answer within 1000 ms".into())
            );
            assert!(ticks.get() >= 5, "executor was blocked: {}", ticks.get());
            assert_eq!(svc.in_flight.get(), 1);
            assert_eq!(svc.error_count(), 1);
        });
    }

    #[test]
    fn local_store_answers_inline() {
        run(async {
            let svc = KeyService::local(Rc::new(RefCell::new(MemoryKeyStore::new())));
            let k = svc.get_or_create("movie").await.expect("key");
            assert_eq!(svc.room_for_key(&k).await, Ok(Some("movie".into())));
            assert_eq!(svc.delete("movie").await, Ok(true));
            assert_eq!(svc.backend_name(), "memory");
        });
    }
}
