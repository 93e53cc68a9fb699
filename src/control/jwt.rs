//! JWT (HS256/HS384/HS512) verification for the HTTP API, sans-I/O: token text, secret and the
//! current time in, the claims or livego's error text out.
//!
//! Order of checks: shape, header, algorithm, signature (constant time), then the time claims.
//! The signature is checked before any claim is trusted, so a forged token is always reported
//! as "signature is invalid", as jwt-go did.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Sha256, Sha384, Sha512};

use crate::config::JwtAlgorithm;

/// Largest token accepted; a real HS token is well under 1 KiB, this bounds the decoding work.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a token was refused; `Display` is the text livego sent in `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Missing,
    BadAuthorizationHeader,
    Segments,
    Malformed(String),
    WrongAlgorithm { expected: &'static str, got: String },
    BadSignature,
    Expired,
    NotYetValid,
    UsedBeforeIssued,
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::Missing => f.write_str("Required authorization token not found"),
            JwtError::BadAuthorizationHeader => {
                f.write_str("Authorization header format must be Bearer {token}")
            }
            JwtError::Segments => f.write_str("token contains an invalid number of segments"),
            JwtError::Malformed(why) => write!(f, "token is malformed: {why}"),
            JwtError::WrongAlgorithm { expected, got } => write!(
                f,
                "Expected {expected} signing method but token specified {got}"
            ),
            JwtError::BadSignature => f.write_str("signature is invalid"),
            JwtError::Expired => f.write_str("Token is expired"),
            JwtError::NotYetValid => f.write_str("Token is not valid yet"),
            JwtError::UsedBeforeIssued => f.write_str("Token used before issued"),
        }
    }
}

impl std::error::Error for JwtError {}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url (RFC 7515 §2).
pub fn b64url_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn b64_value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes unpadded base64url; rejects padding, other alphabets and non-canonical trailing bits.
pub fn b64url_decode(s: &str) -> Result<Vec<u8>, String> {
    let bytes = s.as_bytes();
    if bytes.len() % 4 == 1 {
        return Err("illegal base64 data: bad length".into());
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for (ci, chunk) in bytes.chunks(4).enumerate() {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = b64_value(c)
                .ok_or_else(|| format!("illegal base64 data at input byte {}", ci * 4 + i))?;
            n |= v << (18 - 6 * i);
        }
        let produced = chunk.len() - 1;
        let full = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Bits below the last produced byte must be zero, or two texts decode alike.
        if produced < 3 && (n & (0x00ff_ffff >> (8 * produced))) != 0 {
            return Err("illegal base64 data: non-zero trailing bits".into());
        }
        out.extend_from_slice(&full[..produced]);
    }
    Ok(out)
}

fn mac_bytes(alg: JwtAlgorithm, secret: &[u8], input: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    macro_rules! run {
        ($d:ty) => {{
            let mut m = <Hmac<$d>>::new_from_slice(secret).expect("HMAC takes any key length");
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        JwtAlgorithm::Hs256 => run!(Sha256),
        JwtAlgorithm::Hs384 => run!(Sha384),
        JwtAlgorithm::Hs512 => run!(Sha512),
    }
}

fn mac_verify(alg: JwtAlgorithm, secret: &[u8], input: &[u8], sig: &[u8]) -> bool {
    // `verify_slice` compares in constant time.
    macro_rules! run {
        ($d:ty) => {{
            let mut m = <Hmac<$d>>::new_from_slice(secret).expect("HMAC takes any key length");
            m.update(input);
            m.verify_slice(sig).is_ok()
        }};
    }
    match alg {
        JwtAlgorithm::Hs256 => run!(Sha256),
        JwtAlgorithm::Hs384 => run!(Sha384),
        JwtAlgorithm::Hs512 => run!(Sha512),
    }
}

/// Signs `claims` (a JSON object) with `alg`: `header.payload.signature`. Used by tests and by
/// operators' tooling; the server only verifies.
pub fn sign(alg: JwtAlgorithm, secret: &[u8], claims: &Value) -> String {
    let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, alg.name());
    let input = format!(
        "{}.{}",
        b64url_encode(header.as_bytes()),
        b64url_encode(claims.to_string().as_bytes())
    );
    let sig = mac_bytes(alg, secret, input.as_bytes());
    format!("{input}.{}", b64url_encode(&sig))
}

/// A numeric date claim (RFC 7519 NumericDate); jwt-go accepted floats too.
fn numeric_claim(claims: &Value, name: &str) -> Result<Option<f64>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(JwtError::Malformed(format!(
            "claim '{name}' is not a number"
        ))),
    }
}

