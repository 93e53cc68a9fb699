//! HTTP-FLV and WebSocket-FLV viewers with real clients (curl, ffmpeg, a raw WebSocket client),
//! status codes and headers, and `/streams`.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

fn flv_url(s: &Server, path: &str) -> String {
    format!("http://127.0.0.1:{}/{path}", s.httpflv_port)
}

/// `curl -sS URL -o OUT`: records the HTTP body (chunked decoding by curl).
fn curl_record(url: &str, out: &Path) -> ProcGuard {
    require_tool("curl");
    let log = out.with_extension("curl.log");
    ProcGuard::spawn(
        &format!("curl recorder of {url}"),
        Command::new("curl")
            .args(["-sS", "--max-time", "60", "-o"])
            .arg(out)
            .arg(url),
        &log,
    )
}

fn publish(s: &Server, m: Media) -> ProcGuard {
    let key = s.key_for("movie");
    ffmpeg_publish(&media(m), &s.rtmp_url(&format!("live/{key}")))
}

fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Waits until `/live/movie.flv` answers 200 (the publisher is on).
fn wait_live(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = raw_exchange(
            s.httpflv_port,
            "HEAD /live/movie.flv HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "the stream never went live");
        sleep(Duration::from_millis(100));
    }
}

fn parse(path: &Path, what: &str) -> Vec<flv::Tag> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{what}: no recording: {e}"));
    flv::parse_flv(&bytes).unwrap_or_else(|e| panic!("{what}: not FLV: {e}"))
}

#[test]
fn late_viewers_get_exact_media_from_a_keyframe() {
    let s = Server::start(&[]);
    let dir = scratch_dir();
    let source = media_tags(Media::Av);
    let mut publisher = publish(&s, Media::Av);
    // 1.2 s in: the cached GOP (gop_num 1) starts at the second keyframe (frame 25) or later.
    wait_published_frames(&s, "live/movie", &source, 30);
    let url = flv_url(&s, "live/movie.flv");
    let curl_out = dir.path().join("curl.flv");
    let mut curl = curl_record(&url, &curl_out);
    let ff_out = dir.path().join("ffmpeg.flv");
    let mut ff = ffmpeg_record(&url, &ff_out);
    publisher.wait_success(PUBLISH_TIMEOUT);

    curl.wait_success(PLAYER_END_TIMEOUT);
    let raw = fs::read(&curl_out).unwrap();
    assert_eq!(&raw[..5], b"FLV\x01\x05", "header flags of an A/V stream");
    let tags = parse(&curl_out, "curl");
    assert_eq!(tags[0].kind, flv::TAG_SCRIPT, "metadata first");
    let m = flv::compare_media(&source, &tags, true).unwrap_or_else(|e| panic!("curl: {e}"));
    assert!(
        m.video_start > 0,
        "a late viewer starts at a cached keyframe"
    );

    let tags = finish_recording(&mut ff, &ff_out);
    flv::compare_media(&source, &tags, true).unwrap_or_else(|e| panic!("ffmpeg: {e}"));
}

#[test]
fn viewer_before_the_publisher_gets_everything_audio_only_header() {
    let s = Server::start(&["--flv_wait_publisher", "--play_wait_timeout", "20"]);
    let dir = scratch_dir();
    let out = dir.path().join("early.flv");
    let mut curl = curl_record(&flv_url(&s, "live/movie.flv"), &out);
    // The viewer waits for the publisher (`--flv_wait_publisher`).
    wait_players(&s, 1);
    let mut publisher = publish(&s, Media::AudioOnly);
    publisher.wait_success(PUBLISH_TIMEOUT);
    curl.wait_success(PLAYER_END_TIMEOUT);
    let raw = fs::read(&out).unwrap();
    assert_eq!(&raw[..5], b"FLV\x01\x04", "audio-only header");
    let tags = parse(&out, "early viewer");
    let m = flv::compare_media(&media_tags(Media::AudioOnly), &tags, false)
        .unwrap_or_else(|e| panic!("early viewer: {e}"));
    assert_eq!(m.audio_start, 0);
}

fn head_of(port: u16, req: &str) -> HttpResponse {
    http_request(port, req).unwrap_or_else(|e| panic!("{req:?}: {e}"))
}

