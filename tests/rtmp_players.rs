//! Player lifecycle edge cases: waiting for a publisher that never comes, and a player that
//! stops reading while others watch the same stream.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn raw_player(s: &Server, room: &str) -> rtmp::RawRtmp {
    let mut raw = rtmp::RawRtmp::connect(s.rtmp_port);
    raw.handshake().expect("handshake");
    raw.connect_app(s.rtmp_port, "live").expect("connect");
    let sid = raw.create_stream().expect("createStream");
    raw.play(sid, room).expect("play");
    raw
}

#[test]
fn player_without_publisher_gets_stream_not_found_after_the_wait() {
    let mut s = Server::start(&["--play_wait_timeout", "2"]);
    let started = Instant::now();
    let mut raw = raw_player(&s, "nobody");
    let closed = raw.wait_closed(Duration::from_secs(15));
    let waited = started.elapsed();
    assert!(
        matches!(closed, rtmp::Closed::Yes),
        "server kept the player"
    );
    assert!(
        raw.status_codes()
            .iter()
            .any(|c| c == "NetStream.Play.StreamNotFound"),
        "codes: {:?}",
        raw.status_codes()
    );
    assert!(
        waited >= Duration::from_millis(1500),
        "gave up after {waited:?}, before play_wait_timeout"
    );
    assert!(s.is_alive());
}

#[test]
fn stuck_player_neither_slows_the_publisher_nor_other_players() {
    let mut s = Server::start(&["--write_timeout", "2"]);
    let dir = scratch_dir();
    let key = s.key_for("movie");
    let play = s.rtmp_url("live/movie");

    // A player that never reads, with a tiny receive window so the server's writes block.
    let stuck = raw_player(&s, "movie");
    socket2::SockRef::from(&stuck.stream)
        .set_recv_buffer_size(4096)
        .expect("SO_RCVBUF");
    let mut healthy = Recorder::start(PlayerKind::Ffmpeg, &play, dir.path(), "healthy");
    wait_players(&s, 2);

    let source = media_tags(Media::Av);
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    // Timed from the server's first frame, so that ffmpeg's start-up (slow on a loaded machine)
    // is not counted.
    wait_published_frames(&s, "live/movie", &source, 1);
    let published = Instant::now();
    publisher.wait_success(PUBLISH_TIMEOUT);
    let took = published.elapsed();
    // -re pacing of 8 s of media; a publisher held back by the stuck player would take far
    // longer.
    assert!(took < Duration::from_secs(14), "publisher took {took:?}");

    assert_recording(&mut healthy, &source, true);

    let log = s.log();
    assert!(
        log.contains("write timeout: player stuck") || log.contains("TooSlow"),
        "the stuck player was not dropped; server log:\n{log}"
    );
    drop(stuck);
    assert!(s.is_alive());
}
