//! Starting and stopping the shards.
//!
//! Each data shard is a glommio `LocalExecutor` pinned to one CPU, in a thread we spawn ourselves
//! (named `shard-<i>`) so the shard knows its index; the control shard is one more executor,
//! unpinned (named `control`). All of them join one channel mesh before their main future runs.
//!
//! glommio orders mesh peers by executor id, and executor ids come from a global counter taken
//! when the executor is built. Executors are therefore built strictly one after another, in
//! shard order, so that mesh peer id == shard index; each shard checks this after joining.
//! Building them first and only then letting them run also means a failure to build any executor
//! (e.g. io_uring setup) is reported by `start` itself, with the already-built ones released.

use std::any::Any;
use std::future::Future;
use std::io;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use glommio::channels::channel_mesh::{FullMesh, MeshBuilder};
use glommio::{LocalExecutorBuilder, Placement};

use crate::router::{Envelope, Router};
use crate::stop::{StopHandle, StopSignal};

/// glommio registers this much memory with each of its three io_uring rings per executor, and
/// the kernel charges every registration to RLIMIT_MEMLOCK (8 MiB by default for non-root).
/// The default of 10 MiB makes registration fail (glommio then logs a warning and falls back to
/// unregistered buffers). Registered buffers only speed up DMA file I/O, which the server does
/// not use on its hot path, so the minimum glommio accepts (64 KiB) is enough:
/// 3 x 64 KiB per executor keeps even 40 executors under 8 MiB.
pub const IO_MEMORY: usize = 64 << 10;

/// io_uring submission depth per ring. Network I/O is mostly nonblocking syscalls first and ring
/// polls second, so a modest depth suffices; it also keeps ring memory small on kernels that
/// still charge rings to RLIMIT_MEMLOCK (< 5.12).
pub const RING_DEPTH: usize = 128;

/// How the runtime is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Number of data shards; 0 = one per CPU this process may run on.
    pub shards: usize,
    /// Capacity of each shard-to-shard queue (messages).
    pub channel_capacity: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shards: 0,
            channel_capacity: 1024,
        }
    }
}

/// What a shard's main future gets.
pub struct ShardCtx<M: Send + 'static> {
    /// Data shards `0..nr_shards`; the control shard is `nr_shards`.
    pub id: usize,
    /// Number of data shards.
    pub nr_shards: usize,
    /// Peer id of the control shard (== `nr_shards`).
    pub control_id: usize,
    pub router: Router<M>,
    pub stop: StopSignal,
}

impl<M: Send + 'static> Clone for ShardCtx<M> {
    fn clone(&self) -> Self {
        ShardCtx {
            id: self.id,
            nr_shards: self.nr_shards,
            control_id: self.control_id,
            router: self.router.clone(),
            stop: self.stop.clone(),
        }
    }
}

impl<M: Send + 'static> ShardCtx<M> {
    pub fn is_control(&self) -> bool {
        self.id == self.control_id
    }
}

