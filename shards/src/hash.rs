//! Stream-key to shard mapping.
//!
//! The mapping must never change between releases: a key's owner shard decides where a stream's
//! state lives, and operators compare logs and metrics across versions and restarts. FNV-1a 64 is
//! tiny, has no seed (so it is identical in every process) and spreads short ASCII keys such as
//! `live/room` well enough for a handful of shards.

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`. Stable across releases (the constants are fixed by the FNV spec).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The shard that owns `key`: `fnv1a64(key) % nr_shards`.
///
/// Stable across releases and processes. `nr_shards == 0` maps everything to shard 0 rather than
/// dividing by zero, so a misconfigured caller gets a valid index instead of a panic.
pub fn shard_for(key: &str, nr_shards: usize) -> usize {
    if nr_shards == 0 {
        return 0;
    }
    // u64 -> usize after the modulo: the result is < nr_shards, which already fits a usize.
    (fnv1a64(key.as_bytes()) % nr_shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shard_for_fixed_vectors() {
        // Pinned values: if these change, stream ownership changes between releases.
        assert_eq!(
            shard_for("foobar", 7),
            (0x8594_4171_f739_67e8u64 % 7) as usize
        );
        assert_eq!(shard_for("a", 2), (0xaf63_dc4c_8601_ec8cu64 % 2) as usize);
        assert_eq!(shard_for("live/movie", 1), 0);
        assert_eq!(fnv1a64(b"live/movie"), 0xa33a_8c02_6914_c144);
        assert_eq!(shard_for("live/movie", 3), 2);
        assert_eq!(shard_for("live/movie", 8), 4);
        assert_eq!(shard_for("live/room1", 4), 2);
        assert_eq!(shard_for("live/room1", 8), 6);
        let h = fnv1a64(b"live/movie");
        for n in 1..=64 {
            assert_eq!(shard_for("live/movie", n), (h % n as u64) as usize);
        }
    }

    proptest::proptest! {
        #[test]
        fn always_a_valid_index(key in ".*", n in 1usize..512) {
            proptest::prop_assert!(shard_for(&key, n) < n);
            proptest::prop_assert_eq!(shard_for(&key, n), shard_for(&key, n));
        }
    }

    #[test]
    fn zero_shards_is_shard_zero() {
        assert_eq!(shard_for("live/movie", 0), 0);
    }

    #[test]
    fn spreads_keys_over_shards() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[shard_for(&format!("live/room{i}"), 4)] += 1;
        }
        for c in counts {
            assert!((700..1300).contains(&c), "uneven spread: {counts:?}");
        }
    }
}
