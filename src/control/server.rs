//! The HTTP API server on the control shard.
//!
//! One task per connection, each bounded in time (head and body deadlines, write deadline), in
//! size (head limits, 64 KiB bodies) and in requests per connection, so a slow or hostile client
//! holds at most one small buffer and one task for a few seconds.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::timer::Timer;
use serde_json::Value;

use super::api::{apply, key_reply, parse_key_route, ApiRequest};
use super::jwt::JwtGate;
use super::keys::KeyStore;
use super::store::KeyService;
use crate::http::{envelope, parse_head, HttpError, Limits, Response};

/// Limits and deadlines of the API server.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    pub limits: Limits,
    /// Time allowed for a request head to arrive, counted from the end of the previous response
    /// (so it is also the keep-alive idle timeout).
    pub header_timeout: Duration,
    /// Time allowed for a request body to arrive once its head is in.
    pub body_timeout: Duration,
    /// Time allowed to write one response.
    pub write_timeout: Duration,
    /// Largest accepted request body (over -> 413).
    pub max_body: usize,
    /// Requests served on one connection before it is closed.
    pub max_requests_per_connection: usize,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        ApiServerOptions {
            limits: Limits::default(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_body: 64 * 1024,
            max_requests_per_connection: 1000,
        }
    }
}

/// A route added by the main binary (e.g. `/stat/livestat`); async because it may gather data
/// from other shards.
pub type RouteHandler = Rc<dyn Fn(ApiRequest) -> Pin<Box<dyn Future<Output = Response>>>>;

/// The API's routing table: the key routes plus whatever the binary adds, behind the JWT gate
/// and with the configured CORS headers.
pub struct ControlRouter {
    store: KeyService,
    extra: Vec<(String, RouteHandler)>,
    cors_origin: Option<String>,
    jwt: Option<JwtGate>,
}

/// Methods and headers a browser may use on the API (answered to CORS preflights).
const CORS_ALLOW_METHODS: &str = "GET, POST, OPTIONS";
const CORS_ALLOW_HEADERS: &str = "Authorization, Content-Type";

impl ControlRouter {
    pub fn new(store: Rc<RefCell<dyn KeyStore>>) -> Self {
        Self::with_service(KeyService::local(store))
    }

    pub fn with_service(store: KeyService) -> Self {
        ControlRouter {
            store,
            extra: Vec::new(),
            cors_origin: None,
            jwt: None,
        }
    }

    /// Answers requests for exactly `path` with `handler`. Added routes are looked up before
    /// the key routes.
    pub fn add_route<F, Fut>(&mut self, path: impl Into<String>, handler: F)
    where
        F: Fn(ApiRequest) -> Fut + 'static,
        Fut: Future<Output = Response> + 'static,
    {
        let handler: RouteHandler = Rc::new(move |req| Box::pin(handler(req)));
        self.extra.push((path.into(), handler));
    }

    /// Adds `Access-Control-Allow-Origin: origin` to every response (config `api_cors_origin`)
    /// and answers CORS preflights; an empty origin sends none, as livego did.
    pub fn set_cors_origin(&mut self, origin: &str) {
        self.cors_origin = (!origin.is_empty()).then(|| origin.to_string());
    }

    /// Requires a valid token on every request (config `[jwt] secret`).
    pub fn set_jwt(&mut self, gate: Option<JwtGate>) {
        self.jwt = gate;
    }

    /// A CORS preflight: OPTIONS with `Origin` and `Access-Control-Request-Method`. Browsers
    /// never attach credentials to it, so it cannot carry a token.
    fn is_preflight(req: &ApiRequest) -> bool {
        req.method == "OPTIONS"
            && req.header("origin").is_some()
            && req.header("access-control-request-method").is_some()
    }

