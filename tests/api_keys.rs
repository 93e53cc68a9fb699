//! The control API's room keys: livego's paths, envelope and `data` strings, with the fixes
//! (CSPRNG keys, reset and delete revoke the old key — checked over RTMP in rtmp_auth.rs).

mod common;

use common::*;

fn assert_key(key: &str) {
    assert_eq!(key.len(), 48, "key {key:?} is not 48 characters");
    assert!(
        key.bytes().all(|b| b.is_ascii_alphanumeric()),
        "key {key:?} is not [0-9a-zA-Z]"
    );
}

/// The exact body, ignoring a trailing newline (Go's JSON encoder writes one).
#[track_caller]
fn assert_body(s: &Server, path: &str, status: u16, body: &str) {
    let (st, got) = s.api_get(path);
    assert_eq!((st, got.trim_end()), (status, body), "GET {path}");
}

#[test]
fn get_creates_then_returns_the_same_key() {
    let s = Server::start(&[]);
    let r = http_get(s.api_port, "/control/get?room=movie").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "content-type {:?}",
        r.header("content-type")
    );
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], 200);
    let key = v["data"].as_str().unwrap().to_owned();
    assert_key(&key);
    assert_eq!(
        r.body.trim_end(),
        format!(r#"{{"status":200,"data":"{key}"}}"#)
    );
    for _ in 0..3 {
        assert_eq!(s.key_for("movie"), key, "get must be idempotent");
    }
    let other = s.key_for("other");
    assert_key(&other);
    assert_ne!(other, key);
}

#[test]
fn keys_are_unpredictable() {
    let s = Server::start(&[]);
    let keys: Vec<String> = (0..40).map(|i| s.key_for(&format!("room{i}"))).collect();
    let mut uniq = keys.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), keys.len(), "duplicate keys");
    // 40 keys x 48 chars: a generator using all 62 symbols shows nearly all of them.
    let mut seen = std::collections::HashSet::new();
    for k in &keys {
        assert_key(k);
        seen.extend(k.bytes());
    }
    assert!(
        seen.len() > 55,
        "only {} distinct characters in 40 keys",
        seen.len()
    );
    // A restart must not replay the same keys (livego's unseeded math/rand did).
    let again = Server::start(&[]);
    assert_ne!(again.key_for("room0"), keys[0]);
}

#[test]
fn reset_issues_a_new_key() {
    let s = Server::start(&[]);
    let old = s.key_for("movie");
    let (st, v) = s.api_json("/control/reset?room=movie");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], 200);
    let new = v["data"].as_str().unwrap().to_owned();
    assert_key(&new);
    assert_ne!(new, old);
    assert_eq!(
        s.key_for("movie"),
        new,
        "get after reset returns the new key"
    );
    // reset of an unknown room creates it.
    let (st, v) = s.api_json("/control/reset?room=fresh");
    assert_eq!(st, 200, "{v}");
    assert_eq!(s.key_for("fresh"), v["data"].as_str().unwrap());
}

#[test]
fn delete_then_unknown_room() {
    let s = Server::start(&[]);
    let old = s.key_for("movie");
    assert_body(
        &s,
        "/control/delete?room=movie",
        200,
        r#"{"status":200,"data":"Ok"}"#,
    );
    assert_body(
        &s,
        "/control/delete?room=movie",
        404,
        r#"{"status":404,"data":"room not found"}"#,
    );
    assert_body(
        &s,
        "/control/delete?room=never",
        404,
        r#"{"status":404,"data":"room not found"}"#,
    );
    let new = s.key_for("movie");
    assert_key(&new);
    assert_ne!(new, old, "a deleted room gets a fresh key");
}

#[test]
fn missing_room_is_400_with_livego_usage_string() {
    let s = Server::start(&[]);
    for op in ["get", "reset", "delete"] {
        let usage =
            format!(r#"{{"status":400,"data":"url: /control/{op}?room=\u003cROOM_NAME\u003e"}}"#);
        assert_body(&s, &format!("/control/{op}"), 400, &usage);
        assert_body(&s, &format!("/control/{op}?room="), 400, &usage);
        assert_body(&s, &format!("/control/{op}?other=1"), 400, &usage);
    }
}

#[test]
fn room_from_a_form_body_and_percent_encoding() {
    let s = Server::start(&[]);
    // livego reads parameters with ParseForm: a url-encoded POST body works like the query.
    let body = "room=formroom";
    let req = format!(
        "POST /control/get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = http_request(s.api_port, &req).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["data"].as_str().unwrap(), s.key_for("formroom"));
    // %61 is 'a': the decoded room name is the key.
    let (st, v) = s.api_json("/control/get?room=%61bc");
    assert_eq!(st, 200);
    assert_eq!(v["data"].as_str().unwrap(), s.key_for("abc"));
}
