//! Real browser playback: headless Chromium (Debian's `chromium`, driven by playwright-core from
//! tests/browser) plays our streams with the players livego's users watch with: flv.js 1.6 (the
//! seed's page) and mpegts.js on HTTP-FLV, mpegts.js on WebSocket-FLV, hls.js on HLS. Each must
//! decode video frames (`getVideoPlaybackQuality`) while `currentTime` advances, without a player
//! error. The driver and pages live in tests/browser; `scripts/install-test-deps.sh` installs
//! Chromium and the npm packages.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Decoded frames a player must exceed (1 s of the 25 fps test media).
const MIN_FRAMES: u64 = 25;
/// How far `currentTime` must advance from the first decoded frame.
const MIN_ADVANCE_S: f64 = 1.0;
/// The driver's own bound on waiting for playback.
const PLAY_TIMEOUT_S: u64 = 20;
/// Our bound on the driver process: its playback wait plus browser launch and close.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(PLAY_TIMEOUT_S + 45);
/// How long a freshly published stream may take to be served.
const STREAM_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One test at a time: several Chromiums at once on a small machine starve their decoders, and
/// a live test waiting for the browser would see its publisher end.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn require_browser_tools() {
    require_tool("node");
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium is not installed: run scripts/install-test-deps.sh (or `make test`)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run scripts/install-test-deps.sh (or `make test`)"
    );
}

#[derive(Debug, Clone, Copy)]
enum Player {
    FlvJs,
    Mpegts,
    HlsJs,
}

impl Player {
    fn name(self) -> &'static str {
        match self {
            Player::FlvJs => "flvjs",
            Player::Mpegts => "mpegts",
            Player::HlsJs => "hlsjs",
        }
    }
}

struct Playback {
    label: String,
    status: ExitStatus,
    /// The driver's `BROWSER-RESULT` JSON, `Null` when it printed none.
    result: serde_json::Value,
    log: String,
}

/// Runs the driver once: `url` is played by `player` in a fresh headless Chromium. `serve` is
/// published by the driver's static server under /files/ (URLs starting with `/` point there).
fn play(player: Player, url: &str, live: bool, serve: Option<&Path>, dir: &Path) -> Playback {
    require_browser_tools();
    let label = format!("{}-{}", player.name(), if live { "live" } else { "static" });
    let log_path = dir.join(format!("{label}-{}.log", free_port()));
    let mut cmd = Command::new("node");
    cmd.current_dir(browser_dir())
        .arg("driver.mjs")
        .args(["--player", player.name(), "--url", url])
        .args(["--live", if live { "1" } else { "0" }])
        .args(["--timeout", &PLAY_TIMEOUT_S.to_string()])
        .args(["--min-frames", &MIN_FRAMES.to_string()])
        .args(["--min-advance", &MIN_ADVANCE_S.to_string()])
        .stdin(Stdio::null());
    if let Some(d) = serve {
        cmd.arg("--serve").arg(d);
    }
    let mut driver = ProcGuard::spawn(&format!("browser driver ({label})"), &mut cmd, &log_path);
    let status = driver.wait_exit(DRIVER_TIMEOUT);
    let log = driver.log();
    let result = log
        .lines()
        .find_map(|l| l.strip_prefix("BROWSER-RESULT "))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(serde_json::Value::Null);
    eprintln!("{label} {url}: {status}: {result}");
    Playback {
        label,
        status,
        result,
        log,
    }
}

/// The playback decoded more than `MIN_FRAMES` frames, `currentTime` advanced and no error was
/// reported; the driver's exit status agrees.
#[track_caller]
fn assert_played(p: &Playback) {
    let r = &p.result;
    let why = format!("{}: {r}\ndriver log:\n{}", p.label, p.log);
    assert!(r.is_object(), "no result from the driver: {why}");
    let errors = r["errors"].as_array().map(Vec::len).unwrap_or(usize::MAX);
    assert_eq!(errors, 0, "player errors: {why}");
    let frames = r["frames"].as_u64().unwrap_or(0);
    assert!(frames > MIN_FRAMES, "{frames} decoded frames: {why}");
    let advanced = r["advanced"].as_f64().unwrap_or(0.0);
    assert!(
        advanced >= MIN_ADVANCE_S,
        "currentTime advanced {advanced} s: {why}"
    );
    assert_eq!(r["ok"], true, "driver verdict: {why}");
    assert!(p.status.success(), "driver exited with {}: {why}", p.status);
}

/// Publishes the 8 s test media `loops` + 1 times in real time (killed by its guard when the
/// test ends), so the stream outlasts a browser's start and playback.
fn publish_looped(s: &Server, room: &str, loops: u32, dir: &Path) -> ProcGuard {
    let key = s.key_for(room);
    let url = s.rtmp_url(&format!("live/{key}"));
    ProcGuard::spawn(
        &format!("ffmpeg publisher to {url}"),
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error"])
            .args(["-rw_timeout", &CLIENT_RW_TIMEOUT.as_micros().to_string()])
            .args(["-re", "-stream_loop", &loops.to_string(), "-i"])
            .arg(media(Media::Av))
            .args(["-c", "copy", "-f", "flv", &url]),
        &dir.join("publisher.log"),
    )
}

