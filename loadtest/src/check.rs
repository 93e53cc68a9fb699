//! What every player checks about the stream it receives, sans-I/O: fed tags (type, timestamp,
//! first body bytes) in arrival order, it records the first problem of each kind. Kept apart from
//! the sockets so the checks can be unit-tested on recorded traces.

/// Media time between two frames of one track above which the stream has a hole.
pub const MAX_GAP_MS: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The first video tag was neither a sequence header nor a keyframe, or the first coded
    /// frame after the sequence header was not a keyframe: a decoder shows garbage until the next.
    LateStart { first_ts: u32 },
    /// A track's timestamp went down.
    Backwards { track: Track, from: u32, to: u32 },
    /// A track jumped forward by more than MAX_GAP_MS of media.
    Gap { track: Track, from: u32, to: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Audio,
    Video,
}

pub const AUDIO: u8 = 8;
pub const VIDEO: u8 = 9;

#[derive(Debug, Default)]
pub struct StreamCheck {
    last: [Option<u32>; 2],
    first_video_seen: bool,
    first_frame_seen: bool,
    pub first_media_ts: Option<u32>,
    pub frames: u64,
    pub problems: Vec<Problem>,
}

/// AVC/HEVC sequence header (or AAC AudioSpecificConfig): configuration, not a frame, and often
/// stamped 0 whatever the stream time, so it takes no part in timestamp checks.
pub fn is_sequence_header(tag_type: u8, body: &[u8]) -> bool {
    match tag_type {
        VIDEO => body.len() >= 2 && body[0] & 0x0f == 7 && body[1] == 0,
        AUDIO => body.len() >= 2 && body[0] >> 4 == 10 && body[1] == 0,
        _ => false,
    }
}

pub fn is_keyframe(body: &[u8]) -> bool {
    body.first().map(|b| b >> 4 == 1).unwrap_or(false)
}

