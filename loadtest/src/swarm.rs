//! The native swarm: RTMP and HTTP-FLV players and RTMP publishers, many per glommio executor
//! thread. Players and publishers share a SendLog so players can measure delivery latency.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use livego::rtmp::{ClientConfig, ClientEvent, ClientMode, ClientSession, Message};

use crate::check::{is_sequence_header, Problem, StreamCheck, AUDIO, VIDEO};
use crate::flvparse::{parse_head, Dechunker, FlvReader, Tag};
use crate::latency::SendLog;

/// A wall-clock pause in received media longer than this counts as a stall.
pub const STALL: Duration = Duration::from_millis(1000);
/// A player whose received media time trails wall time (since its first frame) by more than
/// this has fallen behind; so has a publisher trailing its schedule by as much.
pub const BEHIND: Duration = Duration::from_secs(2);
/// Connections are spread this far apart per thread so the server sees a ramp, not a SYN flood.
const CONNECT_SPACING: Duration = Duration::from_millis(3);

#[derive(Debug, Clone, PartialEq)]
pub enum Proto {
    Rtmp,
    HttpFlv,
}

#[derive(Debug, Clone)]
pub struct PlayerSpec {
    pub url: String,
    /// Index of the stream in the SendLog (the native publisher's stream index).
    pub stream: u32,
}

#[derive(Debug, Clone)]
pub struct PublisherSpec {
    pub url: String,
    pub stream: u32,
}

/// Counters the progress line and the measurement window read while the swarm runs.
#[derive(Default)]
pub struct Live {
    pub bytes: AtomicU64,
    pub receiving: AtomicUsize,
    pub publishing: AtomicUsize,
    pub stop: AtomicBool,
    /// Latency samples are taken only inside the measurement window.
    pub measuring: AtomicBool,
}

#[derive(Debug, Default, Clone)]
pub struct PlayerResult {
    pub bytes: u64,
    pub ttff: Option<Duration>,
    pub stalls: u32,
    pub problems: Vec<Problem>,
    pub error: Option<String>,
    pub behind: bool,
    pub latency_us: Vec<u32>,
    first_frame: Option<(Instant, u32)>,
    last_ts: Option<u32>,
    last_media: Option<Instant>,
}

impl PlayerResult {
    pub fn held(&self) -> bool {
        self.bytes > 0 && self.problems.is_empty() && self.error.is_none() && !self.behind
    }

