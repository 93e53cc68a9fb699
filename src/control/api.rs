//! The control API's routes, as pure functions of a request and the key store.
//!
//! livego accepts any method on every route and reads parameters from the query string or a
//! form body; replies use the `{"status":N,"data":...}` envelope with the same `data` strings.
//! Deliberate change: a store failure is 503 (livego said 400), since it is our fault, not the
//! client's, and the client should retry.

use serde_json::Value;

use super::keys::KeyStore;
use crate::http::{envelope, parse_query, RequestHead, Response};

/// What a route needs from an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: String,
    /// Percent-decoded path.
    pub path: String,
    /// Form body parameters first, then query parameters (Go's `r.Form` order, so a body value
    /// wins when both are given).
    pub params: Vec<(String, String)>,
    /// Query-string parameters alone (the JWT `jwt` parameter is read from here only).
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl ApiRequest {
    /// Builds the request from a parsed head and its body. Like Go's `ParseForm`, the body is
    /// read as parameters only for POST, PUT and PATCH with a form content type.
    pub fn from_head(head: &RequestHead, body: &[u8]) -> ApiRequest {
        let query = parse_query(&head.raw_query);
        let is_form = head
            .header("content-type")
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|ct| {
                ct.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        let body_method = matches!(head.method.as_str(), "POST" | "PUT" | "PATCH");
        let mut params = if is_form && body_method {
            parse_query(&String::from_utf8_lossy(body))
        } else {
            Vec::new()
        };
        params.extend(query.iter().cloned());
        ApiRequest {
            method: head.method.clone(),
            path: head.path.clone(),
            params,
            query,
            headers: head.headers.clone(),
        }
    }

    /// The first value of parameter `name` (Go's `FormValue`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn room(&self) -> Option<&str> {
        self.param("room").filter(|r| !r.is_empty())
    }
}

fn reply(status: u16, data: &str) -> Response {
    envelope(status, Value::String(data.to_string()))
}

/// Whether `path` is one of the routes [`route`] answers.
pub fn is_key_route(path: &str) -> bool {
    matches!(path, "/control/get" | "/control/reset" | "/control/delete")
}

/// A key-route request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOp {
    Get(String),
    Reset(String),
    Delete(String),
}

/// The outcome of a [`KeyOp`] on a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    Key(String),
    Deleted(bool),
}

/// Validates a key-route request: the operation, or the reply (usage error, unknown path).
pub fn parse_key_route(req: &ApiRequest) -> Result<KeyOp, Response> {
    let (op, usage): (fn(String) -> KeyOp, _) = match req.path.as_str() {
        "/control/get" => (KeyOp::Get, "url: /control/get?room=<ROOM_NAME>"),
        "/control/reset" => (KeyOp::Reset, "url: /control/reset?room=<ROOM_NAME>"),
        "/control/delete" => (KeyOp::Delete, "url: /control/delete?room=<ROOM_NAME>"),
        _ => return Err(reply(404, "not found")),
    };
    match req.room() {
        None => Err(reply(400, usage)),
        Some(room) => Ok(op(room.to_string())),
    }
}

/// livego's reply to a key operation's outcome; a store failure is 503 with its text.
pub fn key_reply(result: Result<KeyOutcome, super::keys::StoreError>) -> Response {
    match result {
        Ok(KeyOutcome::Key(key)) => reply(200, &key),
        Ok(KeyOutcome::Deleted(true)) => reply(200, "Ok"),
        Ok(KeyOutcome::Deleted(false)) => reply(404, "room not found"),
        Err(e) => reply(503, &e.to_string()),
    }
}

/// Applies `op` to a synchronous store.
pub fn apply(op: &KeyOp, store: &mut dyn KeyStore) -> Result<KeyOutcome, super::keys::StoreError> {
    match op {
        KeyOp::Get(room) => store.get_or_create(room).map(KeyOutcome::Key),
        KeyOp::Reset(room) => store.reset(room).map(KeyOutcome::Key),
        KeyOp::Delete(room) => store.delete(room).map(KeyOutcome::Deleted),
    }
}

