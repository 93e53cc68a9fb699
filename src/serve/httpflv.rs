//! HTTP-FLV (and WebSocket-FLV) viewers and `/streams`, on every data shard.
//!
//! A viewer joins the hub like an RTMP player (same queue, same slow-viewer policy) and gets
//! the stream's shared FLV tag bytes (`Frame::flv()`, serialised once per shard): one HTTP chunk
//! or one WebSocket binary message per vectored batch, with the framing as separate small
//! buffers around the shared tags. The response ends when the publisher leaves.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use shards::StopSignal;

use crate::engine::{
    gather_sessions, nudge, ready_or_direct, wait_for_room, CloseReason, DirectWire, Frame, Item,
    PlayerKind, QueueRef, ReplyQueue, Role, SessionStat, ShardMsg,
};
use crate::flv::live::{BodyFraming, TrackProbe};
use crate::flv::{file_header, ws};
use crate::http::{parse_head, HttpError, Limits, RequestHead, Response, Version};
use crate::media::PacketKind;

use super::player::{Offer, BATCH_CAPACITY, MAX_BATCH_FRAMES};
use super::ShardState;

/// A client must send its whole request head within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a viewer of a stream that was live when it asked may wait for the stream's first
/// data on this shard (a mirror's snapshot) before the response ends.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
const PUBLISHED_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes a viewer's framing scratch buffer is allocated with: ~300 batch heads.
const FRAMING_SCRATCH: usize = 4096;
const CORS_METHODS: &str = "GET, HEAD, OPTIONS";
const ALLOW: &str = "GET, HEAD, OPTIONS";

type ConnResult<T> = Result<T, String>;

