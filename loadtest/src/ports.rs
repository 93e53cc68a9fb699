//! Loopback ports for the servers that the harness and the test suite start.
//!
//! A port the kernel picks for `bind(":0")` comes from its ephemeral range, the same range that
//! outgoing connections draw from. Between releasing such a probe and the server's own bind,
//! any player or publisher elsewhere in the process can connect out from that very port, and
//! the server then fails with "Address already in use". Ports below the ephemeral range are
//! never taken implicitly, so they are handed out here instead. A cursor shared by the whole
//! process never gives the same port twice, and a start point derived from the PID keeps test
//! binaries that run at the same time apart.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The lowest port handed out: clear of the well-known and most registered service ports.
const FLOOR: u16 = 10_000;
/// Fewer ports than this below the ephemeral range and the kernel's choice is used instead.
const MIN_SPAN: u16 = 2_000;

/// A loopback port nothing is bound to, not handed out before by this process.
pub fn free_port() -> u16 {
    match pool() {
        Some(pool) => pool.next(),
        None => kernel_port(),
    }
}

/// `N` distinct ports, as [`free_port`] gives them.
pub fn free_ports<const N: usize>() -> [u16; N] {
    std::array::from_fn(|_| free_port())
}

struct Pool {
    base: u16,
    span: u16,
    cursor: AtomicU32,
}

impl Pool {
    fn next(&self) -> u16 {
        for _ in 0..self.span {
            let step = self.cursor.fetch_add(1, Ordering::Relaxed) % u32::from(self.span);
            let port = self.base + step as u16;
            // Skips ports in use by anyone, including servers of earlier tests still in TIME_WAIT.
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
        panic!(
            "no free loopback port in {}..{}",
            self.base,
            self.base + self.span
        );
    }
}

fn pool() -> Option<&'static Pool> {
    static POOL: OnceLock<Option<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
        let (base, span) = below_ephemeral(&range)?;
        let start = std::process::id().wrapping_mul(7_919) % u32::from(span);
        Some(Pool {
            base,
            span,
            cursor: AtomicU32::new(start),
        })
    })
    .as_ref()
}

/// `(first port, count)` of the ports from [`FLOOR`] up to the ephemeral range given as the
/// kernel prints it ("32768\t60999"), or None when that leaves too few.
fn below_ephemeral(range: &str) -> Option<(u16, u16)> {
    let low: u16 = range.split_whitespace().next()?.parse().ok()?;
    let span = low.checked_sub(FLOOR)?;
    (span >= MIN_SPAN).then_some((FLOOR, span))
}

/// The kernel's pick, remembered so it is not handed out twice (it may return a port just
/// released).
fn kernel_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no fresh loopback port after 1000 tries");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_below_the_ephemeral_range() {
        assert_eq!(below_ephemeral("32768\t60999\n"), Some((10_000, 22_768)));
        assert_eq!(below_ephemeral("1024 65535"), None);
        assert_eq!(below_ephemeral("11000 65535"), None);
        assert_eq!(below_ephemeral("garbage"), None);
        assert_eq!(below_ephemeral(""), None);
    }

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ports = free_ports::<64>();
        let mut sorted = ports.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "a port was handed out twice");
        if let Some(pool) = pool() {
            for p in ports {
                assert!(
                    p >= pool.base && p < pool.base + pool.span,
                    "{p} outside the pool"
                );
            }
        }
        for p in ports {
            TcpListener::bind(("127.0.0.1", p)).expect("a handed-out port binds");
        }
    }

    #[test]
    fn a_port_in_use_is_skipped() {
        let Some(pool) = pool() else { return };
        let probe = Pool {
            base: pool.base,
            span: pool.span,
            cursor: AtomicU32::new(0),
        };
        let first = probe.next();
        let held = TcpListener::bind(("127.0.0.1", first)).expect("bind the first port");
        probe.cursor.store(0, Ordering::Relaxed);
        let second = probe.next();
        assert_ne!(second, first, "a bound port was handed out");
        drop(held);
    }
}
