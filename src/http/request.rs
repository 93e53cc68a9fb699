//! Bounded HTTP/1.1 request-head parsing on httparse.
//!
//! The caller accumulates bytes and calls [`parse_head`] after each read; the parser never keeps
//! state, so a slow client costs nothing but its buffer, and the buffer is capped by
//! [`Limits::max_head`].

use std::fmt;

/// Bounds on what a client may send before we answer with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus headers plus the blank line, in bytes (over -> 431).
    pub max_head: usize,
    /// Number of header fields (over -> 431).
    pub max_headers: usize,
    /// Request-target length in bytes (over -> 414).
    pub max_target: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 8 * 1024,
            max_headers: 64,
            max_target: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// Percent-decoded path component of the request-target (`*` for `OPTIONS *`).
    pub path: String,
    /// The undecoded query string, without the `?` (empty when absent).
    pub raw_query: String,
    /// Header fields in arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    pub version: Version,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    pub content_length: Option<usize>,
}

impl RequestHead {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header (e.g. `Connection`) carries `token`, across every
    /// occurrence of the header.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why a request cannot be served; each maps to a status code and a short reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request (400); the text says what was wrong.
    BadRequest(&'static str),
    /// The head exceeds [`Limits::max_head`] (431).
    HeadTooLarge,
    /// More than [`Limits::max_headers`] header fields (431).
    TooManyHeaders,
    /// The request-target exceeds [`Limits::max_target`] (414).
    UriTooLong,
    /// The body exceeds what the handler accepts (413).
    BodyTooLarge,
    /// A request feature we do not implement, such as chunked request bodies (501).
    NotImplemented(&'static str),
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::UriTooLong => 414,
            HttpError::BodyTooLarge => 413,
            HttpError::NotImplemented(_) => 501,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            HttpError::BadRequest(why) => why,
            HttpError::HeadTooLarge => "request header too large",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::UriTooLong => "request-target too long",
            HttpError::BodyTooLarge => "request body too large",
            HttpError::NotImplemented(why) => why,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for HttpError {}

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)`: the head is incomplete and within limits, read more. `Ok(Some((head, n)))`: the
/// head occupies `buf[..n]`; anything after it is body or the next request.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(RequestHead, usize)>, HttpError> {
    check_target_length(buf, limits)?;

    let window = &buf[..buf.len().min(limits.max_head)];
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut slots);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_head {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => {
            return Err(HttpError::BadRequest("unsupported HTTP version"))
        }
        Err(_) => return Err(HttpError::BadRequest("malformed request")),
    };

    let method = req
        .method
        .ok_or(HttpError::BadRequest("malformed request"))?
        .to_string();
    let target = req.path.ok_or(HttpError::BadRequest("malformed request"))?;
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HttpError::BadRequest("unsupported HTTP version")),
    };
    let (path, raw_query) = split_target(target)?;

    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();

    let mut head = RequestHead {
        method,
        path,
        raw_query,
        headers,
        version,
        keep_alive: false,
        content_length: None,
    };

    // A body whose framing we cannot read would be parsed as the next request (smuggling).
    if head.header("transfer-encoding").is_some() {
        return Err(HttpError::NotImplemented(
            "transfer-encoding in requests is not supported",
        ));
    }
    let mut length: Option<usize> = None;
    for (name, value) in &head.headers {
        if !name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::BadRequest("invalid content-length"));
        }
        let n: usize = value
            .parse()
            .map_err(|_| HttpError::BadRequest("invalid content-length"))?;
        if length.is_some_and(|prev| prev != n) {
            return Err(HttpError::BadRequest("conflicting content-length"));
        }
        length = Some(n);
    }
    head.content_length = length;
    head.keep_alive = match version {
        Version::Http11 => !head.has_token("connection", "close"),
        Version::Http10 => head.has_token("connection", "keep-alive"),
    };
    Ok(Some((head, consumed)))
}

/// Rejects an over-long request-target as soon as it is visible, even before the whole head
/// arrived, so a client cannot make us buffer up to `max_head` with a single URL.
fn check_target_length(buf: &[u8], limits: &Limits) -> Result<(), HttpError> {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end];
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return Ok(());
    };
    let rest = &line[sp + 1..];
    let target_len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    if target_len > limits.max_target {
        return Err(HttpError::UriTooLong);
    }
    Ok(())
}

/// Splits a request-target into the decoded path and the raw query.
fn split_target(target: &str) -> Result<(String, String), HttpError> {
    if target == "*" {
        return Ok(("*".to_string(), String::new()));
    }
    let origin = if target.starts_with('/') {
        target
    } else if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        // absolute-form (proxies): drop scheme and authority.
        match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            Some(i) => return Ok(("/".to_string(), query_of(&rest[i..]))),
            None => "/",
        }
    } else {
        return Err(HttpError::BadRequest("invalid request-target"));
    };
    let without_fragment = origin.split('#').next().unwrap_or(origin);
    let (raw_path, query) = match without_fragment.split_once('?') {
        Some((p, q)) => (p, q.to_string()),
        None => (without_fragment, String::new()),
    };
    let path = percent_decode_path(raw_path)?;
    Ok((path, query))
}

fn query_of(s: &str) -> String {
    let s = s.split('#').next().unwrap_or(s);
    s.strip_prefix('?').unwrap_or(s).to_string()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict decoding for paths: a bad escape, a decoded NUL or invalid UTF-8 is a bad request,
/// because paths end up naming streams and files.
fn percent_decode_path(s: &str) -> Result<String, HttpError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_val);
            let lo = bytes.get(i + 2).copied().and_then(hex_val);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(HttpError::BadRequest("invalid percent-encoding in path")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return Err(HttpError::BadRequest("invalid percent-encoding in path"));
    }
    String::from_utf8(out).map_err(|_| HttpError::BadRequest("path is not UTF-8"))
}

/// Tolerant `application/x-www-form-urlencoded` decoding (query strings and form bodies): `+` is
/// a space, `%XX` a byte, and a malformed escape is kept literally, as browsers send garbage.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_val);
                let lo = bytes.get(i + 2).copied().and_then(hex_val);
                if let (Some(h), Some(l)) = (hi, lo) {
                    out.push(h << 4 | l);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes `a=1&b=x+y&c` into pairs in order (`c` gets an empty value; empty segments skipped).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|seg| !seg.is_empty())
        .map(|seg| match seg.split_once('=') {
            Some((k, v)) => (form_decode(k), form_decode(v)),
            None => (form_decode(seg), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
        parse_head(buf, &Limits::default())
    }

    fn complete(buf: &[u8]) -> (RequestHead, usize) {
        match parse(buf) {
            Ok(Some(r)) => r,
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    #[test]
    fn simple_get() {
        let raw = b"GET /control/get?room=movie HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\nrest";
        let (head, n) = complete(raw);
        assert_eq!(n, raw.len() - 4);
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/control/get");
        assert_eq!(head.raw_query, "room=movie");
        assert_eq!(head.version, Version::Http11);
        assert!(head.keep_alive);
        assert_eq!(head.content_length, None);
        assert_eq!(head.header("HOST"), Some("x"));
        assert_eq!(head.header("user-agent"), Some("t"));
        assert_eq!(head.header("missing"), None);
    }

    #[test]
    fn partial_heads_need_more() {
        let raw = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(parse(&raw[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(matches!(parse(raw), Ok(Some(_))));
    }

    #[test]
    fn keep_alive_rules() {
        let (h, _) = complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!h.keep_alive);
        let (h, _) = complete(b"GET / HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n");
        assert!(!h.keep_alive);
        let (h, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.version, Version::Http10);
        assert!(!h.keep_alive);
        let (h, _) = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(h.keep_alive);
    }

    #[test]
    fn path_decoding() {
        let (h, _) = complete(b"GET /live/a%20b%2Fc+d?x=%20 HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "/live/a b/c+d");
        assert_eq!(h.raw_query, "x=%20");
        let (h, _) = complete(b"GET http://example.com:8090/control/get?room=1 HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "/control/get");
        assert_eq!(h.raw_query, "room=1");
        let (h, _) = complete(b"GET http://example.com?room=1 HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "/");
        assert_eq!(h.raw_query, "room=1");
        let (h, _) = complete(b"OPTIONS * HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "*");
        for bad in [
            &b"GET /a%zz HTTP/1.1\r\n\r\n"[..],
            b"GET /a%4 HTTP/1.1\r\n\r\n",
            b"GET /a%00 HTTP/1.1\r\n\r\n",
            b"GET /a%ff HTTP/1.1\r\n\r\n",
            b"GET relative HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse(bad).map_err(|e| e.status()), Err(400), "{bad:?}");
        }
    }

    #[test]
    fn content_length() {
        let (h, _) = complete(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.content_length, Some(12));
        let (h, _) = complete(b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n");
        assert_eq!(h.content_length, Some(3));
        let invalid = HttpError::BadRequest("invalid content-length");
        for (bad, expected) in [
            (
                &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"[..],
                HttpError::BadRequest("conflicting content-length"),
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                invalid.clone(),
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
                invalid.clone(),
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                invalid.clone(),
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
                invalid.clone(),
            ),
        ] {
            assert_eq!(
                parse(bad),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let te = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(te.map_err(|e| e.status()), Err(501));
    }

    #[test]
    fn limits() {
        // 10 KiB of headers -> 431 even before the head ends.
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat(b'a').take(10 * 1024));
        assert_eq!(parse(&big), Err(HttpError::HeadTooLarge));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&big), Err(HttpError::HeadTooLarge));

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..65 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Err(HttpError::TooManyHeaders));

        let mut ok = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..64 {
            ok.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        ok.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&ok), Ok(Some(_))));

        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(4096));
        assert_eq!(parse(long.as_bytes()), Err(HttpError::UriTooLong));
        // Detected while the target is still arriving.
        let long = format!("GET /{}", "a".repeat(4096));
        assert_eq!(parse(long.as_bytes()), Err(HttpError::UriTooLong));
        let fits = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(4095));
        assert!(matches!(parse(fits.as_bytes()), Ok(Some(_))));

        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
        assert_eq!(HttpError::UriTooLong.status(), 414);
        assert_eq!(HttpError::BodyTooLarge.status(), 413);
    }

    #[test]
    fn malformed() {
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                parse(bad).map_err(|e| e.status()),
                Err(400),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query("room=a+b&x=%41%zz&flag&&=v&k=%e4%bd%a0"),
            vec![
                ("room".to_string(), "a b".to_string()),
                ("x".to_string(), "A%zz".to_string()),
                ("flag".to_string(), String::new()),
                (String::new(), "v".to_string()),
                ("k".to_string(), "你".to_string()),
            ]
        );
        assert_eq!(parse_query(""), vec![]);
        assert_eq!(parse_query("a=%"), vec![("a".to_string(), "%".to_string())]);
        assert_eq!(
            parse_query("a=%ff"),
            vec![("a".to_string(), "\u{fffd}".to_string())]
        );
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9-]{0,15}"
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&buf);
            let small = Limits { max_head: 64, max_headers: 2, max_target: 16 };
            let _ = parse_head(&buf, &small);
        }

        #[test]
        fn random_text_heads_never_panic(s in "[ -~\r\n]{0,600}") {
            let _ = parse(s.as_bytes());
            let _ = parse_query(&s);
        }

        #[test]
        fn valid_heads_round_trip(
            method in "(GET|POST|PUT|DELETE|OPTIONS|HEAD)",
            segs in proptest::collection::vec("[A-Za-z0-9._~-]{1,12}", 0..5),
            query in proptest::option::of("[A-Za-z0-9=&%+._-]{0,40}"),
            headers in proptest::collection::vec((token(), "[ -~]{0,30}"), 0..10),
            v11 in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let path = format!("/{}", segs.join("/"));
            let target = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let headers: Vec<(String, String)> = headers
                .into_iter()
                .filter(|(k, _)| {
                    !k.eq_ignore_ascii_case("content-length")
                        && !k.eq_ignore_ascii_case("transfer-encoding")
                        && !k.eq_ignore_ascii_case("connection")
                })
                .map(|(k, v)| (k, v.trim().to_string()))
                .collect();
            let mut raw = format!("{method} {target} HTTP/1.{}\r\n", u8::from(v11));
            for (k, v) in &headers {
                raw.push_str(&format!("{k}: {v}\r\n"));
            }
            raw.push_str("\r\n");
            let head_len = raw.len();
            let mut buf = raw.into_bytes();
            buf.extend_from_slice(&tail);
            let (head, n) = complete(&buf);
            prop_assert_eq!(n, head_len);
            prop_assert_eq!(head.method, method);
            prop_assert_eq!(head.path, path);
            prop_assert_eq!(head.raw_query, query.unwrap_or_default());
            prop_assert_eq!(head.headers, headers);
            prop_assert_eq!(head.version, if v11 { Version::Http11 } else { Version::Http10 });
            prop_assert_eq!(head.keep_alive, v11);
            for cut in [0, head_len / 2, head_len - 1] {
                prop_assert_eq!(parse(&buf[..cut]), Ok(None));
            }
        }
    }
}