/// Accepts HTTP-FLV connections on `httpflv_addr` until the shard stops.
pub async fn listen(st: Rc<ShardState>, stop: StopSignal, shard: usize) {
    let addr = st.cfg.httpflv_addr;
    let listener = match shards::reuseport_listener(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("shard {shard}: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    if shard == 0 {
        tracing::info!("HTTP-FLV listen On {addr}");
    }
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                glommio::spawn_local(handle_connection(st.clone(), stream)).detach();
            }
            Some(Err(e)) => {
                tracing::warn!("http-flv accept: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Reads one request head within `HEADER_TIMEOUT`. Returns the head and any bytes after it.
async fn read_head(stream: &mut TcpStream) -> Result<Option<(RequestHead, Bytes)>, Response> {
    let limits = Limits::default();
    let mut buf = BytesMut::with_capacity(2048);
    let mut chunk = vec![0u8; 4096];
    let read = async {
        loop {
            match parse_head(&buf, &limits) {
                Ok(Some((head, n))) => return Ok(Some((head, buf.split_off(n).freeze()))),
                Ok(None) => {}
                Err(e) => return Err(error_response(&e)),
            }
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let timeout = async {
        Timer::new(HEADER_TIMEOUT).await;
        Err(Response::text(408, "request header timeout\n").with_close())
    };
    future::or(read, timeout).await
}

fn error_response(e: &HttpError) -> Response {
    Response::text(e.status(), format!("{}\n", e.reason())).with_close()
}

async fn send_response(stream: &mut TcpStream, resp: &Response, with_body: bool) {
    let mut out = BytesMut::new();
    resp.encode_head(&mut out);
    if with_body {
        out.extend_from_slice(&resp.body);
    }
    let write = async {
        let _ = stream.write_all(&out).await;
        let _ = stream.flush().await;
    };
    future::or(write, async {
        Timer::new(HEADER_TIMEOUT).await;
    })
    .await;
}

/// What a request asks for, decided without I/O.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Reply(Response),
    Streams,
    Flv {
        app: String,
        room: String,
        websocket: bool,
    },
}

fn not_found() -> Response {
    Response::text(404, "stream not found\n").with_close()
}

/// Routing of a parsed request: CORS preflight, method checks, `/streams`, `/{app}/{room}.flv`
/// (app configured with `flv = true`; the room may contain `/`, as in livego).
fn route(head: &RequestHead, flv_app: impl Fn(&str) -> bool) -> Route {
    if head.method == "OPTIONS" {
        let mut r = Response::new(204)
            .header("Access-Control-Allow-Origin", "*")
            .header("Access-Control-Allow-Methods", CORS_METHODS)
            .header("Access-Control-Max-Age", "86400")
            .header("Allow", ALLOW);
        let asked = head.header("access-control-request-headers").unwrap_or("");
        r = r.header(
            "Access-Control-Allow-Headers",
            if asked.is_empty() { "*" } else { asked },
        );
        return Route::Reply(r.with_close());
    }
    if head.method != "GET" && head.method != "HEAD" {
        return Route::Reply(
            Response::text(405, "method not allowed\n")
                .header("Allow", ALLOW)
                .with_close(),
        );
    }
    if head.path == "/streams" {
        return Route::Streams;
    }
    let Some(stem) = head
        .path
        .strip_prefix('/')
        .and_then(|p| p.strip_suffix(".flv"))
    else {
        return Route::Reply(not_found());
    };
    let Some((app, room)) = stem.split_once('/') else {
        return Route::Reply(not_found());
    };
    if app.is_empty() || room.is_empty() || !flv_app(app) {
        return Route::Reply(not_found());
    }
    let websocket =
        head.has_token("connection", "upgrade") && head.has_token("upgrade", "websocket");
    Route::Flv {
        app: app.to_string(),
        room: room.to_string(),
        websocket,
    }
}

async fn handle_connection(st: Rc<ShardState>, mut stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let (head, rest) = match read_head(&mut stream).await {
        Ok(Some(h)) => h,
        Ok(None) => return,
        Err(resp) => {
            send_response(&mut stream, &resp, true).await;
            return;
        }
    };
    let is_head = head.method == "HEAD";
    let route = route(&head, |app| st.cfg.app(app).is_some_and(|a| a.flv));
    match route {
        Route::Reply(resp) => send_response(&mut stream, &resp, !is_head).await,
        Route::Streams => {
            let (all, _) = gather_sessions(st.hub.router(), st.hub.nr_shards()).await;
            let resp = Response::new(200)
                .header("Content-Type", "application/json")
                .body(streams_json(&all))
                .with_close();
            send_response(&mut stream, &resp, !is_head).await;
        }
        Route::Flv {
            app,
            room,
            websocket,
        } => {
            let key = format!("{app}/{room}");
            if !st.cfg.flv_wait_publisher && !is_published(&st, &key).await {
                send_response(&mut stream, &not_found(), !is_head).await;
                return;
            }
            let host = head.header("host").unwrap_or("");
            let scheme = if websocket { "ws" } else { "http" };
            let url = format!("{scheme}://{host}{}", head.path);
            let result = if websocket {
                match ws_handshake(&head) {
                    Ok(resp) => {
                        send_response(&mut stream, &resp, false).await;
                        let framing = BodyFraming::WebSocket;
                        viewer(st, stream, key, url, peer, framing, rest).await
                    }
                    Err(resp) => {
                        send_response(&mut stream, &resp, true).await;
                        Ok(())
                    }
                }
            } else {
                let chunked = head.version == Version::Http11;
                let sent = future::or(
                    async { stream.write_all(&flv_head(chunked)).await.is_ok() },
                    async {
                        Timer::new(HEADER_TIMEOUT).await;
                        false
                    },
                )
                .await;
                if is_head || !sent {
                    return;
                }
                let framing = if chunked {
                    BodyFraming::Chunked
                } else {
                    BodyFraming::Plain
                };
                viewer(st, stream, key, url, peer, framing, rest).await
            };
            if let Err(e) = result {
                tracing::info!(peer = ?peer, "http-flv viewer closed: {e}");
            }
        }
    }
}

async fn is_published(st: &ShardState, key: &str) -> bool {
    let owner = st.hub.owner_of(key);
    if owner == st.hub.shard() {
        return st.hub.is_published(key);
    }
    let reply = st
        .hub
        .router()
        .request_timeout(
            owner,
            ShardMsg::IsPublished {
                key: Arc::from(key),
            },
            PUBLISHED_LOOKUP_TIMEOUT,
        )
        .await;
    matches!(reply, Ok(ShardMsg::Published(true)))
}

/// The head of a streamed FLV response. Written by hand because the body has no length:
/// chunked for HTTP/1.1, delimited by the connection's end for HTTP/1.0.
fn flv_head(chunked: bool) -> Bytes {
    let framing = if chunked {
        "Transfer-Encoding: chunked\r\n"
    } else {
        ""
    };
    Bytes::from(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nAccess-Control-Allow-Origin: *\r\n\
         Cache-Control: no-cache\r\n{framing}Connection: close\r\n\r\n"
    ))
}

fn ws_handshake(head: &RequestHead) -> Result<Response, Response> {
    let key = head.header("sec-websocket-key").unwrap_or("");
    if head.method != "GET" || key.is_empty() || head.version != Version::Http11 {
        return Err(Response::text(400, "bad websocket handshake\n").with_close());
    }
    if head
        .header("sec-websocket-version")
        .is_some_and(|v| v.trim() != "13")
    {
        return Err(Response::text(426, "websocket version 13 only\n")
            .header("Sec-WebSocket-Version", "13")
            .with_close());
    }
    Ok(Response::new(101)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", ws::accept_key(key))
        .header("Access-Control-Allow-Origin", "*")
        .header("Content-Length", "0"))
}

/// livego's `/streams` JSON: publishers and players (every protocol) with their stream keys.
fn streams_json(all: &[SessionStat]) -> String {
    let list = |role: Role| {
        let v: Vec<serde_json::Value> = all
            .iter()
            .filter(|s| s.role == role)
            .map(|s| serde_json::json!({ "key": s.key, "id": format!("{:016x}", s.id) }))
            .collect();
        if v.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Array(v)
        }
    };
    // Go's field order: publishers, then players.
    format!(
        "{{\"publishers\":{},\"players\":{}}}",
        list(Role::Publisher),
        list(Role::Player)
    )
}

/// Wraps a batch of body buffers in place: the framing buffers are small, the tags shared.
/// Framing heads are cut from `scratch`, one viewer's running buffer, so a batch costs no
/// allocation of its own.
fn wrap(framing: BodyFraming, batch: &mut VecDeque<Bytes>, scratch: &mut BytesMut) {
    let len: usize = batch.iter().map(Bytes::len).sum();
    if len == 0 {
        return;
    }
    let head = framing.head(len);
    if !head.is_empty() {
        if scratch.capacity() < head.len() {
            *scratch = BytesMut::with_capacity(FRAMING_SCRATCH);
        }
        scratch.extend_from_slice(&head);
        batch.push_front(scratch.split().freeze());
    }
    let tail = framing.tail();
    if !tail.is_empty() {
        batch.push_back(Bytes::from_static(tail));
    }
}

pub(super) async fn viewer(
    st: Rc<ShardState>,
    stream: TcpStream,
    key: String,
    url: String,
    peer: Option<SocketAddr>,
    framing: BodyFraming,
    rest: Bytes,
) -> ConnResult<()> {
    // Served on the stream's owner shard while it has few of the stream's players (see
    // `player::offer_to_owner`); on the owner this returns at once.
    let kind = PlayerKind::Flv { framing, rest };
    let (stream, framing, rest) =
        match super::player::offer_to_owner(&st, stream, &key, &url, peer, kind).await? {
            Offer::Taken => return Ok(()),
            Offer::Here(stream, PlayerKind::Flv { framing, rest }) => (stream, framing, rest),
            Offer::Here(..) => {
                return Err("hand-off: a viewer came back as another kind of player".into())
            }
        };
    let wire = DirectWire::Flv(framing);
    let (rd, mut p) = super::player::join(&st, stream, &key, wire, url, peer).await?;
    let reader = glommio::spawn_local(viewer_reader(
        rd,
        framing,
        rest,
        p.queue.clone(),
        p.control.clone(),
    ));
    let result = viewer_writer(
        &st,
        &mut p.wr,
        framing,
        &p.queue,
        &p.control,
        &p.guard.counters,
    )
    .await;
    p.leave(&st, reader).await;
    result
}

/// HTTP: anything the client sends after the request is ignored; EOF means it left.
/// WebSocket: answers pings, ends on close, rejects bad frames; reads no more while the pongs
/// waiting pass [`crate::engine::MAX_REPLY_BYTES`] (a client pinging without reading).
async fn viewer_reader(
    mut rd: shards::ReadHalf,
    framing: BodyFraming,
    rest: Bytes,
    queue: QueueRef,
    control: Rc<RefCell<ReplyQueue>>,
) {
    let mut buf = vec![0u8; 4096];
    let mut pending = BytesMut::from(&rest[..]);
    'read: loop {
        if framing == BodyFraming::WebSocket {
            loop {
                match ws::decode_client_frame(&mut pending) {
                    Ok(None) => break,
                    Ok(Some(f)) => match f.opcode {
                        ws::OP_PING => {
                            control
                                .borrow_mut()
                                .push(ws::frame(ws::OP_PONG, &f.payload));
                            nudge(&queue);
                            if !wait_for_room(&control).await {
                                break 'read;
                            }
                        }
                        ws::OP_CLOSE => {
                            let code = f.payload.get(..2).unwrap_or(&[0x03, 0xe8]).to_vec();
                            control.borrow_mut().push(ws::frame(ws::OP_CLOSE, &code));
                            break 'read;
                        }
                        _ => {}
                    },
                    Err(e) => {
                        tracing::info!("ws-flv viewer: {e}");
                        control
                            .borrow_mut()
                            .push(ws::frame(ws::OP_CLOSE, &1002u16.to_be_bytes()));
                        break 'read;
                    }
                }
            }
        } else {
            pending.clear();
        }
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
    }
    queue.borrow_mut().close(CloseReason::Disconnected);
}

/// The viewer's side of the stream: header once the tracks are known, then every frame.
struct Body {
    probe: Option<TrackProbe>,
    held: Vec<Rc<Frame>>,
}

impl Body {
    fn push(&mut self, f: Rc<Frame>, batch: &mut VecDeque<Bytes>) {
        match self.probe.as_mut() {
            None => batch.push_back(f.flv().clone()),
            Some(probe) => {
                let decided = probe.push(&f.packet);
                self.held.push(f);
                if let Some((audio, video)) = decided {
                    self.release(audio, video, batch);
                }
            }
        }
    }

    /// Writes the header and what was held back while probing.
    fn release(&mut self, audio: bool, video: bool, batch: &mut VecDeque<Bytes>) {
        self.probe = None;
        batch.push_back(Bytes::copy_from_slice(&file_header(audio, video)));
        for f in self.held.drain(..) {
            batch.push_back(f.flv().clone());
        }
    }

    fn flush_probe(&mut self, batch: &mut VecDeque<Bytes>) {
        if let Some(p) = &self.probe {
            if !self.held.is_empty() {
                let (a, v) = p.seen();
                self.release(a, v, batch);
            }
        }
    }
}

async fn viewer_writer(
    st: &Rc<ShardState>,
    wr: &mut shards::WriteHalf,
    framing: BodyFraming,
    queue: &QueueRef,
    control: &Rc<RefCell<ReplyQueue>>,
    counters: &crate::engine::Counters,
) -> ConnResult<()> {
    let mut batch: VecDeque<Bytes> = VecDeque::with_capacity(BATCH_CAPACITY);
    // Reused across batches: no allocation per viewer per packet.
    let mut media: VecDeque<Bytes> = VecDeque::with_capacity(BATCH_CAPACITY);
    let mut scratch = BytesMut::new();
    let mut body = Body {
        probe: Some(TrackProbe::new()),
        held: Vec::new(),
    };
    let wait_limit = if st.cfg.flv_wait_publisher {
        st.play_wait_timeout.max(JOIN_TIMEOUT)
    } else {
        JOIN_TIMEOUT
    };
    let mut waiting_since = Some(Instant::now());
    let mut ended = false;
    let mut pacer = super::player::MergePacer::new(st);
    while !ended {
        let had_items = !queue.borrow().is_empty() || !control.borrow().is_empty();
        // Frames may bypass the queue once the header is out and everything taken so far has
        // been written (it has: a batch is sent whole before the next wait).
        let direct = waiting_since.is_none() && body.probe.is_none();
        let woke = ready_or_direct(queue, direct, || !control.borrow().is_empty());
        match waiting_since {
            Some(since) => {
                let left = wait_limit.saturating_sub(since.elapsed());
                let timed_out = future::or(
                    async {
                        woke.await;
                        false
                    },
                    async {
                        Timer::new(left).await;
                        true
                    },
                )
                .await;
                if timed_out {
                    ended = true;
                }
            }
            None => woke.await,
        }
        pacer.before_batch(had_items).await;
        let ctl: Vec<Bytes> = control.borrow_mut().take_all().collect();
        let closing = ctl
            .iter()
            .any(|b| b.first().is_some_and(|&b0| b0 & 0x0f == ws::OP_CLOSE));
        let closed = queue.borrow().closed();
        if let Some(reason) = closed {
            if !ctl.is_empty() {
                let mut out: VecDeque<Bytes> = ctl.into_iter().collect();
                let _ = write_batch(st, wr, &mut out).await;
            }
            return Err(format!("viewer closed: {reason:?}"));
        }
        for _ in 0..MAX_BATCH_FRAMES {
            let Some(item) = queue.borrow_mut().pop() else {
                break;
            };
            match item {
                Item::Live => waiting_since = None,
                Item::Unpublished => {
                    ended = true;
                    break;
                }
                // The rest of a direct write comes first in the queue and is already framed:
                // it goes out before control frames and the new batch.
                Item::Unsent(rest) => batch.push_back(rest),
                Item::Frame(f) => {
                    let p = &f.packet;
                    if p.kind != PacketKind::Meta {
                        counters.add_media(p.is_video(), p.payload.len());
                    }
                    body.push(f, &mut media);
                }
            }
        }
        if ended {
            body.flush_probe(&mut media);
        }
        wrap(framing, &mut media, &mut scratch);
        // Control frames go between whole data messages, never inside one.
        batch.extend(ctl);
        batch.extend(media.drain(..));
        if ended || closing {
            batch.extend(framing.end());
            ended = true;
        }
        if batch.is_empty() {
            continue;
        }
        let sent = write_batch(st, wr, &mut batch).await?;
        counters.add_wire(sent);
        counters.dropped_packets.set(queue.borrow().dropped_packets);
        batch.clear();
        if !ended {
            pacer.after_write().await;
        }
    }
    Ok(())
}

async fn write_batch(
    st: &ShardState,
    wr: &mut shards::WriteHalf,
    batch: &mut VecDeque<Bytes>,
) -> ConnResult<usize> {
    match wr.write_vectored_within(batch, st.write_timeout).await {
        Ok(sent) => Ok(sent),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Err("write timeout: viewer stuck".into())
        }
        Err(e) => Err(format!("write: {e}")),
    }
}

