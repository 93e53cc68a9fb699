//! Tests of the test harness itself, runnable before the server exists: the FLV reader on files
//! made by ffmpeg, the comparators (they must accept what is right and reject what is wrong),
//! the raw RTMP codec, the HTTP client, the process guards.
//!
//! The `#[ignore]`d test at the end drives the players and comparators through a third-party RTMP
//! server (nginx-rtmp) to prove the end-to-end method itself; run it with
//! `cargo test --test harness_selftest -- --ignored` where nginx and its rtmp module are installed.

mod common;

use common::flv::{self, Tag, TAG_AUDIO, TAG_VIDEO};
use common::rtmp::{self, Amf};
use common::*;
use proptest::prelude::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

fn check_media_shape(m: Media) -> Vec<Tag> {
    let tags = media_tags(m);
    let v = flv::video_frames(&tags);
    let a = flv::audio_frames(&tags);
    // 8 s of AAC at 44.1 kHz is ~345 frames of 1024 samples.
    assert!(
        (330..=360).contains(&a.len()),
        "{m:?}: {} audio frames",
        a.len()
    );
    assert_eq!(flv::sequence_headers(&tags, TAG_AUDIO).len(), 1, "{m:?}");
    for track in [&v, &a] {
        assert!(
            track.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
            "{m:?}: timestamps go backwards"
        );
    }
    if m == Media::AudioOnly {
        assert!(
            tags.iter().all(|t| !t.is_video()),
            "audio-only media has video"
        );
        return tags;
    }
    assert_eq!(v.len(), 200, "{m:?}: 8 s at 25 fps");
    assert_eq!(flv::sequence_headers(&tags, TAG_VIDEO).len(), 1, "{m:?}");
    let kf: Vec<usize> = v
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_keyframe())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        kf,
        (0..8).map(|i| i * 25).collect::<Vec<_>>(),
        "{m:?}: GOP of 25"
    );
    let with_cts = v.iter().filter(|t| t.data[2..5] != [0, 0, 0]).count();
    if m == Media::AvBframes {
        assert!(
            with_cts > 50,
            "B-frame media has only {with_cts} frames with a CTS"
        );
    } else {
        assert_eq!(with_cts, 0, "{m:?} should have no B-frames");
    }
    tags
}

#[test]
fn test_media_is_what_the_tests_assume() {
    for m in [Media::Av, Media::AvBframes, Media::AvAlt, Media::AudioOnly] {
        check_media_shape(m);
    }
    let av = flv::video_frames(&media_tags(Media::Av))
        .into_iter()
        .map(|t| t.data.clone())
        .collect::<Vec<_>>();
    let alt_tags = media_tags(Media::AvAlt);
    let alt = flv::video_frames(&alt_tags);
    assert!(
        alt.iter().all(|t| !av.contains(&t.data)),
        "Av and AvAlt share frames: takeover tests could not tell them apart"
    );
}

#[test]
fn test_media_is_deterministic() {
    let dir = scratch_dir();
    let again = dir.path().join("again.flv");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(media(Media::Av))
        .args(["-c", "copy", "-f", "flv"])
        .arg(&again)
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A remux by ffmpeg is what an ffmpeg player produces: the comparator must accept it.
    let m = flv::assert_same_media(&media_tags(Media::Av), &flv::read_flv(&again), false);
    assert_eq!((m.video_frames, m.offset), (200, 0));
}

fn remux(m: Media) -> Vec<Tag> {
    let dir = scratch_dir();
    let out_path = dir.path().join("remux.flv");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(media(m))
        .args(["-c", "copy", "-f", "flv"])
        .arg(&out_path)
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    flv::read_flv(&out_path)
}

#[test]
fn comparator_accepts_ffmpeg_remux_of_every_media() {
    for m in [Media::AvBframes, Media::AudioOnly] {
        flv::assert_same_media(&media_tags(m), &remux(m), false);
    }
}

