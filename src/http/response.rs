//! HTTP/1.1 responses: a small builder and the head serialiser, plus livego's JSON envelope.

use bytes::{BufMut, Bytes, BytesMut};

/// A complete response. The body is held in `Bytes` so cached bodies are shared, not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Extra header fields, in order. `Content-Length` and `Connection` are added by
    /// [`Response::encode_head`] unless already present.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The connection closes after this response.
    pub close: bool,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            close: false,
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Marks the connection to be closed after this response.
    pub fn with_close(mut self) -> Self {
        self.close = true;
        self
    }

    /// A `text/plain` response.
    pub fn text(status: u16, s: impl Into<String>) -> Self {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(s.into())
    }

    /// An `application/json` response with `value` serialised compactly.
    pub fn json_value(status: u16, value: &serde_json::Value) -> Self {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(value.to_string())
    }

    /// The first header named `name` (ASCII case-insensitive).
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Writes the status line and header block, ending with the blank line. The body is not
    /// written, so callers can send it without copying (and skip it for HEAD).
    ///
    /// `Content-Length` is the body length unless the caller set `Content-Length` or
    /// `Transfer-Encoding` itself (streamed bodies).
    pub fn encode_head(&self, out: &mut BytesMut) {
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(self.status.to_string().as_bytes());
        out.put_u8(b' ');
        out.put_slice(reason_phrase(self.status).as_bytes());
        out.put_slice(b"\r\n");
        for (name, value) in &self.headers {
            put_field(out, name, value);
        }
        let framed = self.get_header("content-length").is_some()
            || self.get_header("transfer-encoding").is_some();
        if !framed {
            put_field(out, "Content-Length", &self.body.len().to_string());
        }
        if self.get_header("connection").is_none() {
            put_field(
                out,
                "Connection",
                if self.close { "close" } else { "keep-alive" },
            );
        }
        out.put_slice(b"\r\n");
    }
}

/// Writes one header field. CR and LF are replaced so a value that came from configuration or
/// a client can never split the header block.
fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    for b in name.bytes().chain(*b": ").chain(value.bytes()) {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

/// The standard reason phrase of `status` (empty for unknown codes, which HTTP allows).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Applies Go's `json.Marshal` HTML-safe escaping to compact JSON text: `<`, `>`, `&`, U+2028
/// and U+2029 become `\uXXXX`. Those characters only occur inside JSON strings, so replacing
/// them in the serialised output is exact.
pub fn go_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn envelope_body(status: u16, data_json: &str) -> Response {
    // Built by hand to pin the key order (status, data).
    let body = format!("{{\"status\":{status},\"data\":{}}}", go_escape(data_json));
    Response::new(status)
        .header("Content-Type", "application/json")
        .body(body)
}

/// livego's reply: `{"status":N,"data":...}` with HTTP status N and `application/json`.
/// Objects inside a `Value` come out with sorted keys; use [`envelope_of`] with a struct when
/// Go's field order matters.
pub fn envelope(status: u16, data: serde_json::Value) -> Response {
    envelope_body(status, &data.to_string())
}

/// [`envelope`] for any serialisable `data`, keeping struct field order as Go does.
pub fn envelope_of<T: serde::Serialize + ?Sized>(
    status: u16,
    data: &T,
) -> Result<Response, serde_json::Error> {
    Ok(envelope_body(status, &serde_json::to_string(data)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn head(r: &Response) -> String {
        let mut out = BytesMut::new();
        r.encode_head(&mut out);
        String::from_utf8(out.to_vec()).expect("utf8")
    }

    #[test]
    fn head_encoding() {
        let r = Response::text(200, "hello");
        assert_eq!(
            head(&r),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 5\r\nConnection: keep-alive\r\n\r\n"
        );
        let r = Response::new(431).with_close();
        assert_eq!(
            head(&r),
            "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        let r = Response::new(299);
        assert!(head(&r).starts_with("HTTP/1.1 299 \r\n"));
    }

    #[test]
    fn streamed_body_keeps_callers_framing() {
        let r = Response::new(200)
            .header("Transfer-Encoding", "chunked")
            .header("Connection", "close");
        assert_eq!(
            head(&r),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn header_values_cannot_split_the_head() {
        let r = Response::new(200).header("X-A", "a\r\nSet-Cookie: x");
        assert!(head(&r).contains("X-A: a  Set-Cookie: x\r\n"));
    }

    #[test]
    fn envelope_is_byte_exact() {
        let r = envelope(400, json!("url: /control/get?room=<ROOM_NAME>"));
        assert_eq!(r.status, 400);
        assert_eq!(r.get_header("content-type"), Some("application/json"));
        assert_eq!(
            &r.body[..],
            br#"{"status":400,"data":"url: /control/get?room=\u003cROOM_NAME\u003e"}"#
        );
        let r = envelope(200, json!("a&b\u{2028}\"q\""));
        assert_eq!(
            &r.body[..],
            br#"{"status":200,"data":"a\u0026b\u2028\"q\""}"#
        );
        let r = envelope(200, json!({"publishers": null, "players": null}));
        assert_eq!(
            &r.body[..],
            br#"{"status":200,"data":{"players":null,"publishers":null}}"#
        );
        let r = envelope(200, serde_json::Value::Null);
        assert_eq!(&r.body[..], br#"{"status":200,"data":null}"#);
    }

    #[test]
    fn envelope_of_keeps_field_order() {
        #[derive(serde::Serialize)]
        struct Stat {
            publishers: Option<Vec<u8>>,
            players: Option<Vec<u8>>,
        }
        let r = envelope_of(
            200,
            &Stat {
                publishers: None,
                players: Some(vec![1]),
            },
        )
        .expect("serialise");
        assert_eq!(
            &r.body[..],
            br#"{"status":200,"data":{"publishers":null,"players":[1]}}"#
        );
    }

    #[test]
    fn json_value_is_plain() {
        let r = Response::json_value(201, &json!({"a": "<"}));
        assert_eq!(r.status, 201);
        assert_eq!(&r.body[..], br#"{"a":"<"}"#);
    }
}
