//! Under heavy ingest a shard reads its publishers once per tick (`ingest_batch_ms`) instead of
//! waking per message. With `ingest_batch_above = 1` every publisher is read that way: its media
//! still reaches players byte for byte, and an idle publisher is still dropped at `read_timeout`.

mod common;

use common::rtmp::{Closed, RawRtmp};
use common::*;
use std::time::{Duration, Instant};

#[test]
fn batched_publisher_reads_keep_media_exact_and_idle_publishers_dropped() {
    let config = format!("ingest_batch_ms = 5\ningest_batch_above = 1\n{DEFAULT_CONFIG}");
    // One shard, so the idle publisher shares the busy publisher's poller.
    let s = Server::start_with_config(
        &config,
        &[
            "--shards",
            "1",
            "--read_timeout",
            "2",
            "--play_wait_timeout",
            "20",
        ],
    );
    let dir = scratch_dir();
    let key = s.key_for("movie");
    let idle_key = s.key_for("idle");
    let play = s.rtmp_url("live/movie");
    let mut players = [
        Recorder::start(PlayerKind::Ffmpeg, &play, dir.path(), "ffmpeg"),
        Recorder::start(PlayerKind::Rtmpdump, &play, dir.path(), "rtmpdump"),
    ];
    wait_players(&s, 2);
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));

    // Wait until the busy publisher has switched the shard to batched reads (counted from
    // spawning ffmpeg, which starts slowly on a loaded machine).
    s.wait_log("batched reads on", Duration::from_secs(20));

    let mut idle = RawRtmp::connect(s.rtmp_port);
    idle.handshake().expect("handshake");
    idle.connect_app(s.rtmp_port, "live").expect("connect");
    let sid = idle.create_stream().expect("createStream");
    assert_eq!(
        idle.publish(sid, &idle_key).expect("publish"),
        "NetStream.Publish.Start"
    );
    let t = Instant::now();
    assert_eq!(
        idle.wait_closed(Duration::from_secs(10)),
        Closed::Yes,
        "idle publisher kept while reads are batched"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "dropped before read_timeout: {:?}",
        t.elapsed()
    );

    publisher.wait_success(PUBLISH_TIMEOUT);
    let source = media_tags(Media::Av);
    for p in &mut players {
        let m = assert_recording(p, &source, true);
        assert_eq!(m.video_start, 0, "{}: frames missing at the start", p.label);
    }
}
