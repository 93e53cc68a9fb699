//! Peers that make the server answer them but never read the answers: the server stops reading
//! them once their unsent replies pass a cap, so its memory stays bounded while they push; each
//! is disconnected after `write_timeout`; streams of other clients carry on byte-exactly; and a
//! peer that does read its replies is never cut off, however fast it asks.

mod common;

use common::rtmp::{self, Amf, Closed, RawRtmp};
use common::*;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The server's `write_timeout` in these tests, in seconds.
const WRITE_TIMEOUT_SECS: u64 = 2;
const WRITE_TIMEOUT: Duration = Duration::from_secs(WRITE_TIMEOUT_SECS);
/// Most bytes of requests one flood sends, and how long it may take.
const FLOOD_BYTES: usize = 50 << 20;
const FLOOD_TIME: Duration = Duration::from_secs(30);
/// How much the server's resident memory may grow while one peer floods it. With the cap it
/// grows by well under 1 MiB; without it, by ~50 MiB (RTMP player), ~200 MiB (WebSocket viewer)
/// and ~150 MiB (push remote) in these tests.
const MAX_RSS_GROWTH_KIB: u64 = 16 << 10;
/// One write of a flood.
const FLOOD_WRITE: usize = 64 << 10;

fn server() -> Server {
    Server::start(&["--write_timeout", &WRITE_TIMEOUT_SECS.to_string()])
}

/// The server's resident memory (`VmRSS`), in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Samples the server's resident memory every few milliseconds until finished; returns the
/// peak.
struct RssPeak {
    stop: Arc<AtomicBool>,
    sampler: thread::JoinHandle<u64>,
}

impl RssPeak {
    fn watch(pid: u32) -> RssPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = thread::spawn({
            let stop = stop.clone();
            move || {
                let mut peak = 0;
                // Bounded by the flood's own bound; the count is a backstop.
                for _ in 0..100_000 {
                    peak = peak.max(rss_kib(pid));
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                peak
            }
        });
        RssPeak { stop, sampler }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().expect("RSS sampler panicked")
    }
}

/// How a flood ended.
#[derive(Debug, PartialEq, Eq)]
enum FloodEnd {
    /// The server closed the connection (reset, broken pipe).
    Refused,
    /// The server stopped taking bytes: a write made no progress within the client's write
    /// timeout.
    Stalled,
    /// Everything was sent, or the time was up.
    Done,
}

/// Writes `first`, then `repeat` over and over (at most `FLOOD_BYTES` in all, within
/// `FLOOD_TIME`) until the server closes or stops reading. Returns the bytes sent and how it
/// ended.
fn flood(stream: &mut TcpStream, first: &[u8], repeat: &[u8]) -> (usize, FloodEnd) {
    let deadline = Instant::now() + FLOOD_TIME;
    let mut sent = 0usize;
    let mut next: &[u8] = first;
    while sent < FLOOD_BYTES && Instant::now() < deadline {
        match stream.write(next) {
            Ok(0) => return (sent, FloodEnd::Refused),
            Ok(n) => {
                sent += n;
                next = &next[n..];
                if next.is_empty() {
                    next = repeat;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return (sent, FloodEnd::Stalled)
            }
            Err(_) => return (sent, FloodEnd::Refused),
        }
    }
    (sent, FloodEnd::Done)
}

/// The first RTMP ping request (User Control event 6, timestamp `0`) as a type-0 chunk on the
/// protocol control chunk stream (2).
fn ping_head() -> Vec<u8> {
    let mut c = vec![0x02, 0, 0, 0, 0, 0, 6, 4, 0, 0, 0, 0];
    c.extend_from_slice(&[0, 6, 0, 0, 0, 0]);
    c
}

/// Further ping requests, each a 7-byte type-3 chunk (the same header as the one before),
/// whole ones filling about `FLOOD_WRITE` bytes. Each makes the server send an 18-byte ping
/// response.
fn ping_chunks() -> Vec<u8> {
    let one = [0xc2, 0, 6, 0, 0, 0, 1];
    one.repeat(FLOOD_WRITE / one.len())
}

fn connected(port: u16) -> RawRtmp {
    let mut c = RawRtmp::connect(port);
    c.handshake().expect("handshake");
    c.connect_app(port, "live").expect("connect");
    c
}

/// An RTMP publisher of `room` that sends no media (the stream is live, and empty).
fn empty_publisher(s: &Server, room: &str) -> RawRtmp {
    let key = s.key_for(room);
    let mut c = connected(s.rtmp_port);
    let sid = c.create_stream().expect("createStream");
    assert_eq!(
        c.publish(sid, &key).expect("publish"),
        "NetStream.Publish.Start"
    );
    c
}

/// An RTMP player of `room`, once the server has said Play.Start.
fn playing(port: u16, room: &str) -> RawRtmp {
    let mut c = connected(port);
    let sid = c.create_stream().expect("createStream");
    c.play(sid, room).expect("play");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = c
            .read_message(left)
            .unwrap_or_else(|e| panic!("play {room}: {e}; got {:?}", c.status_codes()));
        if m.status_code().as_deref() == Some("NetStream.Play.Start") {
            return c;
        }
    }
}

