#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

use shards::RuntimeHandle;

/// Stops the runtime and joins it, failing the test instead of hanging if a shard does not end.
pub fn stop_and_join(handle: RuntimeHandle, within: Duration) -> std::io::Result<()> {
    handle.stop();
    join_within(handle, within)
}

pub fn join_within(handle: RuntimeHandle, within: Duration) -> std::io::Result<()> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    rx.recv_timeout(within)
        .unwrap_or_else(|_| panic!("runtime did not end within {within:?}"))
}

/// Receives exactly `n` reports or panics after `within`.
pub fn collect<T>(rx: &crossbeam_channel::Receiver<T>, n: usize, within: Duration) -> Vec<T> {
    let deadline = std::time::Instant::now() + within;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) => out.push(v),
            Err(_) => panic!("got {} of {n} reports within {within:?}", out.len()),
        }
    }
    out
}

/// Deterministic xorshift64* so the tests are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
