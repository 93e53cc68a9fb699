//! JWT on the whole API (`[jwt] secret`/`algorithm`) and CORS (`api_cors_origin`), against the
//! real server: each algorithm accepted, each bad token refused with 403 and livego's reason,
//! OPTIONS never reaching a route without a token.

mod common;

use common::*;
use livego::config::JwtAlgorithm;
use livego::control::jwt::{b64url_encode, sign};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET: &str = "test-secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn start(alg: &str, cors: &str) -> Server {
    // Top-level keys precede the tables.
    let config = format!(
        "api_cors_origin = \"{cors}\"\n{DEFAULT_CONFIG}[jwt]\nsecret = \"{SECRET}\"\nalgorithm = \"{alg}\"\n"
    );
    Server::start_with_config(&config, &[])
}

fn req(s: &Server, method: &str, path: &str, headers: &str) -> HttpResponse {
    http_request(
        s.api_port,
        &format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"),
    )
    .expect("API request")
}

fn bearer(t: &str) -> String {
    format!("Authorization: Bearer {t}\r\n")
}

#[track_caller]
fn assert_refused(r: &HttpResponse, reason: &str) {
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body,
        format!(r#"{{"status":403,"data":"{reason}"}}"#),
        "wrong reason"
    );
}

#[test]
fn each_algorithm_accepts_its_tokens_and_refuses_bad_ones() {
    for (name, alg) in [
        ("HS256", JwtAlgorithm::Hs256),
        ("HS384", JwtAlgorithm::Hs384),
        ("HS512", JwtAlgorithm::Hs512),
    ] {
        let s = start(name, "");
        let good = sign(alg, SECRET.as_bytes(), &json!({"exp": now() + 60}));
        // Header and query parameter both work, on every route.
        let r = req(&s, "GET", "/control/get?room=movie", &bearer(&good));
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        let r = req(
            &s,
            "GET",
            &format!("/control/get?room=movie&jwt={good}"),
            "",
        );
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        assert_eq!(req(&s, "GET", "/stat/livestat", &bearer(&good)).status, 200);
        assert_eq!(req(&s, "GET", "/metrics", &bearer(&good)).status, 200);

        // Missing, malformed, wrong algorithm, wrongly signed, expired, not yet valid.
        assert_refused(
            &req(&s, "GET", "/control/get?room=movie", ""),
            "Required authorization token not found",
        );
        assert_refused(
            &req(
                &s,
                "GET",
                "/control/get?room=movie",
                "Authorization: Basic abc\r\n",
            ),
            "Authorization header format must be Bearer {token}",
        );
        assert_refused(
            &req(&s, "GET", "/control/get?room=movie", &bearer("abc.def")),
            "token contains an invalid number of segments",
        );
        let other = if alg == JwtAlgorithm::Hs256 {
            JwtAlgorithm::Hs512
        } else {
            JwtAlgorithm::Hs256
        };
        let t = sign(other, SECRET.as_bytes(), &json!({}));
        assert_refused(
            &req(&s, "GET", "/control/get?room=movie", &bearer(&t)),
            &format!(
                "Expected {name} signing method but token specified {}",
                other.name()
            ),
        );
        let t = sign(alg, b"not-the-secret", &json!({}));
        assert_refused(
            &req(&s, "GET", "/control/get?room=movie", &bearer(&t)),
            "signature is invalid",
        );
        let t = sign(alg, SECRET.as_bytes(), &json!({"exp": now() - 10}));
        assert_refused(
            &req(&s, "GET", "/control/get?room=movie", &bearer(&t)),
            "Token is expired",
        );
        let t = sign(alg, SECRET.as_bytes(), &json!({"nbf": now() + 600}));
        assert_refused(
            &req(&s, "GET", "/control/get?room=movie", &bearer(&t)),
            "Token is not valid yet",
        );
        // alg "none" with no signature.
        let none = format!(
            "{}.{}.",
            b64url_encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64url_encode(b"{}")
        );
        let r = req(&s, "GET", "/control/get?room=movie", &bearer(&none));
        assert_eq!(r.status, 403);

        // livego's bypass: OPTIONS without a token must not reach a route (and no key leaks).
        let r = req(&s, "OPTIONS", "/control/get?room=movie", "");
        assert_refused(&r, "Required authorization token not found");
        let r = req(
            &s,
            "OPTIONS",
            "/control/get?room=movie",
            "Origin: http://evil\r\nAccess-Control-Request-Method: GET\r\n",
        );
        assert_eq!(
            r.status, 403,
            "preflight without CORS configured: {}",
            r.body
        );
        assert!(r.header("access-control-allow-origin").is_none());
        // With a token, OPTIONS behaves like any method (livego routes ignore the method).
        let r = req(&s, "OPTIONS", "/control/get?room=movie", &bearer(&good));
        assert_eq!(r.status, 200);
    }
}

#[test]
fn cors_headers_and_preflight_with_jwt() {
    let s = start("HS256", "https://dash.example");
    let good = sign(JwtAlgorithm::Hs256, SECRET.as_bytes(), &json!({}));
    let r = req(&s, "GET", "/control/get?room=movie", &bearer(&good));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://dash.example")
    );
    // Refusals carry the header too, so a browser can show the reason.
    let r = req(&s, "GET", "/control/get?room=movie", "");
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://dash.example")
    );
    // A preflight (which browsers send without credentials) gets a fixed 204 and no data.
    let r = req(
        &s,
        "OPTIONS",
        "/control/get?room=movie",
        "Origin: https://dash.example\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization\r\n",
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.body, "");
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Authorization, Content-Type")
    );
    assert!(r
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("GET")));
    // A plain OPTIONS (not a preflight) still needs the token.
    let r = req(
        &s,
        "OPTIONS",
        "/control/get?room=movie",
        "Origin: https://x\r\n",
    );
    assert_eq!(r.status, 403);
    // The preflight created nothing: the room still has the key fetched above.
    let key = req(&s, "GET", "/control/get?room=movie", &bearer(&good)).body;
    let again = req(&s, "GET", "/control/get?room=movie", &bearer(&good)).body;
    assert_eq!(key, again);
}

#[test]
fn no_cors_headers_by_default() {
    let s = Server::start(&[]);
    let r = req(&s, "GET", "/control/get?room=movie", "");
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());
}