/// Installs the FLV recorder on this shard's hub when `flv_archive` is on.
pub fn install_recorder(st: &ShardState) {
    if !st.cfg.flv_archive {
        return;
    }
    let dir = st.cfg.flv_dir.clone();
    let handle = crate::flv::recorder::RecorderHandle::global();
    st.hub.add_sink_factory(Rc::new(move |info| {
        vec![Box::new(handle.sink(&dir, info)) as Box<dyn crate::engine::StreamSink>]
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Protocol;

    fn head(raw: &str) -> RequestHead {
        parse_head(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn status(r: &Route) -> u16 {
        match r {
            Route::Reply(resp) => resp.status,
            _ => 0,
        }
    }

    #[test]
    fn routes() {
        let flv = |a: &str| a == "live";
        let r = route(&head("GET /live/movie.flv?x=1 HTTP/1.1\r\n\r\n"), flv);
        assert_eq!(
            r,
            Route::Flv {
                app: "live".into(),
                room: "movie".into(),
                websocket: false
            }
        );
        let r = route(
            &head(
                "GET /live/a/b.flv HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            ),
            flv,
        );
        assert_eq!(
            r,
            Route::Flv {
                app: "live".into(),
                room: "a/b".into(),
                websocket: true
            }
        );
        assert_eq!(
            route(&head("GET /streams HTTP/1.1\r\n\r\n"), flv),
            Route::Streams
        );
        assert_eq!(
            status(&route(&head("GET /other/movie.flv HTTP/1.1\r\n\r\n"), flv)),
            404
        );
        assert_eq!(
            status(&route(&head("GET /live/movie.mp4 HTTP/1.1\r\n\r\n"), flv)),
            404
        );
        assert_eq!(
            status(&route(&head("GET /movie.flv HTTP/1.1\r\n\r\n"), flv)),
            404
        );
        assert_eq!(
            status(&route(&head("GET /live/.flv HTTP/1.1\r\n\r\n"), flv)),
            404
        );
        let r = route(&head("POST /live/movie.flv HTTP/1.1\r\n\r\n"), flv);
        assert_eq!(status(&r), 405);
        let Route::Reply(resp) = r else {
            unreachable!()
        };
        assert_eq!(resp.get_header("allow"), Some(ALLOW));
        let Route::Reply(resp) = route(
            &head(
                "OPTIONS /live/movie.flv HTTP/1.1\r\nAccess-Control-Request-Headers: range\r\n\r\n",
            ),
            flv,
        ) else {
            panic!("no preflight")
        };
        assert_eq!(resp.status, 204);
        assert_eq!(resp.get_header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            resp.get_header("access-control-allow-headers"),
            Some("range")
        );
    }

    #[test]
    fn chunked_batch_framing() {
        let mut b: VecDeque<Bytes> = [
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"0123456789abcdef"),
        ]
        .into();
        wrap(BodyFraming::Chunked, &mut b, &mut BytesMut::new());
        let all: Vec<u8> = b.iter().flat_map(|x| x.iter().copied()).collect();
        assert_eq!(&all[..], b"13\r\nabc0123456789abcdef\r\n");
        let mut empty = VecDeque::new();
        wrap(BodyFraming::Chunked, &mut empty, &mut BytesMut::new());
        assert!(empty.is_empty());
        let mut w: VecDeque<Bytes> = [Bytes::from_static(b"xy")].into();
        wrap(BodyFraming::WebSocket, &mut w, &mut BytesMut::new());
        let all: Vec<u8> = w.iter().flat_map(|x| x.iter().copied()).collect();
        assert_eq!(&all[..], &[0x82, 2, b'x', b'y']);
        // One scratch buffer serves many batches; each head stays what it was cut as.
        let mut scratch = BytesMut::new();
        let mut heads = Vec::new();
        for n in [1usize, 300, 70_000] {
            let mut c: VecDeque<Bytes> = [Bytes::from(vec![7u8; n])].into();
            wrap(BodyFraming::Chunked, &mut c, &mut scratch);
            heads.push(c[0].clone());
        }
        assert_eq!(&heads[0][..], b"1\r\n");
        assert_eq!(&heads[1][..], b"12c\r\n");
        assert_eq!(&heads[2][..], b"11170\r\n");
    }

    #[test]
    fn streams_json_is_livegos_shape() {
        assert_eq!(streams_json(&[]), r#"{"publishers":null,"players":null}"#);
        let s = SessionStat {
            id: 0x1234,
            shard: 0,
            role: Role::Publisher,
            protocol: Protocol::Rtmp,
            key: "live/movie".into(),
            url: String::new(),
            remote: None,
            stream_id: 1,
            video_total_bytes: 0,
            audio_total_bytes: 0,
            video_speed: 0,
            audio_speed: 0,
            wire_bytes: 0,
            dropped_packets: 0,
            age_ms: 0,
        };
        let v: serde_json::Value = serde_json::from_str(&streams_json(&[s])).unwrap();
        assert_eq!(v["publishers"][0]["key"], "live/movie");
        assert_eq!(v["publishers"][0]["id"], "0000000000001234");
        assert!(v["players"].is_null());
    }

    #[test]
    fn flv_heads() {
        let h10 = flv_head(false);
        let s = std::str::from_utf8(&h10).unwrap();
        assert!(!s.to_ascii_lowercase().contains("transfer-encoding"));
        assert!(!s.to_ascii_lowercase().contains("content-length"));
        assert!(s.contains("\r\nContent-Type: video/x-flv\r\n"));
        assert!(s.ends_with("Connection: close\r\n\r\n"));
        let h11 = flv_head(true);
        let s = std::str::from_utf8(&h11).unwrap();
        assert!(s.contains("\r\nTransfer-Encoding: chunked\r\n"));
        assert!(s.contains("\r\nCache-Control: no-cache\r\n"));
        assert!(s.contains("\r\nAccess-Control-Allow-Origin: *\r\n"));
    }
}
