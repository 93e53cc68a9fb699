//! Relays with real components: a pull between two server instances, pushes and static_push to
//! nginx-rtmp (killed and restarted to check reconnects), and the API's status codes.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Nginx {
    guard: ProcGuard,
    port: u16,
    dir: tempfile::TempDir,
}

fn nginx_module() -> &'static str {
    ["/usr/lib/nginx/modules", "/usr/share/nginx/modules"]
        .into_iter()
        .map(|d| format!("{d}/ngx_rtmp_module.so"))
        .find(|p| Path::new(p).is_file())
        .map(|p| &*Box::leak(p.into_boxed_str()))
        .expect("ngx_rtmp_module.so not found: install libnginx-mod-rtmp")
}

fn spawn_nginx(dir: &Path, port: u16) -> ProcGuard {
    let d = dir.display();
    let conf = format!(
        "load_module {module};\n\
         daemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
           application live {{ live on; wait_key on; }} }} }}\n",
        module = nginx_module(),
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let guard = ProcGuard::spawn(
        "nginx",
        Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf")),
        &dir.join("nginx.log"),
    );
    assert!(
        wait_port(port, Duration::from_secs(10)),
        "nginx did not start"
    );
    guard
}

fn start_nginx() -> Nginx {
    require_tool("nginx");
    let dir = scratch_dir();
    let port = free_port();
    let guard = spawn_nginx(dir.path(), port);
    Nginx { guard, port, dir }
}

impl Nginx {
    fn url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{path}", self.port)
    }

    /// How many plays of `name` nginx has logged so far (its error log, at `info`, has a line
    /// `play: name='<name>' ...` per play command; the log continues across restarts).
    fn plays(&self, name: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        log.matches(&format!(" play: name='{name}' ")).count()
    }

    /// Waits until nginx has logged `n` plays of `name`. nginx adds the player to the live
    /// stream in the same event handler that logs the play, before it reads any other
    /// connection, so a publish started after this reaches the player from its first keyframe
    /// (nginx-rtmp has no GOP cache: a player that joins late misses the start).
    #[track_caller]
    fn wait_plays(&self, name: &str, n: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let got = self.plays(name);
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx logged {got} of {n} plays of {name:?} within {START_TIMEOUT:?}; error.log:\n{}",
                std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn restart(&mut self) {
        self.guard.kill();
        self.guard = spawn_nginx(self.dir.path(), self.port);
    }
}

/// nginx-rtmp never tells players that the publisher left: recorders stop on this idle bound.
const NGINX_IDLE: Duration = Duration::from_secs(3);

