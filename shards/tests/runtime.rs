//! Runtime: shard layout, thread names, stop latency, panic reporting, termination signals.

mod common;

use std::time::{Duration, Instant};

use common::{collect, join_within, stop_and_join};
use shards::{Runtime, RuntimeConfig, ShardCtx, Termination};

#[derive(Debug)]
struct Seen {
    id: usize,
    nr_shards: usize,
    control_id: usize,
    router_id: usize,
    nr_peers: usize,
    thread: String,
}

#[test]
fn four_shards_and_control_start_report_and_stop() {
    let (tx, rx) = crossbeam_channel::unbounded::<Seen>();
    let (stopped_tx, stopped_rx) = crossbeam_channel::unbounded::<(usize, Instant)>();
    let report = move |ctx: &ShardCtx<()>| Seen {
        id: ctx.id,
        nr_shards: ctx.nr_shards,
        control_id: ctx.control_id,
        router_id: ctx.router.id(),
        nr_peers: ctx.router.nr_peers(),
        thread: std::thread::current().name().unwrap_or("").to_string(),
    };
    let (tx2, stopped_tx2) = (tx.clone(), stopped_tx.clone());
    let handle = Runtime::start(
        RuntimeConfig {
            shards: 4,
            channel_capacity: 16,
        },
        move |ctx: ShardCtx<()>| {
            let tx = tx.clone();
            let stopped_tx = stopped_tx.clone();
            async move {
                tx.send(report(&ctx)).unwrap();
                assert!(!ctx.stop.is_stopped());
                ctx.stop.wait().await;
                assert!(ctx.stop.is_stopped());
                stopped_tx.send((ctx.id, Instant::now())).unwrap();
            }
        },
        move |ctx: ShardCtx<()>| async move {
            tx2.send(report(&ctx)).unwrap();
            // Several waiters on one shard all resolve.
            let a = ctx.stop.clone();
            let b = ctx.stop.clone();
            futures_lite::future::zip(a.wait(), b.wait()).await;
            stopped_tx2.send((ctx.id, Instant::now())).unwrap();
        },
    )
    .expect("start");
    assert_eq!(handle.nr_shards(), 4);

    let mut seen = collect(&rx, 5, Duration::from_secs(10));
    seen.sort_by_key(|s| s.id);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.id, i);
        assert_eq!(s.router_id, i);
        assert_eq!(s.nr_shards, 4);
        assert_eq!(s.control_id, 4);
        assert_eq!(s.nr_peers, 5);
        let want = if i < 4 {
            format!("shard-{i}")
        } else {
            "control".to_string()
        };
        assert_eq!(s.thread, want);
    }

    let asked = Instant::now();
    handle.stop();
    let stopped = collect(&stopped_rx, 5, Duration::from_secs(5));
    for (id, at) in stopped {
        let latency = at.duration_since(asked);
        assert!(
            latency < Duration::from_millis(500),
            "shard {id} took {latency:?} to see stop"
        );
    }
    join_within(handle, Duration::from_secs(10)).expect("clean join");
}

#[test]
fn zero_shards_means_one_per_allowed_cpu() {
    let cores = core_affinity::get_core_ids().map_or(0, |c| c.len());
    let handle = Runtime::start(
        RuntimeConfig {
            shards: 0,
            channel_capacity: 4,
        },
        |ctx: ShardCtx<()>| async move { ctx.stop.wait().await },
        |ctx: ShardCtx<()>| async move { ctx.stop.wait().await },
    )
    .expect("start");
    if cores > 0 {
        assert_eq!(handle.nr_shards(), cores);
    } else {
        assert!(handle.nr_shards() >= 1);
    }
    stop_and_join(handle, Duration::from_secs(10)).expect("clean join");
}

#[test]
fn a_panicking_shard_stops_the_runtime_and_join_reports_it() {
    let handle = Runtime::start(
        RuntimeConfig {
            shards: 2,
            channel_capacity: 4,
        },
        |ctx: ShardCtx<()>| async move {
            if ctx.id == 1 {
                panic!("shard 1 fails on purpose");
            }
            ctx.stop.wait().await;
        },
        |ctx: ShardCtx<()>| async move { ctx.stop.wait().await },
    )
    .expect("start");
    // No stop() here: the panic itself must bring the other shards down, and end the main
    // thread's wait for signals (so the process exits instead of lingering without shards).
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let ended = handle.wait_for_termination_signal();
        tx.send(ended.map_err(|e| e.to_string())).unwrap();
        handle
    });
    let ended = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the wait for signals did not end after a shard panicked");
    assert_eq!(ended, Ok(Termination::Stopped));
    let handle = waiter.join().expect("waiter thread");
    let err = join_within(handle, Duration::from_secs(10)).expect_err("panic must be reported");
    assert!(err.to_string().contains("shard-1"), "{err}");
}

#[test]
fn main_returning_early_ends_the_shard() {
    let handle = Runtime::start(
        RuntimeConfig {
            shards: 2,
            channel_capacity: 4,
        },
        |_ctx: ShardCtx<u32>| async move {},
        |_ctx: ShardCtx<u32>| async move {},
    )
    .expect("start");
    join_within(handle, Duration::from_secs(10)).expect("clean join");
}

#[test]
fn termination_signal_wakes_the_waiting_thread() {
    let handle = Runtime::start(
        RuntimeConfig {
            shards: 1,
            channel_capacity: 4,
        },
        |ctx: ShardCtx<()>| async move { ctx.stop.wait().await },
        |ctx: ShardCtx<()>| async move { ctx.stop.wait().await },
    )
    .expect("start");

    // Other test threads of this process do not block SIGTERM, so a process-directed signal
    // could kill the test binary. Direct it at this thread instead, after blocking it here so
    // it stays pending until sigwait picks it up.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
            0
        );
    }
    let me = unsafe { libc::pthread_self() };
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(unsafe { libc::pthread_kill(me, libc::SIGTERM) }, 0);
    });
    let ended = handle.wait_for_termination_signal().expect("sigwait");
    assert_eq!(ended, Termination::Signal(libc::SIGTERM));
    killer.join().unwrap();
    stop_and_join(handle, Duration::from_secs(10)).expect("clean join");
}