#[test]
fn statuses_and_headers() {
    let s = Server::start(&[]);
    let p = s.httpflv_port;
    // No publisher: 404 at once with a short body.
    let t = Instant::now();
    let r = head_of(p, "GET /live/nobody.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 404);
    assert!(!r.body.is_empty() && r.body.len() < 100);
    // At once, not after a wait for a publisher (play_wait_timeout: 30 s).
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "404 after {:?}",
        t.elapsed()
    );
    // Unknown app, other suffix.
    assert_eq!(
        head_of(p, "GET /nope/movie.flv HTTP/1.1\r\n\r\n").status,
        404
    );
    assert_eq!(
        head_of(p, "GET /live/movie.mp4 HTTP/1.1\r\n\r\n").status,
        404
    );
    // Methods.
    let r = head_of(
        p,
        "POST /live/movie.flv HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap().contains("GET"));
    let r = head_of(
        p,
        "OPTIONS /live/movie.flv HTTP/1.1\r\nOrigin: http://a\r\nAccess-Control-Request-Method: GET\r\n\r\n",
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("GET"));
    assert!(r.header("access-control-allow-headers").is_some());
    // Malformed and oversized heads.
    assert_eq!(head_of(p, "GARBAGE\r\n\r\n").status, 400);
    let huge = format!(
        "GET /live/movie.flv HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(head_of(p, &huge).status, 431);
    // A client that never finishes its head is answered and dropped (header timeout).
    let mut slow = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], p))).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(b"GET /live/movie.flv HTTP/1.1\r\n").unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let _ = slow.read_to_end(&mut got);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "slow client not dropped"
    );
    assert!(
        got.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );

    // Live: 200 with the FLV headers; HEAD has no body.
    let mut publisher = publish(&s, Media::Av);
    wait_live(&s);
    let (status, h, body) = raw_exchange(
        p,
        "HEAD /live/movie.flv?token=x HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(get(&h, "content-type"), Some("video/x-flv"));
    assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
    assert_eq!(get(&h, "cache-control"), Some("no-cache"));
    assert_eq!(get(&h, "transfer-encoding"), Some("chunked"));
    assert_eq!(get(&h, "connection"), Some("close"));
    assert!(body.is_empty());
    // HTTP/1.0: no chunking, the body ends with the connection.
    let mut c = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], p))).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /live/movie.flv HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") || got.len() < 2000 {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(!text[..head_end].contains("transfer-encoding"));
    assert_eq!(&got[head_end..head_end + 3], b"FLV");
    drop(c);
    publisher.wait_success(PUBLISH_TIMEOUT);
}

/// Reads exactly `n` bytes.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).expect("read from websocket");
    b
}

/// Reads one server frame: (opcode, payload). Server frames are never masked.
fn ws_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let h = read_n(s, 2);
    assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
    let len = match h[1] & 0x7f {
        126 => u16::from_be_bytes(read_n(s, 2).try_into().unwrap()) as usize,
        127 => u64::from_be_bytes(read_n(s, 8).try_into().unwrap()) as usize,
        n => n as usize,
    };
    (h[0] & 0x0f, read_n(s, len))
}

fn ws_send(s: &mut TcpStream, opcode: u8, payload: &[u8]) {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&f).unwrap();
}

fn ws_connect(port: u16) -> TcpStream {
    websocket_upgrade(
        TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap(),
        "/live/movie.flv",
    )
}

#[test]
fn websocket_flv_and_streams_listing() {
    let s = Server::start(&["--shards", "2"]);
    let mut publisher = publish(&s, Media::Av);
    // Join a running stream (1 s in).
    wait_published_frames(&s, "live/movie", &media_tags(Media::Av), 25);

    // A client that closes: the server answers with a close frame.
    let mut short = ws_connect(s.httpflv_port);
    ws_send(&mut short, 0x8, &1000u16.to_be_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    while ws_frame(&mut short).0 != 0x8 {
        assert!(Instant::now() < deadline, "no close frame");
    }
    drop(short);

    let mut ws = ws_connect(s.httpflv_port);
    // An RTMP player and an HTTP-FLV viewer too, then /streams lists them all.
    let dir = scratch_dir();
    let mut rtmp = ffmpeg_record(&s.rtmp_url("live/movie"), &dir.path().join("r.flv"));
    let mut curl = curl_record(&flv_url(&s, "live/movie.flv"), &dir.path().join("c.flv"));
    ws_send(&mut ws, 0x9, b"hi");
    let mut body = Vec::new();
    let mut pong = false;
    // Mid-stream (past 300 KB of body), /streams must come to list all three players: asked
    // at most every 100 ms while the websocket is read, until it does.
    let mut listed = false;
    let mut last_listing = serde_json::Value::Null;
    let mut asked = Instant::now();
    let deadline = Instant::now() + PUBLISH_TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "websocket stream never ended");
        let (op, payload) = ws_frame(&mut ws);
        match op {
            0x2 => body.extend(payload),
            0xa => {
                assert_eq!(payload, b"hi");
                pong = true;
            }
            0x8 => break,
            other => panic!("unexpected opcode {other}"),
        }
        if !listed && body.len() > 300_000 && asked.elapsed() >= Duration::from_millis(100) {
            asked = Instant::now();
            let r = http_get(s.httpflv_port, "/streams").unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-type"), Some("application/json"));
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(v["publishers"][0]["key"], "live/movie", "{v}");
            assert_eq!(v["publishers"].as_array().unwrap().len(), 1);
            // Absent (null) until the first player has joined.
            let players = v["players"].as_array().cloned().unwrap_or_default();
            assert!(
                players.len() <= 3,
                "more than the ws, rtmp and http players: {v}"
            );
            if players.len() == 3 {
                listed = true;
                assert!(
                    players
                        .iter()
                        .all(|p| p["key"] == "live/movie" && p["id"].is_string()),
                    "{v}"
                );
            }
            last_listing = v;
        }
    }
    assert!(pong, "no pong");
    assert!(
        listed,
        "the ws, rtmp and http players were not all listed before the stream ended \
         ({} bytes of body); last /streams: {last_listing}",
        body.len()
    );
    let tags = flv::parse_flv(&body).expect("websocket body is FLV");
    flv::compare_media(&media_tags(Media::Av), &tags, true)
        .unwrap_or_else(|e| panic!("websocket: {e}"));
    publisher.wait_success(PUBLISH_TIMEOUT);
    rtmp.wait_exit(PLAYER_END_TIMEOUT);
    curl.wait_exit(PLAYER_END_TIMEOUT);
    let r = http_get(s.httpflv_port, "/streams").unwrap();
    assert_eq!(r.body, r#"{"publishers":null,"players":null}"#);
}