/// CPU ids the data shards are pinned to, in shard order (wrapping when shards > CPUs).
/// `None` when the allowed CPU set cannot be read; shards then run unpinned.
pub fn shard_cpus(shards: usize) -> (usize, Option<Vec<usize>>) {
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let n = if shards > 0 {
        shards
    } else if !cores.is_empty() {
        cores.len()
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    if cores.is_empty() {
        return (n, None);
    }
    (n, Some((0..n).map(|i| cores[i % cores.len()]).collect()))
}

pub struct Runtime;

impl Runtime {
    /// Starts the data shards and the control shard and returns once every executor is built.
    ///
    /// SIGINT and SIGTERM are blocked in every runtime thread (so that
    /// [`RuntimeHandle::wait_for_termination_signal`] on the main thread receives them); the
    /// calling thread's own mask is left as it was.
    pub fn start<M, D, DF, C, CF>(
        cfg: RuntimeConfig,
        data_main: D,
        control_main: C,
    ) -> io::Result<RuntimeHandle>
    where
        M: Send + 'static,
        D: Fn(ShardCtx<M>) -> DF + Send + Sync + Clone + 'static,
        DF: Future<Output = ()> + 'static,
        C: FnOnce(ShardCtx<M>) -> CF + Send + 'static,
        CF: Future<Output = ()> + 'static,
    {
        let (nr_shards, cpus) = shard_cpus(cfg.shards);
        let capacity = cfg.channel_capacity.max(1);
        let mesh: FullMesh<Envelope<M>> = MeshBuilder::full(nr_shards + 1, capacity);
        let stop = StopHandle::new();

        let _mask = TerminationSignalsHeld::block_termination()?;
        let setup = |id| ShardSetup {
            id,
            nr_shards,
            capacity,
            mesh: mesh.clone(),
            stop: stop.clone(),
        };
        let mut pending: Vec<Built> = Vec::with_capacity(nr_shards + 1);
        let mut result: io::Result<()> = Ok(());
        for id in 0..nr_shards {
            let placement = match &cpus {
                Some(c) => Placement::Fixed(c[id]),
                None => Placement::Unbound,
            };
            match spawn_shard(
                format!("shard-{id}"),
                placement,
                setup(id),
                data_main.clone(),
            ) {
                Ok(b) => pending.push(b),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            let control = setup(nr_shards);
            match spawn_shard("control".into(), Placement::Unbound, control, control_main) {
                Ok(b) => pending.push(b),
                Err(e) => result = Err(e),
            }
        }

        if let Err(e) = result {
            for b in &pending {
                let _ = b.go.send(false);
            }
            for b in pending {
                let _ = b.thread.join();
            }
            return Err(e);
        }
        let mut threads = Vec::with_capacity(pending.len());
        for b in pending {
            // A send error means the thread already died; join() will report it.
            let _ = b.go.send(true);
            threads.push((b.name, b.thread));
        }
        Ok(RuntimeHandle {
            threads,
            stop,
            nr_shards,
            _mesh: Box::new(mesh),
        })
    }
}

struct ShardSetup<M: Send + 'static> {
    id: usize,
    nr_shards: usize,
    capacity: usize,
    mesh: FullMesh<Envelope<M>>,
    stop: StopHandle,
}

struct Built {
    name: String,
    thread: JoinHandle<()>,
    go: mpsc::Sender<bool>,
}

/// Spawns one shard thread, waits until its executor is built, and leaves it waiting for "go".
fn spawn_shard<M, F, Fut>(
    name: String,
    placement: Placement,
    setup: ShardSetup<M>,
    main: F,
) -> io::Result<Built>
where
    M: Send + 'static,
    F: FnOnce(ShardCtx<M>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
    let (go_tx, go_rx) = mpsc::channel::<bool>();
    let thread_name = name.clone();
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let ex = LocalExecutorBuilder::new(placement)
                .name(&thread_name)
                .io_memory(IO_MEMORY)
                .ring_depth(RING_DEPTH)
                .make();
            let ex = match ex {
                Ok(ex) => {
                    let _ = ready_tx.send(Ok(()));
                    ex
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(io::Error::other(format!(
                        "{thread_name}: cannot build executor: {e}"
                    ))));
                    return;
                }
            };
            if go_rx.recv() != Ok(true) {
                return;
            }
            // A panicking shard stops the whole runtime so join() returns instead of hanging.
            let _guard = StopOnPanic(setup.stop.clone());
            ex.run(async move {
                let ShardSetup {
                    id,
                    nr_shards,
                    capacity,
                    mesh,
                    stop,
                } = setup;
                let (senders, receivers) = match mesh.join().await {
                    Ok(halves) => halves,
                    Err(e) => panic!("{thread_name}: cannot join the channel mesh: {e}"),
                };
                assert_eq!(
                    senders.peer_id(),
                    id,
                    "{thread_name}: mesh peer id differs from shard index (executors built out of order)"
                );
                let router = Router::new(senders, receivers, capacity);
                let ctx = ShardCtx {
                    id,
                    nr_shards,
                    control_id: nr_shards,
                    router: router.clone(),
                    stop: stop.signal(),
                };
                tracing::debug!(shard = id, "shard running");
                main(ctx).await;
                router.close();
                // Let the receive loops observe the close and drop their channel ends while
                // the reactor is still alive to notify the peers.
                futures_lite::future::yield_now().await;
                tracing::debug!(shard = id, "shard finished");
            });
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(Built {
            name,
            thread,
            go: go_tx,
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(io::Error::other(format!(
                "{name}: thread died while starting"
            )))
        }
    }
}

struct StopOnPanic(StopHandle);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop();
        }
    }
}

