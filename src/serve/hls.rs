//! The HLS HTTP server, on every data shard (SO_REUSEPORT): playlists and segments straight
//! from the shard's own [`HlsCache`](crate::hls::HlsCache).

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;

use super::ShardState;
use crate::engine::{Protocol, Role, SessionGuard};
use crate::hls::HlsCache;
use crate::http::{parse_head, HttpError, Limits, Response};

/// A request head must be complete this long after the connection opened or the previous
/// response was sent (also the keep-alive idle time).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to write one response (a segment is a few MB at most).
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;

/// The Flash cross-domain policy livego serves (any domain, any headers).
pub const CROSSDOMAIN_XML: &str = "<?xml version=\"1.0\" ?>\n<cross-domain-policy>\n\t<allow-access-from domain=\"*\" />\n\t<allow-http-request-headers-from domain=\"*\" headers=\"*\"/>\n</cross-domain-policy>\n";

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
const SEGMENT_TYPE: &str = "video/mp2t";

/// What a request asked for, once routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub response: Response,
    /// The stream (`app/room`) served, for the session registry.
    pub key: Option<String>,
    /// Whether the body is a segment (counted as media bytes).
    pub segment: bool,
}

fn cors(r: Response) -> Response {
    r.header("Access-Control-Allow-Origin", "*")
}

fn plain(status: u16, text: &str) -> Response {
    cors(Response::text(status, text))
}

/// Routes one request (pure: the cache and the head in, the response out).
pub fn route(
    cache: &HlsCache,
    method: &str,
    path: &str,
    range: Option<&str>,
    if_none_match: Option<&str>,
) -> Routed {
    let done = |response| Routed {
        response,
        key: None,
        segment: false,
    };
    match method {
        "GET" | "HEAD" => {}
        "OPTIONS" => {
            return done(
                Response::new(204)
                    .header("Access-Control-Allow-Origin", "*")
                    .header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
                    .header("Access-Control-Allow-Headers", "*")
                    .header("Access-Control-Max-Age", "86400"),
            )
        }
        _ => return done(plain(405, "method not allowed").header("Allow", "GET, HEAD, OPTIONS")),
    }
    if path.rsplit('/').next() == Some("crossdomain.xml") {
        return done(cors(
            Response::new(200)
                .header("Content-Type", "application/xml")
                .body(CROSSDOMAIN_XML),
        ));
    }
    let Some(rel) = path.strip_prefix('/') else {
        return done(plain(404, "not found"));
    };
    if let Some(key) = rel.strip_suffix(".m3u8") {
        return match cache.playlist(key) {
            Some((body, modified)) => Routed {
                response: cors(
                    Response::new(200)
                        .header("Content-Type", PLAYLIST_TYPE)
                        .header("Cache-Control", "no-cache")
                        .header("Last-Modified", http_date(modified))
                        .body(body),
                ),
                key: Some(key.to_string()),
                segment: false,
            },
            None => done(plain(404, "no such stream")),
        };
    }
    if let Some(stem) = rel.strip_suffix(".ts") {
        let parsed = stem
            .rsplit_once('/')
            .and_then(|(key, n)| n.parse::<u64>().ok().map(|n| (key, n)));
        let Some((key, seq)) = parsed else {
            return done(plain(404, "not found"));
        };
        let Some(seg) = cache.segment(key, seq) else {
            return done(plain(404, "no such segment"));
        };
        let common = |r: Response| {
            cors(r)
                .header("Cache-Control", "public, max-age=86400, immutable")
                .header("ETag", seg.etag.to_string())
                .header("Last-Modified", http_date(seg.modified))
                .header("Accept-Ranges", "bytes")
        };
        let routed = |response| Routed {
            response,
            key: Some(key.to_string()),
            segment: true,
        };
        if if_none_match.is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == &*seg.etag || t.trim() == "*")
        }) {
            return routed(common(Response::new(304)));
        }
        let len = seg.data.len() as u64;
        return match range.map(|r| parse_range(r, len)) {
            None | Some(RangeSpec::Ignore) => routed(common(
                Response::new(200)
                    .header("Content-Type", SEGMENT_TYPE)
                    .body(seg.data),
            )),
            Some(RangeSpec::Unsatisfiable) => done(common(
                plain(416, "range not satisfiable")
                    .header("Content-Range", format!("bytes */{len}")),
            )),
            Some(RangeSpec::Range(a, b)) => routed(common(
                Response::new(206)
                    .header("Content-Type", SEGMENT_TYPE)
                    .header("Content-Range", format!("bytes {a}-{b}/{len}"))
                    .body(seg.data.slice(a as usize..=b as usize)),
            )),
        };
    }
    done(plain(404, "not found"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// Inclusive byte range.
    Range(u64, u64),
    Unsatisfiable,
    /// Malformed, multi-range or another unit: answered with the whole body (RFC 9110 14.2).
    Ignore,
}

/// A single `bytes=` range against a body of `len` bytes.
pub fn parse_range(header: &str, len: u64) -> RangeSpec {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignore;
    };
    if spec.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Ignore;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeSpec::Ignore,
        (true, false) => match num(b) {
            None => RangeSpec::Ignore,
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if len == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Range(len.saturating_sub(n), len - 1),
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return RangeSpec::Ignore;
            };
            let end = if b.is_empty() { Some(u64::MAX) } else { num(b) };
            let Some(end) = end else {
                return RangeSpec::Ignore;
            };
            if end < start {
                RangeSpec::Ignore
            } else if start >= len {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Range(start, end.min(len - 1))
            }
        }
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian, era-based arithmetic).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[days.rem_euclid(7) as usize],
        day,
        MON[(month - 1) as usize],
        year,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Accept loop of one shard.