/// Connects with a 4 KiB receive window, set before connecting so it holds from the start: the
/// server's writes to this viewer back up as soon as it stops reading.
fn small_window_connect(port: u16) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    sock.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Decodes an HTTP/1.1 chunked body: the data, and whether it ended with the last chunk.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let line = std::str::from_utf8(&raw[..eol]).expect("chunk size line is text");
        let size = usize::from_str_radix(line, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        raw = &raw[eol + 2..];
        if size == 0 {
            return (out, raw.starts_with(b"\r\n"));
        }
        if raw.len() < size + 2 {
            return (out, false);
        }
        assert_eq!(&raw[size..size + 2], b"\r\n", "chunk data ends with CRLF");
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// Reads `n` bytes, stops reading for `stall` (the stream goes on: the server's socket buffer
/// fills, its sends to us end part-way through frames and the rest queues), then reads to the
/// end of the connection.
fn read_with_stall(s: &mut TcpStream, n: usize, stall: Duration) -> Vec<u8> {
    let mut got = read_n(s, n);
    sleep(stall);
    s.read_to_end(&mut got).expect("read to the end");
    got
}

#[test]
fn stalled_viewers_get_every_byte_in_their_framing() {
    let mut s = Server::start(&[]);
    let mut publisher = publish(&s, Media::Av);
    wait_live(&s);
    let source = media_tags(Media::Av);
    // 5 s of this media is more than the server's socket buffer for a viewer holds.
    let stall = Duration::from_secs(5);

    let chunked = std::thread::spawn({
        let port = s.httpflv_port;
        move || {
            let mut c = small_window_connect(port);
            c.write_all(b"GET /live/movie.flv HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            read_with_stall(&mut c, 20_000, stall)
        }
    });
    let websocket = std::thread::spawn({
        let port = s.httpflv_port;
        move || {
            let mut ws = websocket_upgrade(small_window_connect(port), "/live/movie.flv");
            let mut body = read_with_stall(&mut ws, 20_000, stall);
            // Re-read the frames from the raw bytes: binary frames carry the FLV body.
            let raw = std::mem::take(&mut body);
            let mut rest = &raw[..];
            let mut closed = false;
            while rest.len() >= 2 {
                let (op, short) = (rest[0] & 0x0f, rest[1] & 0x7f);
                let (len, head) = match short {
                    126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                    127 => (
                        u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    n => (n as usize, 2),
                };
                assert!(rest.len() >= head + len, "truncated websocket frame");
                match op {
                    0x2 => body.extend_from_slice(&rest[head..head + len]),
                    0x8 => closed = true,
                    other => panic!("unexpected opcode {other}"),
                }
                rest = &rest[head + len..];
            }
            assert!(rest.is_empty(), "bytes after the last whole frame");
            assert!(closed, "no close frame at the end of the stream");
            body
        }
    });
    publisher.wait_success(PUBLISH_TIMEOUT);

    let raw = chunked.join().expect("chunked viewer");
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    assert!(raw.starts_with(b"HTTP/1.1 200"));
    let (body, ended) = dechunk(&raw[head_end + 4..]);
    assert!(ended, "the body ends with the last chunk");
    let tags = flv::parse_flv(&body).unwrap_or_else(|e| panic!("chunked viewer: {e}"));
    flv::compare_media(&source, &tags, true).unwrap_or_else(|e| panic!("chunked viewer: {e}"));

    let body = websocket.join().expect("websocket viewer");
    let tags = flv::parse_flv(&body).unwrap_or_else(|e| panic!("websocket viewer: {e}"));
    flv::compare_media(&source, &tags, true).unwrap_or_else(|e| panic!("websocket viewer: {e}"));
    assert!(s.is_alive());
}
