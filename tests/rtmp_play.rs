//! Publish with ffmpeg, play with ffmpeg and rtmpdump: every frame arrives byte for byte.

mod common;

use common::*;
use std::thread::sleep;
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
    sleep(Duration::from_millis(700));
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

/// A player joining at about 3.5 s gets metadata, sequence headers and the cached GOPs (audio
/// included), then live; returns the first source video index it received.
fn late_player_start(gop_num: &str) -> usize {
    let s = Server::start(&["--gop_num", gop_num]);
    let dir = scratch_dir();
    let key = s.key_for("movie");
    let play = s.rtmp_url("live/movie");
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    sleep(Duration::from_millis(3500));
    let mut players = [
        Recorder::start(PlayerKind::Ffmpeg, &play, dir.path(), "late-ffmpeg"),
        Recorder::start(PlayerKind::Rtmpdump, &play, dir.path(), "late-rtmpdump"),
    ];
    publisher.wait_success(PUBLISH_TIMEOUT);
    let source = media_tags(Media::Av);
    let starts: Vec<usize> = players
        .iter_mut()
        .map(|p| assert_recording(p, &source, true).video_start)
        .collect();
    // The metadata reaches late players too.
    let dump = flv::read_flv(&players[1].out);
    assert!(
        dump.iter()
            .any(|t| t.kind == flv::TAG_SCRIPT && t.data.windows(10).any(|w| w == b"onMetaData")),
        "rtmpdump got no onMetaData"
    );
    eprintln!("gop_num {gop_num}: late players start at video frames {starts:?}");
    *starts.iter().min().unwrap()
}

#[test]
fn late_player_starts_at_the_cached_keyframe() {
    // Joined at ~3.5 s with GOPs of 1 s: the latest keyframe is frame 75 (50 if the machine is slow).
    let start = late_player_start("1");
    assert!(
        (50..=100).contains(&start),
        "gop_num 1: started at frame {start}"
    );
}

#[test]
fn gop_num_2_caches_two_gops() {
    let start = late_player_start("2");
    assert!(
        (25..=75).contains(&start),
        "gop_num 2: started at frame {start}"
    );
}

#[test]
fn gop_num_0_means_no_cache() {
    // No cache: the player waits for the next keyframe after it joined (frame 100 at ~3.5 s).
    let start = late_player_start("0");
    assert!(start >= 75, "gop_num 0: started at cached frame {start}");
}

#[test]
fn publisher_end_ends_players_with_unpublish_notify() {
    let s = Server::start(&[]);
    let key = s.key_for("movie");
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    sleep(Duration::from_millis(1500));

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
    publisher.wait_success(Duration::from_secs(5));
    ff.proc.wait_exit(Duration::from_secs(10));
    assert!(
        ended.elapsed() < Duration::from_secs(10),
        "ffmpeg player took {:?} to end",
        ended.elapsed()
    );
}