pub async fn serve(
    st: Rc<ShardState>,
    listener: glommio::net::TcpListener,
    stop: shards::StopSignal,
) {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let st = st.clone();
                glommio::spawn_local(async move {
                    let mut stream = stream;
                    let mut session = None;
                    if let Err(e) = connection(&st, &mut stream, &mut session).await {
                        tracing::debug!("HLS connection: {e}");
                    }
                })
                .detach();
            }
            Some(Err(e)) => {
                tracing::warn!("HLS accept: {e}");
                Timer::new(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn with_deadline<T>(
    deadline: Instant,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<Option<T>> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    future::or(async { f.await.map(Some) }, async {
        Timer::new(remaining).await;
        Ok(None)
    })
    .await
}

async fn write_all(stream: &mut TcpStream, parts: &[&[u8]]) -> io::Result<()> {
    let deadline = Instant::now() + WRITE_TIMEOUT;
    let done = with_deadline(deadline, async {
        for p in parts {
            stream.write_all(p).await?;
        }
        stream.flush().await
    })
    .await?;
    done.ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "response write timed out"))
}

fn error_response(e: &HttpError) -> Response {
    plain(e.status(), e.reason()).with_close()
}

/// Sends an error reply and closes. Unread input at close makes the kernel answer with RST,
/// which can destroy the reply before the client reads it, so the write side is shut first and
/// the rest of the input is drained for a bounded time and amount.
async fn reject(stream: &mut TcpStream, r: &Response) -> io::Result<()> {
    let mut out = BytesMut::new();
    r.encode_head(&mut out);
    write_all(stream, &[&out, &r.body]).await?;
    stream.shutdown(std::net::Shutdown::Write).await?;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut chunk = vec![0u8; 8192];
    let mut drained = 0;
    while drained < 256 * 1024 {
        match with_deadline(deadline, stream.read(&mut chunk)).await? {
            None | Some(0) => break,
            Some(n) => drained += n,
        }
    }
    Ok(())
}