/// Whether `/stat/livestat` lists a publisher of `key` (`app/room`).
fn is_publishing(s: &Server, key: &str) -> bool {
    publishers(s).iter().any(|p| p["key"] == key)
}

/// Floods the server through `stream` (which never reads) while watching its memory; the
/// memory must stay bounded and the connection be closed.
fn assert_flood_is_cut_off(s: &Server, stream: &mut TcpStream, first: &[u8], repeat: &[u8]) {
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT * 3))
        .expect("set write timeout");
    let pid = s.pid();
    let before = rss_kib(pid);
    let peak = RssPeak::watch(pid);
    let started = Instant::now();
    let (sent, end) = flood(stream, first, repeat);
    let took = started.elapsed();
    let peak = peak.finish();
    let growth = peak.saturating_sub(before);
    eprintln!(
        "flood: {sent} bytes in {took:?}, ended {end:?}; RSS {before} KiB, peak {peak} KiB \
         (+{growth} KiB)"
    );
    assert!(
        growth < MAX_RSS_GROWTH_KIB,
        "the server's memory grew by {growth} KiB (limit {MAX_RSS_GROWTH_KIB} KiB) while a peer \
         sent {sent} bytes of requests without reading the replies"
    );
    // Still open (e.g. the flood ran out first): the server must close it now, reading or not.
    if end != FloodEnd::Refused {
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + WRITE_TIMEOUT + Duration::from_secs(10);
        let closed = loop {
            if Instant::now() >= deadline {
                break false;
            }
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .expect("set read timeout");
            match stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => break true,
            }
        };
        assert!(closed, "the flooding peer was not disconnected ({end:?})");
    }
}

/// An RTMP player that stops reading and floods ping requests is read no further once its unsent
/// replies pass the cap and is disconnected after `write_timeout`; the server's memory stays
/// bounded, and an ffmpeg stream on the same server is recorded byte-exactly.
#[test]
fn player_flooding_pings_without_reading_is_cut_off() {
    let s = server();
    let watched = WatchedStream::start(&s, "movie", 50);

    // The bad player plays another stream, live but empty, so that only its replies flow.
    let _bait = empty_publisher(&s, "bait");
    let mut bad = playing(s.rtmp_port, "bait");
    assert_flood_is_cut_off(&s, &mut bad.stream, &ping_head(), &ping_chunks());
    drop(bad);
    let log = s.log();
    assert!(
        log.contains("write timeout: player stuck"),
        "no log line names why the player was cut off; log:\n{log}"
    );

    watched.assert_whole();
}

/// The same with a WebSocket-FLV viewer flooding pings (each answered by a pong).
#[test]
fn websocket_viewer_flooding_pings_without_reading_is_cut_off() {
    let s = server();
    let _bait = empty_publisher(&s, "bait");
    let addr = SocketAddr::from(([127, 0, 0, 1], s.httpflv_port));
    let mut ws = websocket_upgrade(
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect"),
        "/live/bait.flv",
    );
    // Masked pings with no payload: 6 bytes each, each answered by a 2-byte pong.
    let ping = [0x89, 0x80, 0x11, 0x22, 0x33, 0x44];
    let pings = ping.repeat(FLOOD_WRITE / ping.len());
    assert_flood_is_cut_off(&s, &mut ws, &pings, &pings);
    let log = s.log();
    assert!(
        log.contains("write timeout: viewer stuck"),
        "no log line names why the viewer was cut off; log:\n{log}"
    );
}

