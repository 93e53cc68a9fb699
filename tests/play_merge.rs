//! `play_merge_ms`: players write at most once per shard tick, everything queued since their last
//! write in one go. RTMP (ffmpeg, rtmpdump) and HTTP-FLV (ffmpeg) players still get the
//! published media byte for byte, from the first frame.

mod common;

use common::*;

#[test]
fn merged_writes_deliver_exact_media_over_rtmp_and_httpflv() {
    let config = format!("play_merge_ms = 50\n{DEFAULT_CONFIG}");
    let s = Server::start_with_config(
        &config,
        &["--play_wait_timeout", "20", "--flv_wait_publisher"],
    );
    let dir = scratch_dir();
    let key = s.key_for("movie");
    let rtmp = s.rtmp_url("live/movie");
    let http = format!("http://127.0.0.1:{}/live/movie.flv", s.httpflv_port);
    let mut players = [
        Recorder::start(PlayerKind::Ffmpeg, &rtmp, dir.path(), "ffmpeg-rtmp"),
        Recorder::start(PlayerKind::Rtmpdump, &rtmp, dir.path(), "rtmpdump"),
        Recorder::start(PlayerKind::Ffmpeg, &http, dir.path(), "ffmpeg-httpflv"),
    ];
    // The HTTP-FLV player waits for the publisher too (`--flv_wait_publisher`).
    wait_players(&s, 3);
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    publisher.wait_success(PUBLISH_TIMEOUT);
    let source = media_tags(Media::Av);
    for p in &mut players {
        let m = assert_recording(p, &source, true);
        assert_eq!(m.video_start, 0, "{}: frames missing at the start", p.label);
    }
}