impl StreamCheck {
    pub fn new() -> StreamCheck {
        StreamCheck::default()
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn report(&mut self, p: Problem) {
        // one of each kind is enough to judge the player; a broken stream would otherwise flood
        if !self
            .problems
            .iter()
            .any(|q| std::mem::discriminant(q) == std::mem::discriminant(&p))
        {
            self.problems.push(p);
        }
    }

    /// Feeds one received tag; `body` needs only its first two bytes.
    pub fn tag(&mut self, tag_type: u8, ts: u32, body: &[u8]) {
        let track = match tag_type {
            AUDIO => Track::Audio,
            VIDEO => Track::Video,
            _ => return,
        };
        let seq = is_sequence_header(tag_type, body);
        if track == Track::Video {
            if !self.first_video_seen {
                self.first_video_seen = true;
                if !seq && !is_keyframe(body) {
                    self.report(Problem::LateStart { first_ts: ts });
                }
            }
            if !seq && !self.first_frame_seen {
                self.first_frame_seen = true;
                if !is_keyframe(body) {
                    self.report(Problem::LateStart { first_ts: ts });
                }
            }
        }
        if seq {
            return;
        }
        self.frames += 1;
        self.first_media_ts.get_or_insert(ts);
        let i = track as usize;
        if let Some(prev) = self.last[i] {
            if ts < prev {
                self.report(Problem::Backwards {
                    track,
                    from: prev,
                    to: ts,
                });
            } else if ts - prev > MAX_GAP_MS {
                self.report(Problem::Gap {
                    track,
                    from: prev,
                    to: ts,
                });
            }
        }
        self.last[i] = Some(ts);
    }

    /// Newest media timestamp seen on any track.
    pub fn last_ts(&self) -> Option<u32> {
        self.last.iter().flatten().max().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flvparse::FlvReader;
    use bytes::BytesMut;
    use livego::flv::{encode_tag, file_header};

    const SEQ: &[u8] = &[0x17, 0, 0, 0, 0];
    const KEY: &[u8] = &[0x17, 1, 0, 0, 0];
    const INTER: &[u8] = &[0x27, 1, 0, 0, 0];
    const AAC_SEQ: &[u8] = &[0xaf, 0, 0x12, 0x10];
    const AAC: &[u8] = &[0xaf, 1, 0x21];

    /// A recorded FLV file as a server would send it: 25 fps video with a keyframe every 2 s
    /// and AAC every 23 ms, with `edit` applied to the (type, ts, body) list before muxing.
    fn recording(edit: impl Fn(&mut Vec<(u8, u32, &'static [u8])>)) -> Vec<u8> {
        let mut tags: Vec<(u8, u32, &'static [u8])> = vec![(9, 0, SEQ), (8, 0, AAC_SEQ)];
        for i in 0..150u32 {
            tags.push((9, 1000 + i * 40, if i % 50 == 0 { KEY } else { INTER }));
            tags.push((8, 1000 + i * 40 + 3, AAC));
        }
        edit(&mut tags);
        let mut out = BytesMut::new();
        out.extend_from_slice(&file_header(true, true));
        for (t, ts, body) in tags {
            encode_tag(&mut out, t, ts, body);
        }
        out.to_vec()
    }

    /// Replays a recording through the parser in small pieces, the way reads arrive.
    fn check(bytes: &[u8]) -> StreamCheck {
        let mut r = FlvReader::new();
        let mut c = StreamCheck::new();
        for piece in bytes.chunks(7) {
            r.feed(piece);
            while let Some(tag) = r.next_tag().unwrap() {
                c.tag(tag.tag_type, tag.timestamp, &tag.body);
            }
        }
        c
    }

    #[test]
    fn clean_stream_passes() {
        let c = check(&recording(|_| {}));
        assert_eq!(c.problems, vec![]);
        assert_eq!(c.frames, 300);
        assert_eq!(c.first_media_ts, Some(1000));
        assert_eq!(c.last_ts(), Some(1000 + 149 * 40 + 3));
    }

    #[test]
    fn gap_is_found() {
        // 1.2 s of frames lost in the middle (both tracks)
        let c = check(&recording(|t| {
            t.retain(|&(_, ts, _)| !(3000..4200).contains(&ts))
        }));
        assert!(
            matches!(
                c.problems[..],
                [
                    Problem::Gap {
                        track: Track::Video,
                        from: 2960,
                        to: 4200
                    },
                    ..
                ]
            ),
            "{:?}",
            c.problems
        );
        // a hole shorter than the threshold is jitter, not a gap
        let c = check(&recording(|t| {
            t.retain(|&(_, ts, _)| !(3000..3800).contains(&ts))
        }));
        assert!(c.ok(), "{:?}", c.problems);
    }

    #[test]
    fn backwards_timestamp_is_found() {
        let c = check(&recording(|t| t[40].1 = 500));
        assert_eq!(
            c.problems,
            vec![
                Problem::Backwards {
                    track: Track::Video,
                    from: 1720,
                    to: 500
                },
                // the frame after the stray one jumps forward from it
                Problem::Gap {
                    track: Track::Video,
                    from: 500,
                    to: 1800
                },
            ]
        );
        // audio and video interleave with different stamps: only per-track order matters
        let c = check(&recording(|t| t.swap(10, 11)));
        assert!(c.ok(), "{:?}", c.problems);
    }

    #[test]
    fn late_keyframe_is_found() {
        // joined mid-GOP without a cached keyframe: inter frames first
        let c = check(&recording(|t| t.drain(0..6).for_each(drop)));
        assert_eq!(c.problems, vec![Problem::LateStart { first_ts: 1080 }]);
        // sequence header present but the first frame after it is an inter frame
        let c = check(&recording(|t| {
            t.remove(2);
        }));
        assert_eq!(c.problems, vec![Problem::LateStart { first_ts: 1040 }]);
    }

    #[test]
    fn sequence_headers_take_no_part_in_timing() {
        // a repeated sequence header stamped 0 mid-stream, as some servers send on reconnect
        let c = check(&recording(|t| t.insert(100, (9, 0, SEQ))));
        assert!(c.ok(), "{:?}", c.problems);
    }
}
