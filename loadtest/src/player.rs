//! The native player swarm: N RTMP players on one glommio executor thread.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use livego::rtmp::{ClientConfig, ClientEvent, ClientMode, ClientSession};

pub const USAGE: &str =
    "usage: livego-loadtest fanout --url rtmp://HOST:PORT/APP/NAME --players N \
[--duration SECONDS] [--server-pid PID] [--json PATH]";

/// A gap in media longer than this (wall clock) counts as a stall.
const STALL: Duration = Duration::from_millis(1000);
/// Players connect this far apart so the server sees a ramp, not a SYN flood.
const CONNECT_SPACING: Duration = Duration::from_millis(2);

pub struct Options {
    pub url: String,
    pub players: usize,
    pub duration_secs: u64,
    pub server_pid: Option<u32>,
    pub json: Option<String>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut it = args.iter();
        match it.next().map(String::as_str) {
            Some("fanout") => {}
            Some(other) => return Err(format!("unknown scenario '{other}'")),
            None => return Err("missing scenario".into()),
        }
        let mut o = Options {
            url: String::new(),
            players: 10,
            duration_secs: 20,
            server_pid: None,
            json: None,
        };
        while let Some(flag) = it.next() {
            let value = it.next().ok_or(format!("{flag} needs a value"))?;
            let bad = |_| format!("{flag}: invalid value '{value}'");
            match flag.as_str() {
                "--url" => o.url = value.clone(),
                "--players" => o.players = value.parse().map_err(bad)?,
                "--duration" => o.duration_secs = value.parse().map_err(bad)?,
                "--server-pid" => o.server_pid = Some(value.parse().map_err(bad)?),
                "--json" => o.json = Some(value.clone()),
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        if o.url.is_empty() {
            return Err("--url is required".into());
        }
        Ok(o)
    }
}

/// rtmp://host:port/app/name -> (host:port, app, tcUrl, name)
fn split_url(url: &str) -> Result<(String, String, String, String), String> {
    let rest = url
        .strip_prefix("rtmp://")
        .ok_or("only rtmp:// URLs are supported")?;
    let (hostport, path) = rest.split_once('/').ok_or("URL has no path")?;
    let (app, name) = path.split_once('/').ok_or("URL needs /app/name")?;
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:1935")
    };
    Ok((
        hostport.clone(),
        app.to_string(),
        format!("rtmp://{hostport}/{app}"),
        name.to_string(),
    ))
}

#[derive(Default)]
struct PlayerStats {
    connected: bool,
    bytes: u64,
    ttff: Option<Duration>,
    stalls: u32,
    /// First video was neither a sequence header nor a keyframe, or a timestamp went back.
    bad: bool,
    error: Option<String>,
}

pub struct Report {
    pub players: usize,
    pub players_receiving: usize,
    pub total_bytes: u64,
    pub window: Duration,
    pub ttff_ms: Vec<u64>,
    pub stalls: u64,
    pub bad_streams: usize,
    pub errors: Vec<String>,
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        let pct = |p: f64| -> u64 {
            if self.ttff_ms.is_empty() {
                return 0;
            }
            let i = ((self.ttff_ms.len() as f64 - 1.0) * p).round() as usize;
            self.ttff_ms[i]
        };
        let mbps = self.total_bytes as f64 * 8.0 / self.window.as_secs_f64() / 1e6;
        serde_json::json!({
            "players": self.players,
            "players_receiving": self.players_receiving,
            "delivered_mbit_per_s": (mbps * 10.0).round() / 10.0,
            "total_bytes": self.total_bytes,
            "ttff_ms_p50": pct(0.5),
            "ttff_ms_p99": pct(0.99),
            "stalls": self.stalls,
            "bad_streams": self.bad_streams,
            "first_errors": self.errors.iter().take(5).collect::<Vec<_>>(),
        })
    }
}