    /// Judges lag at the end of the run: media time received against wall time elapsed.
    fn finish(&mut self, now: Instant) {
        if let (Some((t0, ts0)), Some(ts)) = (self.first_frame, self.last_ts) {
            let media = Duration::from_millis(ts.saturating_sub(ts0) as u64);
            self.behind = now.duration_since(t0).saturating_sub(media) > BEHIND;
        }
        if let Some(last) = self.last_media {
            if now.duration_since(last) > STALL {
                self.stalls += 1;
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct PublisherResult {
    pub bytes: u64,
    pub started: bool,
    pub behind: bool,
    pub error: Option<String>,
}

pub struct Player {
    started: Instant,
    check: StreamCheck,
    out: PlayerResult,
    stream: u32,
}

impl Player {
    fn new(stream: u32) -> Player {
        Player {
            started: Instant::now(),
            check: StreamCheck::new(),
            out: PlayerResult::default(),
            stream,
        }
    }

    fn media(&mut self, tag_type: u8, ts: u32, body: &[u8], live: &Live, log: &SendLog) {
        let now = Instant::now();
        self.out.bytes += body.len() as u64;
        if tag_type != AUDIO && tag_type != VIDEO {
            return;
        }
        self.check.tag(tag_type, ts, body);
        if is_sequence_header(tag_type, body) {
            return;
        }
        if let Some(prev) = self.out.last_media {
            if now.duration_since(prev) > STALL {
                self.out.stalls += 1;
            }
        }
        self.out.last_media = Some(now);
        if self.out.ttff.is_none() && tag_type == VIDEO {
            self.out.ttff = Some(now.duration_since(self.started));
            self.out.first_frame = Some((now, ts));
            live.receiving.fetch_add(1, Relaxed);
        }
        if self.out.first_frame.is_some() {
            self.out.last_ts = Some(self.out.last_ts.map_or(ts, |l| l.max(ts)));
        }
        if live.measuring.load(Relaxed) {
            if let Some(sent) = log.send_time(self.stream, tag_type, ts) {
                let us = now.saturating_duration_since(sent).as_micros();
                self.out.latency_us.push(us.min(u32::MAX as u128) as u32);
            }
        }
    }
}

/// rtmp://host[:port]/app/name -> (host:port, app, tcUrl, name)
pub fn split_rtmp_url(url: &str) -> Result<(String, String, String, String), String> {
    let rest = url.strip_prefix("rtmp://").ok_or("not an rtmp:// URL")?;
    let (hostport, path) = rest.split_once('/').ok_or("URL has no path")?;
    let (app, name) = path.split_once('/').ok_or("URL needs /app/name")?;
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:1935")
    };
    let tc_url = format!("rtmp://{hostport}/{app}");
    Ok((hostport, app.to_string(), tc_url, name.to_string()))
}

/// http://host[:port]/path -> (host:port, path)
pub fn split_http_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (hostport, path) = rest.split_once('/').ok_or("URL has no path")?;
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    Ok((hostport, format!("/{path}")))
}

/// The server ended the stream. At the end of a run the publishers stop with the players, so
/// the stream's end can reach a player a moment before the player sees the stop flag: that is
/// the run ending, not a failure.
fn end_of_stream(live: &Live) -> Result<(), String> {
    if live.stop.load(Relaxed) {
        Ok(())
    } else {
        Err("server closed the connection".into())
    }
}

async fn play_rtmp(
    url: &str,
    p: &RefCell<Player>,
    live: &Live,
    log: &SendLog,
) -> Result<(), String> {
    let (addr, app, tc_url, stream) = split_rtmp_url(url)?;
    let mut sock = TcpStream::connect(addr.as_str())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut s = ClientSession::new(ClientConfig {
        app,
        tc_url,
        stream,
        mode: ClientMode::Play,
        out_chunk_size: 4096,
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(out) = s.take_output() {
            sock.write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        let n = sock
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return end_of_stream(live);
        }
        live.bytes.fetch_add(n as u64, Relaxed);
        s.feed(&buf[..n]).map_err(|e| e.to_string())?;
        while let Some(ev) = s.poll_event() {
            match ev {
                ClientEvent::Media(m) => {
                    p.borrow_mut()
                        .media(m.type_id, m.timestamp, &m.payload, live, log)
                }
                ClientEvent::Error(e) => return Err(format!("rejected: {e:?}")),
                _ => {}
            }
        }
    }
}

async fn play_flv(
    url: &str,
    p: &RefCell<Player>,
    live: &Live,
    log: &SendLog,
) -> Result<(), String> {
    let (addr, path) = split_http_url(url)?;
    let mut sock = TcpStream::connect(addr.as_str())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: livego-loadtest\r\nAccept: */*\r\n\r\n"
    );
    sock.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut flv = FlvReader::new();
    let mut chunked: Option<Dechunker> = None;
    let mut started = false;
    let mut plain = Vec::new();
    loop {
        let n = sock
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return end_of_stream(live);
        }
        live.bytes.fetch_add(n as u64, Relaxed);
        let mut data = &buf[..n];
        if !started {
            head.extend_from_slice(data);
            let Some(h) = parse_head(&head)? else {
                continue;
            };
            if h.status != 200 {
                return Err(format!("HTTP status {}", h.status));
            }
            started = true;
            if h.chunked {
                chunked = Some(Dechunker::new());
            }
            head.drain(..h.len);
            data = &head[..];
        }
        plain.clear();
        let body: &[u8] = match chunked.as_mut() {
            Some(d) => {
                d.feed(data, &mut plain)?;
                &plain
            }
            None => data,
        };
        flv.feed(body);
        head.clear();
        while let Some(Tag {
            tag_type,
            timestamp,
            body,
        }) = flv.next_tag()?
        {
            p.borrow_mut().media(tag_type, timestamp, &body, live, log);
        }
    }
}

/// Reads whatever the server sends until Publish.Start, then paces `tags` in real time, looped,
/// timestamps continuing across loops. The server's later messages (acks, pings) are left in
/// the kernel buffer: they are a few bytes a second and a publisher need not answer them.
async fn publish(
    spec: &PublisherSpec,
    tags: &[Tag],
    out: &RefCell<PublisherResult>,
    live: &Live,
    log: &SendLog,
) -> Result<(), String> {
    let (addr, app, tc_url, stream) = split_rtmp_url(&spec.url)?;
    let mut sock = TcpStream::connect(addr.as_str())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut s = ClientSession::new(ClientConfig {
        app,
        tc_url,
        stream,
        mode: ClientMode::Publish,
        out_chunk_size: 4096,
    });
    let mut buf = vec![0u8; 16 * 1024];
    'handshake: loop {
        while let Some(b) = s.take_output() {
            sock.write_all(&b)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        let n = sock
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return end_of_stream(live);
        }
        s.feed(&buf[..n]).map_err(|e| e.to_string())?;
        while let Some(ev) = s.poll_event() {
            match ev {
                ClientEvent::Publishing => break 'handshake,
                ClientEvent::Error(e) => return Err(format!("rejected: {e:?}")),
                _ => {}
            }
        }
    }
    out.borrow_mut().started = true;
    live.publishing.fetch_add(1, Relaxed);
    let first = tags.iter().map(|t| t.timestamp).min().unwrap_or(0);
    let last = tags.iter().map(|t| t.timestamp).max().unwrap_or(0);
    let period = last - first + 40;
    let start = Instant::now();
    let mut round = 0u32;
    loop {
        for t in tags {
            let config = t.tag_type == 18 || is_sequence_header(t.tag_type, &t.body);
            if round > 0 && config {
                continue;
            }
            let ts = round * period + t.timestamp - first;
            let due = start + Duration::from_millis(ts as u64);
            let now = Instant::now();
            if due > now {
                Timer::new(due - now).await;
            } else if now - due > BEHIND {
                out.borrow_mut().behind = true;
            }
            let msg = Message {
                type_id: t.tag_type,
                timestamp: ts,
                stream_id: 1,
                payload: t.body.clone(),
            };
            s.send_media(&msg).map_err(|e| e.to_string())?;
            while let Some(b) = s.take_output() {
                out.borrow_mut().bytes += b.len() as u64;
                sock.write_all(&b)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
            log.sent(spec.stream, t.tag_type, ts, Instant::now());
        }
        round += 1;
    }
}

pub struct Results {
    pub players: Vec<PlayerResult>,
    pub publishers: Vec<PublisherResult>,
}

/// Work for one executor thread.
struct Share {
    players: Vec<(Proto, PlayerSpec)>,
    publishers: Vec<PublisherSpec>,
}

/// Runs the publishers and players on `threads` executors until `live.stop` is set; players
/// start `player_delay` after the publishers. Blocks; call from a dedicated thread.
pub fn run(
    threads: usize,
    publishers: Vec<PublisherSpec>,
    players: Vec<(Proto, PlayerSpec)>,
    player_delay: Duration,
    tags: Arc<Vec<Tag>>,
    live: Arc<Live>,
    log: Arc<SendLog>,
) -> Results {
    let threads = threads.max(1);
    let mut shares: Vec<Share> = (0..threads)
        .map(|_| Share {
            players: vec![],
            publishers: vec![],
        })
        .collect();
    for (i, p) in publishers.into_iter().enumerate() {
        shares[i % threads].publishers.push(p);
    }
    for (i, p) in players.into_iter().enumerate() {
        shares[i % threads].players.push(p);
    }
    let handles: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(i, share)| {
            let (tags, live, log) = (tags.clone(), live.clone(), log.clone());
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .name(&format!("swarm{i}"))
                .spawn(move || run_share(share, player_delay, tags, live, log))
                .expect("cannot start a swarm executor")
        })
        .collect();
    let mut r = Results {
        players: vec![],
        publishers: vec![],
    };
    for h in handles {
        let (p, q) = h.join().expect("swarm executor panicked");
        r.players.extend(p);
        r.publishers.extend(q);
    }
    r
}

async fn run_share(
    share: Share,
    player_delay: Duration,
    tags: Arc<Vec<Tag>>,
    live: Arc<Live>,
    log: Arc<SendLog>,
) -> (Vec<PlayerResult>, Vec<PublisherResult>) {
    let mut tasks = vec![];
    let mut pubs = vec![];
    for spec in share.publishers {
        let out = Rc::new(RefCell::new(PublisherResult::default()));
        pubs.push(out.clone());
        let (tags, live, log) = (tags.clone(), live.clone(), log.clone());
        tasks.push(glommio::spawn_local(async move {
            if let Err(e) = publish(&spec, &tags, &out, &live, &log).await {
                out.borrow_mut().error = Some(e);
            }
        }));
        Timer::new(CONNECT_SPACING).await;
    }
    let until = Instant::now() + player_delay;
    while Instant::now() < until && !live.stop.load(Relaxed) {
        Timer::new(Duration::from_millis(20)).await;
    }
    let mut players = vec![];
    for (proto, spec) in share.players {
        if live.stop.load(Relaxed) {
            break;
        }
        let p = Rc::new(RefCell::new(Player::new(spec.stream)));
        players.push(p.clone());
        let (live, log) = (live.clone(), log.clone());
        tasks.push(glommio::spawn_local(async move {
            let r = match proto {
                Proto::Rtmp => play_rtmp(&spec.url, &p, &live, &log).await,
                Proto::HttpFlv => play_flv(&spec.url, &p, &live, &log).await,
            };
            if let Err(e) = r {
                p.borrow_mut().out.error = Some(e);
            }
        }));
        Timer::new(CONNECT_SPACING).await;
    }
    while !live.stop.load(Relaxed) {
        Timer::new(Duration::from_millis(50)).await;
    }
    // dropping a glommio task cancels it: every connection closes here
    drop(tasks);
    let now = Instant::now();
    let players = players
        .into_iter()
        .map(|p| {
            let mut p = p.borrow_mut();
            p.out.problems = std::mem::take(&mut p.check.problems);
            p.out.finish(now);
            std::mem::take(&mut p.out)
        })
        .collect();
    let pubs = pubs.into_iter().map(|p| p.borrow().clone()).collect();
    (players, pubs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_rtmp_url("rtmp://h/live/x").unwrap(),
            (
                "h:1935".into(),
                "live".into(),
                "rtmp://h:1935/live".into(),
                "x".into()
            )
        );
        assert!(split_rtmp_url("http://h/live/x").is_err());
        assert!(split_rtmp_url("rtmp://h/live").is_err());
        assert_eq!(
            split_http_url("http://127.0.0.1:7001/live/r.flv").unwrap(),
            ("127.0.0.1:7001".into(), "/live/r.flv".into())
        );
    }

    /// One HTTP-FLV player against a std-thread server that answers with a chunked FLV body
    /// (3 s of media, sent at once) and then holds the connection open.
    fn http_flv_run(chunked: bool, first_video: &'static [u8]) -> PlayerResult {
        use bytes::BytesMut;
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut req = [0u8; 1024];
            let n = c.read(&mut req).unwrap();
            assert!(req[..n].starts_with(b"GET /live/r.flv HTTP/1.1\r\n"));
            let mut body = BytesMut::new();
            body.extend_from_slice(&livego::flv::file_header(true, true));
            livego::flv::encode_tag(&mut body, 9, 0, &[0x17, 0, 0, 0, 0]);
            for i in 0..75u32 {
                let v: &[u8] = if i == 0 {
                    first_video
                } else {
                    &[0x27, 1, 0, 0, 0]
                };
                livego::flv::encode_tag(&mut body, 9, 5000 + i * 40, v);
                livego::flv::encode_tag(&mut body, 8, 5000 + i * 40, &[0xaf, 1, 0x21]);
            }
            let te = if chunked {
                "Transfer-Encoding: chunked\r\n"
            } else {
                ""
            };
            write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n{te}\r\n"
            )
            .unwrap();
            for piece in body.chunks(1000) {
                if chunked {
                    write!(c, "{:x}\r\n", piece.len()).unwrap();
                    c.write_all(piece).unwrap();
                    c.write_all(b"\r\n").unwrap();
                } else {
                    c.write_all(piece).unwrap();
                }
            }
            std::thread::sleep(Duration::from_millis(1500));
        });
        let live = Arc::new(Live::default());
        let stopper = {
            let live = live.clone();
            std::thread::spawn(move || {
                // well under STALL after the last tag, so the end of the run is not a stall
                std::thread::sleep(Duration::from_millis(500));
                live.stop.store(true, Relaxed);
            })
        };
        let spec = PlayerSpec {
            url: format!("http://127.0.0.1:{port}/live/r.flv"),
            stream: 0,
        };
        let r = run(
            1,
            vec![],
            vec![(Proto::HttpFlv, spec)],
            Duration::ZERO,
            Arc::new(vec![]),
            live,
            Arc::new(SendLog::new()),
        );
        stopper.join().unwrap();
        server.join().unwrap();
        r.players.into_iter().next().unwrap()
    }

    #[test]
    fn http_flv_player_chunked_and_plain() {
        for chunked in [true, false] {
            let r = http_flv_run(chunked, &[0x17, 1, 0, 0, 0]);
            assert!(r.held(), "chunked={chunked}: {r:?}");
            assert_eq!(r.bytes, 5 + 75 * (5 + 3), "chunked={chunked}");
            assert!(r.ttff.is_some());
        }
        let r = http_flv_run(true, &[0x27, 1, 0, 0, 0]);
        assert_eq!(r.problems, vec![Problem::LateStart { first_ts: 5000 }]);
        assert!(!r.held());
    }

    #[test]
    fn behind_and_final_stall() {
        let t0 = Instant::now();
        let mut r = PlayerResult {
            bytes: 1,
            first_frame: Some((t0, 10_000)),
            last_ts: Some(12_000),
            last_media: Some(t0 + Duration::from_millis(4_900)),
            ..Default::default()
        };
        // 5 s of wall time, 2 s of media: 3 s behind
        r.finish(t0 + Duration::from_secs(5));
        assert!(r.behind && !r.held());
        assert_eq!(r.stalls, 0);
        let mut r = PlayerResult {
            bytes: 1,
            first_frame: Some((t0, 10_000)),
            last_ts: Some(14_500),
            last_media: Some(t0 + Duration::from_millis(3_000)),
            ..Default::default()
        };
        r.finish(t0 + Duration::from_secs(5));
        assert!(!r.behind);
        assert_eq!(r.stalls, 1, "media stopped 2 s before the end");
    }
}