    /// Produces the response for one request.
    ///
    /// Order: CORS preflight (only when CORS is configured: a fixed 204 without body, no
    /// handler runs, so nothing can leak), then the JWT gate for every other request, OPTIONS
    /// included, then the routes.
    pub async fn handle(&self, req: ApiRequest) -> Response {
        if let Some(origin) = &self.cors_origin {
            if Self::is_preflight(&req) {
                return Response::new(204)
                    .header("Access-Control-Allow-Origin", origin.clone())
                    .header("Access-Control-Allow-Methods", CORS_ALLOW_METHODS)
                    .header("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS)
                    .header("Access-Control-Max-Age", "600")
                    .header("Vary", "Origin");
            }
        }
        let resp = match self.authorize(&req) {
            Err(resp) => resp,
            Ok(()) => self.dispatch(req).await,
        };
        match &self.cors_origin {
            Some(origin) => resp.header("Access-Control-Allow-Origin", origin.clone()),
            None => resp,
        }
    }

    fn authorize(&self, req: &ApiRequest) -> Result<(), Response> {
        let Some(gate) = &self.jwt else {
            return Ok(());
        };
        let query_jwt = req
            .query
            .iter()
            .find(|(k, _)| k == "jwt")
            .map(|(_, v)| v.as_str());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        gate.check(req.header("authorization"), query_jwt, now)
            .map_err(|e| {
                tracing::debug!("HTTP-API {} {}: refused: {e}", req.method, req.path);
                envelope(403, Value::String(e.to_string()))
            })
    }

    async fn dispatch(&self, req: ApiRequest) -> Response {
        let handler = self
            .extra
            .iter()
            .find(|(p, _)| *p == req.path)
            .map(|(_, h)| h.clone());
        if let Some(h) = handler {
            return h(req).await;
        }
        match parse_key_route(&req) {
            Err(resp) => resp,
            Ok(op) => key_reply(
                self.store
                    .call(move |s: &mut dyn KeyStore| apply(&op, s))
                    .await,
            ),
        }
    }
}

/// Serves the key routes on `listener` until `stop` completes.
pub async fn serve_api(listener: TcpListener, store: Rc<RefCell<dyn KeyStore>>, stop: impl Future) {
    let router = Rc::new(ControlRouter::new(store));
    serve_router(listener, router, ApiServerOptions::default(), stop).await
}

/// Serves `router` on `listener` until `stop` completes. Connections already open finish on
/// their own (each is bounded by the deadlines in `opts`).
pub async fn serve_router(
    listener: TcpListener,
    router: Rc<ControlRouter>,
    opts: ApiServerOptions,
    stop: impl Future,
) {
    let opts = Rc::new(opts);
    let mut stop = pin!(stop);
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            stop.as_mut().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                glommio::spawn_local(serve_connection(stream, router.clone(), opts.clone()))
                    .detach();
            }
            Some(Err(e)) => {
                // Typically EMFILE: back off instead of spinning on the same error.
                tracing::warn!("HTTP-API accept failed: {e}");
                Timer::new(Duration::from_millis(100)).await;
            }
        }
    }
}

enum ReadOutcome {
    Data,
    Eof,
    TimedOut,
}

/// Reads more bytes into `buf` unless `deadline` passes first.
async fn read_more(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    deadline: Instant,
) -> io::Result<ReadOutcome> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Ok(ReadOutcome::TimedOut);
    }
    let mut chunk = [0u8; 4096];
    let read = future::or(async { stream.read(&mut chunk).await.map(Some) }, async {
        Timer::new(remaining).await;
        Ok(None)
    })
    .await?;
    match read {
        None => Ok(ReadOutcome::TimedOut),
        Some(0) => Ok(ReadOutcome::Eof),
        Some(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(ReadOutcome::Data)
        }
    }
}

async fn write_with_deadline(
    stream: &mut TcpStream,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let written = future::or(
        async {
            stream.write_all(bytes).await?;
            stream.flush().await.map(Some)
        },
        async {
            Timer::new(timeout).await;
            Ok(None)
        },
    )
    .await?;
    written.ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "response write timed out"))
}

fn error_response(e: &HttpError) -> Response {
    envelope(e.status(), Value::String(e.reason().to_string())).with_close()
}

async fn send(
    stream: &mut TcpStream,
    resp: &Response,
    with_body: bool,
    opts: &ApiServerOptions,
) -> io::Result<()> {
    let mut out = BytesMut::with_capacity(256 + resp.body.len());
    resp.encode_head(&mut out);
    if with_body {
        out.extend_from_slice(&resp.body);
    }
    write_with_deadline(stream, &out, opts.write_timeout).await
}

