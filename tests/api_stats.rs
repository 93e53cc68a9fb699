//! `/stat/livestat` and `/metrics` against real RTMP publishers and players spread over two
//! data shards (gathered by the control shard from every shard).

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Polls livestat until `ok` holds or `bound` passes; returns the last `data`.
fn wait_stat(s: &Server, path: &str, bound: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + bound;
    loop {
        let (status, v) = s.api_json(path);
        assert_eq!(status, 200, "{v}");
        if ok(&v["data"]) || Instant::now() >= deadline {
            return v["data"].clone();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

#[test]
fn livestat_and_metrics_reflect_rtmp_sessions() {
    let s = Server::start(&["--shards", "2"]);
    // Nothing yet: Go's nil lists.
    let (status, body) = s.api_get("/stat/livestat");
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            r#"{"status":200,"data":{"publishers":null,"players":null}}"#
        )
    );
    let (status, body) = s.api_get("/stat/livestat?room=live/movie");
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"status":404,"data":"room not found or inactive"}"#)
    );

    let key = s.key_for("movie");
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    let dir = scratch_dir();
    let url = s.rtmp_url("live/movie");
    let mut p1 = ffmpeg_record(&url, &dir.path().join("p1.flv"));
    let mut p2 = rtmpdump_record(&url, &dir.path().join("p2.flv"));

    let data = wait_stat(&s, "/stat/livestat", Duration::from_secs(15), |d| {
        len(&d["publishers"]) == 1
            && len(&d["players"]) == 2
            && d["players"]
                .as_array()
                .is_some_and(|ps| ps.iter().all(|p| p["video_total_bytes"].as_u64() > Some(0)))
    });
    assert_eq!(len(&data["publishers"]), 1, "{data}");
    assert_eq!(len(&data["players"]), 2, "{data}");
    let publisher_stat = &data["publishers"][0];
    assert_eq!(publisher_stat["key"], "live/movie");
    assert!(
        publisher_stat["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("rtmp://") && u.ends_with(&key)),
        "{publisher_stat}"
    );
    // livego's field order.
    let obj: Vec<&str> = publisher_stat
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "audio_speed",
        "audio_total_bytes",
        "key",
        "stream_id",
        "url",
        "video_speed",
        "video_total_bytes",
    ];
    let mut got = obj.clone();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got, expected);
    let raw = s.api_get("/stat/livestat").1;
    assert!(
        raw.contains(r#"{"key":"live/movie","url":"#)
            && raw.contains(r#""stream_id":1,"video_total_bytes":"#),
        "{raw}"
    );
    for p in data["players"].as_array().expect("players") {
        assert_eq!(p["key"], "live/movie");
        assert!(p["audio_total_bytes"].as_u64() > Some(0), "{p}");
    }
    // The room filter uses the full app/room key.
    let (status, v) = s.api_json("/stat/livestat?room=live/movie");
    assert_eq!(status, 200);
    assert_eq!(len(&v["data"]["players"]), 2);
    assert_eq!(s.api_get("/stat/livestat?room=movie").0, 404);

    let (status, text) = s.api_get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "livego_publishers"), 1);
    assert_eq!(metric(&text, "livego_players{protocol=\"rtmp\"}"), 2);
    assert_eq!(
        metric(
            &text,
            "livego_sessions{role=\"publisher\",protocol=\"rtmp\"}"
        ),
        1
    );
    assert_eq!(metric(&text, "livego_live_streams"), 1);
    assert_eq!(metric(&text, "livego_shards"), 2);
    assert_eq!(metric(&text, "livego_stats_shards_answered"), 2);
    let per_shard = metric(&text, "livego_shard_sessions{shard=\"0\"}")
        + metric(&text, "livego_shard_sessions{shard=\"1\"}");
    assert_eq!(per_shard, 3);
    assert!(metric(&text, "livego_session_bytes{direction=\"in\"}") > 0);
    assert!(metric(&text, "livego_session_bytes{direction=\"out\"}") > 0);
    assert_eq!(
        metric(&text, "livego_keystore_errors_total{backend=\"memory\"}"),
        0
    );
    // The lifetime counters include the open sessions.
    let open_in = metric(&text, "livego_bytes_total{direction=\"in\"}");
    let open_out = metric(&text, "livego_bytes_total{direction=\"out\"}");
    assert!(open_in >= metric(&text, "livego_session_bytes{direction=\"in\"}"));
    assert!(open_out >= metric(&text, "livego_session_bytes{direction=\"out\"}"));
    assert!(open_out > 0);

    // When everyone is gone, the lists are null again.
    publisher.kill();
    p1.kill();
    p2.kill();
    let data = wait_stat(&s, "/stat/livestat", Duration::from_secs(15), |d| {
        d["publishers"].is_null() && d["players"].is_null()
    });
    assert!(
        data["publishers"].is_null() && data["players"].is_null(),
        "{data}"
    );
    let text = s.api_get("/metrics").1;
    assert_eq!(metric(&text, "livego_publishers"), 0);
    assert_eq!(metric(&text, "livego_session_bytes{direction=\"out\"}"), 0);
    // ...and keep what the ended sessions moved: counters never go down.
    assert!(metric(&text, "livego_bytes_total{direction=\"in\"}") >= open_in);
    assert!(metric(&text, "livego_bytes_total{direction=\"out\"}") >= open_out);
    assert!(metric(&text, "livego_media_bytes_total{direction=\"out\"}") > 0);
}

