//! Publishing needs the room's current key (livego's model) and is refused with an onStatus
//! error otherwise; `rtmp_noauth` lets publishers use the room name.

mod common;

use common::rtmp::{Closed, RawRtmp};
use common::*;
use std::time::Duration;

/// connect + createStream + publish(name); returns the onStatus code and whether the server
/// then closed the connection.
fn try_publish(s: &Server, name: &str) -> (String, Closed) {
    let mut c = RawRtmp::connect(s.rtmp_port);
    c.handshake().expect("handshake");
    c.connect_app(s.rtmp_port, "live").expect("connect");
    let sid = c.create_stream().expect("createStream");
    let code = c
        .publish(sid, name)
        .unwrap_or_else(|e| panic!("publish {name:?}: no onStatus ({e})"));
    let closed = if code == "NetStream.Publish.Start" {
        // An accepted publisher stays connected.
        c.wait_closed(Duration::from_millis(500))
    } else {
        c.wait_closed(Duration::from_secs(5))
    };
    (code, closed)
}

#[track_caller]
fn assert_refused(s: &Server, name: &str) {
    let (code, closed) = try_publish(s, name);
    assert_eq!(code, "NetStream.Publish.BadName", "publish {name:?}");
    assert_eq!(
        closed,
        Closed::Yes,
        "publish {name:?}: connection left open after BadName"
    );
}

#[track_caller]
fn assert_accepted(s: &Server, name: &str) {
    let (code, closed) = try_publish(s, name);
    assert_eq!(code, "NetStream.Publish.Start", "publish {name:?}");
    assert_eq!(
        closed,
        Closed::TimedOut,
        "publish {name:?}: accepted publisher disconnected"
    );
}

#[test]
fn key_accepted_wrong_key_and_room_name_refused() {
    let s = Server::start(&[]);
    let key = s.key_for("movie");
    assert_accepted(&s, &key);
    assert_refused(&s, "movie");
    assert_refused(&s, "wrongkey");
    let mut wrong = key.clone();
    wrong.replace_range(0..1, if key.starts_with('a') { "b" } else { "a" });
    assert_refused(&s, &wrong);
    assert_refused(&s, "");
}

#[test]
fn ffmpeg_with_a_wrong_key_fails_quickly() {
    let s = Server::start(&[]);
    s.key_for("movie");
    let mut p = ffmpeg_publish(&media(Media::Av), &s.rtmp_url("live/movie"));
    let st = p.wait_exit(Duration::from_secs(10));
    assert!(!st.success(), "ffmpeg published with the room name");
    assert!(
        s.api_get("/control/get?room=movie").0 == 200,
        "server unhealthy afterwards"
    );
}

#[test]
fn publish_name_may_carry_a_query() {
    let s = Server::start(&[]);
    let key = s.key_for("movie");
    assert_accepted(&s, &format!("{key}?token=abc&x=1"));
}

#[test]
fn reset_revokes_the_old_key() {
    let s = Server::start(&[]);
    let old = s.key_for("movie");
    let (st, v) = s.api_json("/control/reset?room=movie");
    assert_eq!(st, 200, "{v}");
    let new = v["data"].as_str().unwrap().to_owned();
    assert_refused(&s, &old);
    assert_accepted(&s, &new);
}

#[test]
fn delete_revokes_the_key() {
    let s = Server::start(&[]);
    let key = s.key_for("movie");
    assert_eq!(s.api_get("/control/delete?room=movie").0, 200);
    assert_refused(&s, &key);
    let fresh = s.key_for("movie");
    assert_refused(&s, &key);
    assert_accepted(&s, &fresh);
}

#[test]
fn rtmp_noauth_accepts_the_room_name() {
    for flag in ["--rtmp_noauth", "--rtmp_noauth=true"] {
        let s = Server::start(&[flag]);
        assert_accepted(&s, "movie");
        assert_accepted(&s, "anything");
    }
    let s = Server::start(&["--rtmp_noauth=false"]);
    assert_refused(&s, "movie");
}

#[test]
fn rtmp_noauth_stream_plays_exactly() {
    let s = Server::start(&["--rtmp_noauth", "--play_wait_timeout", "20"]);
    let dir = scratch_dir();
    let url = s.rtmp_url("live/open");
    let mut player = Recorder::start(PlayerKind::Rtmpdump, &url, dir.path(), "player");
    std::thread::sleep(Duration::from_millis(700));
    ffmpeg_publish(&media(Media::Av), &url).wait_success(PUBLISH_TIMEOUT);
    assert_recording(&mut player, &media_tags(Media::Av), true);
}

#[test]
fn unknown_app_is_refused() {
    let s = Server::start(&["--rtmp_noauth"]);
    let mut c = RawRtmp::connect(s.rtmp_port);
    c.handshake().expect("handshake");
    assert!(
        c.connect_app(s.rtmp_port, "nosuchapp").is_err(),
        "connect to an unconfigured app accepted"
    );
    assert_eq!(c.wait_closed(Duration::from_secs(5)), Closed::Yes);
}
