//! Publish with ffmpeg, play with ffmpeg and rtmpdump: every frame arrives byte for byte.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Players that arrive before the publisher wait for it and then get everything from the
/// first keyframe on; when the publisher finishes they are told and end by themselves.
fn players_before_publisher(media_kind: Media) {
    let s = Server::start(&["--play_wait_timeout", "20"]);
    let dir = scratch_dir();
    let key = s.key_for("movie");
    let play = s.rtmp_url("live/movie");
    let mut players = [
        Recorder::start(PlayerKind::Ffmpeg, &play, dir.path(), "ffmpeg"),
        Recorder::start(PlayerKind::Rtmpdump, &play, dir.path(), "rtmpdump"),
    ];
    wait_players(&s, 2);
    let mut publisher = ffmpeg_publish(&media(media_kind), &s.rtmp_url(&format!("live/{key}")));
    publisher.wait_success(PUBLISH_TIMEOUT);
    let source = media_tags(media_kind);
    for p in &mut players {
        let audio_only = media_kind == Media::AudioOnly;
        let m = assert_recording(p, &source, !audio_only);
        assert_eq!(m.video_start, 0, "{}: frames missing at the start", p.label);
    }
}

#[test]
fn players_waiting_for_the_publisher_get_exact_media() {
    players_before_publisher(Media::Av);
}

#[test]
fn b_frames_are_passed_through_exactly() {
    players_before_publisher(Media::AvBframes);
}

#[test]
fn audio_only_stream_is_exact() {
    players_before_publisher(Media::AudioOnly);
}

/// The source video frame (index) a player joining a stream whose first `joined` video frames
/// are in the stream starts at: with `gop_num` GOPs cached, the keyframe of the `gop_num`-th
/// latest GOP among those frames; without a cache, the next keyframe.
fn expected_start(keyframes: &[usize], gop_num: usize, joined: usize) -> usize {
    if gop_num == 0 {
        return *keyframes
            .iter()
            .find(|&&k| k >= joined)
            .expect("joined after the last keyframe");
    }
    let latest = keyframes
        .iter()
        .rposition(|&k| k < joined)
        .expect("joined before the first keyframe");
    keyframes[latest.saturating_sub(gop_num - 1)]
}

/// Players joining at about 3.5 s into the stream (by the publisher's progress as the server
/// counts it, not by a clock) get metadata, sequence headers and the cached GOPs (audio
/// included), then live. Each must start exactly where `gop_num` says for the moment it joined,
/// which lies between the server's counts before the players were started and after both
/// joined; returns the video frames they started at.
fn late_player_start(gop_num: usize) -> Vec<usize> {
    let s = Server::start(&["--gop_num", &gop_num.to_string()]);
    let dir = scratch_dir();
    let key = s.key_for("movie");
    let play = s.rtmp_url("live/movie");
    let source = media_tags(Media::Av);
    let keyframes: Vec<usize> = flv::video_frames(&source)
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_keyframe())
        .map(|(i, _)| i)
        .collect();
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    // Frame 88 is 3.5 s in. The last frame counted may not have reached the stream yet.
    let before = wait_published_frames(&s, "live/movie", &source, 88) - 1;
    let mut players = [
        Recorder::start(PlayerKind::Ffmpeg, &play, dir.path(), "late-ffmpeg"),
        Recorder::start(PlayerKind::Rtmpdump, &play, dir.path(), "late-rtmpdump"),
    ];
    wait_players(&s, 2);
    // At least what was counted when they joined (a count below the first one would be a reply
    // missing a shard's sessions).
    let after = wait_published_frames(&s, "live/movie", &source, before + 1);
    publisher.wait_success(PUBLISH_TIMEOUT);
    let (earliest, latest) = (
        expected_start(&keyframes, gop_num, before),
        expected_start(&keyframes, gop_num, after),
    );
    eprintln!(
        "gop_num {gop_num}: players joined with video frames {before}..={after} in the stream, \
         so they start at frame {earliest}..={latest}"
    );
    let starts: Vec<usize> = players
        .iter_mut()
        .map(|p| {
            let start = assert_recording(p, &source, true).video_start;
            assert!(
                (earliest..=latest).contains(&start),
                "gop_num {gop_num}: {} started at video frame {start}, but joined with frames \
                 {before}..={after} in the stream, so should start at {earliest}..={latest}",
                p.label
            );
            start
        })
        .collect();
    // The metadata reaches late players too.
    let dump = flv::read_flv(&players[1].out);
    assert!(
        dump.iter()
            .any(|t| t.kind == flv::TAG_SCRIPT && t.data.windows(10).any(|w| w == b"onMetaData")),
        "rtmpdump got no onMetaData"
    );
    eprintln!("gop_num {gop_num}: late players start at video frames {starts:?}");
    starts
}