#[test]
fn stats_and_metrics_count_players_of_every_protocol() {
    let s = Server::start(&["--shards", "2"]);
    let key = s.key_for("movie");
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    let dir = scratch_dir();
    let mut rtmp_player = ffmpeg_record(&s.rtmp_url("live/movie"), &dir.path().join("r.flv"));
    // HTTP-FLV answers 404 until the stream is published: start the viewer once it is.
    let flv_path = "/live/movie.flv";
    wait_stat(&s, "/stat/livestat", Duration::from_secs(15), |d| {
        len(&d["publishers"]) == 1
    });
    let flv_url = format!("http://127.0.0.1:{}{flv_path}", s.httpflv_port);
    let mut flv_player = ffmpeg_record(&flv_url, &dir.path().join("h.flv"));
    // An HLS client is counted while its connection is open: fetch the playlist on a
    // keep-alive connection and hold it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while http_get(s.hls_port, "/live/movie.m3u8").map_or(true, |r| r.status != 200) {
        assert!(Instant::now() < deadline, "HLS playlist never appeared");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut hls = std::net::TcpStream::connect(("127.0.0.1", s.hls_port)).expect("hls connect");
    std::io::Write::write_all(
        &mut hls,
        b"GET /live/movie.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .expect("hls request");
    let mut buf = [0u8; 4096];
    hls.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let n = std::io::Read::read(&mut hls, &mut buf).expect("hls response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    let data = wait_stat(&s, "/stat/livestat", Duration::from_secs(15), |d| {
        len(&d["publishers"]) == 1 && len(&d["players"]) >= 3
    });
    assert_eq!(len(&data["publishers"]), 1, "{data}");
    assert!(len(&data["players"]) >= 3, "{data}");
    let players = data["players"].as_array().cloned().unwrap_or_default();
    assert!(
        players
            .iter()
            .all(|p| p["key"] == "live/movie" && p["stream_id"].is_u64()),
        "{data}"
    );
    let (status, text) = s.api_get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metric(&text, "livego_players{protocol=\"rtmp\"}") >= 1,
        "{text}"
    );
    assert!(
        metric(&text, "livego_players{protocol=\"http-flv\"}") >= 1,
        "{text}"
    );
    assert!(
        metric(&text, "livego_players{protocol=\"hls\"}") >= 1,
        "{text}"
    );
    drop(hls);
    publisher.wait_success(PUBLISH_TIMEOUT);
    rtmp_player.wait_success(PUBLISH_TIMEOUT);
    flv_player.wait_exit(PUBLISH_TIMEOUT);
}
