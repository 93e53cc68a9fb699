//! Shared end-to-end harness: a guarded server process, guarded client processes (ffmpeg,
//! rtmpdump), deterministic test media made by ffmpeg, an HTTP/1.1 client on a raw socket, and
//! (in submodules) an FLV reader with media comparators and a raw RTMP client.
//!
//! Every wait is bounded and every process is killed by its own PID when its guard drops, so a
//! hung server or client fails one test instead of hanging the suite.

// Each test file uses a different subset of the harness.
#![allow(dead_code)]

pub mod flv;
pub mod rtmp;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The config every server starts with unless a test brings its own.
pub const DEFAULT_CONFIG: &str = r#"[[server]]
appname = "live"
live = true
hls = true
flv = true
api = true
"#;

/// Bounds of the harness's own waits.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// The server allows itself 10 s at stop to finalise recordings; the harness waits longer.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

pub use loadtest::ports::{free_port, free_ports};

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// `target/` of this build (works with CARGO_TARGET_DIR too).
pub fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

/// A fresh directory for one test's files, removed when dropped.
pub fn scratch_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).expect("create CARGO_TARGET_TMPDIR");
    tempfile::Builder::new()
        .prefix("livego-test-")
        .tempdir_in(base)
        .expect("create scratch dir")
}

/// Panics with an actionable message when an external tool is missing.
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed: run scripts/install-test-deps.sh (or `make test`)"
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory effects; the pid is our own child's, not yet reaped (the
    // guards only signal children they have not waited for successfully).
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// A child process (ffmpeg, rtmpdump, ...) killed by PID when dropped; its stdout and stderr go
/// to a log file that failures print.
pub struct ProcGuard {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    log: PathBuf,
    /// The log lives outside any scratch dir, so the guard deletes it.
    remove_log: bool,
}

impl ProcGuard {
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> ProcGuard {
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        ProcGuard {
            name: name.to_owned(),
            child: Some(child),
            status: None,
            log: log.to_path_buf(),
            remove_log: false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the process has ended, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.wait_timeout(Duration::ZERO)
    }

    /// Waits at most `timeout` for the process to end.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                self.status = wait_child(child, timeout);
            }
        }
        self.status
    }

    /// Waits for the process to end and panics (with its log) if it does not within `timeout`.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_timeout(timeout) {
            Some(st) => st,
            None => panic!(
                "{} did not finish within {timeout:?}; log:\n{}",
                self.name,
                tail(&self.log(), 30)
            ),
        }
    }

    /// Waits for a successful exit, panicking with the log otherwise.
    #[track_caller]
    pub fn wait_success(&mut self, timeout: Duration) {
        let st = self.wait_exit(timeout);
        assert!(
            st.success(),
            "{} failed with {st}; log:\n{}",
            self.name,
            tail(&self.log(), 30)
        );
    }

    /// Asks the process to finish (SIGINT: ffmpeg and rtmpdump then close their output files
    /// properly), then kills it after `grace`.
    /// Sends `sig` to the child, unless it has already been reaped.
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.try_status().is_none() {
            if let Some(pid) = self.pid() {
                signal(pid, sig);
            }
        }
    }

    pub fn interrupt(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.try_status().is_none() {
            if let Some(pid) = self.pid() {
                signal(pid, libc::SIGINT);
            }
            if self.wait_timeout(grace).is_none() {
                self.kill();
            }
        }
        self.status
    }

    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if self.status.is_none() {
                let _ = child.kill();
                self.status = child.wait().ok();
            }
        }
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- {} log tail ---\n{}", self.name, tail(&self.log(), 20));
        }
        self.kill();
        if self.remove_log {
            let _ = fs::remove_file(&self.log);
        }
    }
}

/// A running `livego` with all four listeners on free loopback ports.
pub struct Server {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub rtmp_port: u16,
    pub httpflv_port: u16,
    pub hls_port: u16,
    pub api_port: u16,
    log_path: PathBuf,
    /// Every argument of the command line, kept for a restart on the same ports.
    args: Vec<String>,
}