/// A synthetic late joiner: sequence headers, then the audio and video from the `gop`-th
/// keyframe's timestamp on, re-stamped to start at `base`. Returns the tags and that keyframe's ts.
fn late_joiner(source: &[Tag], gop: usize, base: u32) -> (Vec<Tag>, u32) {
    let kf_ts = source
        .iter()
        .filter(|t| t.is_keyframe() && t.is_media_frame())
        .nth(gop)
        .expect("keyframe")
        .timestamp;
    let mut out: Vec<Tag> = source
        .iter()
        .filter(|t| t.is_sequence_header())
        .cloned()
        .collect();
    for t in source {
        if t.is_media_frame() && t.timestamp >= kf_ts {
            let mut t = t.clone();
            t.timestamp = t.timestamp - kf_ts + base;
            out.push(t);
        }
    }
    (out, kf_ts)
}

#[test]
fn comparator_late_joiner_rules() {
    let src = media_tags(Media::Av);
    let (late, kf_ts) = late_joiner(&src, 3, 0);
    let m = flv::assert_same_media(&src, &late, true);
    assert_eq!(m.video_start, 75);
    assert_eq!(m.offset, -(kf_ts as i64));
    let (late, kf_ts) = late_joiner(&src, 5, 100_000);
    let m = flv::assert_same_media(&src, &late, true);
    assert_eq!(m.offset, 100_000 - kf_ts as i64);
    // A late joiner is not a full recording.
    let err = flv::compare_media(&src, &late, false).unwrap_err();
    assert!(err.contains("video frames"), "{err}");
    // The full recording also passes as a "late joiner" from keyframe 0.
    flv::assert_same_media(&src, &src, true);
}

fn expect_err(src: &[Tag], rcv: &[Tag], from_kf: bool, what: &str) {
    match flv::compare_media(src, rcv, from_kf) {
        Ok(m) => panic!("comparator accepted a recording with {what}: {m:?}"),
        Err(e) => eprintln!("{what}: rejected as expected: {e}"),
    }
}

#[test]
fn comparator_rejects_wrong_media() {
    let src = media_tags(Media::Av);
    let frame_idx = |pred: &dyn Fn(&Tag) -> bool, n: usize| {
        src.iter()
            .enumerate()
            .filter(|(_, t)| t.is_media_frame() && pred(t))
            .nth(n)
            .map(|(i, _)| i)
            .unwrap()
    };
    let vid = frame_idx(&|t| t.is_video(), 40);
    let aud = frame_idx(&|t| t.is_audio(), 40);

    let mut flipped = src.clone();
    let last = flipped[vid].data.len() - 1;
    flipped[vid].data[last] ^= 1;
    expect_err(&src, &flipped, false, "one flipped video bit");

    let mut short = src.clone();
    short[aud].data.pop();
    expect_err(&src, &short, false, "a truncated audio frame");

    let mut dropped = src.clone();
    dropped.remove(vid);
    expect_err(&src, &dropped, false, "a dropped video frame");
    expect_err(&src, &dropped, true, "a dropped video frame (late joiner)");

    let mut dup = src.clone();
    dup.insert(aud, src[aud].clone());
    expect_err(&src, &dup, false, "a duplicated audio frame");

    let mut jitter = src.clone();
    jitter[vid].timestamp += 1;
    expect_err(&src, &jitter, false, "a timestamp off by 1 ms");

    let mut skew = src.clone();
    for t in skew.iter_mut().filter(|t| t.is_audio()) {
        t.timestamp += 40;
    }
    expect_err(&src, &skew, false, "audio shifted against video");

    let no_avc_sh: Vec<Tag> = src
        .iter()
        .filter(|t| !(t.is_video() && t.is_sequence_header()))
        .cloned()
        .collect();
    expect_err(&src, &no_avc_sh, false, "no AVC sequence header");

    let (mut late, _) = late_joiner(&src, 3, 0);
    let first_v = late
        .iter()
        .position(|t| t.is_video() && t.is_media_frame())
        .unwrap();
    late.remove(first_v);
    expect_err(
        &src,
        &late,
        true,
        "a late joiner starting after the keyframe",
    );

    let mut tail_cut = src.clone();
    let last_v = tail_cut
        .iter()
        .rposition(|t| t.is_video() && t.is_media_frame())
        .unwrap();
    tail_cut.truncate(last_v);
    expect_err(&src, &tail_cut, false, "the end missing");

    let other = media_tags(Media::AvAlt);
    expect_err(&src, &other, false, "another stream");
    expect_err(&src, &[], true, "nothing");
}