/// Sends `request` and returns the status line's code, reading no further (a live FLV body
/// never ends).
fn status_of(port: u16, request: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).ok()?;
    c.set_read_timeout(Some(HTTP_TIMEOUT)).ok()?;
    c.set_write_timeout(Some(HTTP_TIMEOUT)).ok()?;
    c.write_all(request.as_bytes()).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while head.len() < 256 && !head.ends_with(b"\r\n") {
        match c.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until `GET path` on `port` answers 200 (the publisher is live there).
fn wait_flv_stream(s: &Server, path: &str, publisher: &mut ProcGuard) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let deadline = Instant::now() + STREAM_READY_TIMEOUT;
    loop {
        if status_of(s.httpflv_port, &req) == Some(200) {
            return;
        }
        assert!(
            publisher.try_status().is_none(),
            "publisher ended early; log:\n{}",
            publisher.log()
        );
        assert!(
            Instant::now() < deadline,
            "GET {path} on the HTTP-FLV port not 200 within {STREAM_READY_TIMEOUT:?}"
        );
        sleep(Duration::from_millis(200));
    }
}

/// Waits until the playlist at `path` lists at least one segment.
fn wait_hls_playlist(s: &Server, path: &str, publisher: &mut ProcGuard) {
    let deadline = Instant::now() + STREAM_READY_TIMEOUT;
    loop {
        let last = match http_get(s.hls_port, path) {
            Ok(r) if r.status == 200 && r.body.lines().any(|l| l.trim_end().ends_with(".ts")) => {
                return
            }
            Ok(r) => format!("{} {}", r.status, r.body),
            Err(e) => e.to_string(),
        };
        assert!(
            publisher.try_status().is_none(),
            "publisher ended early; log:\n{}",
            publisher.log()
        );
        assert!(
            Instant::now() < deadline,
            "GET {path} on the HLS port: no segment within {STREAM_READY_TIMEOUT:?}; last: {last}"
        );
        sleep(Duration::from_millis(250));
    }
}

/// A live stream published by ffmpeg on a fresh server.
struct Live {
    server: Server,
    publisher: ProcGuard,
    dir: tempfile::TempDir,
    /// Last, so it is released after the server and publisher are gone.
    _turn: MutexGuard<'static, ()>,
}

fn live(room: &str) -> Live {
    let turn = one_at_a_time();
    let server = Server::start(&[]);
    let dir = scratch_dir();
    // 6 x 8 s: longer than the wait for the stream, a browser launch and the playback bound, so
    // a player never sees the stream end.
    let publisher = publish_looped(&server, room, 5, dir.path());
    Live {
        server,
        publisher,
        dir,
        _turn: turn,
    }
}

#[test]
fn flvjs_plays_http_flv_as_on_the_seed_page() {
    let mut l = live("flvjs");
    wait_flv_stream(&l.server, "/live/flvjs.flv", &mut l.publisher);
    let url = format!("http://127.0.0.1:{}/live/flvjs.flv", l.server.httpflv_port);
    assert_played(&play(Player::FlvJs, &url, true, None, l.dir.path()));
}

#[test]
fn mpegts_js_plays_http_flv() {
    let mut l = live("mpegts");
    wait_flv_stream(&l.server, "/live/mpegts.flv", &mut l.publisher);
    let url = format!("http://127.0.0.1:{}/live/mpegts.flv", l.server.httpflv_port);
    assert_played(&play(Player::Mpegts, &url, true, None, l.dir.path()));
}

#[test]
fn mpegts_js_plays_websocket_flv() {
    let mut l = live("wsflv");
    wait_flv_stream(&l.server, "/live/wsflv.flv", &mut l.publisher);
    let url = format!("ws://127.0.0.1:{}/live/wsflv.flv", l.server.httpflv_port);
    assert_played(&play(Player::Mpegts, &url, true, None, l.dir.path()));
}

#[test]
fn hlsjs_plays_hls() {
    let mut l = live("hlsjs");
    wait_hls_playlist(&l.server, "/live/hlsjs.m3u8", &mut l.publisher);
    let url = format!("http://127.0.0.1:{}/live/hlsjs.m3u8", l.server.hls_port);
    assert_played(&play(Player::HlsJs, &url, true, None, l.dir.path()));
}

/// The harness itself, without our server: the same pages play the test media from files (so
/// Chromium decodes this H.264/AAC and the players load), and a missing stream fails with the
/// player's error (so a failure to play is detected).
#[test]
fn harness_plays_files_and_detects_failure() {
    let _turn = one_at_a_time();
    let dir = scratch_dir();
    let files = dir.path().join("files");
    fs::create_dir_all(files.join("hls")).expect("create files dir");
    fs::copy(media(Media::Av), files.join("av.flv")).expect("copy test media");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(files.join("av.flv"))
        .args([
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_list_size",
            "0",
        ])
        .arg("-hls_segment_filename")
        .arg(files.join("hls/%d.ts"))
        .arg(files.join("hls/index.m3u8"))
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg -f hls");
    assert!(
        out.status.success(),
        "ffmpeg -f hls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let serve = Some(files.as_path());
    assert_played(&play(
        Player::FlvJs,
        "/files/av.flv",
        false,
        serve,
        dir.path(),
    ));
    assert_played(&play(
        Player::Mpegts,
        "/files/av.flv",
        false,
        serve,
        dir.path(),
    ));
    assert_played(&play(
        Player::HlsJs,
        "/files/hls/index.m3u8",
        false,
        serve,
        dir.path(),
    ));

    let missing = play(Player::FlvJs, "/files/missing.flv", true, serve, dir.path());
    assert!(
        !missing.status.success(),
        "a 404 stream played: {}",
        missing.result
    );
    let errors = missing.result["errors"].to_string();
    assert!(
        errors.contains("404"),
        "the player's 404 error is not reported: {}",
        missing.result
    );
}
