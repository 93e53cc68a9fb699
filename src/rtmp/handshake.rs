//! RTMP handshake, server and client side, simple and digest ("FP9"/complex) variants.
//!
//! Sans-I/O: bytes are fed in, the number consumed is returned (the rest belongs to the chunk
//! stream), and the bytes to send are taken out. Randomness is injected so tests are exact.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Size of C1/S1/C2/S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// The only RTMP version (C0/S0) there is.
pub const RTMP_VERSION: u8 = 3;

const DIGEST_LEN: usize = 32;
/// Offset bytes are summed modulo this to place the digest inside its 764-byte half.
const DIGEST_RANGE: usize = 728;
/// Start of the offset bytes in the two C1 layouts.
const SCHEME_BASES: [usize; 2] = [8, 772];

// The largest digest offset keeps the digest inside the block, so slicing cannot fail.
const _: () = assert!(DIGEST_RANGE - 1 + SCHEME_BASES[1] + 4 + DIGEST_LEN <= HANDSHAKE_SIZE);

/// The public 32-byte tail of both Adobe handshake keys.
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];
const PLAYER_KEY_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
const SERVER_KEY_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";

/// Version advertised in S1 of a digest handshake.
const SERVER_VERSION: u32 = 0x0d0e_0a0d;
/// Flash Player version advertised in a digest C1 (any non-zero value selects the digest form).
const CLIENT_VERSION: u32 = 0x8000_0702;

/// Injected source of random bytes.
pub type RandomFill = dyn FnMut(&mut [u8]) + Send;