impl Server {
    /// Starts with the default config and `extra` flags; waits for the RTMP and API ports.
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with_config(DEFAULT_CONFIG, extra)
    }

    pub fn start_with_config(config: &str, extra: &[&str]) -> Server {
        require_tool("ffmpeg");
        let dir = scratch_dir();
        let config_path = dir.path().join("livego.toml");
        fs::write(&config_path, config).expect("write config");
        let log_path = dir.path().join("server.log");
        let [rtmp_port, httpflv_port, hls_port, api_port] = free_ports::<4>();
        let addr = |p: u16| format!("127.0.0.1:{p}");
        let mut args = vec![
            "--config_file".to_string(),
            config_path.display().to_string(),
        ];
        for (flag, port) in [
            ("--rtmp_addr", rtmp_port),
            ("--httpflv_addr", httpflv_port),
            ("--hls_addr", hls_port),
            ("--api_addr", api_port),
        ] {
            args.extend([flag.to_string(), addr(port)]);
        }
        args.extend(["--level".to_string(), "debug".to_string()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut server = Server {
            child: None,
            dir,
            rtmp_port,
            httpflv_port,
            hls_port,
            api_port,
            log_path,
            args,
        };
        server.launch(File::create(&server.log_path).expect("create server log"));
        server
    }

    /// Stops the server with `sig` (SIGKILL: as a crash would; SIGTERM: a supervisor's
    /// restart) and starts it again at once with the same command line, on the same ports; its
    /// log continues in the same file.
    pub fn restart(&mut self, sig: libc::c_int) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), sig);
            if wait_child(&mut child, STOP_TIMEOUT).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The dead process's listeners linger for a moment (io_uring releases them
        // asynchronously). The new server waits them out itself, but the readiness check below
        // would take them for the new server's, so they must be gone first.
        let deadline = Instant::now() + START_TIMEOUT;
        while self
            .ports()
            .iter()
            .any(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_err())
        {
            assert!(
                Instant::now() < deadline,
                "the stopped server's ports stayed busy for {START_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        let log = File::options()
            .append(true)
            .open(&self.log_path)
            .expect("open server log");
        self.launch(log);
    }

    fn ports(&self) -> [u16; 4] {
        [
            self.rtmp_port,
            self.httpflv_port,
            self.hls_port,
            self.api_port,
        ]
    }

    /// Spawns the command line and waits until all four ports accept connections.
    fn launch(&mut self, log: File) {
        let log_err = log.try_clone().expect("clone log handle");
        let child = Command::new(env!("CARGO_BIN_EXE_livego"))
            .current_dir(self.dir.path())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("spawn livego");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pending = self.ports().to_vec();
        while !pending.is_empty() {
            // An early exit (bad flags, bind error) fails at once rather than after the bound.
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "livego exited during startup ({st}); log:\n{}",
                    tail(&self.log(), 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "livego did not listen on {pending:?} within {START_TIMEOUT:?}; log:\n{}",
                tail(&self.log(), 40)
            );
            pending.retain(|p| !wait_port(*p, Duration::from_millis(100)));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("server already stopped")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits at most `timeout` until the server's log contains `line`.
    #[track_caller]
    pub fn wait_log(&self, line: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(line) {
            assert!(
                Instant::now() < deadline,
                "no {line:?} in the log within {timeout:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `rtmp://127.0.0.1:<port>/<path>`.
    pub fn rtmp_url(&self, path: &str) -> String {
        format!(
            "rtmp://127.0.0.1:{}/{}",
            self.rtmp_port,
            path.trim_start_matches('/')
        )
    }

    /// GET on the API port; returns (HTTP status, body).
    pub fn api_get(&self, path: &str) -> (u16, String) {
        let r = http_get(self.api_port, path).unwrap_or_else(|e| {
            panic!(
                "GET {path} on the API port: {e}; log:\n{}",
                tail(&self.log(), 20)
            )
        });
        (r.status, r.body)
    }

    /// GET on the API port, the body parsed as JSON.
    pub fn api_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.api_get(path);
        let v = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: body is not JSON ({e}): {body:?}"));
        (status, v)
    }

    /// The channel key of `room` from `/control/get`.
    pub fn key_for(&self, room: &str) -> String {
        let (status, v) = self.api_json(&format!("/control/get?room={room}"));
        assert_eq!(status, 200, "/control/get?room={room} -> {v}");
        v["data"]
            .as_str()
            .unwrap_or_else(|| panic!("/control/get?room={room}: no key in {v}"))
            .to_owned()
    }

    pub fn is_alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits at most `timeout` for the server to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(self.child.as_mut()?, timeout)
    }

    /// Sends `sig` to the server's own PID.
    pub fn signal(&mut self, sig: libc::c_int) {
        if let Some(c) = self.child.as_ref() {
            signal(c.id(), sig);
        }
    }

    /// SIGTERM, then SIGKILL after a bound; returns how the process ended (a server that had
    /// already exited, e.g. after `signal`, reports that exit).
    pub fn stop(mut self) -> ExitStatus {
        self.terminate().expect("server already stopped")
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        signal(child.id(), libc::SIGTERM);
        if let Some(st) = wait_child(&mut child, STOP_TIMEOUT) {
            return Some(st);
        }
        eprintln!("livego ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let st = self.terminate();
        if thread::panicking() {
            eprintln!(
                "--- livego (exit {st:?}) log tail, {} ---\n{}",
                self.log_path.display(),
                tail(&self.log(), 60)
            );
        }
    }
}

/// Runs `livego` with `args` (from `dir`) expecting it to exit by itself within `timeout`.
/// Returns (exit status, stderr); `None` status means it was still running and got killed.
pub fn run_livego(dir: &Path, args: &[&str], timeout: Duration) -> (Option<ExitStatus>, String) {
    let err_path = dir.join(format!("stderr-{}.txt", free_port()));
    let err = File::create(&err_path).expect("create stderr file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_livego"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn livego");
    let st = wait_child(&mut child, timeout);
    if st.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    (st, fs::read_to_string(&err_path).unwrap_or_default())
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn decode_chunked(mut body: &[u8]) -> io::Result<Vec<u8>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
    let mut out = Vec::new();
    loop {
        let eol = find(body, b"\r\n").ok_or_else(|| bad("chunk size line"))?;
        let line = std::str::from_utf8(&body[..eol]).map_err(|_| bad("chunk size utf8"))?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("chunk size hex"))?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// A one-shot HTTP/1.1 GET on a raw socket (`Connection: close`), bounded by `HTTP_TIMEOUT`.
pub fn http_get(port: u16, path: &str) -> io::Result<HttpResponse> {
    http_request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
    )
}

/// Sends `request` on a fresh connection and reads until the server closes it (or
/// `HTTP_TIMEOUT` passes with nothing more: a streamed body keeps what arrived). Returns the
/// status, the header fields (names lowercased) and the raw body bytes.
pub fn raw_exchange(port: u16, request: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).expect("connect");
    c.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    c.write_all(request.as_bytes()).expect("send request");
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    let end = find(&got, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&got)));
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, got[end + 4..].to_vec())
}

/// Sends a raw request head (and body) and reads one response.
pub fn http_request(port: u16, request: &str) -> io::Result<HttpResponse> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    s.set_write_timeout(Some(HTTP_TIMEOUT))?;
    s.write_all(request.as_bytes())?;
    let deadline = Instant::now() + HTTP_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    // Read until the head is complete, then until the body is (by length, chunked end or EOF).
    loop {
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "HTTP response timed out",
            ));
        }
        let n = s.read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        let Some(head_end) = find(&buf, b"\r\n\r\n") else {
            if n == 0 {
                return Err(bad(format!(
                    "connection closed inside the head: {:?}",
                    String::from_utf8_lossy(&buf)
                )));
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let body = &buf[head_end + 4..];
        let body = if let Some(len) = get("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| bad(format!("content-length {len:?}")))?;
            if body.len() < len {
                if n == 0 {
                    return Err(bad(format!("body truncated at {} of {len}", body.len())));
                }
                continue;
            }
            body[..len].to_vec()
        } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            if find(body, b"0\r\n\r\n").is_none() && n != 0 {
                continue;
            }
            decode_chunked(body)?
        } else {
            if n != 0 {
                continue;
            }
            body.to_vec()
        };
        return Ok(HttpResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
}

/// FNV-1a 64 of `s`: how the server picks the owner shard of a stream key.
pub fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The value of the sample `name` (with its labels) in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}:\n{text}"))
}

