//! Hostile and broken clients: each bad connection is closed, nothing else is affected, the
//! process stays up and keeps serving byte-exact streams. Also config errors and signals.

mod common;

use common::rtmp::{self, Amf, Closed, RawRtmp};
use common::*;
use std::thread;
use std::time::Duration;

/// How long a server may take to drop a bad connection (covers handshake/command timeouts).
const CLOSE_BOUND: Duration = Duration::from_secs(20);

fn handshaken(port: u16) -> RawRtmp {
    let mut c = RawRtmp::connect(port);
    c.handshake().expect("handshake");
    c
}

fn connected(port: u16) -> RawRtmp {
    let mut c = handshaken(port);
    c.connect_app(port, "live").expect("connect");
    c
}

fn connect_with_payload(port: u16, payload: Vec<u8>) -> RawRtmp {
    let mut c = handshaken(port);
    // A write may fail once the server has already closed; the close is what is checked.
    let _ = c.send_message(3, rtmp::MSG_COMMAND_AMF0, 0, &payload);
    c
}

type Case = (&'static str, fn(u16) -> RawRtmp);

fn cases() -> Vec<Case> {
    vec![
        ("garbage bytes", |p| {
            let mut c = RawRtmp::connect(p);
            let junk: Vec<u8> = (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80)
                .collect();
            let _ = c.send(&junk);
            c
        }),
        ("HTTP on the RTMP port", |p| {
            let mut c = RawRtmp::connect(p);
            let _ = c.send(b"GET /live/movie.flv HTTP/1.1\r\nHost: x\r\n\r\n");
            c
        }),
        ("truncated handshake", |p| {
            let mut c = RawRtmp::connect(p);
            let mut partial = vec![3u8];
            partial.extend_from_slice(&[0u8; 700]);
            let _ = c.send(&partial);
            c
        }),
        ("connection that never speaks", RawRtmp::connect),
        ("silent after the handshake", handshaken),
        ("chunk size 0", |p| {
            let mut c = handshaken(p);
            let _ = c.send(&rtmp::chunk_message(
                2,
                0,
                rtmp::MSG_SET_CHUNK_SIZE,
                0,
                &0u32.to_be_bytes(),
                128,
            ));
            let _ = c.send(&rtmp::chunk_message(
                3,
                0,
                20,
                0,
                &rtmp::connect_command("live", "rtmp://x/live"),
                128,
            ));
            c
        }),
        ("chunk size 0x7fffffff then a huge message", |p| {
            let mut c = handshaken(p);
            let _ = c.send(&rtmp::chunk_message(
                2,
                0,
                rtmp::MSG_SET_CHUNK_SIZE,
                0,
                &0x7fff_ffffu32.to_be_bytes(),
                128,
            ));
            let mut head = rtmp::basic_header(0, 3);
            head.extend_from_slice(&[0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0]);
            let _ = c.send(&head);
            for _ in 0..64 {
                if c.send(&[0x41u8; 65536]).is_err() {
                    break;
                }
            }
            c
        }),
        ("message header claiming 16 MiB", |p| {
            let mut c = connected(p);
            // The largest length a chunk header can carry; far beyond any sane message cap.
            let mut head = rtmp::basic_header(0, 6);
            head.extend_from_slice(&[0, 0, 0, 0xff, 0xff, 0xff, rtmp::MSG_VIDEO, 1, 0, 0, 0]);
            let _ = c.send(&head);
            let cont = rtmp::basic_header(3, 6);
            for _ in 0..(1 << 16) {
                let mut chunk = cont.clone();
                chunk.extend_from_slice(&[0x17u8; 128]);
                if c.send(&chunk).is_err() {
                    break;
                }
            }
            c
        }),
        ("too many chunk streams", |p| {
            let mut c = connected(p);
            // A partial message on every possible chunk stream id.
            let mut bytes = Vec::new();
            for csid in 3..65599u32 {
                bytes.extend_from_slice(&rtmp::basic_header(0, csid));
                bytes.extend_from_slice(&[0, 0, 0, 0, 0x01, 0x00, rtmp::MSG_AUDIO, 1, 0, 0, 0]);
                bytes.extend_from_slice(&[0xaf; 16]);
                if bytes.len() > 64 * 1024 {
                    if c.send(&bytes).is_err() {
                        return c;
                    }
                    bytes.clear();
                }
            }
            let _ = c.send(&bytes);
            c
        }),
        ("AMF string length beyond the payload", |p| {
            let mut payload = rtmp::amf_encode_all(&[Amf::Str("connect".into()), Amf::Number(1.0)]);
            payload.extend_from_slice(&[3, 0, 3, b'a', b'p', b'p', 2, 0xff, 0xf0, b'l', b'i']);
            connect_with_payload(p, payload)
        }),
        ("AMF long string of 4 GiB", |p| {
            let mut payload = rtmp::amf_encode_all(&[Amf::Str("connect".into()), Amf::Number(1.0)]);
            payload
                .extend_from_slice(&[3, 0, 3, b'a', b'p', b'p', 12, 0xff, 0xff, 0xff, 0xff, b'x']);
            connect_with_payload(p, payload)
        }),
        ("AMF nested 100000 deep", |p| {
            let mut payload = rtmp::amf_encode_all(&[Amf::Str("connect".into()), Amf::Number(1.0)]);
            for _ in 0..20000 {
                payload.extend_from_slice(&[3, 0, 1, b'k']);
            }
            connect_with_payload(p, payload)
        }),
        ("connect with a numeric app", |p| {
            let payload = rtmp::command(
                "connect",
                1.0,
                &[Amf::Object(vec![
                    ("app".into(), Amf::Number(7.0)),
                    ("tcUrl".into(), Amf::Bool(true)),
                    ("objectEncoding".into(), Amf::Str("zero".into())),
                ])],
            );
            connect_with_payload(p, payload)
        }),
        ("empty command message", |p| {
            connect_with_payload(p, Vec::new())
        }),
        ("publish before connect", |p| {
            let mut c = handshaken(p);
            let _ = c.send_message(
                3,
                rtmp::MSG_COMMAND_AMF0,
                0,
                &rtmp::command("createStream", 2.0, &[Amf::Null]),
            );
            let _ = c.send_message(
                4,
                rtmp::MSG_COMMAND_AMF0,
                1,
                &rtmp::command(
                    "publish",
                    3.0,
                    &[Amf::Null, Amf::Str("movie".into()), Amf::Str("live".into())],
                ),
            );
            c
        }),
        ("continuation chunk with no header", |p| {
            let mut c = handshaken(p);
            let _ = c.send(&[0xc3, 1, 2, 3, 4, 5, 6, 7, 8]);
            c
        }),
    ]
}

#[test]
fn bad_clients_are_dropped_and_the_server_keeps_serving() {
    let mut s = Server::start(&["--play_wait_timeout", "20"]);
    let port = s.rtmp_port;
    // All cases at once: the server must handle them concurrently, and the test stays short.
    let handles: Vec<_> = cases()
        .into_iter()
        .map(|(name, case)| {
            thread::spawn(move || {
                let mut c = case(port);
                (name, c.wait_closed(CLOSE_BOUND))
            })
        })
        .collect();
    let mut open = Vec::new();
    for h in handles {
        let (name, closed) = h.join().expect("case thread panicked");
        if closed != Closed::Yes {
            open.push(name);
        }
    }
    assert!(
        open.is_empty(),
        "connections not closed within {CLOSE_BOUND:?}: {open:?}"
    );
    assert!(s.is_alive(), "the server died");

    // Still fully working: handshake + connect, keys, and a byte-exact stream.
    connected(port);
    let key = s.key_for("movie");
    let dir = scratch_dir();
    let mut player = Recorder::start(
        PlayerKind::Rtmpdump,
        &s.rtmp_url("live/movie"),
        dir.path(),
        "after",
    );
    wait_players(&s, 1);
    ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")))
        .wait_success(PUBLISH_TIMEOUT);
    assert_recording(&mut player, &media_tags(Media::Av), true);
    assert!(s.is_alive());
    let st = s.stop();
    assert_eq!(st.code(), Some(0), "exit after the abuse: {st}");
}

#[test]
fn bad_client_does_not_disturb_a_live_stream() {
    let s = Server::start(&["--play_wait_timeout", "20"]);
    // The bad clients come while the stream runs (2 s in).
    let watched = WatchedStream::start(&s, "movie", 50);
    for (name, case) in cases() {
        let mut c = case(s.rtmp_port);
        assert_eq!(c.wait_closed(CLOSE_BOUND), Closed::Yes, "{name}");
    }
    watched.assert_whole();
}

#[test]
fn idle_publisher_is_dropped_after_read_timeout() {
    let s = Server::start(&["--read_timeout", "2"]);
    let key = s.key_for("movie");
    let mut c = connected(s.rtmp_port);
    let sid = c.create_stream().expect("createStream");
    assert_eq!(
        c.publish(sid, &key).expect("publish"),
        "NetStream.Publish.Start"
    );
    let t = std::time::Instant::now();
    assert_eq!(
        c.wait_closed(Duration::from_secs(10)),
        Closed::Yes,
        "idle publisher kept"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "dropped before read_timeout: {:?}",
        t.elapsed()
    );
}

fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Runs livego with `config` and flags on free ports; it must fail fast with one stderr line
/// naming `key`.
#[track_caller]
fn assert_config_error(config: &str, flags: &[&str], key: &str) {
    let dir = scratch_dir();
    std::fs::write(dir.path().join("livego.toml"), config).unwrap();
    let (rtmp, flv, hls, api) = (free_addr(), free_addr(), free_addr(), free_addr());
    let mut args = vec![
        "--config_file",
        "livego.toml",
        "--rtmp_addr",
        &rtmp,
        "--httpflv_addr",
        &flv,
        "--hls_addr",
        &hls,
        "--api_addr",
        &api,
    ];
    args.extend_from_slice(flags);
    let (st, stderr) = run_livego(dir.path(), &args, Duration::from_secs(10));
    let st =
        st.unwrap_or_else(|| panic!("livego kept running with a bad {key}; stderr:\n{stderr}"));
    assert!(!st.success(), "livego accepted a bad {key}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got:\n{stderr}");
    assert!(
        lines[0].contains(key),
        "stderr does not name {key}: {:?}",
        lines[0]
    );
}

#[test]
fn config_errors_exit_non_zero_naming_the_key() {
    assert_config_error(
        &format!("{DEFAULT_CONFIG}bogus_key = 1\n"),
        &[],
        "bogus_key",
    );
    assert_config_error(
        &format!("gop_num = \"many\"\n{DEFAULT_CONFIG}"),
        &[],
        "gop_num",
    );
    assert_config_error(
        &format!("{DEFAULT_CONFIG}extra_field = true\n"),
        &[],
        "extra_field",
    );
    assert_config_error(
        DEFAULT_CONFIG,
        &["--rtmp_addr", "not-an-address"],
        "rtmp_addr",
    );
    assert_config_error(
        DEFAULT_CONFIG,
        &["--api_addr", "127.0.0.1:99999"],
        "api_addr",
    );
}

#[test]
fn sigterm_and_sigint_exit_zero() {
    let s = Server::start(&[]);
    assert_eq!(s.stop().code(), Some(0), "SIGTERM");

    // With a live publisher and player connected.
    let mut s = Server::start(&["--play_wait_timeout", "20"]);
    let key = s.key_for("movie");
    let dir = scratch_dir();
    let _player = Recorder::start(
        PlayerKind::Rtmpdump,
        &s.rtmp_url("live/movie"),
        dir.path(),
        "p",
    );
    wait_players(&s, 1);
    let _publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    // Media flowing (1 s in), not merely the processes started.
    wait_published_frames(&s, "live/movie", &media_tags(Media::Av), 25);
    // Stopped promptly with its clients (bound with slack for a loaded machine; `stop` would
    // kill it after STOP_TIMEOUT, so it is signalled and waited for here).
    let bound = Duration::from_secs(8);
    let t = std::time::Instant::now();
    s.signal(libc::SIGTERM);
    let st = s
        .wait_exit(bound)
        .unwrap_or_else(|| panic!("SIGTERM with clients: still running after {bound:?}"));
    assert_eq!(st.code(), Some(0), "SIGTERM with clients: {st}");
    eprintln!("stopped with clients in {:?}", t.elapsed());

    let mut s = Server::start(&[]);
    s.signal(libc::SIGINT);
    let st = s.wait_exit(STOP_TIMEOUT).expect("SIGINT ignored");
    assert_eq!(st.code(), Some(0), "SIGINT: {st}");
}

#[test]
fn a_port_in_use_or_configured_twice_is_refused() {
    let dir = scratch_dir();
    std::fs::write(dir.path().join("livego.toml"), DEFAULT_CONFIG).expect("config");
    let [busy, flv, hls, api] = free_ports::<4>();
    // Another program holds the RTMP port: SO_REUSEPORT must not let us share it silently.
    let holder = std::net::TcpListener::bind(("127.0.0.1", busy)).expect("hold port");
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let (rtmp, flv, hls, api) = (addr(busy), addr(flv), addr(hls), addr(api));
    let args = |rtmp: &str, api: &str| {
        vec![
            "--rtmp_addr".to_string(),
            rtmp.to_string(),
            "--httpflv_addr".into(),
            flv.clone(),
            "--hls_addr".into(),
            hls.clone(),
            "--api_addr".into(),
            api.to_string(),
        ]
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run_livego(dir.path(), &a, Duration::from_secs(10))
    };
    let (status, stderr) = run(args(&rtmp, &api));
    assert!(
        status.is_some_and(|s| !s.success()),
        "started on a busy port: {status:?}"
    );
    assert!(stderr.contains("rtmp_addr"), "{stderr}");
    drop(holder);
    // The same address for two of our own listeners.
    let (status, stderr) = run(args(&api, &api));
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    assert!(
        stderr.contains("api_addr") && stderr.contains("rtmp_addr"),
        "{stderr}"
    );
}

/// Starts the server while something else holds its RTMP port, and returns once the server
/// says it is retrying that port (a fixed delay may end before a slow start even reached the
/// port, or after the retries gave up): its dir, process, the holder, and its four ports.
fn start_while_the_rtmp_port_is_held() -> (
    tempfile::TempDir,
    ProcGuard,
    std::net::TcpListener,
    [u16; 4],
) {
    let dir = scratch_dir();
    std::fs::write(dir.path().join("livego.toml"), DEFAULT_CONFIG).expect("config");
    let ports = free_ports::<4>();
    let [rtmp, flv, hls, api] = ports;
    let holder = std::net::TcpListener::bind(("127.0.0.1", rtmp)).expect("hold port");
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let mut server = ProcGuard::spawn(
        "livego",
        std::process::Command::new(env!("CARGO_BIN_EXE_livego"))
            .current_dir(dir.path())
            .args(["--rtmp_addr", &addr(rtmp), "--httpflv_addr", &addr(flv)])
            .args(["--hls_addr", &addr(hls), "--api_addr", &addr(api)]),
        &dir.path().join("server.log"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.log().contains("is in use; retrying") {
        assert!(
            std::time::Instant::now() < deadline && server.try_status().is_none(),
            "{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(10));
    }
    (dir, server, holder, ports)
}

/// A port that is still busy at start is retried for a moment, so a server restarted at once
/// after a crash (whose listeners linger briefly) comes up instead of exiting; a port that stays
/// busy is still refused (above).
#[test]
fn a_port_freed_soon_after_start_is_waited_for() {
    let (_dir, mut server, holder, [rtmp, _, _, api]) = start_while_the_rtmp_port_is_held();
    assert!(server.try_status().is_none(), "{}", server.log());
    drop(holder);
    assert!(
        wait_port(api, Duration::from_secs(10)),
        "no API after the port was freed: {}",
        server.log()
    );
    assert!(wait_port(rtmp, Duration::from_secs(10)), "{}", server.log());
    let r = http_get(api, "/control/get?room=movie").expect("API request");
    assert_eq!(r.status, 200);
    assert!(
        server.log().contains("is in use; retrying"),
        "{}",
        server.log()
    );
    let st = server.interrupt(STOP_TIMEOUT).expect("exit status");
    assert!(st.success(), "{st:?}");
}

/// Stopped and started again at once, after serving API, HTTP-FLV and HLS requests (each closed
/// by the server, which leaves TIME_WAIT sockets on its ports), the server comes up on the same
/// ports: after a SIGTERM and after a crash.
#[test]
fn a_restart_right_after_serving_comes_up_on_the_same_ports() {
    let mut s = Server::start(&[]);
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        let key = s.key_for("movie");
        assert!(!key.is_empty());
        let r = http_get(s.httpflv_port, "/live/none.flv").expect("HTTP-FLV request");
        assert_eq!(r.status, 404);
        let r = http_get(s.hls_port, "/live/none/index.m3u8").expect("HLS request");
        assert_eq!(r.status, 404);
        s.restart(sig);
        let (code, body) = s.api_get("/control/get?room=movie");
        assert_eq!(code, 200, "after restart by signal {sig}: {body}");
    }
}

/// A SIGTERM that arrives while the server is still starting (here: waiting for a busy port) is
/// held and answered with a clean stop once it is up, rather than killing it mid-start.
#[test]
fn a_sigterm_during_start_stops_the_server_cleanly() {
    let (_dir, mut server, holder, _) = start_while_the_rtmp_port_is_held();
    server.signal(libc::SIGTERM);
    drop(holder);
    let st = server.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "{st:?}: {}", server.log());
    assert!(
        server.log().contains("termination signal"),
        "{}",
        server.log()
    );
}