/// Checks `token` against `secret` and `alg` at time `now_unix` (seconds); returns the claims.
pub fn verify(
    token: &str,
    secret: &[u8],
    alg: JwtAlgorithm,
    now_unix: u64,
) -> Result<Value, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed("token too long".into()));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Segments);
    };
    let header_bytes = b64url_decode(h).map_err(JwtError::Malformed)?;
    let header: Value =
        serde_json::from_slice(&header_bytes).map_err(|e| JwtError::Malformed(e.to_string()))?;
    let got = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if got != alg.name() {
        return Err(JwtError::WrongAlgorithm {
            expected: alg.name(),
            got: got.to_string(),
        });
    }
    let sig = b64url_decode(s).map_err(JwtError::Malformed)?;
    let signed_len = h.len() + 1 + p.len();
    if !mac_verify(alg, secret, &token.as_bytes()[..signed_len], &sig) {
        return Err(JwtError::BadSignature);
    }
    let payload = b64url_decode(p).map_err(JwtError::Malformed)?;
    let claims: Value =
        serde_json::from_slice(&payload).map_err(|e| JwtError::Malformed(e.to_string()))?;
    if !claims.is_object() {
        return Err(JwtError::Malformed("claims are not a JSON object".into()));
    }
    let now = now_unix as f64;
    if numeric_claim(&claims, "exp")?.is_some_and(|exp| now >= exp) {
        return Err(JwtError::Expired);
    }
    if numeric_claim(&claims, "iat")?.is_some_and(|iat| now < iat) {
        return Err(JwtError::UsedBeforeIssued);
    }
    if numeric_claim(&claims, "nbf")?.is_some_and(|nbf| now < nbf) {
        return Err(JwtError::NotYetValid);
    }
    Ok(claims)
}

/// The token of a request, as livego's middleware found it: `Authorization: Bearer <t>` first
/// (scheme case-insensitive, exactly two parts), else the `jwt` query parameter.
pub fn extract_token<'a>(
    authorization: Option<&'a str>,
    query_jwt: Option<&'a str>,
) -> Result<&'a str, JwtError> {
    if let Some(auth) = authorization.filter(|a| !a.is_empty()) {
        let mut parts = auth.split_whitespace();
        return match (parts.next(), parts.next(), parts.next()) {
            (Some(scheme), Some(token), None) if scheme.eq_ignore_ascii_case("bearer") => Ok(token),
            _ => Err(JwtError::BadAuthorizationHeader),
        };
    }
    query_jwt.filter(|t| !t.is_empty()).ok_or(JwtError::Missing)
}

/// The API's JWT gate: the configured secret and algorithm.
#[derive(Clone)]
pub struct JwtGate {
    secret: Vec<u8>,
    alg: JwtAlgorithm,
}

impl std::fmt::Debug for JwtGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed.
        f.debug_struct("JwtGate").field("alg", &self.alg).finish()
    }
}

impl JwtGate {
    pub fn new(secret: &str, alg: JwtAlgorithm) -> JwtGate {
        JwtGate {
            secret: secret.as_bytes().to_vec(),
            alg,
        }
    }