fn relay_states(s: &Server) -> Vec<serde_json::Value> {
    let (code, v) = s.api_json("/control/relays");
    assert_eq!(code, 200, "{v}");
    v["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until `/control/relays` shows a relay of `kind` for `stream` whose state starts with
/// `state`; returns it.
#[track_caller]
fn wait_relay(s: &Server, kind: &str, stream: &str, state: &str) -> serde_json::Value {
    wait_relay_where(s, kind, stream, state, |_| true)
}

/// `wait_relay` that also requires `more` of the relay (e.g. a connection count, so that a
/// state left over from before an event is not taken for the state after it).
#[track_caller]
fn wait_relay_where(
    s: &Server,
    kind: &str,
    stream: &str,
    state: &str,
    more: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    // Covers the pull's backoff (1, 2, 4, 8 s) while a remote comes back.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = relay_states(s);
        if let Some(r) = all.iter().find(|r| {
            r["kind"] == kind
                && r["stream"] == stream
                && r["state"].as_str().is_some_and(|x| x.starts_with(state))
                && more(r)
        }) {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} relay of {stream} in state {state:?} (with the extra condition): {all:?}\nlog:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `s` has no open player (a player that exited is closed on the server a moment
/// later), so that `wait_players` counts only the players started next.
#[track_caller]
fn wait_no_players(s: &Server) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let n = open_players(s);
        if n == Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n:?} players still open after {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn data(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("json body");
    v["data"].as_str().unwrap_or_default().to_string()
}

#[test]
fn api_status_codes() {
    let s = Server::start(&["--rtmp_noauth"]);
    // Nothing listens on a fresh free port: the relays keep retrying, which is fine here.
    let dead = format!("rtmp://127.0.0.1:{}/live/src", free_port());
    for verb in ["pull", "push"] {
        let base = format!("/control/{verb}");
        for q in [
            "?oper=start&app=live&name=a".to_string(),
            format!("?oper=start&app=live&url={dead}"),
            format!("?oper=start&name=a&url={dead}"),
            "?oper=stop&name=a".to_string(),
        ] {
            let (code, body) = s.api_get(&format!("{base}{q}"));
            assert_eq!(code, 400, "{verb}{q}: {body}");
            assert_eq!(
                data(&body),
                "control push parameter error, please check them."
            );
        }
        for bad in ["http://h/live/x", "rtmp://h/live", "rtmp://h:0/a/b"] {
            let (code, body) = s.api_get(&format!("{base}?app=live&name=a&url={bad}"));
            assert_eq!(code, 400, "{verb} url {bad}: {body}");
            assert!(data(&body).starts_with("push error="), "{body}");
        }
        let (code, body) = s.api_get(&format!("{base}?app=nosuchapp&name=a&url={dead}"));
        assert_eq!(code, 400, "{body}");

        let start = format!("{base}?oper=start&app=live&name=a&url={dead}");
        let (code, body) = s.api_get(&start);
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            data(&body),
            format!("<h1>{verb} url start {dead} ok</h1></br>")
        );
        assert!(
            body.contains("\\u003ch1\\u003e"),
            "Go's HTML escaping: {body}"
        );
        let (code, body) = s.api_get(&start);
        assert_eq!(code, 409, "{body}");
        assert!(data(&body).contains("already exists"), "{body}");
        // It is listed: the pull retries with backoff against the dead target, the push waits
        // for its local stream.
        let state = if verb == "pull" {
            "retrying in "
        } else {
            "waiting for the stream"
        };
        let r = wait_relay(&s, verb, "live/a", state);
        assert_eq!(r["url"], dead.as_str());

        let stop = format!("{base}?oper=stop&app=live&name=a&url={dead}");
        let (code, body) = s.api_get(&stop);
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            data(&body),
            format!("<h1>{verb} url stop {dead} ok</h1></br>")
        );
        let (code, body) = s.api_get(&stop);
        assert_eq!(code, 404, "{body}");
        assert!(
            data(&body).contains(&format!("session key[{verb}:live/a] not exist")),
            "{body}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !relay_states(&s).is_empty() {
        assert!(Instant::now() < deadline, "stopped relays still listed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pull_from_another_instance_is_byte_exact() {
    let a = Server::start(&["--rtmp_noauth"]);
    let b = Server::start(&["--shards", "2"]);
    let dir = scratch_dir();
    let src = media_tags(Media::Av);
    let (code, body) = b.api_get(&format!(
        "/control/pull?oper=start&app=live&name=copy&url={}",
        a.rtmp_url("live/movie")
    ));
    assert_eq!(code, 200, "{body}");
    // The pull plays on A (a player there) and waits there for the publisher.
    wait_relay(&b, "pull", "live/copy", "waiting for the stream");
    wait_players(&a, 1);
    let url = b.rtmp_url("live/copy");
    let mut ff = Recorder::start(PlayerKind::Ffmpeg, &url, dir.path(), "ffmpeg");
    let mut dump = Recorder::start(PlayerKind::Rtmpdump, &url, dir.path(), "rtmpdump");
    // Both players are on B (the pull is a publisher there, not a player) before the publish.
    wait_players(&b, 2);
    let mut publisher = ffmpeg_publish(&media(Media::Av), &a.rtmp_url("live/movie"));
    publisher.wait_success(PUBLISH_TIMEOUT);
    assert_recording(&mut ff, &src, false);
    assert_recording(&mut dump, &src, false);
    // Stats on B list the pull as a relay publisher.
    let (_, stats) = b.api_get("/control/relays");
    assert!(stats.contains("\"connections\":1"), "{stats}");
}

#[test]
fn push_to_nginx_is_byte_exact_and_reconnects() {
    let mut nginx = start_nginx();
    let s = Server::start(&["--rtmp_noauth"]);
    let dir = scratch_dir();
    let src = media_tags(Media::Av);
    let remote = nginx.url("live/pushed");
    let (code, body) = s.api_get(&format!(
        "/control/push?oper=start&app=live&name=movie&url={remote}"
    ));
    assert_eq!(code, 200, "{body}");
    wait_relay(&s, "push", "live/movie", "waiting for the stream");

    // 1: the whole stream arrives at nginx unchanged.
    let out = dir.path().join("first.flv");
    let mut rec = ffmpeg_record_with(&remote, &out, NGINX_IDLE);
    nginx.wait_plays("pushed", 1);
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url("live/movie"));
    publisher.wait_success(PUBLISH_TIMEOUT);
    rec.wait_exit(PLAYER_END_TIMEOUT);
    flv::assert_same_media(&src, &flv::read_flv(&out), false);
    wait_relay(&s, "push", "live/movie", "waiting for the stream");

    // 2: the remote dies mid-stream and comes back: the push reconnects and the stream plays
    // again from a keyframe.
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url("live/movie"));
    wait_relay(&s, "push", "live/movie", "publishing");
    std::thread::sleep(Duration::from_millis(1000));
    nginx.restart();
    let out = dir.path().join("after.flv");
    let mut late = ffmpeg_record_with(&remote, &out, NGINX_IDLE);
    // "publishing" from before the restart may still be listed until the push notices the
    // dead connection: wait for the reconnection's (the third connection: one per publish,
    // then this one).
    let r = wait_relay_where(&s, "push", "live/movie", "publishing", |r| {
        r["connections"].as_u64() >= Some(3)
    });
    assert!(r["connections"].as_u64().unwrap() >= 3, "{r}");
    // The relay's state and reconnects are in /metrics too.
    let (code, text) = s.api_get("/metrics");
    assert_eq!(code, 200);
    assert!(
        text.contains("livego_relays{kind=\"push\",state=\"publishing\"} 1"),
        "{text}"
    );
    let reconnects: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("livego_relay_connections{kind=\"push\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(reconnects >= 3, "{text}");
    publisher.wait_success(PUBLISH_TIMEOUT);
    late.wait_exit(PLAYER_END_TIMEOUT);
    let m = flv::assert_same_media(&src, &flv::read_flv(&out), true);
    assert!(m.video_start > 0, "{m:?}");
    nginx.guard.kill();
}

#[test]
fn static_push_to_nginx() {
    let nginx = start_nginx();
    let config = format!(
        "[[server]]\nappname = \"live\"\nlive = true\nstatic_push = [\"{}\"]\n",
        nginx.url("live")
    );
    let s = Server::start_with_config(&config, &["--rtmp_noauth"]);
    let dir = scratch_dir();
    let src = media_tags(Media::Av);
    let out = dir.path().join("static.flv");
    let mut rec = ffmpeg_record_with(&nginx.url("live/room9"), &out, NGINX_IDLE);
    nginx.wait_plays("room9", 1);
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url("live/room9"));
    let r = wait_relay(&s, "static_push", "live/room9", "publishing");
    assert_eq!(r["url"], nginx.url("live/room9").as_str());
    publisher.wait_success(PUBLISH_TIMEOUT);
    rec.wait_exit(PLAYER_END_TIMEOUT);
    flv::assert_same_media(&src, &flv::read_flv(&out), false);
    // The push ends with its publish session.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !relay_states(&s).is_empty() {
        assert!(Instant::now() < deadline, "static push outlived its stream");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Media bytes of about a second of the test media (`Media::Av` is ~92 KB/s): more than its
/// first keyframe and audio around it, so a player sent this much has video.
const MID_STREAM_BYTES: u64 = 90_000;

/// A pull whose remote crashes mid-stream ends the local stream (its players are told), retries
/// with backoff until the remote is back on its port, and carries the next publish there whole.
#[test]
fn pull_reconnects_after_the_remote_crashes() {
    let mut a = Server::start(&["--rtmp_noauth"]);
    let b = Server::start(&[]);
    let dir = scratch_dir();
    let src = media_tags(Media::Av);
    let remote = a.rtmp_url("live/movie");
    let (code, body) = b.api_get(&format!(
        "/control/pull?oper=start&app=live&name=copy&url={remote}"
    ));
    assert_eq!(code, 200, "{body}");
    wait_relay(&b, "pull", "live/copy", "waiting for the stream");
    wait_players(&a, 1);
    let url = b.rtmp_url("live/copy");

    // 1: A dies while the pull carries its stream to a player on B.
    let first = dir.path().join("first.flv");
    let mut rec = ffmpeg_record(&url, &first);
    wait_players(&b, 1);
    let mut publisher = ffmpeg_publish(&media(Media::Av), &remote);
    wait_relay(&b, "pull", "live/copy", "playing");
    // Mid-stream: once B has sent its player about a second of media (so the recording has
    // video before the crash), not after a guess at how long that takes.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, text) = b.api_get("/metrics");
        assert_eq!(code, 200, "{text}");
        let sent = metric(&text, "livego_session_media_bytes{direction=\"out\"}");
        if sent >= MID_STREAM_BYTES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B sent its player {sent} media bytes in 20 s\nlog:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    a.restart(libc::SIGKILL);
    publisher.kill();
    rec.wait_exit(PLAYER_END_TIMEOUT);
    let got = flv::read_flv(&first);
    let (src_v, got_v) = (flv::video_frames(&src), flv::video_frames(&got));
    let (start, run) = flv::contiguous_run(&src_v, &got_v, 0).expect("no video before the crash");
    assert_eq!(
        start, 0,
        "the first player did not start at the first frame"
    );
    assert_eq!(
        run,
        got_v.len(),
        "video before the crash is not a clean prefix"
    );

    // 2: the pull connects again (a second connection) and waits for A's next publisher.
    let r = wait_relay_where(&b, "pull", "live/copy", "waiting for the stream", |r| {
        r["connections"].as_u64() >= Some(2)
    });
    assert_eq!(r["url"], remote.as_str());
    // The pull plays on the restarted A again, and B has closed the first player.
    wait_players(&a, 1);
    wait_no_players(&b);
    let mut rec = Recorder::start(PlayerKind::Ffmpeg, &url, dir.path(), "second");
    wait_players(&b, 1);
    let mut publisher = ffmpeg_publish(&media(Media::Av), &remote);
    publisher.wait_success(PUBLISH_TIMEOUT);
    assert_recording(&mut rec, &src, false);
}