/// Answers the key routes; anything else is 404 `not found`.
///
/// Every method is accepted, as in livego. Authorization (JWT) is not decided here: the server
/// must run it before calling this, for every method including OPTIONS, so that a preflight can
/// never return a key (livego's OPTIONS bypass).
pub fn route(req: &ApiRequest, store: &mut dyn KeyStore) -> Response {
    match parse_key_route(req) {
        Ok(op) => key_reply(apply(&op, store)),
        Err(resp) => resp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::keys::{looks_like_key, MemoryKeyStore, StoreError};
    use crate::http::{parse_head, Limits};

    fn get(path: &str, params: &[(&str, &str)]) -> ApiRequest {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ApiRequest {
            method: "GET".into(),
            path: path.into(),
            params: params.clone(),
            query: params,
            headers: Vec::new(),
        }
    }

    fn body(r: &Response) -> String {
        String::from_utf8(r.body.to_vec()).expect("utf8")
    }

    /// A store whose backend is down.
    struct DownStore;
    impl KeyStore for DownStore {
        fn get_or_create(&mut self, _: &str) -> Result<String, StoreError> {
            Err(StoreError::Unavailable("connection refused".into()))
        }
        fn reset(&mut self, _: &str) -> Result<String, StoreError> {
            Err(StoreError::Unavailable("connection refused".into()))
        }
        fn delete(&mut self, _: &str) -> Result<bool, StoreError> {
            Err(StoreError::Unavailable("connection refused".into()))
        }
        fn room_for_key(&mut self, _: &str) -> Result<Option<String>, StoreError> {
            Err(StoreError::Unavailable("connection refused".into()))
        }
    }

    #[test]
    fn get_creates_then_repeats() {
        let mut store = MemoryKeyStore::new();
        let r = route(&get("/control/get", &[("room", "movie")]), &mut store);
        assert_eq!(r.status, 200);
        assert_eq!(r.get_header("Content-Type"), Some("application/json"));
        let key = store.get_or_create("movie").expect("key");
        assert!(looks_like_key(&key));
        assert_eq!(body(&r), format!(r#"{{"status":200,"data":"{key}"}}"#));
        let again = route(&get("/control/get", &[("room", "movie")]), &mut store);
        assert_eq!(again, r);
    }

    #[test]
    fn usage_errors_are_byte_exact() {
        let mut store = MemoryKeyStore::new();
        for (path, usage) in [
            ("/control/get", "get"),
            ("/control/reset", "reset"),
            ("/control/delete", "delete"),
        ] {
            for params in [&[][..], &[("room", "")], &[("other", "x")]] {
                let r = route(&get(path, params), &mut store);
                assert_eq!(r.status, 400);
                assert_eq!(
                    body(&r),
                    format!(
                        r#"{{"status":400,"data":"url: /control/{usage}?room=\u003cROOM_NAME\u003e"}}"#
                    )
                );
            }
        }
        assert_eq!(store.room_count(), 0);
    }

    #[test]
    fn reset_issues_new_key_and_revokes() {
        let mut store = MemoryKeyStore::new();
        let old = store.get_or_create("movie").expect("key");
        let r = route(&get("/control/reset", &[("room", "movie")]), &mut store);
        assert_eq!(r.status, 200);
        let new = store.get_or_create("movie").expect("key");
        assert_ne!(new, old);
        assert_eq!(body(&r), format!(r#"{{"status":200,"data":"{new}"}}"#));
        assert_eq!(store.room_for_key(&old), Ok(None));
    }

    #[test]
    fn delete_found_and_not_found() {
        let mut store = MemoryKeyStore::new();
        let key = store.get_or_create("movie").expect("key");
        let r = route(&get("/control/delete", &[("room", "movie")]), &mut store);
        assert_eq!(
            (r.status, body(&r)),
            (200, r#"{"status":200,"data":"Ok"}"#.into())
        );
        assert_eq!(store.room_for_key(&key), Ok(None));
        let r = route(&get("/control/delete", &[("room", "movie")]), &mut store);
        assert_eq!(
            (r.status, body(&r)),
            (404, r#"{"status":404,"data":"room not found"}"#.into())
        );
    }

    #[test]
    fn store_errors_are_503_with_text() {
        for path in ["/control/get", "/control/reset", "/control/delete"] {
            let r = route(&get(path, &[("room", "movie")]), &mut DownStore);
            assert_eq!(r.status, 503);
            assert_eq!(
                body(&r),
                r#"{"status":503,"data":"key store unavailable: connection refused"}"#
            );
        }
    }

    #[test]
    fn unknown_paths_are_404() {
        let mut store = MemoryKeyStore::new();
        for path in [
            "/",
            "/control/get/",
            "/control",
            "/stat/other",
            "/CONTROL/GET",
        ] {
            let r = route(&get(path, &[("room", "x")]), &mut store);
            assert_eq!(r.status, 404, "{path}");
            assert_eq!(body(&r), r#"{"status":404,"data":"not found"}"#);
        }
        assert_eq!(store.room_count(), 0);
    }

    #[test]
    fn any_method_is_accepted() {
        let mut store = MemoryKeyStore::new();
        for m in ["POST", "PUT", "DELETE", "PATCH"] {
            let mut req = get("/control/get", &[("room", "movie")]);
            req.method = m.into();
            assert_eq!(route(&req, &mut store).status, 200, "{m}");
        }
        assert_eq!(store.room_count(), 1);
    }

    fn from_raw(raw: &[u8]) -> ApiRequest {
        let (head, n) = match parse_head(raw, &Limits::default()) {
            Ok(Some(h)) => h,
            other => panic!("{other:?}"),
        };
        ApiRequest::from_head(&head, &raw[n..])
    }

    #[test]
    fn params_merge_body_first_like_go() {
        let req = from_raw(
            b"POST /control/get?room=q&x=1 HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\nContent-Length: 11\r\n\r\nroom=b+body",
        );
        assert_eq!(req.param("room"), Some("b body"));
        assert_eq!(req.param("x"), Some("1"));
        assert_eq!(
            req.query,
            vec![("room".into(), "q".into()), ("x".into(), "1".into())]
        );
        // A body on GET, or without the form type, is not read as parameters.
        let req = from_raw(
            b"GET /control/get?room=q HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 6\r\n\r\nroom=b",
        );
        assert_eq!(req.param("room"), Some("q"));
        let req = from_raw(
            b"POST /control/get HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nroom=b",
        );
        assert_eq!(req.param("room"), None);
        assert_eq!(req.header("content-type"), Some("text/plain"));
    }
}
