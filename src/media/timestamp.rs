/// Maps a stream's incoming RTMP timestamps onto one timeline that starts at 0, survives the
/// 32-bit wrap of RTMP timestamps and continues across publisher sessions (takeover or
/// reconnect), so players never see time go back by more than the publisher itself sent.
///
/// Within one publisher session the offset is constant while the publisher's timestamps move
/// by less than [`MAX_JUMP_MS`](Self::MAX_JUMP_MS): relative timing (including small
/// audio/video interleaving steps backwards) is kept exactly, which is what makes the bytes a
/// player receives equal the bytes published, timestamps shifted by one constant.
///
/// A timestamp further than that from the highest output so far, forwards or backwards, is a
/// discontinuity (an encoder restart, a broken clock, or a publisher freezing the timeline on
/// purpose with jumps of 2^31 - 1): the timeline continues from just after the highest output,
/// with a new constant offset. So the output never runs ahead of, or falls behind, the highest
/// output by more than `MAX_JUMP_MS` per packet, and the timeline a stream key carries over to
/// its next publishers stays sane.
///
/// The output is the unbounded timeline modulo 2^32, as RTMP and FLV define timestamps: a
/// 24/7 stream wraps after 49.7 days and goes on. Consumers compare output timestamps with
/// `wrapping_sub` read as `i32`, which is exact as long as the two are less than 2^31 ms
/// (24.8 days) apart.
#[derive(Debug, Default)]
pub struct TimestampNormaliser {
    /// Last raw timestamp of the current session.
    last_raw: Option<u32>,
    /// Output timeline position of the last packet, before the clamp at 0 (only the very start
    /// of a stream can be below 0: packets slightly before its first one).
    pos: i64,
    /// Highest output so far (unwrapped); the next session starts right after it.
    high_water: i64,
    /// Some packet was ever normalised (the first one of the stream maps to 0).
    started: bool,
}

impl TimestampNormaliser {
    /// Largest step, in ms, a publisher's timestamps may take away from the highest output
    /// without being treated as a discontinuity. Far above any real gap between packets of a
    /// live stream (audio frames are ~20-60 ms apart, and even a sparse video track sends a
    /// frame every few seconds) and equal to the default lag a player's queue tolerates, so a
    /// jump alone never makes a player look hopeless (that takes twice the lag).
    pub const MAX_JUMP_MS: u32 = 10_000;

    pub fn new() -> Self {
        Self::default()
    }

    /// Call when a new publisher session starts on this stream: its first timestamp is mapped
    /// just after the last one sent.
    pub fn new_session(&mut self) {
        self.last_raw = None;
    }

    /// The output timestamp of the last packet (0 before any), without moving the timeline:
    /// for packets that carry no media time. Encoders stamp metadata they resend mid-stream
    /// with 0, which `normalise` would read as two discontinuities.
    pub fn current(&self) -> u32 {
        // Modulo 2^32, like `normalise`.
        self.pos.max(0) as u32
    }

    pub fn normalise(&mut self, raw: u32) -> u32 {
        self.pos = match self.last_raw {
            None if !self.started => 0,
            None => self.high_water + 1,
            Some(last) => next_position(self.pos, self.high_water, last, raw),
        };
        self.last_raw = Some(raw);
        self.started = true;
        let out = self.pos.max(0);
        self.high_water = self.high_water.max(out);
        // Modulo 2^32 (`out` is never negative).
        out as u32
    }
}