/// How long, and how many bytes, of unread request data are discarded after an error reply.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// Sends an error reply and closes gracefully. Closing a socket with unread input makes the
/// kernel send RST, which can destroy the reply before the client reads it (typical after 413
/// or 431, when the client is still sending); so the write side is shut first and the rest of
/// the input is read and dropped for a bounded time.
async fn reject(
    stream: &mut TcpStream,
    resp: &Response,
    opts: &ApiServerOptions,
) -> io::Result<()> {
    send(stream, resp, true, opts).await?;
    stream.shutdown(std::net::Shutdown::Write).await?;
    let deadline = Instant::now() + LINGER_TIME;
    let mut sink = BytesMut::with_capacity(4096);
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match read_more(stream, &mut sink, deadline).await? {
            ReadOutcome::Data => {
                drained += sink.len();
                sink.clear();
            }
            ReadOutcome::Eof | ReadOutcome::TimedOut => break,
        }
    }
    Ok(())
}

async fn serve_connection(
    mut stream: TcpStream,
    router: Rc<ControlRouter>,
    opts: Rc<ApiServerOptions>,
) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if let Err(e) = connection_loop(&mut stream, &router, &opts).await {
        tracing::debug!("HTTP-API {peer}: {e}");
    }
}

async fn connection_loop(
    stream: &mut TcpStream,
    router: &ControlRouter,
    opts: &ApiServerOptions,
) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(4096);
    for served in 0..opts.max_requests_per_connection {
        let head_deadline = Instant::now() + opts.header_timeout;
        let (head, head_len) = loop {
            match parse_head(&buf, &opts.limits) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(e) => return reject(stream, &error_response(&e), opts).await,
            }
            match read_more(stream, &mut buf, head_deadline).await? {
                ReadOutcome::Data => {}
                ReadOutcome::Eof => return Ok(()),
                ReadOutcome::TimedOut if buf.is_empty() => return Ok(()),
                ReadOutcome::TimedOut => {
                    let resp = envelope(408, Value::String("request timeout".into())).with_close();
                    return reject(stream, &resp, opts).await;
                }
            }
        };
        let _ = buf.split_to(head_len);

        let body_len = head.content_length.unwrap_or(0);
        if body_len > opts.max_body {
            return reject(stream, &error_response(&HttpError::BodyTooLarge), opts).await;
        }
        if body_len > buf.len() && head.has_token("expect", "100-continue") {
            write_with_deadline(stream, b"HTTP/1.1 100 Continue\r\n\r\n", opts.write_timeout)
                .await?;
        }
        let body_deadline = Instant::now() + opts.body_timeout;
        while buf.len() < body_len {
            match read_more(stream, &mut buf, body_deadline).await? {
                ReadOutcome::Data => {}
                ReadOutcome::Eof => return Ok(()),
                ReadOutcome::TimedOut => {
                    let resp = envelope(408, Value::String("request timeout".into())).with_close();
                    return reject(stream, &resp, opts).await;
                }
            }
        }
        let body = buf.split_to(body_len);

        let req = ApiRequest::from_head(&head, &body);
        let mut resp = router.handle(req).await;
        if !head.keep_alive || served + 1 >= opts.max_requests_per_connection {
            resp.close = true;
        }
        send(stream, &resp, head.method != "HEAD", opts).await?;
        if resp.close {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::keys::MemoryKeyStore;
    use std::io::{Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpStream as StdStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};

    /// Runs the API server on its own glommio executor thread; stopped and joined on drop.
    struct TestServer {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl TestServer {
        fn start(opts: ApiServerOptions) -> TestServer {
            let stop = Arc::new(AtomicBool::new(false));
            let (tx, rx) = mpsc::channel();
            let stop_flag = stop.clone();
            let thread = std::thread::spawn(move || {
                let ex = glommio::LocalExecutorBuilder::default()
                    .io_memory(64 << 10)
                    .ring_depth(64)
                    .make()
                    .expect("executor");
                ex.run(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                    tx.send(listener.local_addr().expect("addr"))
                        .expect("send addr");
                    let store: Rc<RefCell<dyn KeyStore>> =
                        Rc::new(RefCell::new(MemoryKeyStore::new()));
                    let mut router = ControlRouter::new(store);
                    router.add_route("/stat/echo", |req: ApiRequest| async move {
                        envelope(200, Value::String(req.method))
                    });
                    let stop = async move {
                        while !stop_flag.load(Ordering::Relaxed) {
                            Timer::new(Duration::from_millis(10)).await;
                        }
                    };
                    serve_router(listener, Rc::new(router), opts, stop).await;
                });
            });
            let addr = rx.recv().expect("server address");
            TestServer {
                addr,
                stop,
                thread: Some(thread),
            }
        }

        fn connect(&self) -> StdStream {
            let s = StdStream::connect(self.addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            s
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Reads one response (head + Content-Length body) from `s`, leaving any further bytes.
    fn read_response(s: &mut StdStream) -> (u16, Vec<(String, String)>, String) {
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut byte).expect("read head");
            assert_eq!(
                n,
                1,
                "connection closed mid-head: {:?}",
                String::from_utf8_lossy(&raw)
            );
            raw.push(byte[0]);
        }
        let text = String::from_utf8(raw).expect("utf8 head");
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .expect("content-length");
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).expect("body");
        (status, headers, String::from_utf8(body).expect("utf8 body"))
    }

    fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn request(server: &TestServer, raw: &[u8]) -> (u16, Vec<(String, String)>, String) {
        let mut s = server.connect();
        s.write_all(raw).expect("write");
        read_response(&mut s)
    }

    fn assert_closed(s: &mut StdStream) {
        let mut rest = Vec::new();
        let n = s.read_to_end(&mut rest).expect("read to end");
        assert_eq!(
            n,
            0,
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    fn key_of(body: &str) -> String {
        let v: Value = serde_json::from_str(body).expect("json");
        v["data"].as_str().expect("data string").to_string()
    }

    #[test]
    fn api_over_tcp() {
        let server = TestServer::start(ApiServerOptions::default());

        // get creates a key; a second get returns it again
        let (status, headers, body) = request(
            &server,
            b"GET /control/get?room=movie HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let key = key_of(&body);
        assert_eq!(key.len(), 48);
        assert_eq!(body, format!(r#"{{"status":200,"data":"{key}"}}"#));
        let (_, _, again) = request(&server, b"GET /control/get?room=movie HTTP/1.1\r\n\r\n");
        assert_eq!(key_of(&again), key);

        // reset issues a new key
        let (status, _, body) = request(&server, b"GET /control/reset?room=movie HTTP/1.1\r\n\r\n");
        assert_eq!(status, 200);
        let new_key = key_of(&body);
        assert_ne!(new_key, key);

        // form body parameters work (POST, urlencoded)
        let (status, _, body) = request(
            &server,
            b"POST /control/get HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\nroom=movie",
        );
        assert_eq!(status, 200);
        assert_eq!(key_of(&body), new_key);

        // delete: found, then not found
        let (status, _, body) =
            request(&server, b"GET /control/delete?room=movie HTTP/1.1\r\n\r\n");
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":200,"data":"Ok"}"#)
        );
        let (status, _, body) =
            request(&server, b"GET /control/delete?room=movie HTTP/1.1\r\n\r\n");
        assert_eq!(
            (status, body.as_str()),
            (404, r#"{"status":404,"data":"room not found"}"#)
        );

        // usage errors
        let (status, _, body) = request(&server, b"GET /control/get HTTP/1.1\r\n\r\n");
        assert_eq!(status, 400);
        assert_eq!(
            body,
            r#"{"status":400,"data":"url: /control/get?room=\u003cROOM_NAME\u003e"}"#
        );
        let (status, _, body) = request(&server, b"GET /control/reset?room= HTTP/1.1\r\n\r\n");
        assert_eq!(status, 400);
        assert_eq!(
            body,
            r#"{"status":400,"data":"url: /control/reset?room=\u003cROOM_NAME\u003e"}"#
        );

        // unknown path and an added route
        let (status, _, body) = request(&server, b"GET /nope HTTP/1.1\r\n\r\n");
        assert_eq!(
            (status, body.as_str()),
            (404, r#"{"status":404,"data":"not found"}"#)
        );
        let (status, _, body) = request(&server, b"PUT /stat/echo HTTP/1.1\r\n\r\n");
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":200,"data":"PUT"}"#)
        );
    }

    #[test]
    fn bad_requests_get_status_and_close() {
        let server = TestServer::start(ApiServerOptions::default());

        let mut s = server.connect();
        s.write_all(b"GET /control/get HTTP/1.1\r\nno colon here\r\n\r\n")
            .expect("write");
        let (status, headers, body) = read_response(&mut s);
        assert_eq!(status, 400);
        assert_eq!(body, r#"{"status":400,"data":"malformed request"}"#);
        assert_eq!(header(&headers, "connection"), Some("close"));
        assert_closed(&mut s);

        // A 10 KiB header is refused with 431 before the head even ends.
        let mut s = server.connect();
        let mut big = b"GET /control/get?room=a HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat(b'a').take(10 * 1024));
        big.extend_from_slice(b"\r\n\r\n");
        // The server may close while we are still writing; only the reply matters.
        let _ = s.write_all(&big);
        let (status, _, body) = read_response(&mut s);
        assert_eq!(status, 431);
        assert_eq!(body, r#"{"status":431,"data":"request header too large"}"#);

        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(5000));
        let (status, _, _) = request(&server, long.as_bytes());
        assert_eq!(status, 414);

        // An oversized body is refused; the reply survives the unread upload (lingering close).
        let mut s = server.connect();
        let mut upload = b"POST /control/get HTTP/1.1\r\nContent-Length: 70000\r\n\r\n".to_vec();
        upload.extend(std::iter::repeat(b'r').take(70000));
        let _ = s.write_all(&upload);
        let (status, _, body) = read_response(&mut s);
        assert_eq!(status, 413);
        let _ = s.shutdown(Shutdown::Write);
        assert_closed(&mut s);
        assert_eq!(body, r#"{"status":413,"data":"request body too large"}"#);
    }

    #[test]
    fn keep_alive_and_pipelining() {
        let server = TestServer::start(ApiServerOptions::default());
        let mut s = server.connect();
        s.write_all(b"GET /control/get?room=a HTTP/1.1\r\n\r\n")
            .expect("write");
        let (status, headers, body) = read_response(&mut s);
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "connection"), Some("keep-alive"));
        let key = key_of(&body);
        s.write_all(b"GET /control/get?room=a HTTP/1.1\r\n\r\n")
            .expect("write");
        let (status, _, body) = read_response(&mut s);
        assert_eq!(status, 200);
        assert_eq!(key_of(&body), key);

        // Two pipelined requests in one write, the last asking to close.
        s.write_all(
            b"GET /control/get?room=a HTTP/1.1\r\n\r\nGET /control/delete?room=a HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
        let (status, _, _) = read_response(&mut s);
        assert_eq!(status, 200);
        let (status, headers, body) = read_response(&mut s);
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":200,"data":"Ok"}"#)
        );
        assert_eq!(header(&headers, "connection"), Some("close"));
        assert_closed(&mut s);

        // HTTP/1.0 without keep-alive closes after one response; HEAD sends no body.
        let mut s = server.connect();
        s.write_all(b"HEAD /control/get?room=b HTTP/1.0\r\n\r\n")
            .expect("write");
        let mut all = Vec::new();
        s.read_to_end(&mut all).expect("read");
        let text = String::from_utf8(all).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
    }

    #[test]
    fn limits_requests_per_connection_and_idle_time() {
        let server = TestServer::start(ApiServerOptions {
            max_requests_per_connection: 2,
            header_timeout: Duration::from_millis(300),
            ..ApiServerOptions::default()
        });
        let mut s = server.connect();
        for i in 0..2 {
            s.write_all(b"GET /control/get?room=a HTTP/1.1\r\n\r\n")
                .expect("write");
            let (status, headers, _) = read_response(&mut s);
            assert_eq!(status, 200);
            let expected = if i == 1 { "close" } else { "keep-alive" };
            assert_eq!(header(&headers, "connection"), Some(expected));
        }
        assert_closed(&mut s);

        // An idle keep-alive connection is closed silently after the header timeout.
        let mut s = server.connect();
        let t0 = Instant::now();
        assert_closed(&mut s);
        assert!(t0.elapsed() >= Duration::from_millis(250));

        // A head that starts but never finishes gets 408.
        let mut s = server.connect();
        s.write_all(b"GET /control/get?room=a HTTP/1.1\r\n")
            .expect("write");
        let (status, _, body) = read_response(&mut s);
        assert_eq!(status, 408);
        assert_eq!(body, r#"{"status":408,"data":"request timeout"}"#);
        let _ = s.shutdown(Shutdown::Both);
    }
}