/// Open players of any protocol, as /metrics counts them (a player still waiting for its
/// stream counts); None when /metrics does not answer 200.
pub fn open_players(s: &Server) -> Option<u64> {
    let (code, text) = s.api_get("/metrics");
    (code == 200).then(|| {
        text.lines()
            .filter_map(|l| {
                l.strip_prefix("livego_players{")?
                    .split_once("} ")?
                    .1
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    })
}

/// Waits until the server counts at least `n` open players, so that a publish started next
/// reaches every one of them from its first frame. Replaces a guess at how long the players
/// take to start.
#[track_caller]
pub fn wait_players(s: &Server, n: u64) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let open = open_players(s);
        if open.is_some_and(|o| o >= n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{open:?} of {n} players joined within {START_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The shard that owns `live/<room>` among `shards`.
pub fn owner_shard(room: &str, shards: u64) -> u64 {
    fnv1a64(&format!("live/{room}")) % shards
}

/// Test media, made once by ffmpeg and cached under `target/test-media/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// H.264 (no B-frames, keyframe every 25 frames at 25 fps) + AAC, 8 s, 640x360.
    Av,
    /// Same with B-frames (non-zero composition times).
    AvBframes,
    /// Same encoding as `Av` with other pictures and tone, so its frames differ from `Av`'s.
    AvAlt,
    /// AAC only.
    AudioOnly,
}

const MEDIA_SECONDS: &str = "8";

impl Media {
    fn file_name(self) -> &'static str {
        // The version suffix changes whenever the encoding flags below change.
        match self {
            Media::Av => "av-v1.flv",
            Media::AvBframes => "av-bframes-v1.flv",
            Media::AvAlt => "av-alt-v1.flv",
            Media::AudioOnly => "audio-only-v1.flv",
        }
    }

    fn ffmpeg_args(self) -> Vec<String> {
        let (picture, tone) = match self {
            Media::AvAlt => (
                "testsrc=size=640x360:rate=25",
                "sine=frequency=880:sample_rate=44100",
            ),
            _ => (
                "testsrc2=size=640x360:rate=25",
                "sine=frequency=440:sample_rate=44100",
            ),
        };
        let mut a: Vec<String> = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        if self != Media::AudioOnly {
            push(&["-f", "lavfi", "-i", picture]);
        }
        push(&["-f", "lavfi", "-i", tone, "-t", MEDIA_SECONDS]);
        if self != Media::AudioOnly {
            let bf = if self == Media::AvBframes { "2" } else { "0" };
            push(&[
                "-map",
                "0:v",
                "-map",
                "1:a",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-profile:v",
                "high",
                "-pix_fmt",
                "yuv420p",
                "-g",
                "25",
                "-keyint_min",
                "25",
                "-sc_threshold",
                "0",
                "-bf",
                bf,
                "-b:v",
                "600k",
                "-maxrate",
                "600k",
                "-bufsize",
                "1200k",
                // One thread: x264's output then depends only on its input and flags.
                "-threads",
                "1",
            ]);
        }
        push(&[
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-ar",
            "44100",
            "-ac",
            "2",
            "-fflags",
            "+bitexact",
            "-flags",
            "+bitexact",
            "-map_metadata",
            "-1",
            "-f",
            "flv",
        ]);
        a
    }
}

static MEDIA_LOCK: Mutex<()> = Mutex::new(());

/// Path of the cached test file, creating it on first use (write to a temp name, then rename,
/// so a concurrent or interrupted run never sees a partial file).
pub fn media(m: Media) -> PathBuf {
    let dir = target_dir().join("test-media");
    let path = dir.join(m.file_name());
    let _g = MEDIA_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if path.is_file() {
        return path;
    }
    require_tool("ffmpeg");
    fs::create_dir_all(&dir).expect("create target/test-media");
    let tmp = dir.join(format!("{}.{}.tmp", m.file_name(), std::process::id()));
    let out = Command::new("ffmpeg")
        .args(m.ffmpeg_args())
        .arg(&tmp)
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg could not make {m:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&tmp, &path).expect("rename test media into place");
    path
}

/// The parsed tags of a test media file.
pub fn media_tags(m: Media) -> Vec<flv::Tag> {
    flv::read_flv(&media(m))
}

/// Bound on a client's network inactivity (ffmpeg's -rw_timeout, rtmpdump's --timeout). Longer
/// than `PLAYER_END_TIMEOUT`, so a player that is never told the stream ended fails the test
/// instead of quietly timing out.
pub const CLIENT_RW_TIMEOUT: Duration = Duration::from_secs(20);

/// `ffmpeg -i URL -c copy -f flv OUT`: a player that records what it receives.
pub fn ffmpeg_record(url: &str, out: &Path) -> ProcGuard {
    ffmpeg_record_with(url, out, CLIENT_RW_TIMEOUT)
}

/// `ffmpeg_record` ending after `idle` without data. ffmpeg does not abort a blocked RTMP read
/// on SIGINT, so a recorder that must stop on a server that never says "unpublished" needs this.
pub fn ffmpeg_record_with(url: &str, out: &Path, idle: Duration) -> ProcGuard {
    require_tool("ffmpeg");
    let log = out.with_extension("ffmpeg.log");
    ProcGuard::spawn(
        &format!("ffmpeg recorder of {url}"),
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(["-rw_timeout", &idle.as_micros().to_string()])
            .args(["-i", url, "-c", "copy", "-f", "flv"])
            .arg(out),
        &log,
    )
}

/// `rtmpdump -r URL --live -o OUT`: a second, independent player implementation (librtmp).
pub fn rtmpdump_record(url: &str, out: &Path) -> ProcGuard {
    rtmpdump_record_with(url, out, CLIENT_RW_TIMEOUT)
}

pub fn rtmpdump_record_with(url: &str, out: &Path, idle: Duration) -> ProcGuard {
    require_tool("rtmpdump");
    let log = out.with_extension("rtmpdump.log");
    ProcGuard::spawn(
        &format!("rtmpdump recorder of {url}"),
        Command::new("rtmpdump")
            .args([
                "-r",
                url,
                "--live",
                "-q",
                "--timeout",
                &idle.as_secs().max(1).to_string(),
                "-o",
            ])
            .arg(out),
        &log,
    )
}

/// `ffmpeg -re -i FILE -c copy -f flv URL`: an encoder publishing in real time.
pub fn ffmpeg_publish(file: &Path, url: &str) -> ProcGuard {
    require_tool("ffmpeg");
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(dir).expect("create CARGO_TARGET_TMPDIR");
    let log = dir.join(format!("publish-{}-{n}.log", std::process::id()));
    let mut g = ProcGuard::spawn(
        &format!("ffmpeg publisher to {url}"),
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error"])
            .args(["-rw_timeout", &CLIENT_RW_TIMEOUT.as_micros().to_string()])
            .args(["-re", "-i"])
            .arg(file)
            .args(["-c", "copy", "-f", "flv", url]),
        &log,
    );
    g.remove_log = true;
    g
}

/// How long a real-time publish of the 8 s test media may take, with slack for a loaded machine.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a player may take to notice the end of the stream after the publisher finished.
pub const PLAYER_END_TIMEOUT: Duration = Duration::from_secs(15);

/// Waits for a recorder to end by itself, then parses what it wrote.
#[track_caller]
pub fn finish_recording(player: &mut ProcGuard, out: &Path) -> Vec<flv::Tag> {
    player.wait_exit(PLAYER_END_TIMEOUT);
    let bytes = fs::read(out).unwrap_or_else(|e| {
        panic!(
            "recording {} missing ({e}); player log:\n{}",
            out.display(),
            player.log()
        )
    });
    flv::parse_flv(&bytes).unwrap_or_else(|e| {
        panic!(
            "recording {} is not valid FLV: {e}; player log:\n{}",
            out.display(),
            player.log()
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerKind {
    Ffmpeg,
    Rtmpdump,
}

/// A recording player and where it writes.
pub struct Recorder {
    pub proc: ProcGuard,
    pub out: PathBuf,
    pub label: String,
}

impl Recorder {
    pub fn start(kind: PlayerKind, url: &str, dir: &Path, label: &str) -> Recorder {
        let out = dir.join(format!("{label}.flv"));
        let proc = match kind {
            PlayerKind::Ffmpeg => ffmpeg_record(url, &out),
            PlayerKind::Rtmpdump => rtmpdump_record(url, &out),
        };
        Recorder {
            proc,
            out,
            label: label.to_owned(),
        }
    }

    /// Waits for the player to end by itself (the server tells it the stream ended) and
    /// returns its tags.
    #[track_caller]
    pub fn finish(&mut self) -> Vec<flv::Tag> {
        finish_recording(&mut self.proc, &self.out)
    }
}

/// Upgrades `ws` to a WebSocket on `path` (the RFC 6455 sample key) and checks the 101 reply;
/// returns the stream, its read timeout 20 s.
#[track_caller]
pub fn websocket_upgrade(mut ws: TcpStream, path: &str) -> TcpStream {
    ws.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    ws.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        let mut b = [0u8; 1];
        ws.read_exact(&mut b).expect("read the upgrade reply");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    ws
}

/// A stream under way, for checks that something else leaves it alone: an ffmpeg player
/// records `live/<room>` from before an ffmpeg publish of the A/V test media starts.
pub struct WatchedStream {
    recorder: Recorder,
    publisher: ProcGuard,
    _dir: tempfile::TempDir,
}

impl WatchedStream {
    /// Starts the player, then (once the server counts it) the publisher with the room's key,
    /// and returns when the server has received `frames` of its video frames.
    #[track_caller]
    pub fn start(s: &Server, room: &str, frames: usize) -> WatchedStream {
        let dir = scratch_dir();
        let before = open_players(s).unwrap_or(0);
        let url = s.rtmp_url(&format!("live/{room}"));
        let recorder = Recorder::start(PlayerKind::Ffmpeg, &url, dir.path(), room);
        wait_players(s, before + 1);
        let key = s.key_for(room);
        let publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
        if frames > 0 {
            let source = media_tags(Media::Av);
            wait_published_frames(s, &format!("live/{room}"), &source, frames);
        }
        WatchedStream {
            recorder,
            publisher,
            _dir: dir,
        }
    }

    /// Waits for the publish to end; the player must have got all of it, byte for byte.
    #[track_caller]
    pub fn assert_whole(mut self) {
        self.publisher.wait_success(PUBLISH_TIMEOUT);
        assert_recording(&mut self.recorder, &media_tags(Media::Av), false);
    }
}

/// Checks a finished recording against the source, naming the player on failure.
#[track_caller]
pub fn assert_recording(
    rec: &mut Recorder,
    source: &[flv::Tag],
    from_keyframe: bool,
) -> flv::MediaMatch {
    let tags = rec.finish();
    flv::compare_media(source, &tags, from_keyframe).unwrap_or_else(|e| {
        panic!(
            "{}: media mismatch (from_keyframe={from_keyframe}): {e}\nplayer log:\n{}",
            rec.label,
            tail(&rec.proc.log(), 20)
        )
    })
}

/// Video payload bytes the server has received so far from the publisher of `key` (`app/room`),
/// by `/stat/livestat` (0 while the stream has no publisher).
pub fn published_video_bytes(s: &Server, key: &str) -> u64 {
    publishers(s)
        .iter()
        .filter(|p| p["key"] == key)
        .filter_map(|p| p["video_total_bytes"].as_u64())
        .sum()
}

/// The publishers `/stat/livestat` lists.
pub fn publishers(s: &Server) -> Vec<serde_json::Value> {
    let (code, stat) = s.api_json("/stat/livestat");
    assert_eq!(code, 200, "/stat/livestat -> {stat}");
    stat["data"]["publishers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// How many video frames of `source` (counted as `flv::video_frames` does, so a count is also an
/// index into it) are complete within the first `bytes` bytes of its video payload, sequence
/// header included: a publisher's progress in source frames, from `published_video_bytes`.
pub fn video_frames_within(source: &[flv::Tag], bytes: u64) -> usize {
    let mut total = 0u64;
    let mut frames = 0;
    for t in source.iter().filter(|t| t.is_video()) {
        total += t.data.len() as u64;
        if total > bytes {
            break;
        }
        if t.is_media_frame() {
            frames += 1;
        }
    }
    frames
}

/// Waits until the server has received at least `frames` video frames of `source` from the
/// publisher of `key`, and returns how many it had by then. The server counts a frame just
/// before handing it to the stream, so all but at most the last one counted are in the stream
/// (and its GOP cache) when this returns. Replaces a sleep meant to let a publisher get going,
/// which a loaded machine, where ffmpeg starts slowly, can outlast.
#[track_caller]
pub fn wait_published_frames(s: &Server, key: &str, source: &[flv::Tag], frames: usize) -> usize {
    let deadline = Instant::now() + PUBLISH_TIMEOUT;
    loop {
        let got = video_frames_within(source, published_video_bytes(s, key));
        if got >= frames {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "the publisher of {key} sent {got} of {frames} video frames within {PUBLISH_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}