/// One step of an unwrapped timeline (the stream's, and the HLS segmenter's own): the position
/// of a packet stamped `raw` after one stamped `last` at `pos`, where `high` is the highest
/// position so far. The signed 32-bit difference handles the wrap both ways; a step further
/// than [`TimestampNormaliser::MAX_JUMP_MS`] from `high` continues right after it instead.
pub fn next_position(pos: i64, high: i64, last: u32, raw: u32) -> i64 {
    let next = pos + raw.wrapping_sub(last) as i32 as i64;
    if (next - high).abs() > TimestampNormaliser::MAX_JUMP_MS as i64 {
        high + 1
    } else {
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = TimestampNormaliser::MAX_JUMP_MS;

    #[test]
    fn starts_at_zero_and_keeps_offsets() {
        let mut n = TimestampNormaliser::new();
        assert_eq!(n.normalise(5000), 0);
        assert_eq!(n.normalise(5040), 40);
        // audio slightly behind video: kept, not clamped
        assert_eq!(n.normalise(5023), 23);
        assert_eq!(n.normalise(5080), 80);
    }

    #[test]
    fn survives_32_bit_wrap() {
        let mut n = TimestampNormaliser::new();
        assert_eq!(n.normalise(u32::MAX - 10), 0);
        assert_eq!(n.normalise(5), 16);
        assert_eq!(n.normalise(100), 111);
    }

    #[test]
    fn continues_across_sessions() {
        let mut n = TimestampNormaliser::new();
        n.normalise(0);
        n.normalise(1000);
        n.new_session();
        assert_eq!(n.normalise(0), 1001);
        assert_eq!(n.normalise(40), 1041);
        // a session without packets changes nothing
        n.new_session();
        n.new_session();
        assert_eq!(n.normalise(7777), 1042);
    }

    #[test]
    fn never_negative() {
        let mut n = TimestampNormaliser::new();
        assert_eq!(n.normalise(1000), 0);
        assert_eq!(n.normalise(900), 0);
        assert_eq!(n.normalise(1100), 100);
    }

    #[test]
    fn jitter_and_small_backward_steps_are_kept_exactly() {
        let mut n = TimestampNormaliser::new();
        let raw = [
            100_000, 100_040, 100_023, 100_080, 100_063, 100_120, 99_990, 100_200,
        ];
        let out: Vec<u32> = raw.iter().map(|&r| n.normalise(r)).collect();
        assert_eq!(out, [0, 40, 23, 80, 63, 120, 0, 200]);
        // a real pause shorter than the bound, then a step back within it
        assert_eq!(n.normalise(100_200 + MAX), 200 + MAX);
        assert_eq!(n.normalise(100_200 + 1), 201);
    }

    #[test]
    fn current_is_the_last_output_and_moves_nothing() {
        let mut n = TimestampNormaliser::new();
        assert_eq!(n.current(), 0);
        assert_eq!(n.normalise(50_000), 0);
        assert_eq!(n.normalise(50_040), 40);
        assert_eq!(n.current(), 40);
        assert_eq!(n.normalise(50_080), 80);
    }

    #[test]
    fn the_four_packet_attack_keeps_the_timeline_small_and_continuous() {
        let mut n = TimestampNormaliser::new();
        let attack = [0, 0x7fff_ffff, 0xffff_fffe, 0x7fff_fffd];
        let out: Vec<u32> = attack.iter().map(|&r| n.normalise(r)).collect();
        assert_eq!(out, [0, 1, 2, 3]);
        // the attacker continues normally: so does the timeline
        assert_eq!(n.normalise(0x7fff_fffd + 40), 43);
        // and the next publisher of the key inherits a sane timeline
        n.new_session();
        assert_eq!(n.normalise(0), 44);
        assert_eq!(n.normalise(40), 84);
    }

    #[test]
    fn large_jumps_either_way_are_discontinuities() {
        let mut n = TimestampNormaliser::new();
        for raw in (0..=30_000).step_by(5000) {
            assert_eq!(n.normalise(raw), raw);
        }
        // encoder restart: back to 0
        assert_eq!(n.normalise(0), 30_001);
        assert_eq!(n.normalise(40), 30_041);
        // clock jumped an hour ahead
        assert_eq!(n.normalise(3_600_040), 30_042);
        assert_eq!(n.normalise(3_600_080), 30_082);
        // many steps back within the bound cannot walk the output back further than it
        let mut raw = 3_600_080u32;
        let outs: Vec<u32> = (0..100)
            .map(|_| {
                raw -= 1000;
                n.normalise(raw)
            })
            .collect();
        assert_eq!(&outs[..3], [29_082, 28_082, 27_082]);
        assert!(outs.iter().all(|&o| o + MAX >= 30_082), "{outs:?}");
        assert!(outs.contains(&30_083), "continued after the high water");
    }

    #[test]
    fn output_wraps_modulo_2_32_instead_of_freezing() {
        let mut n = TimestampNormaliser::new();
        let step = MAX - 1;
        let mut raw = 0u32;
        let mut prev = n.normalise(raw);
        let mut wrapped = false;
        // 2^32 ms of stream (49.7 days) in steps just under the bound.
        for _ in 0..(1u64 << 32) / step as u64 + 10 {
            raw = raw.wrapping_add(step);
            let out = n.normalise(raw);
            assert_eq!(out.wrapping_sub(prev), step);
            wrapped |= out < prev;
            prev = out;
        }
        assert!(wrapped);
        assert!(prev < 20 * step, "{prev}");
        // republish after the wrap continues from there
        n.new_session();
        assert_eq!(n.normalise(12345), prev.wrapping_add(1));
    }

    /// Output timestamps unwrapped by the same rule consumers use (deltas read as i32).
    fn unwrap(outs: &[u32]) -> Vec<i64> {
        let mut v = Vec::with_capacity(outs.len());
        let mut acc = 0i64;
        for (i, &o) in outs.iter().enumerate() {
            if i == 0 {
                acc = o as i64;
            } else {
                acc += o.wrapping_sub(outs[i - 1]) as i32 as i64;
            }
            v.push(acc);
        }
        v
    }

    proptest::proptest! {
        /// Whatever a publisher sends (any timestamps, any republishes), each output is within
        /// MAX_JUMP_MS of the highest output before it (and a new session's first output is
        /// right after it), so consecutive outputs are close in wrapping arithmetic and the
        /// timeline only moves forward beyond that tolerance.
        #[test]
        fn output_stays_within_the_bound_of_its_high_water(
            input in proptest::collection::vec(
                (proptest::num::u32::ANY, 0u8..4, -20_000i64..20_000, proptest::bool::weighted(0.05)),
                1..300,
            ),
        ) {
            let mut n = TimestampNormaliser::new();
            let mut raw = 0u32;
            let mut outs = Vec::new();
            let mut sessions = Vec::new();
            for (i, (any, how, step, republish)) in input.into_iter().enumerate() {
                // a mix of arbitrary values and ordinary steps
                raw = if how == 0 { any } else { raw.wrapping_add(step as i32 as u32) };
                if republish && i > 0 {
                    n.new_session();
                    sessions.push(i);
                }
                outs.push(n.normalise(raw));
            }
            proptest::prop_assert_eq!(outs[0], 0);
            let t = unwrap(&outs);
            let mut high = t[0];
            for (i, &t) in t.iter().enumerate().skip(1) {
                proptest::prop_assert!(t >= 0);
                proptest::prop_assert!(t <= high + MAX as i64, "{} > {} + bound", t, high);
                proptest::prop_assert!(t >= high - MAX as i64, "{} < {} - bound", t, high);
                if sessions.contains(&i) {
                    proptest::prop_assert_eq!(t, high + 1);
                }
                high = high.max(t);
            }
        }

        /// A well-behaved publisher (steps forward below the bound, across the 32-bit wrap)
        /// gets its timestamps back exactly, shifted to start at 0.
        #[test]
        fn ordinary_streams_are_only_shifted(
            start in proptest::num::u32::ANY,
            steps in proptest::collection::vec(0u32..=MAX, 0..200),
        ) {
            let mut n = TimestampNormaliser::new();
            proptest::prop_assert_eq!(n.normalise(start), 0);
            let mut raw = start;
            for s in steps {
                raw = raw.wrapping_add(s);
                proptest::prop_assert_eq!(n.normalise(raw), raw.wrapping_sub(start));
            }
        }
    }
}