#[test]
fn flv_parser_round_trips_and_rejects_truncation() {
    let tags = vec![
        Tag {
            kind: 18,
            timestamp: 0,
            data: b"\x02\x00\x0aonMetaData".to_vec(),
        },
        Tag {
            kind: 9,
            timestamp: 0x0123_4567,
            data: vec![0x17, 0, 0, 0, 0, 1, 2],
        },
        Tag {
            kind: 8,
            timestamp: 0xff_ffff,
            data: vec![0xaf, 1, 9],
        },
        Tag {
            kind: 8,
            timestamp: 5,
            data: vec![],
        },
    ];
    let bytes = flv::write_flv(&tags);
    assert_eq!(flv::parse_flv(&bytes).unwrap(), tags);
    for cut in 0..bytes.len() {
        let r = flv::parse_flv(&bytes[..cut]);
        // Cuts exactly between tags leave a valid shorter file; anywhere else is an error.
        if let Ok(t) = r {
            assert!(t.len() < tags.len() && tags.starts_with(&t), "cut {cut}");
        }
    }
    let mut bad_prev = bytes.clone();
    let n = bad_prev.len();
    bad_prev[n - 1] ^= 1;
    assert!(flv::parse_flv(&bad_prev)
        .unwrap_err()
        .contains("PreviousTagSize"));
    let mut huge = bytes.clone();
    huge[14..17].copy_from_slice(&[0xff, 0xff, 0xff]);
    assert!(flv::parse_flv(&huge).is_err());
    assert!(flv::parse_flv(b"GIF89a").is_err());
}

proptest! {
    #[test]
    fn flv_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut input = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        input.extend_from_slice(&bytes);
        let _ = flv::parse_flv(&input);
        let _ = flv::parse_flv(&bytes);
    }

    #[test]
    fn chunk_codec_round_trips(
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
        chunk_size in 1usize..600,
        csid in prop_oneof![2u32..64, 64u32..320, 320u32..65599],
        ts in prop_oneof![0u32..0xff_fff0, 0xff_ffffu32..u32::MAX],
        // Not 1: a Set Chunk Size would (rightly) change the reader's state.
        type_id in 3u8..30,
        msid in any::<u32>(),
    ) {
        let mut r = rtmp::ChunkReader::new();
        if chunk_size != 128 {
            r.push(&rtmp::chunk_message(2, 0, rtmp::MSG_SET_CHUNK_SIZE, 0, &(chunk_size as u32).to_be_bytes(), 128));
            prop_assert_eq!(r.next_message().unwrap().unwrap().type_id, rtmp::MSG_SET_CHUNK_SIZE);
        }
        let bytes = rtmp::chunk_message(csid, ts, type_id, msid, &payload, chunk_size);
        // Fed in two pieces, to exercise the "need more bytes" paths.
        let split = bytes.len() / 2;
        r.push(&bytes[..split]);
        let early = r.next_message().unwrap();
        r.push(&bytes[split..]);
        let m = match early { Some(m) => m, None => r.next_message().unwrap().unwrap() };
        prop_assert_eq!(m.csid, csid);
        prop_assert_eq!(m.timestamp, ts);
        prop_assert_eq!(m.type_id, type_id);
        prop_assert_eq!(m.msid, msid);
        prop_assert_eq!(m.payload, payload);
        prop_assert!(r.next_message().unwrap().is_none());
    }

    #[test]
    fn chunk_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut r = rtmp::ChunkReader::new();
        r.push(&bytes);
        for _ in 0..100 {
            match r.next_message() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }

    #[test]
    fn amf_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = rtmp::amf_decode_all(&bytes);
    }
}

