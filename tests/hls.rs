//! HLS end to end: real ffmpeg publishers, our HTTP server, ffprobe/ffmpeg reading what we serve.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn config(fragment: &str, window: usize) -> String {
    format!("hls_fragment = {fragment}\nhls_window = {window}\n{DEFAULT_CONFIG}")
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), read to EOF.
fn request(port: u16, method: &str, path: &str, extra: &str) -> Resp {
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n");
    let (status, headers, body) = raw_exchange(port, &req);
    Resp {
        status,
        headers,
        body,
    }
}

fn get(port: u16, path: &str) -> Resp {
    request(port, "GET", path, "")
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    seq: u64,
    duration: f64,
    uri: String,
    discontinuity: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Playlist {
    target: u64,
    media_seq: u64,
    entries: Vec<Entry>,
    ended: bool,
}

/// Parses and checks a playlist: target duration >= every EXTINF, consecutive numbers.
#[track_caller]
fn parse_playlist(text: &str) -> Playlist {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("#EXTM3U"), "{text}");
    let (mut target, mut media_seq, mut ended) = (None, None, false);
    let mut entries = Vec::new();
    let mut pending: Option<f64> = None;
    let mut disc = false;
    for l in lines {
        if let Some(v) = l.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = Some(v.parse::<u64>().unwrap());
        } else if let Some(v) = l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media_seq = Some(v.parse::<u64>().unwrap());
        } else if let Some(v) = l.strip_prefix("#EXTINF:") {
            pending = Some(v.trim_end_matches(',').parse().unwrap());
        } else if l == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if l == "#EXT-X-ENDLIST" {
            ended = true;
        } else if !l.starts_with('#') && !l.is_empty() {
            let duration = pending.take().expect("EXTINF before URI");
            let seq = media_seq.unwrap() + entries.len() as u64;
            entries.push(Entry {
                seq,
                duration,
                uri: l.to_string(),
                discontinuity: std::mem::take(&mut disc),
            });
        }
    }
    let target = target.expect("TARGETDURATION");
    for e in &entries {
        assert!(
            e.duration.ceil() as u64 <= target,
            "EXTINF {} over target {target}:\n{text}",
            e.duration
        );
        assert!(e.uri.ends_with(&format!("/{}.ts", e.seq)), "{text}");
    }
    Playlist {
        target,
        media_seq: media_seq.expect("MEDIA-SEQUENCE"),
        entries,
        ended,
    }
}