async fn connection(
    st: &ShardState,
    stream: &mut TcpStream,
    session: &mut Option<SessionGuard>,
) -> io::Result<()> {
    let peer = stream.peer_addr().ok();
    let limits = Limits::default();
    let mut buf = BytesMut::with_capacity(2048);
    let mut chunk = vec![0u8; 4096];
    for served in 0..MAX_REQUESTS_PER_CONNECTION {
        let deadline = Instant::now() + HEADER_TIMEOUT;
        let (head, used) = loop {
            match parse_head(&buf, &limits) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => return reject(stream, &error_response(&e)).await,
            }
            match with_deadline(deadline, stream.read(&mut chunk)).await? {
                None | Some(0) => return Ok(()),
                Some(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let _ = buf.split_to(used);
        if head.content_length.unwrap_or(0) > 0 || head.header("transfer-encoding").is_some() {
            // No HLS request has a body; not reading it would desynchronise the connection.
            return reject(stream, &plain(400, "unexpected request body").with_close()).await;
        }
        let routed = {
            let cache = st.hls.cache();
            route(
                &cache,
                &head.method,
                &head.path,
                head.header("range"),
                head.header("if-none-match"),
            )
        };
        let mut resp = routed.response;
        if !head.keep_alive || served + 1 == MAX_REQUESTS_PER_CONNECTION {
            resp.close = true;
        }
        let mut out = BytesMut::with_capacity(512);
        resp.encode_head(&mut out);
        let body: Bytes = if head.method == "HEAD" {
            Bytes::new()
        } else {
            resp.body.clone()
        };
        write_all(stream, &[&out, &body]).await?;
        if let Some(key) = routed.key {
            let guard = session.get_or_insert_with(|| {
                st.hub.sessions().register(
                    Role::Player,
                    Protocol::Hls,
                    Arc::from(key.as_str()),
                    format!("http://{}{}", head.header("host").unwrap_or(""), head.path),
                    peer,
                )
            });
            guard.counters.add_wire(out.len() + body.len());
            if routed.segment {
                guard.counters.add_media(true, body.len());
            }
        }
        if resp.close {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::{CachedSegment, HlsMsg};

    fn cache() -> HlsCache {
        let mut c = HlsCache::new();
        c.apply(HlsMsg::Update {
            key: Arc::from("live/a/b"),
            generation: 1,
            playlist: Bytes::from_static(b"#EXTM3U\n"),
            segment: Some(CachedSegment {
                seq: 7,
                data: Bytes::from((0..=255u8).collect::<Vec<_>>()),
                etag: Arc::from("\"e-7\""),
                modified: UNIX_EPOCH,
            }),
            keep_from: 0,
        });
        c
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeSpec::Range(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeSpec::Range(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeSpec::Range(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), RangeSpec::Range(0, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), RangeSpec::Range(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), RangeSpec::Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeSpec::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeSpec::Ignore);
        assert_eq!(parse_range("bytes=x-1", 100), RangeSpec::Ignore);
        assert_eq!(parse_range("bytes=+1-2", 100), RangeSpec::Ignore);
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(http_date(t), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn routes() {
        let c = cache();
        let r = route(&c, "GET", "/live/a/b.m3u8", None, None);
        assert_eq!(r.response.status, 200);
        assert_eq!(r.response.get_header("content-type"), Some(PLAYLIST_TYPE));
        assert_eq!(
            r.response.get_header("access-control-allow-origin"),
            Some("*")
        );
        assert_eq!(r.key.as_deref(), Some("live/a/b"));
        let r = route(&c, "GET", "/live/a/b/7.ts", None, None);
        assert_eq!(r.response.status, 200);
        assert_eq!(r.response.body.len(), 256);
        assert!(r.segment);
        assert_eq!(r.response.get_header("etag"), Some("\"e-7\""));
        assert_eq!(
            r.response.get_header("last-modified"),
            Some("Thu, 01 Jan 1970 00:00:00 GMT")
        );
        let r = route(&c, "GET", "/live/a/b/7.ts", Some("bytes=10-19"), None);
        assert_eq!(r.response.status, 206);
        assert_eq!(&r.response.body[..], &(10..20u8).collect::<Vec<_>>()[..]);
        assert_eq!(
            r.response.get_header("content-range"),
            Some("bytes 10-19/256")
        );
        let r = route(&c, "GET", "/live/a/b/7.ts", Some("bytes=256-"), None);
        assert_eq!(r.response.status, 416);
        assert_eq!(r.response.get_header("content-range"), Some("bytes */256"));
        assert_eq!(
            route(&c, "GET", "/live/a/b/7.ts", None, Some("\"e-7\""))
                .response
                .status,
            304
        );
        assert_eq!(
            route(&c, "GET", "/live/a/b/8.ts", None, None)
                .response
                .status,
            404
        );
        assert_eq!(
            route(&c, "GET", "/live/x.m3u8", None, None).response.status,
            404
        );
        assert_eq!(
            route(&c, "GET", "/live/a/b/x.ts", None, None)
                .response
                .status,
            404
        );
        assert_eq!(route(&c, "GET", "/", None, None).response.status, 404);
        assert_eq!(
            route(&c, "POST", "/live/a/b.m3u8", None, None)
                .response
                .status,
            405
        );
        let o = route(&c, "OPTIONS", "/live/a/b.m3u8", None, None).response;
        assert_eq!(o.status, 204);
        assert!(o.get_header("access-control-allow-methods").is_some());
        let x = route(&c, "GET", "/crossdomain.xml", None, None).response;
        assert_eq!(x.status, 200);
        assert!(std::str::from_utf8(&x.body)
            .unwrap()
            .contains("allow-access-from domain=\"*\""));
    }
}
