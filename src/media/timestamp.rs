/// Maps a stream's incoming RTMP timestamps onto one timeline that starts at 0, survives the
/// 32-bit wrap of RTMP timestamps and continues across publisher sessions (takeover or
/// reconnect), so players never see time go back by more than the publisher itself sent.
///
/// Within one publisher session the offset is constant: relative timing (including small
/// audio/video interleaving steps backwards) is kept exactly, which is what makes the bytes a
/// player receives equal the bytes published, timestamps shifted by one constant.
#[derive(Debug, Default)]
pub struct TimestampNormaliser {
    /// Last raw timestamp of the current session, and its 64-bit unwrapped value.
    last_raw: Option<u32>,
    unwrapped: i64,
    /// Output = unwrapped - origin + base.
    origin: i64,
    base: i64,
    /// Highest output so far; the next session starts right after it.
    high_water: i64,
}

/// Output timeline values are kept inside u32 (RTMP's range); about 49 days of stream.
const MAX_OUT: i64 = u32::MAX as i64;

impl TimestampNormaliser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Call when a new publisher session starts on this stream: its first timestamp is mapped
    /// just after the last one sent.
    pub fn new_session(&mut self) {
        if self.last_raw.is_some() {
            self.base = self.high_water + 1;
        }
        self.last_raw = None;
    }

    pub fn normalise(&mut self, raw: u32) -> u32 {
        match self.last_raw {
            None => {
                self.unwrapped = raw as i64;
                self.origin = self.unwrapped;
            }
            Some(last) => {
                // The signed 32-bit difference handles wrap-around both ways.
                self.unwrapped += raw.wrapping_sub(last) as i32 as i64;
            }
        }
        self.last_raw = Some(raw);
        let out = (self.unwrapped - self.origin + self.base).clamp(0, MAX_OUT);
        self.high_water = self.high_water.max(out);
        out as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn never_negative() {
        let mut n = TimestampNormaliser::new();
        assert_eq!(n.normalise(1000), 0);
        assert_eq!(n.normalise(900), 0);
        assert_eq!(n.normalise(1100), 100);
    }
}