/// Polls the playlist until `done` accepts it; checks every version seen on the way.
#[track_caller]
fn poll_playlist(
    port: u16,
    path: &str,
    timeout: Duration,
    done: impl Fn(&Playlist) -> bool,
) -> Playlist {
    let deadline = Instant::now() + timeout;
    let mut last_seq = 0;
    loop {
        let r = get(port, path);
        if r.status == 200 {
            let p = parse_playlist(&r.text());
            assert!(p.media_seq >= last_seq, "media sequence went back");
            last_seq = p.media_seq;
            if done(&p) {
                return p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "playlist {path} never got there; last status {}",
            r.status
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("run tool");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn ffprobe_clean(file: &Path) {
    let (ok, _, err) = run(Command::new("ffprobe")
        .args(["-v", "warning", "-show_packets"])
        .arg(file));
    assert!(
        ok && err.trim().is_empty(),
        "ffprobe on {}: {err}",
        file.display()
    );
}

fn framemd5(file: &Path, stream: &str) -> Vec<String> {
    let (ok, out, err) = run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-map", stream, "-f", "framemd5", "-"]));
    assert!(ok, "framemd5 of {}: {err}", file.display());
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|s| s.trim().to_string()))
        .collect()
}

/// How long a shard's copy of the HLS state may lag behind the owner's. The owner shard sends
/// every change to the other shards, and each request (a new connection) may land on any shard,
/// so a check made right after a change is polled for this long until it holds.
const SHARD_LAG: Duration = Duration::from_secs(5);

/// Polls `check` (each call makes its requests on new connections) until it returns `Ok`,
/// failing with its last `Err` after `SHARD_LAG`.
#[track_caller]
fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + SHARD_LAG;
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) => assert!(
                Instant::now() < deadline,
                "{what}: still not so after {SHARD_LAG:?}: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET `path` until it answers `status` (another shard's copy may lag a moment).
#[track_caller]
fn get_until(port: u16, path: &str, status: u16) -> Resp {
    eventually(&format!("GET {path} -> {status}"), || {
        let r = get(port, path);
        if r.status == status {
            Ok(r)
        } else {
            Err(format!("status {}", r.status))
        }
    })
}

/// Downloads every listed segment into `dir`, returns the paths. The playlist may come from the
/// owner shard and a segment request land on a shard whose copy is a moment behind, so each
/// segment is fetched until it is there (bounded).
fn download(port: u16, p: &Playlist, dir: &Path) -> Vec<std::path::PathBuf> {
    p.entries
        .iter()
        .map(|e| {
            let r = get_until(port, &e.uri, 200);
            let path = dir.join(format!("{}.ts", e.seq));
            fs::write(&path, &r.body).unwrap();
            path
        })
        .collect()
}

#[test]
fn live_hls_is_valid_and_decodes_to_the_source_frames() {
    require_tool("ffprobe");
    let s = Server::start_with_config(&config("2", 20), &["--rtmp_noauth", "--shards", "2"]);
    let src = media(Media::AvBframes);
    let mut publisher = ffmpeg_publish(&src, &s.rtmp_url("live/cam"));
    let m3u8 = "/live/cam.m3u8";
    // While live: the playlist is valid and grows (checked on every poll).
    let live = poll_playlist(s.hls_port, m3u8, Duration::from_secs(20), |p| {
        p.entries.len() >= 2
    });
    assert!(!live.ended);
    publisher.wait_success(PUBLISH_TIMEOUT);
    let p = poll_playlist(s.hls_port, m3u8, Duration::from_secs(10), |p| p.ended);
    assert!(p.entries.len() >= 3, "{p:?}");
    assert_eq!(p.media_seq, 0);
    // Cut at keyframes once 2 s are reached; the source has a keyframe every second.
    for e in &p.entries[..p.entries.len() - 1] {
        assert!((1.99..2.05).contains(&e.duration), "{p:?}");
    }

    // Every connection lands on one of the two shards (SO_REUSEPORT hashing); only the owner
    // segments, so identical answers on 16 connections mean the others serve their copy. The
    // ended playlist seen above may have come from the owner a moment before the other shard's
    // copy caught up, so the round is repeated (bounded) until it holds.
    eventually("16 connections get the same ended playlist", || {
        let first = get(s.hls_port, m3u8);
        if first.status != 200 {
            return Err(format!("status {}", first.status));
        }
        let pl = parse_playlist(&first.text());
        if pl != p {
            return Err(format!("playlist {pl:?} is not the ended {p:?}"));
        }
        for i in 0..16 {
            let again = get(s.hls_port, m3u8).body;
            if again != first.body {
                return Err(format!(
                    "answer {i} differs:\n{}\nvs\n{}",
                    String::from_utf8_lossy(&again),
                    first.text()
                ));
            }
            let seg = get(s.hls_port, &p.entries[0].uri).status;
            if seg != 200 {
                return Err(format!("GET {} -> {seg}", p.entries[0].uri));
            }
        }
        Ok(())
    });

    let dir = scratch_dir();
    let segs = download(s.hls_port, &p, dir.path());
    let mut all = Vec::new();
    for seg in &segs {
        ffprobe_clean(seg);
        // Each segment starts with a keyframe.
        let (ok, out, err) = run(Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "packet=flags",
                "-read_intervals",
                "%+#1",
                "-of",
                "csv=p=0",
            ])
            .arg(seg));
        assert!(ok, "{err}");
        assert!(
            out.trim_start().starts_with('K'),
            "{} does not start with a keyframe: {out}",
            seg.display()
        );
        all.extend(fs::read(seg).unwrap());
    }
    let joined = dir.path().join("all.ts");
    fs::write(&joined, &all).unwrap();
    ffprobe_clean(&joined);

    // Decoded pictures equal the source's, all of them (the publish started at a keyframe).
    let want = framemd5(&src, "0:v");
    let got = framemd5(&joined, "0:v");
    assert_eq!(got.len(), want.len(), "frame count");
    assert_eq!(got, want, "decoded frames differ");

    // Presentation times are continuous across segments: one frame (40 ms) apart.
    let (ok, out, err) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts",
            "-of",
            "csv=p=0",
        ])
        .arg(&joined));
    assert!(ok, "{err}");
    let mut pts: Vec<i64> = out
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    pts.sort_unstable();
    assert_eq!(pts.len(), want.len());
    for w in pts.windows(2) {
        assert_eq!(w[1] - w[0], 3600, "PTS gap");
    }

    // Headers for a CDN origin.
    let pl = get(s.hls_port, m3u8);
    assert_eq!(
        pl.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(pl.header("cache-control"), Some("no-cache"));
    assert_eq!(pl.header("access-control-allow-origin"), Some("*"));
    let uri = &p.entries[1].uri;
    let seg = get(s.hls_port, uri);
    assert_eq!(seg.header("content-type"), Some("video/mp2t"));
    assert_eq!(
        seg.header("cache-control"),
        Some("public, max-age=86400, immutable")
    );
    assert_eq!(seg.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        seg.header("content-length"),
        Some(seg.body.len().to_string().as_str())
    );
    assert!(seg
        .header("last-modified")
        .is_some_and(|v| v.ends_with(" GMT")));
    let etag = seg.header("etag").expect("ETag").to_string();
    assert_eq!(
        request(
            s.hls_port,
            "GET",
            uri,
            &format!("If-None-Match: {etag}\r\n")
        )
        .status,
        304
    );
    let head = request(s.hls_port, "HEAD", uri, "");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), seg.header("content-length"));
    // Range requests.
    let r = request(s.hls_port, "GET", uri, "Range: bytes=188-375\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, seg.body[188..376]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 188-375/{}", seg.body.len()).as_str())
    );
    let r = request(s.hls_port, "GET", uri, "Range: bytes=-188\r\n");
    assert_eq!(r.body, seg.body[seg.body.len() - 188..]);
    let r = request(
        s.hls_port,
        "GET",
        uri,
        &format!("Range: bytes={}-\r\n", seg.body.len()),
    );
    assert_eq!(r.status, 416);
    // CORS preflight, crossdomain.xml, errors.
    let o = request(
        s.hls_port,
        "OPTIONS",
        m3u8,
        "Origin: http://x\r\nAccess-Control-Request-Method: GET\r\n",
    );
    assert_eq!(o.status, 204);
    assert_eq!(o.header("access-control-allow-origin"), Some("*"));
    let x = get(s.hls_port, "/crossdomain.xml");
    assert_eq!(x.status, 200);
    assert!(x.text().contains("cross-domain-policy"));
    assert_eq!(get(s.hls_port, "/live/nobody.m3u8").status, 404);
    assert_eq!(get(s.hls_port, "/live/cam/999.ts").status, 404);
    assert_eq!(request(s.hls_port, "DELETE", m3u8, "").status, 405);
    let r = request(
        s.hls_port,
        "GET",
        "/x",
        &format!("X-Big: {}\r\n", "a".repeat(10_000)),
    );
    assert_eq!(r.status, 431);
    s.stop();
}