    /// Decides one request from its `Authorization` header and `jwt` query parameter.
    pub fn check(
        &self,
        authorization: Option<&str>,
        query_jwt: Option<&str>,
        now_unix: u64,
    ) -> Result<(), JwtError> {
        let token = extract_token(authorization, query_jwt)?;
        verify(token, &self.secret, self.alg, now_unix).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// RFC 7515 appendix A.1: the HS256 example, byte for byte.
    const RFC_TOKEN: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn rfc_key() -> Vec<u8> {
        b64url_decode(
            "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        )
        .expect("key")
    }

    #[test]
    fn rfc7515_a1_vector() {
        let claims = verify(RFC_TOKEN, &rfc_key(), JwtAlgorithm::Hs256, 1_300_819_379).expect("ok");
        assert_eq!(claims["iss"], "joe");
        assert_eq!(claims["http://example.com/is_root"], true);
        // The same token one second after exp.
        assert_eq!(
            verify(RFC_TOKEN, &rfc_key(), JwtAlgorithm::Hs256, 1_300_819_380),
            Err(JwtError::Expired)
        );
        // The MAC itself, recomputed.
        let (input, sig) = RFC_TOKEN.rsplit_once('.').expect("dot");
        assert_eq!(
            b64url_encode(&mac_bytes(
                JwtAlgorithm::Hs256,
                &rfc_key(),
                input.as_bytes()
            )),
            sig
        );
    }

    #[test]
    fn hs384_and_hs512_known_vectors() {
        // RFC 4231 test case 2 (key "Jefe"), truncated to the hex prefix.
        let d = mac_bytes(
            JwtAlgorithm::Hs384,
            b"Jefe",
            b"what do ya want for nothing?",
        );
        assert_eq!(hex(&d[..8]), "af45d2e376484031");
        let d = mac_bytes(
            JwtAlgorithm::Hs512,
            b"Jefe",
            b"what do ya want for nothing?",
        );
        assert_eq!(hex(&d[..8]), "164b7a7bfcf819e2");
        let d = mac_bytes(
            JwtAlgorithm::Hs256,
            b"Jefe",
            b"what do ya want for nothing?",
        );
        assert_eq!(hex(&d[..8]), "5bdcc146bf60754e");
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn each_algorithm_round_trips_and_rejects_the_others() {
        let algs = [
            JwtAlgorithm::Hs256,
            JwtAlgorithm::Hs384,
            JwtAlgorithm::Hs512,
        ];
        for alg in algs {
            let t = sign(alg, b"s3cret", &json!({"sub": "x", "exp": 2000}));
            assert_eq!(verify(&t, b"s3cret", alg, 1000).expect("ok")["sub"], "x");
            assert_eq!(verify(&t, b"other", alg, 1000), Err(JwtError::BadSignature));
            for other in algs.iter().filter(|a| **a != alg) {
                assert_eq!(
                    verify(&t, b"s3cret", *other, 1000),
                    Err(JwtError::WrongAlgorithm {
                        expected: other.name(),
                        got: alg.name().to_string()
                    })
                );
            }
        }
        let e = verify(
            &sign(JwtAlgorithm::Hs512, b"k", &json!({})),
            b"k",
            JwtAlgorithm::Hs256,
            0,
        )
        .expect_err("alg");
        assert_eq!(
            e.to_string(),
            "Expected HS256 signing method but token specified HS512"
        );
    }

    #[test]
    fn time_claims() {
        let alg = JwtAlgorithm::Hs256;
        let t = sign(alg, b"k", &json!({"nbf": 100, "exp": 200}));
        assert_eq!(verify(&t, b"k", alg, 99), Err(JwtError::NotYetValid));
        assert!(verify(&t, b"k", alg, 100).is_ok());
        assert!(verify(&t, b"k", alg, 199).is_ok());
        assert_eq!(verify(&t, b"k", alg, 200), Err(JwtError::Expired));
        let t = sign(alg, b"k", &json!({"iat": 100.5}));
        assert_eq!(verify(&t, b"k", alg, 100), Err(JwtError::UsedBeforeIssued));
        let t = sign(alg, b"k", &json!({"exp": "soon"}));
        assert!(matches!(
            verify(&t, b"k", alg, 1),
            Err(JwtError::Malformed(_))
        ));
        assert_eq!(JwtError::Expired.to_string(), "Token is expired");
        assert_eq!(JwtError::BadSignature.to_string(), "signature is invalid");
    }

    #[test]
    fn malformed_tokens() {
        let alg = JwtAlgorithm::Hs256;
        for t in ["", "a", "a.b", "a.b.c.d"] {
            assert_eq!(verify(t, b"k", alg, 0), Err(JwtError::Segments), "{t:?}");
        }
        assert!(matches!(
            verify("!!.e30.", b"k", alg, 0),
            Err(JwtError::Malformed(_))
        ));
        let good = sign(alg, b"k", &json!({}));
        let (h, rest) = good.split_once('.').expect("dot");
        // "none" and a tampered payload
        let none_header = b64url_encode(br#"{"alg":"none"}"#);
        assert!(matches!(
            verify(&format!("{none_header}.{rest}"), b"k", alg, 0),
            Err(JwtError::WrongAlgorithm { .. })
        ));
        let (_, sig) = rest.split_once('.').expect("dot");
        let other = b64url_encode(br#"{"admin":true}"#);
        assert_eq!(
            verify(&format!("{h}.{other}.{sig}"), b"k", alg, 0),
            Err(JwtError::BadSignature)
        );
        assert!(matches!(
            verify(&"a".repeat(MAX_TOKEN_LEN + 1), b"k", alg, 0),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn token_sources() {
        assert_eq!(extract_token(Some("Bearer abc"), Some("q")), Ok("abc"));
        assert_eq!(extract_token(Some("bearer  abc"), None), Ok("abc"));
        assert_eq!(
            extract_token(Some("Basic abc"), Some("q")),
            Err(JwtError::BadAuthorizationHeader)
        );
        assert_eq!(
            extract_token(Some("Bearer a b"), None),
            Err(JwtError::BadAuthorizationHeader)
        );
        assert_eq!(extract_token(None, Some("q")), Ok("q"));
        assert_eq!(extract_token(Some(""), Some("q")), Ok("q"));
        assert_eq!(extract_token(None, Some("")), Err(JwtError::Missing));
        assert_eq!(extract_token(None, None), Err(JwtError::Missing));
        assert_eq!(
            JwtError::Missing.to_string(),
            "Required authorization token not found"
        );
    }

    #[test]
    fn base64url_edges() {
        assert_eq!(b64url_encode(b""), "");
        assert_eq!(b64url_encode(b"f"), "Zg");
        assert_eq!(b64url_encode(b"fo"), "Zm8");
        assert_eq!(b64url_encode(b"foo"), "Zm9v");
        assert_eq!(b64url_encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8"), Ok(vec![0xfb, 0xff]));
        assert!(b64url_decode("Zg==").is_err());
        assert!(b64url_decode("Zh").is_err(), "non-canonical");
        assert!(b64url_decode("Z").is_err());
        assert!(b64url_decode("Zm9v+A").is_err());
    }

    proptest! {
        #[test]
        fn base64url_round_trip(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(b64url_decode(&b64url_encode(&data)), Ok(data));
        }

        #[test]
        fn verify_never_panics(token in "[A-Za-z0-9_.=+/-]{0,300}", now in any::<u64>()) {
            let _ = verify(&token, b"k", JwtAlgorithm::Hs384, now);
        }
    }
}