#[test]
fn amf_round_trip_and_status_code() {
    let values = vec![
        Amf::Str("onStatus".into()),
        Amf::Number(0.0),
        Amf::Null,
        Amf::Object(vec![
            ("level".into(), Amf::Str("error".into())),
            ("code".into(), Amf::Str("NetStream.Publish.BadName".into())),
            (
                "nested".into(),
                Amf::Array(vec![("x".into(), Amf::Bool(true))]),
            ),
            ("u".into(), Amf::Undefined),
        ]),
    ];
    let payload = rtmp::amf_encode_all(&values);
    assert_eq!(rtmp::amf_decode_all(&payload).unwrap(), values);
    let msg = rtmp::Message {
        csid: 5,
        timestamp: 0,
        type_id: rtmp::MSG_COMMAND_AMF0,
        msid: 1,
        payload,
    };
    assert_eq!(msg.command_name().as_deref(), Some("onStatus"));
    assert_eq!(
        msg.status_code().as_deref(),
        Some("NetStream.Publish.BadName")
    );
    // Hand-checked bytes of a tiny command, so encoder and decoder are not merely consistent.
    assert_eq!(
        rtmp::command("a", 1.0, &[Amf::Null]),
        [2, 0, 1, b'a', 0, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 5]
    );
    assert_eq!(rtmp::basic_header(3, 5), [0xc5]);
    assert_eq!(rtmp::basic_header(0, 64), [0, 0]);
    assert_eq!(rtmp::basic_header(1, 320), [0x41, 0, 1]);
    let deep: Vec<u8> = std::iter::repeat_n(3u8, 2)
        .chain([0, 1, b'k'])
        .cycle()
        .take(500)
        .collect();
    assert!(rtmp::amf_decode_all(&deep).is_err());
}

#[test]
fn fnv1a64_known_vectors() {
    assert_eq!(fnv1a64(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64("a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64("foobar"), 0x8594_4171_f739_67e8);
}

/// A one-connection HTTP server that answers `response` verbatim.
fn serve_once(response: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            // Dribble the response so the client must reassemble it.
            for part in response.chunks(7) {
                let _ = s.write_all(part);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    port
}

#[test]
fn http_client_reads_length_chunked_and_eof_bodies() {
    let p = serve_once(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"status\":200,\"data\":\"Ok\"}\nEXTRA");
    let r = http_get(p, "/control/delete?room=x").unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "{\"status\":200,\"data\":\"Ok\"}\n")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));

    let p = serve_once(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    let r = http_get(p, "/").unwrap();
    assert_eq!((r.status, r.body.as_str()), (404, "hello world"));

    let p = serve_once(b"HTTP/1.0 400 Bad Request\r\n\r\nbye");
    let r = http_get(p, "/").unwrap();
    assert_eq!((r.status, r.body.as_str()), (400, "bye"));

    let p = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
    assert!(
        http_get(p, "/").is_err(),
        "a truncated body must be an error"
    );
}

#[test]
fn proc_guard_kills_and_bounds_waits() {
    let dir = scratch_dir();
    let mut g = ProcGuard::spawn(
        "sleep",
        Command::new("sleep").arg("30"),
        &dir.path().join("s.log"),
    );
    let pid = g.pid().unwrap();
    let t = Instant::now();
    assert!(g.wait_timeout(Duration::from_millis(200)).is_none());
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(g);
    // The pid is reaped: signal 0 must fail now.
    // SAFETY: kill with signal 0 only checks for existence.
    assert_ne!(
        unsafe { libc::kill(pid as i32, 0) },
        0,
        "sleep survived its guard"
    );

    let mut g = ProcGuard::spawn(
        "sh",
        Command::new("sh").args(["-c", "echo hi; exit 3"]),
        &dir.path().join("e.log"),
    );
    assert_eq!(g.wait_exit(Duration::from_secs(5)).code(), Some(3));
    assert_eq!(g.log().trim(), "hi");

    let mut g = ProcGuard::spawn(
        "sleep",
        Command::new("sleep").arg("30"),
        &dir.path().join("i.log"),
    );
    let st = g.interrupt(Duration::from_secs(2)).expect("interrupted");
    assert!(!st.success());
}

#[test]
fn free_and_wait_port() {
    let p = free_port();
    assert!(!wait_port(p, Duration::from_millis(300)));
    let l = TcpListener::bind(("127.0.0.1", p)).unwrap();
    assert!(wait_port(p, Duration::from_secs(2)));
    drop(l);
}

/// nginx with the rtmp module on a free port, as a stand-in RTMP server.
struct Nginx {
    guard: ProcGuard,
    port: u16,
    _dir: tempfile::TempDir,
}

fn start_nginx() -> Nginx {
    require_tool("nginx");
    let dir = scratch_dir();
    let port = free_port();
    let d = dir.path();
    let conf = format!(
        "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
         daemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
           application live {{ live on; wait_key on; }}\n\
           application late {{ live on; wait_key on; wait_video on; }} }} }}\n",
        d = d.display()
    );
    std::fs::write(d.join("nginx.conf"), conf).unwrap();
    let guard = ProcGuard::spawn(
        "nginx",
        Command::new("nginx")
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf")),
        &d.join("nginx.log"),
    );
    assert!(
        wait_port(port, Duration::from_secs(10)),
        "nginx did not start"
    );
    Nginx {
        guard,
        port,
        _dir: dir,
    }
}