pub fn run_swarm(o: &Options) -> Report {
    let (addr, app, tc_url, name) = match split_url(&o.url) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("livego-loadtest: {e}");
            std::process::exit(2);
        }
    };
    let players = o.players;
    let window = Duration::from_secs(o.duration_secs);
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("swarm")
        .spawn(move || async move {
            let stats: Vec<Rc<RefCell<PlayerStats>>> = (0..players)
                .map(|_| Rc::new(RefCell::new(PlayerStats::default())))
                .collect();
            let deadline = Instant::now() + window;
            let mut tasks = Vec::with_capacity(players);
            for s in &stats {
                let cfg = ClientConfig {
                    app: app.clone(),
                    tc_url: tc_url.clone(),
                    stream: name.clone(),
                    mode: ClientMode::Play,
                    out_chunk_size: 4096,
                };
                let (addr, s) = (addr.clone(), s.clone());
                tasks.push(glommio::spawn_local(async move {
                    let r = play(&addr, cfg, &s, deadline).await;
                    if let Err(e) = r {
                        s.borrow_mut().error = Some(e);
                    }
                }));
                Timer::new(CONNECT_SPACING).await;
            }
            for t in tasks {
                t.await;
            }
            let mut r = Report {
                players,
                players_receiving: 0,
                total_bytes: 0,
                window,
                ttff_ms: vec![],
                stalls: 0,
                bad_streams: 0,
                errors: vec![],
            };
            for s in stats {
                let s = s.borrow();
                r.total_bytes += s.bytes;
                r.stalls += s.stalls as u64;
                if s.bytes > 0 {
                    r.players_receiving += 1;
                }
                if s.bad {
                    r.bad_streams += 1;
                }
                if let Some(t) = s.ttff {
                    r.ttff_ms.push(t.as_millis() as u64);
                }
                if let Some(e) = &s.error {
                    r.errors.push(e.clone());
                }
                let _ = s.connected;
            }
            r.ttff_ms.sort_unstable();
            r
        })
        .expect("cannot start the swarm executor");
    handle.join().expect("swarm executor panicked")
}

async fn play(
    addr: &str,
    cfg: ClientConfig,
    stats: &Rc<RefCell<PlayerStats>>,
    deadline: Instant,
) -> Result<(), String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stats.borrow_mut().connected = true;
    let mut session = ClientSession::new(cfg);
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_media: Option<Instant> = None;
    let mut seen_video = false;
    let mut last_ts = [0u32; 2];
    loop {
        while let Some(out) = session.take_output() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let read = future::or(async { Some(stream.read(&mut buf).await) }, async {
            Timer::new(left).await;
            None
        })
        .await;
        let n = match read {
            None => return Ok(()),
            Some(Ok(0)) => return Err("server closed the connection".into()),
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(format!("read: {e}")),
        };
        session.feed(&buf[..n]).map_err(|e| e.to_string())?;
        while let Some(ev) = session.poll_event() {
            let ClientEvent::Media(msg) = ev else {
                continue;
            };
            let now = Instant::now();
            let mut s = stats.borrow_mut();
            s.bytes += msg.payload.len() as u64;
            if s.ttff.is_none() && msg.type_id == 9 {
                s.ttff = Some(now - started);
            }
            if let Some(prev) = last_media {
                if now - prev > STALL {
                    s.stalls += 1;
                }
            }
            last_media = Some(now);
            let track = match msg.type_id {
                8 => 0,
                9 => 1,
                _ => continue,
            };
            if track == 1 && !seen_video {
                seen_video = true;
                let b = msg.payload.first().copied().unwrap_or(0);
                // a decoder can start at a sequence header or a keyframe only
                if b >> 4 != 1 && b & 0x80 == 0 {
                    s.bad = true;
                }
            }
            if msg.timestamp < last_ts[track] {
                s.bad = true;
            }
            last_ts[track] = msg.timestamp;
        }
    }
}