/// Owner of the running shards.
pub struct RuntimeHandle {
    threads: Vec<(String, JoinHandle<()>)>,
    stop: StopHandle,
    nr_shards: usize,
    // One clone of the mesh builder stays here until the threads are joined: glommio's builder
    // shares an `Rc` between threads, so no shard thread should be the one to free it.
    _mesh: Box<dyn Any + Send>,
}

impl std::fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("nr_shards", &self.nr_shards)
            .field("stopped", &self.stop.is_stopped())
            .finish()
    }
}

impl RuntimeHandle {
    /// Number of data shards.
    pub fn nr_shards(&self) -> usize {
        self.nr_shards
    }

    /// Asks every shard to stop: all [`StopSignal`]s resolve within ~[`crate::STOP_POLL`].
    /// Shards end when their main futures return.
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// A thread-safe handle that can request the stop later (e.g. from a test thread).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Blocks the calling thread until SIGINT or SIGTERM arrives, or until the runtime stops by
    /// itself because a shard panicked: a server whose shards are gone must not linger as a
    /// process that looks alive to its supervisor.
    pub fn wait_for_termination_signal(&self) -> io::Result<Termination> {
        wait_for_termination_signal(&self.stop)
    }

    /// Waits for every shard thread. Errors if any of them panicked (all are joined regardless).
    pub fn join(mut self) -> io::Result<()> {
        let mut panicked = Vec::new();
        for (name, t) in self.threads.drain(..) {
            if t.join().is_err() {
                panicked.push(name);
            }
        }
        if panicked.is_empty() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "shard thread(s) panicked: {}",
                panicked.join(", ")
            )))
        }
    }
}

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset with valid signal numbers cannot fail.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT/SIGTERM in the calling thread while alive (threads spawned meanwhile inherit
/// the mask), and restores the previous mask on drop. A signal that arrives meanwhile stays
/// pending: held from the start of `main` up to [`RuntimeHandle::wait_for_termination_signal`], a signal sent
/// while the server starts is answered with a clean stop instead of the default action.
pub struct TerminationSignalsHeld {
    old: libc::sigset_t,
}

impl TerminationSignalsHeld {
    pub fn block_termination() -> io::Result<Self> {
        let set = termination_set();
        // SAFETY: both pointers are valid sigset_t values for the duration of the call.
        let old = unsafe {
            let mut old: libc::sigset_t = std::mem::zeroed();
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            old
        };
        Ok(TerminationSignalsHeld { old })
    }
}

impl Drop for TerminationSignalsHeld {
    fn drop(&mut self) {
        // SAFETY: restores a mask previously returned by pthread_sigmask.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

/// What ended [`RuntimeHandle::wait_for_termination_signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// SIGINT or SIGTERM (the number).
    Signal(i32),
    /// The runtime stopped without a signal: a shard panicked (join() reports which).
    Stopped,
}

/// How often the wait looks at the stop flag between signals.
const STOP_CHECK_EVERY: Duration = Duration::from_millis(200);

/// Blocks the calling thread until SIGINT or SIGTERM, or until `stop` is set. The signals are
/// blocked in this thread while waiting (sigwait needs that) and the mask is restored afterwards,
/// so unless the caller still holds them, a second Ctrl-C during a slow shutdown terminates the
/// process the default way.
fn wait_for_termination_signal(stop: &StopHandle) -> io::Result<Termination> {
    let set = termination_set();
    let _mask = TerminationSignalsHeld::block_termination()?;
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: STOP_CHECK_EVERY.as_nanos() as libc::c_long,
    };
    loop {
        if stop.is_stopped() {
            return Ok(Termination::Stopped);
        }
        // SAFETY: an all-zero siginfo_t is a valid output buffer.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set`, `info` and `timeout` are valid for the call.
        let sig = unsafe { libc::sigtimedwait(&set, &mut info, &timeout) };
        if sig < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                _ => return Err(e),
            }
        }
        // Who asked us to stop is worth a log line when a server goes away unexpectedly.
        // SAFETY: si_pid is valid for signals sent by kill(2), which SIGINT/SIGTERM are unless
        // they come from the terminal (then it reads 0).
        let from = unsafe { info.si_pid() };
        tracing::info!(signal = sig, from_pid = from, "termination signal");
        return Ok(Termination::Signal(sig));
    }
}