#[test]
fn audio_only_stream_produces_hls() {
    require_tool("ffprobe");
    let s = Server::start_with_config(&config("2", 10), &["--rtmp_noauth"]);
    let src = media(Media::AudioOnly);
    let mut publisher = ffmpeg_publish(&src, &s.rtmp_url("live/radio"));
    publisher.wait_success(PUBLISH_TIMEOUT);
    let p = poll_playlist(
        s.hls_port,
        "/live/radio.m3u8",
        Duration::from_secs(10),
        |p| p.ended,
    );
    assert!(p.entries.len() >= 3, "{p:?}");
    let dir = scratch_dir();
    let mut all = Vec::new();
    for seg in download(s.hls_port, &p, dir.path()) {
        ffprobe_clean(&seg);
        all.extend(fs::read(&seg).unwrap());
    }
    let joined = dir.path().join("all.ts");
    fs::write(&joined, &all).unwrap();
    let (ok, out, err) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate,channels",
            "-of",
            "csv=p=0",
        ])
        .arg(&joined));
    assert!(ok, "{err}");
    // (ffprobe lists the stream once under its program and once on its own.)
    let mut streams: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    streams.dedup();
    assert_eq!(streams, ["aac,44100,2"]);
    // The whole audio is there (the first second is held to decide the stream has no video).
    let want = framemd5(&src, "0:a").len();
    let got = framemd5(&joined, "0:a").len();
    assert!(
        got + 2 >= want && got <= want,
        "{got} of {want} audio frames"
    );
    s.stop();
}