/// A publisher that never reads and keeps making the server reply (ping requests) is dropped
/// within `write_timeout` of the server's writes stalling; then the same key publishes again
/// and plays byte-exactly.
#[test]
fn publisher_not_reading_its_replies_is_dropped() {
    let s = server();
    let mut bad = empty_publisher(&s, "movie");
    assert!(is_publishing(&s, "live/movie"));
    // Short, so that the client notices soon after the server stopped reading.
    bad.stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (sent, end) = flood(&mut bad.stream, &ping_head(), &ping_chunks());
    let stalled = Instant::now();
    eprintln!("flood: {sent} bytes, ended {end:?}");
    assert_eq!(
        end,
        FloodEnd::Stalled,
        "the server kept reading {sent} bytes of pings from a publisher that reads nothing"
    );
    // The server's writes stalled before the client's did: it must drop the publisher within
    // its write timeout from now, plus slack for a loaded machine.
    let bound = WRITE_TIMEOUT + Duration::from_secs(3);
    let give_up = Duration::from_secs(15);
    while is_publishing(&s, "live/movie") {
        assert!(
            stalled.elapsed() < give_up,
            "a publisher that does not read was kept for {give_up:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let took = stalled.elapsed();
    assert!(
        took < bound,
        "a publisher that does not read was dropped only after {took:?} (bound {bound:?})"
    );
    drop(bad);
    let log = s.log();
    assert!(
        log.contains("write timeout: peer not reading"),
        "no log line names why the publisher was dropped; log:\n{log}"
    );

    // The key is free again: ffmpeg publishes it and a player gets every byte.
    WatchedStream::start(&s, "movie", 0).assert_whole();
}

/// A player that reads its replies is never cut off for pinging: pings and pongs in lockstep,
/// many more in all than the cap.
#[test]
fn player_pinging_and_reading_stays() {
    let s = server();
    let _bait = empty_publisher(&s, "bait");
    let mut c = playing(s.rtmp_port, "bait");
    let head = ping_head();
    let more = ping_chunks();
    c.send(&head).expect("send a ping");
    // 8 rounds of ~9000 pings (~160 KiB of replies each): every round read back in full.
    for round in 0..8 {
        c.send(&more).expect("send pings");
        let want = more.len() / 7;
        let mut got = 0;
        while got < want {
            let m = c
                .read_message(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("round {round}: {got} of {want} pongs, then {e}"));
            if m.type_id == 4 && m.payload.starts_with(&[0, 7]) {
                got += 1;
            }
        }
    }
    assert_eq!(c.wait_closed(Duration::from_millis(500)), Closed::TimedOut);
}

/// Reads the client's messages on `s` until a command named `name`; returns its transaction id.
fn await_command(s: &mut TcpStream, reader: &mut rtmp::ChunkReader, name: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 16384];
    loop {
        while let Some(m) = reader.next_message().expect("decode the push's chunks") {
            if m.command_name().as_deref() == Some(name) {
                match m.command().as_deref() {
                    Some([_, Amf::Number(txn), ..]) => return *txn,
                    other => panic!("{name} without a transaction id: {other:?}"),
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the push sent no {name}");
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => panic!("the push closed before {name}"),
            Ok(n) => reader.push(&buf[..n]),
            Err(e) => panic!("waiting for {name}: {e}"),
        }
    }
}

fn send_command(s: &mut TcpStream, msid: u32, values: &[Amf]) {
    let payload = rtmp::amf_encode_all(values);
    s.write_all(&rtmp::chunk_message(
        3,
        0,
        rtmp::MSG_COMMAND_AMF0,
        msid,
        &payload,
        128,
    ))
    .expect("answer the push");
}

/// A remote server a push publishes to that accepts the publish, then floods ping requests and
/// never reads again: the push stops reading it once its unsent replies pass the cap (the
/// server's memory stays bounded) and gives the remote up after its write timeout.
#[test]
fn push_remote_flooding_pings_without_reading_is_cut_off() {
    let remote = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake remote");
    let port = remote.local_addr().unwrap().port();
    let config = format!(
        "[[server]]\nappname = \"live\"\nlive = true\nstatic_push = [\"rtmp://127.0.0.1:{port}/live\"]\n"
    );
    // The local publisher sends nothing: a long read timeout keeps it (and its push) alive.
    let s = Server::start_with_config(&config, &["--rtmp_noauth", "--read_timeout", "60"]);
    let mut publisher = connected(s.rtmp_port);
    let sid = publisher.create_stream().expect("createStream");
    assert_eq!(
        publisher.publish(sid, "room").expect("publish"),
        "NetStream.Publish.Start"
    );

    // The push connects: a simple handshake (S1 with a zero version), then connect, createStream
    // and publish answered.
    remote.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut c = loop {
        match remote.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the push never connected");
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept the push: {e}"),
        }
    };
    c.set_nonblocking(false).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c0c1 = vec![0u8; 1537];
    c.read_exact(&mut c0c1).expect("read C0C1");
    assert_eq!(c0c1[0], 3, "C0");
    let mut s0s1s2 = vec![3u8];
    s0s1s2.extend((0..1536u32).map(|i| if (4..8).contains(&i) { 0 } else { i as u8 }));
    s0s1s2.extend_from_slice(&c0c1[1..]);
    c.write_all(&s0s1s2).expect("send S0S1S2");
    let mut c2 = vec![0u8; 1536];
    c.read_exact(&mut c2).expect("read C2");
    let mut reader = rtmp::ChunkReader::new();
    let txn = await_command(&mut c, &mut reader, "connect");
    let info = |code: &str| {
        Amf::Object(vec![
            ("level".into(), Amf::Str("status".into())),
            ("code".into(), Amf::Str(code.into())),
            ("description".into(), Amf::Str(String::new())),
        ])
    };
    send_command(
        &mut c,
        0,
        &[
            Amf::Str("_result".into()),
            Amf::Number(txn),
            Amf::Object(vec![("fmsVer".into(), Amf::Str("FMS/3,0,1,123".into()))]),
            info("NetConnection.Connect.Success"),
        ],
    );
    let txn = await_command(&mut c, &mut reader, "createStream");
    send_command(
        &mut c,
        0,
        &[
            Amf::Str("_result".into()),
            Amf::Number(txn),
            Amf::Null,
            Amf::Number(1.0),
        ],
    );
    await_command(&mut c, &mut reader, "publish");
    send_command(
        &mut c,
        1,
        &[
            Amf::Str("onStatus".into()),
            Amf::Number(0.0),
            Amf::Null,
            info("NetStream.Publish.Start"),
        ],
    );
    wait_push_state(&s, "publishing");

    // Stalls once the push stops reading: the remote then learns of it within a second.
    c.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let pid = s.pid();
    let before = rss_kib(pid);
    let peak = RssPeak::watch(pid);
    let (sent, end) = flood(&mut c, &ping_head(), &ping_chunks());
    let peak = peak.finish();
    let growth = peak.saturating_sub(before);
    eprintln!("flood: {sent} bytes, ended {end:?}; RSS {before} KiB, peak {peak} KiB");
    assert!(
        growth < MAX_RSS_GROWTH_KIB,
        "the server's memory grew by {growth} KiB (limit {MAX_RSS_GROWTH_KIB} KiB) while a \
         remote sent {sent} bytes of pings without reading the replies"
    );
    assert_eq!(
        end,
        FloodEnd::Stalled,
        "the push kept reading {sent} bytes of pings from a remote that reads nothing"
    );
    // The push gives the stuck remote up after its own write timeout (10 s) and retries.
    let r = wait_push_state(&s, "retrying");
    assert!(
        r["state"]
            .as_str()
            .is_some_and(|x| x.contains("write timeout")),
        "{r}"
    );
}

/// Waits (up to 30 s) until the static push of `live/room` is in a state starting with
/// `state`; returns its `/control/relays` entry.
fn wait_push_state(s: &Server, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, v) = s.api_json("/control/relays");
        assert_eq!(code, 200, "{v}");
        if let Some(r) = v["data"].as_array().into_iter().flatten().find(|r| {
            r["kind"] == "static_push"
                && r["stream"] == "live/room"
                && r["state"].as_str().is_some_and(|x| x.starts_with(state))
        }) {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the static push of live/room never got to {state:?}: {v}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}