#[test]
fn late_player_starts_at_the_cached_keyframe() {
    // Joined at ~3.5 s with GOPs of 1 s: the latest keyframe, frame 75 (later if the players
    // took long to join).
    let starts = late_player_start(1);
    assert!(starts.iter().all(|&s| s >= 75), "gop_num 1: {starts:?}");
}

#[test]
fn gop_num_2_caches_two_gops() {
    // The GOP before the latest too: frame 50 at ~3.5 s.
    let starts = late_player_start(2);
    assert!(starts.iter().all(|&s| s >= 50), "gop_num 2: {starts:?}");
}

#[test]
fn gop_num_0_means_no_cache() {
    // No cache: the player waits for the next keyframe after it joined (frame 100 at ~3.5 s).
    let starts = late_player_start(0);
    assert!(
        starts.iter().all(|&s| s >= 100),
        "gop_num 0: started at a cached frame: {starts:?}"
    );
}

#[test]
fn publisher_end_ends_players_with_unpublish_notify() {
    let s = Server::start(&[]);
    let key = s.key_for("movie");
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    // Join a running stream (1 s in).
    wait_published_frames(&s, "live/movie", &media_tags(Media::Av), 25);

    let mut raw = rtmp::RawRtmp::connect(s.rtmp_port);
    raw.handshake().expect("handshake");
    raw.connect_app(s.rtmp_port, "live").expect("connect");
    let sid = raw.create_stream().expect("createStream");
    raw.play(sid, "movie").expect("play");
    let dir = scratch_dir();
    let mut ff = Recorder::start(
        PlayerKind::Ffmpeg,
        &s.rtmp_url("live/movie"),
        dir.path(),
        "ff",
    );

    // Read media until the server says the publisher left.
    let deadline = Instant::now() + PUBLISH_TIMEOUT;
    let mut media_msgs = 0;
    let mut codes = Vec::new();
    while Instant::now() < deadline {
        let m = raw
            .read_message(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("raw player: {e}; codes so far {codes:?}"));
        match m.type_id {
            rtmp::MSG_AUDIO | rtmp::MSG_VIDEO => media_msgs += 1,
            _ => {
                if let Some(c) = m.status_code() {
                    codes.push(c.clone());
                    if c == "NetStream.Play.UnpublishNotify" {
                        break;
                    }
                }
            }
        }
    }
    assert!(
        codes.iter().any(|c| c == "NetStream.Play.Start"),
        "{codes:?}"
    );
    assert_eq!(
        codes.last().map(String::as_str),
        Some("NetStream.Play.UnpublishNotify"),
        "{codes:?}"
    );
    assert!(
        media_msgs > 200,
        "raw player got only {media_msgs} media messages"
    );
    let ended = Instant::now();
    publisher.wait_success(Duration::from_secs(10));
    // Told the stream ended, ffmpeg stops at once; not told, it would wait for its
    // CLIENT_RW_TIMEOUT (20 s) without data.
    ff.proc.wait_exit(PLAYER_END_TIMEOUT);
    assert!(
        ended.elapsed() < PLAYER_END_TIMEOUT,
        "ffmpeg player took {:?} to end",
        ended.elapsed()
    );
}