#[test]
fn republish_continues_numbering_with_a_discontinuity() {
    let s = Server::start_with_config(&config("1", 30), &["--rtmp_noauth"]);
    let m3u8 = "/live/re.m3u8";
    let mut first = ffmpeg_publish(&media(Media::Av), &s.rtmp_url("live/re"));
    first.wait_success(PUBLISH_TIMEOUT);
    let ended = poll_playlist(s.hls_port, m3u8, Duration::from_secs(10), |p| p.ended);
    let n = ended.entries.len();
    assert!(n >= 5, "{ended:?}");
    // Publish again at once: no "no publisher", the playlist is live again and continues.
    let mut second = ffmpeg_publish(&media(Media::AvAlt), &s.rtmp_url("live/re"));
    let p = poll_playlist(s.hls_port, m3u8, Duration::from_secs(15), |p| {
        !p.ended && p.entries.len() >= n + 2
    });
    let new = &p.entries[n];
    assert_eq!(new.seq, n as u64);
    assert!(new.discontinuity, "{p:?}");
    assert_eq!(p.entries.iter().filter(|e| e.discontinuity).count(), 1);
    get_until(s.hls_port, &new.uri, 200);
    second.wait_success(PUBLISH_TIMEOUT);
    poll_playlist(s.hls_port, m3u8, Duration::from_secs(10), |p| p.ended);
    s.stop();
}

#[test]
fn ended_stream_is_removed_after_the_delay_unless_kept() {
    // Two servers side by side, so the 10 s removal delay is waited for once.
    let keep =
        Server::start_with_config(&config("1", 2), &["--rtmp_noauth", "--hls_keep_after_end"]);
    let gone = Server::start_with_config(&config("1", 2), &["--rtmp_noauth"]);
    let m3u8 = "/live/end.m3u8";
    let mut publishers = [
        ffmpeg_publish(&media(Media::Av), &keep.rtmp_url("live/end")),
        ffmpeg_publish(&media(Media::Av), &gone.rtmp_url("live/end")),
    ];
    for p in &mut publishers {
        p.wait_success(PUBLISH_TIMEOUT);
    }
    let kept = poll_playlist(keep.hls_port, m3u8, Duration::from_secs(10), |p| p.ended);
    let ended = poll_playlist(gone.hls_port, m3u8, Duration::from_secs(10), |p| p.ended);
    let kept_seg = kept.entries.last().expect("segments").uri.clone();
    let gone_seg = ended.entries.last().expect("segments").uri.clone();
    // Right after the end both still serve the ended playlist (players finish it).
    get_until(gone.hls_port, &gone_seg, 200);

    // Removal comes max(fragment x window, 10 s) after the end.
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(gone.hls_port, m3u8).status != 404 {
        assert!(Instant::now() < deadline, "ended HLS stream never removed");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The 404 above may have come from the owner, a moment before the other shard forgot its
    // copy.
    get_until(gone.hls_port, &gone_seg, 404);

    let still = get(keep.hls_port, m3u8);
    assert_eq!(still.status, 200, "hls_keep_after_end dropped the playlist");
    assert!(parse_playlist(&still.text()).ended);
    assert_eq!(get(keep.hls_port, &kept_seg).status, 200);
    keep.stop();
    gone.stop();
}