/// Fills `buf` from the operating system CSPRNG; if that fails, falls back to a time-seeded
/// generator because handshake randomness is not a security property (it is echoed in clear).
pub fn os_random(buf: &mut [u8]) {
    if getrandom::getrandom(buf).is_err() {
        let mut x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
        for b in buf {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
}

fn key(text: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(text.len() + KEY_TAIL.len());
    k.extend_from_slice(text);
    k.extend_from_slice(&KEY_TAIL);
    k
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Position of the digest in a 1536-byte block for the scheme whose offset bytes start at `base`.
fn digest_offset(block: &[u8], base: usize) -> usize {
    let sum: usize = block[base..base + 4].iter().map(|&b| usize::from(b)).sum();
    sum % DIGEST_RANGE + base + 4
}

/// HMAC of the block with the digest bytes themselves left out.
fn block_digest(block: &[u8], offset: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac(key, &[&block[..offset], &block[offset + DIGEST_LEN..]])
}

/// Finds a valid digest with either scheme; returns it.
fn find_digest(block: &[u8], key: &[u8]) -> Option<[u8; DIGEST_LEN]> {
    // The 772 scheme first, as Flash Player 10+ uses it; order does not change the result.
    SCHEME_BASES.iter().rev().find_map(|&base| {
        let off = digest_offset(block, base);
        let want = block_digest(block, off, key);
        (block[off..off + DIGEST_LEN] == want).then_some(want)
    })
}

/// Writes a digest into `block` with the base-8 scheme; returns it.
fn place_digest(block: &mut [u8], key: &[u8]) -> [u8; DIGEST_LEN] {
    let off = digest_offset(block, SCHEME_BASES[0]);
    let d = block_digest(block, off, key);
    block[off..off + DIGEST_LEN].copy_from_slice(&d);
    d
}

/// The second-round block (S2 or C2) answering `peer_digest`: random bytes whose last 32 bytes
/// are HMAC(HMAC(full_key, peer_digest), first 1504 bytes).
fn answer_block(full_key: &[u8], peer_digest: &[u8], rng: &mut RandomFill) -> Vec<u8> {
    let mut b = vec![0u8; HANDSHAKE_SIZE];
    rng(&mut b[..HANDSHAKE_SIZE - DIGEST_LEN]);
    let k = hmac(full_key, &[peer_digest]);
    let d = hmac(&k, &[&b[..HANDSHAKE_SIZE - DIGEST_LEN]]);
    b[HANDSHAKE_SIZE - DIGEST_LEN..].copy_from_slice(&d);
    b
}

fn answer_valid(block: &[u8], full_key: &[u8], peer_digest: &[u8]) -> bool {
    let k = hmac(full_key, &[peer_digest]);
    hmac(&k, &[&block[..HANDSHAKE_SIZE - DIGEST_LEN]]) == block[HANDSHAKE_SIZE - DIGEST_LEN..]
}

/// Which handshake variant was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    Simple,
    Digest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// C0/S0 is not 3. 'G' (71) or 'P' (80) usually means an HTTP client.
    BadVersion(u8),
    /// The server's S1 claims a version but carries no valid digest.
    InvalidS1Digest,
    /// S2 does not answer our C1 digest.
    InvalidS2Digest,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::BadVersion(v) if *v == b'G' || *v == b'P' => write!(
                f,
                "handshake version={v} invalid (looks like an HTTP request on the RTMP port)"
            ),
            HandshakeError::BadVersion(v) => write!(f, "handshake version={v} invalid"),
            HandshakeError::InvalidS1Digest => write!(f, "handshake: S1 digest invalid"),
            HandshakeError::InvalidS2Digest => write!(f, "handshake: S2 digest invalid"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Accumulates exactly `want` bytes from successive feeds; returns how many it took.
fn fill(buf: &mut Vec<u8>, want: usize, input: &[u8]) -> usize {
    let n = (want - buf.len()).min(input.len());
    buf.extend_from_slice(&input[..n]);
    n
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerStage {
    C0C1,
    C2,
    Done,
}

/// Server side: reads C0C1, answers S0S1S2, reads C2.
pub struct ServerHandshake {
    stage: ServerStage,
    buf: Vec<u8>,
    output: Vec<u8>,
    kind: Option<HandshakeKind>,
    /// Digest we placed in S1, to check the client's C2.
    s1_digest: Option<[u8; DIGEST_LEN]>,
    c2_valid: Option<bool>,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    pub fn new() -> Self {
        ServerHandshake {
            stage: ServerStage::C0C1,
            buf: Vec::with_capacity(1 + HANDSHAKE_SIZE),
            output: Vec::new(),
            kind: None,
            s1_digest: None,
            c2_valid: None,
        }
    }

    /// Consumes handshake bytes from `input` and returns how many were used; bytes after C2
    /// belong to the chunk stream.
    pub fn feed(&mut self, input: &[u8], rng: &mut RandomFill) -> Result<usize, HandshakeError> {
        let mut used = 0;
        if self.stage == ServerStage::C0C1 {
            if self.buf.is_empty() {
                if let Some(&v) = input.first() {
                    if v != RTMP_VERSION {
                        return Err(HandshakeError::BadVersion(v));
                    }
                }
            }
            used += fill(&mut self.buf, 1 + HANDSHAKE_SIZE, input);
            if self.buf.len() < 1 + HANDSHAKE_SIZE {
                return Ok(used);
            }
            let c1 = std::mem::take(&mut self.buf);
            self.answer(&c1[1..], rng);
            self.stage = ServerStage::C2;
        }
        if self.stage == ServerStage::C2 {
            used += fill(&mut self.buf, HANDSHAKE_SIZE, &input[used..]);
            if self.buf.len() < HANDSHAKE_SIZE {
                return Ok(used);
            }
            if let Some(d) = self.s1_digest {
                self.c2_valid = Some(answer_valid(&self.buf, &key(PLAYER_KEY_TEXT), &d));
            }
            self.buf = Vec::new();
            self.stage = ServerStage::Done;
        }
        Ok(used)
    }

    fn answer(&mut self, c1: &[u8], rng: &mut RandomFill) {
        let client_digest = if c1[4..8] == [0, 0, 0, 0] {
            None
        } else {
            // Lenient: a C1 with a version but no valid digest gets the simple handshake.
            find_digest(c1, &PLAYER_KEY_TEXT[..])
        };
        let mut out = Vec::with_capacity(1 + 2 * HANDSHAKE_SIZE);
        out.push(RTMP_VERSION);
        match client_digest {
            None => {
                self.kind = Some(HandshakeKind::Simple);
                let mut s1 = [0u8; HANDSHAKE_SIZE];
                rng(&mut s1[8..]);
                out.extend_from_slice(&s1);
                out.extend_from_slice(c1);
            }
            Some(cd) => {
                self.kind = Some(HandshakeKind::Digest);
                let mut s1 = [0u8; HANDSHAKE_SIZE];
                s1[..4].copy_from_slice(&c1[..4]);
                s1[4..8].copy_from_slice(&SERVER_VERSION.to_be_bytes());
                rng(&mut s1[8..]);
                self.s1_digest = Some(place_digest(&mut s1, &SERVER_KEY_TEXT[..]));
                out.extend_from_slice(&s1);
                out.extend_from_slice(&answer_block(&key(SERVER_KEY_TEXT), &cd, rng));
            }
        }
        self.output = out;
    }

    pub fn take_output(&mut self) -> Option<Vec<u8>> {
        (!self.output.is_empty()).then(|| std::mem::take(&mut self.output))
    }

    pub fn is_done(&self) -> bool {
        self.stage == ServerStage::Done
    }

    /// Known once C1 has been read.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// For a digest handshake, whether the client's C2 answered our S1 digest. Informational:
    /// many real clients send a plain echo, so it is never enforced.
    pub fn c2_valid(&self) -> Option<bool> {
        self.c2_valid
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientStage {
    S0S1S2,
    Done,
}

/// Client side: C0C1 is produced at construction, S0S1S2 is read, C2 is answered.
pub struct ClientHandshake {
    stage: ClientStage,
    c1_digest: [u8; DIGEST_LEN],
    buf: Vec<u8>,
    output: Vec<u8>,
    kind: Option<HandshakeKind>,
}

impl ClientHandshake {
    /// Builds C0 + a digest C1.
    pub fn new(rng: &mut RandomFill) -> Self {
        let mut c1 = vec![0u8; HANDSHAKE_SIZE];
        c1[4..8].copy_from_slice(&CLIENT_VERSION.to_be_bytes());
        rng(&mut c1[8..]);
        let c1_digest = place_digest(&mut c1, &PLAYER_KEY_TEXT[..]);
        let mut output = Vec::with_capacity(1 + HANDSHAKE_SIZE);
        output.push(RTMP_VERSION);
        output.extend_from_slice(&c1);
        ClientHandshake {
            stage: ClientStage::S0S1S2,
            c1_digest,
            buf: Vec::with_capacity(1 + 2 * HANDSHAKE_SIZE),
            output,
            kind: None,
        }
    }

    /// Consumes S0S1S2 bytes; returns how many were used.
    pub fn feed(&mut self, input: &[u8], rng: &mut RandomFill) -> Result<usize, HandshakeError> {
        if self.stage == ClientStage::Done {
            return Ok(0);
        }
        if self.buf.is_empty() {
            if let Some(&v) = input.first() {
                if v != RTMP_VERSION {
                    return Err(HandshakeError::BadVersion(v));
                }
            }
        }
        let used = fill(&mut self.buf, 1 + 2 * HANDSHAKE_SIZE, input);
        if self.buf.len() < 1 + 2 * HANDSHAKE_SIZE {
            return Ok(used);
        }
        let s1 = &self.buf[1..1 + HANDSHAKE_SIZE];
        let s2 = &self.buf[1 + HANDSHAKE_SIZE..];
        let c2 = if s1[4..8] == [0, 0, 0, 0] {
            // A server that only knows the simple handshake: echo S1.
            self.kind = Some(HandshakeKind::Simple);
            s1.to_vec()
        } else {
            let sd =
                find_digest(s1, &SERVER_KEY_TEXT[..]).ok_or(HandshakeError::InvalidS1Digest)?;
            if !answer_valid(s2, &key(SERVER_KEY_TEXT), &self.c1_digest) {
                return Err(HandshakeError::InvalidS2Digest);
            }
            self.kind = Some(HandshakeKind::Digest);
            answer_block(&key(PLAYER_KEY_TEXT), &sd, rng)
        };
        self.output.extend_from_slice(&c2);
        self.buf = Vec::new();
        self.stage = ClientStage::Done;
        Ok(used)
    }

    pub fn take_output(&mut self) -> Option<Vec<u8>> {
        (!self.output.is_empty()).then(|| std::mem::take(&mut self.output))
    }

    pub fn is_done(&self) -> bool {
        self.stage == ClientStage::Done
    }

    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic xorshift filler.
    fn seeded(seed: u64) -> impl FnMut(&mut [u8]) + Send {
        let mut x = seed | 1;
        move |buf: &mut [u8]| {
            for b in buf {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        }
    }

    #[test]
    fn keys_have_the_documented_lengths() {
        assert_eq!(key(PLAYER_KEY_TEXT).len(), 62);
        assert_eq!(key(SERVER_KEY_TEXT).len(), 68);
    }

    #[test]
    fn digest_offset_formula() {
        let mut b = vec![0u8; HANDSHAKE_SIZE];
        b[8..12].copy_from_slice(&[200, 200, 200, 200]);
        assert_eq!(digest_offset(&b, 8), 800 % 728 + 12);
        b[772..776].copy_from_slice(&[255, 255, 255, 255]);
        assert_eq!(digest_offset(&b, 772), 1020 % 728 + 776);
    }

    #[test]
    fn bad_version_is_reported() {
        let mut s = ServerHandshake::new();
        let mut rng = seeded(1);
        let e = s.feed(b"GET / HTTP/1.1\r\n", &mut rng).unwrap_err();
        assert_eq!(e, HandshakeError::BadVersion(71));
        assert!(e.to_string().starts_with("handshake version=71 invalid"));
        assert_eq!(
            ServerHandshake::new()
                .feed(&[6], &mut rng)
                .unwrap_err()
                .to_string(),
            "handshake version=6 invalid"
        );
    }

    #[test]
    fn simple_handshake_echoes_c1() {
        let mut rng = seeded(2);
        let mut s = ServerHandshake::new();
        let mut c0c1 = vec![3u8; 1];
        let mut c1 = vec![0u8; HANDSHAKE_SIZE];
        c1[0..4].copy_from_slice(&[0, 0, 1, 0]);
        rng(&mut c1[8..]);
        c0c1.extend_from_slice(&c1);
        // Fed in two pieces.
        assert_eq!(s.feed(&c0c1[..100], &mut rng).unwrap(), 100);
        assert!(s.take_output().is_none());
        assert_eq!(s.feed(&c0c1[100..], &mut rng).unwrap(), c0c1.len() - 100);
        let out = s.take_output().unwrap();
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(out[0], 3);
        assert_eq!(&out[1..9], &[0u8; 8]);
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], &c1[..]);
        assert_eq!(s.kind(), Some(HandshakeKind::Simple));
        // C2 followed by chunk-stream bytes: only C2 is consumed.
        let mut c2 = out[1..1 + HANDSHAKE_SIZE].to_vec();
        c2.extend_from_slice(&[0xAA, 0xBB]);
        assert_eq!(s.feed(&c2, &mut rng).unwrap(), HANDSHAKE_SIZE);
        assert!(s.is_done());
        assert_eq!(s.c2_valid(), None);
    }

    /// Runs our client against our server; returns (client, server).
    fn run(
        seed: u64,
        tamper: impl Fn(&mut Vec<u8>, u8),
    ) -> (Result<ClientHandshake, HandshakeError>, ServerHandshake) {
        let mut rng = seeded(seed);
        let mut c = ClientHandshake::new(&mut rng);
        let mut s = ServerHandshake::new();
        let mut c0c1 = c.take_output().unwrap();
        tamper(&mut c0c1, 0);
        assert_eq!(s.feed(&c0c1, &mut rng).unwrap(), c0c1.len());
        let mut s012 = s.take_output().unwrap();
        tamper(&mut s012, 1);
        if let Err(e) = c.feed(&s012, &mut rng) {
            return (Err(e), s);
        }
        let c2 = c.take_output().unwrap();
        assert_eq!(s.feed(&c2, &mut rng).unwrap(), HANDSHAKE_SIZE);
        assert!(s.is_done() && c.is_done());
        (Ok(c), s)
    }

    #[test]
    fn digest_handshake_validated_both_ways() {
        for seed in 1..20 {
            let (c, s) = run(seed, |_, _| {});
            let c = c.unwrap();
            assert_eq!(c.kind(), Some(HandshakeKind::Digest));
            assert_eq!(s.kind(), Some(HandshakeKind::Digest));
            assert_eq!(s.c2_valid(), Some(true));
        }
    }

    #[test]
    fn server_s1_layout() {
        let mut rng = seeded(5);
        let mut c = ClientHandshake::new(&mut rng);
        let mut c0c1 = c.take_output().unwrap();
        c0c1[1..5].copy_from_slice(&[1, 2, 3, 4]);
        // Re-sign after changing the time field.
        place_digest(&mut c0c1[1..], &PLAYER_KEY_TEXT[..]);
        let mut s = ServerHandshake::new();
        s.feed(&c0c1, &mut rng).unwrap();
        let out = s.take_output().unwrap();
        assert_eq!(&out[1..5], &[1, 2, 3, 4], "S1 time echoes the client's");
        assert_eq!(&out[5..9], &[0x0d, 0x0e, 0x0a, 0x0d]);
        // The S1 digest is at the base-8 position.
        let s1 = &out[1..1 + HANDSHAKE_SIZE];
        let off = digest_offset(s1, 8);
        assert_eq!(
            s1[off..off + 32],
            block_digest(s1, off, &SERVER_KEY_TEXT[..])
        );
    }

    #[test]
    fn client_digest_found_with_the_772_scheme() {
        let mut rng = seeded(9);
        let mut c1 = vec![0u8; HANDSHAKE_SIZE];
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        rng(&mut c1[8..]);
        let off = digest_offset(&c1, 772);
        let d = block_digest(&c1, off, &PLAYER_KEY_TEXT[..]);
        c1[off..off + 32].copy_from_slice(&d);
        assert_eq!(find_digest(&c1, &PLAYER_KEY_TEXT[..]), Some(d));
        let mut s = ServerHandshake::new();
        let mut c0c1 = vec![3];
        c0c1.extend_from_slice(&c1);
        s.feed(&c0c1, &mut rng).unwrap();
        assert_eq!(s.kind(), Some(HandshakeKind::Digest));
        let out = s.take_output().unwrap();
        assert!(answer_valid(
            &out[1 + HANDSHAKE_SIZE..],
            &key(SERVER_KEY_TEXT),
            &d
        ));
    }

    #[test]
    fn tampered_c1_falls_back_to_simple() {
        // Flip a byte of the C1 random part: the digest no longer verifies.
        let (c, s) = run(3, |b, step| {
            if step == 0 {
                b[1000] ^= 0x55;
                b[1 + 8] ^= 0; // offset bytes untouched
            }
        });
        assert_eq!(s.kind(), Some(HandshakeKind::Simple));
        // Our client accepts a simple server (S1 version 0) and echoes S1.
        assert_eq!(c.unwrap().kind(), Some(HandshakeKind::Simple));
    }

    #[test]
    fn tampered_s1_or_s2_is_detected() {
        let (c, _) = run(4, |b, step| {
            if step == 1 {
                b[1 + 1200] ^= 1;
            }
        });
        // 1200 may or may not hold the digest; either way the S1 digest no longer verifies.
        assert_eq!(c.err(), Some(HandshakeError::InvalidS1Digest));
        let (c, _) = run(4, |b, step| {
            if step == 1 {
                b[1 + HANDSHAKE_SIZE + 10] ^= 1;
            }
        });
        assert_eq!(c.err(), Some(HandshakeError::InvalidS2Digest));
    }

    #[test]
    fn tampered_c2_is_flagged() {
        let mut rng = seeded(6);
        let mut c = ClientHandshake::new(&mut rng);
        let mut s = ServerHandshake::new();
        s.feed(&c.take_output().unwrap(), &mut rng).unwrap();
        c.feed(&s.take_output().unwrap(), &mut rng).unwrap();
        let mut c2 = c.take_output().unwrap();
        c2[3] ^= 1;
        s.feed(&c2, &mut rng).unwrap();
        assert_eq!(s.c2_valid(), Some(false));
        assert!(s.is_done());
    }

    proptest! {
        #[test]
        fn random_input_never_panics(
            first in prop::collection::vec(any::<u8>(), 0..4000),
            split in any::<prop::sample::Index>(),
        ) {
            let mut rng = seeded(7);
            let mut s = ServerHandshake::new();
            let mut data = vec![3u8];
            data.extend_from_slice(&first);
            let at = split.index(data.len() + 1);
            if let Ok(n) = s.feed(&data[..at], &mut rng) {
                prop_assert!(n <= at);
                let _ = s.feed(&data[n..], &mut rng);
            }
            let mut c = ClientHandshake::new(&mut rng);
            let _ = c.feed(&data, &mut rng);
        }
    }
}