#[test]
#[ignore = "needs nginx with libnginx-mod-rtmp; validates the end-to-end method"]
fn players_and_comparators_against_nginx_rtmp() {
    let mut nginx = start_nginx();
    let dir = scratch_dir();
    let src = media_tags(Media::Av);
    let url = format!("rtmp://127.0.0.1:{}/live/selftest", nginx.port);

    // Raw client: connect/createStream/publish as a real server sees them.
    let mut raw = rtmp::RawRtmp::connect(nginx.port);
    raw.handshake().unwrap();
    raw.connect_app(nginx.port, "live").unwrap();
    let sid = raw.create_stream().unwrap();
    assert_eq!(
        raw.publish(sid, "rawprobe").unwrap(),
        "NetStream.Publish.Start"
    );
    drop(raw);

    let (ff_out, dump_out) = (dir.path().join("ff.flv"), dir.path().join("dump.flv"));
    // nginx-rtmp does not tell players that the publisher left: they stop on a short idle bound.
    let idle = Duration::from_secs(3);
    let mut ff = ffmpeg_record_with(&url, &ff_out, idle);
    let mut dump = rtmpdump_record_with(&url, &dump_out, idle);
    std::thread::sleep(Duration::from_millis(500));
    let mut publisher = ffmpeg_publish(&media(Media::Av), &url);
    // nginx-rtmp has no GOP cache; `wait_video` makes its late joiners start like ours do (audio
    // and video from a keyframe on), but it would also drop the first audio frame of the full
    // recordings, hence a second application for the late joiner.
    let late_url = format!("rtmp://127.0.0.1:{}/late/selftest", nginx.port);
    let mut late_publisher = ffmpeg_publish(&media(Media::Av), &late_url);
    std::thread::sleep(Duration::from_millis(3500));
    let late_out = dir.path().join("late.flv");
    let mut late = ffmpeg_record_with(&late_url, &late_out, idle);
    publisher.wait_success(PUBLISH_TIMEOUT);
    late_publisher.wait_success(PUBLISH_TIMEOUT);

    for p in [&mut ff, &mut dump, &mut late] {
        p.wait_exit(Duration::from_secs(15));
    }
    let ff_tags = flv::read_flv(&ff_out);
    let dump_tags = flv::read_flv(&dump_out);
    let late_tags = flv::read_flv(&late_out);
    flv::assert_same_media(&src, &ff_tags, false);
    flv::assert_same_media(&src, &dump_tags, false);
    let m = flv::assert_same_media(&src, &late_tags, true);
    assert!(
        m.video_start > 0,
        "the late player started at the beginning: {m:?}"
    );
    nginx.guard.kill();
}
