//! Room keys (livego's "channel keys"): the secret a publisher uses in place of the room name.
//!
//! Semantics follow livego (get is idempotent, reset issues a new key, delete removes the room)
//! with the spec's fixes: keys come from the OS CSPRNG, and reset/delete revoke the old key so it
//! no longer authorises publishing.

use std::collections::HashMap;
use std::fmt;

/// Length of a key, as in livego.
pub const KEY_LEN: usize = 48;

const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Largest multiple of 62 that fits in a byte: bytes at or above it are rejected so every
/// character is equally likely (no modulo bias).
const ACCEPT_BELOW: u8 = 248;

/// A key-store failure; the text is shown to API clients (503) and in logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The backing store cannot be reached (e.g. Redis down).
    Unavailable(String),
    /// No key could be produced (the OS random source failed).
    KeyGeneration(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "key store unavailable: {why}"),
            StoreError::KeyGeneration(why) => write!(f, "cannot generate key: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Mapping between public room names and secret publish keys.
pub trait KeyStore {
    /// The room's key, creating one if the room has none.
    fn get_or_create(&mut self, room: &str) -> Result<String, StoreError>;
    /// Issues a new key for the room (creating the room if absent); the old key stops working.
    fn reset(&mut self, room: &str) -> Result<String, StoreError>;
    /// Removes the room and revokes its key; `false` if the room did not exist.
    fn delete(&mut self, room: &str) -> Result<bool, StoreError>;
    /// The room a publish key belongs to, if the key is live.
    fn room_for_key(&mut self, key: &str) -> Result<Option<String>, StoreError>;
}

/// Builds a key from a random byte source by rejection sampling.
fn key_from_source<E>(mut fill: impl FnMut(&mut [u8]) -> Result<(), E>) -> Result<String, E> {
    let mut key = String::with_capacity(KEY_LEN);
    let mut buf = [0u8; 64];
    while key.len() < KEY_LEN {
        fill(&mut buf)?;
        for &b in &buf {
            if b < ACCEPT_BELOW && key.len() < KEY_LEN {
                key.push(ALPHABET[usize::from(b % 62)] as char);
            }
        }
    }
    Ok(key)
}

/// A fresh key of [`KEY_LEN`] characters from `[0-9a-zA-Z]`, or the OS random source's error.
pub fn try_generate_key() -> Result<String, getrandom::Error> {
    key_from_source(getrandom::getrandom)
}

/// A fresh key of [`KEY_LEN`] characters from `[0-9a-zA-Z]` drawn from the OS CSPRNG.
///
/// # Panics
/// If the operating system cannot provide random bytes, which leaves no safe way to issue
/// secrets; stores use [`try_generate_key`] and report the error instead.
pub fn generate_key() -> String {
    try_generate_key().expect("operating system random source unavailable")
}

/// Whether `s` has the shape of a key (length and alphabet); cheap pre-check before a lookup.
pub fn looks_like_key(s: &str) -> bool {
    s.len() == KEY_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

type KeyGen = Box<dyn FnMut() -> Result<String, StoreError>>;

/// In-memory store (livego's default backend); lost on restart.
pub struct MemoryKeyStore {
    room_to_key: HashMap<String, String>,
    key_to_room: HashMap<String, String>,
    generate: KeyGen,
}

impl Default for MemoryKeyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are secrets: never print them.
        f.debug_struct("MemoryKeyStore")
            .field("rooms", &self.room_to_key.len())
            .finish()
    }
}

/// How many fresh keys to try before giving up on uniqueness. With 62^48 keys a single retry is
/// already astronomically unlikely; the bound only stops a broken generator from spinning.
const MAX_KEY_ATTEMPTS: usize = 16;

impl MemoryKeyStore {
    pub fn new() -> Self {
        Self::with_generator(|| {
            try_generate_key().map_err(|e| StoreError::KeyGeneration(e.to_string()))
        })
    }

    /// A store drawing keys from `generate` (tests use it to force collisions and failures).
    pub fn with_generator(generate: impl FnMut() -> Result<String, StoreError> + 'static) -> Self {
        MemoryKeyStore {
            room_to_key: HashMap::new(),
            key_to_room: HashMap::new(),
            generate: Box::new(generate),
        }
    }

    /// Number of rooms that have a key.
    pub fn room_count(&self) -> usize {
        self.room_to_key.len()
    }

    fn unique_key(&mut self) -> Result<String, StoreError> {
        for _ in 0..MAX_KEY_ATTEMPTS {
            let key = (self.generate)()?;
            if !self.key_to_room.contains_key(&key) {
                return Ok(key);
            }
        }
        Err(StoreError::KeyGeneration(
            "no unused key after repeated attempts".to_string(),
        ))
    }

    fn assign_new_key(&mut self, room: &str) -> Result<String, StoreError> {
        let key = self.unique_key()?;
        if let Some(old) = self.room_to_key.insert(room.to_string(), key.clone()) {
            self.key_to_room.remove(&old);
        }
        self.key_to_room.insert(key.clone(), room.to_string());
        Ok(key)
    }
}

impl KeyStore for MemoryKeyStore {
    fn get_or_create(&mut self, room: &str) -> Result<String, StoreError> {
        if let Some(key) = self.room_to_key.get(room) {
            return Ok(key.clone());
        }
        self.assign_new_key(room)
    }

    fn reset(&mut self, room: &str) -> Result<String, StoreError> {
        self.assign_new_key(room)
    }

    fn delete(&mut self, room: &str) -> Result<bool, StoreError> {
        match self.room_to_key.remove(room) {
            Some(key) => {
                self.key_to_room.remove(&key);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn room_for_key(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.key_to_room.get(key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::rc::Rc;

    #[test]
    fn generated_keys_have_livego_shape() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let k = generate_key();
            assert_eq!(k.len(), KEY_LEN);
            assert!(looks_like_key(&k), "{k}");
            assert!(seen.insert(k));
        }
    }

    #[test]
    fn rejection_sampling_skips_biased_bytes() {
        // Only bytes >= 248 at first, then a known pattern: the key must come from the latter.
        let mut calls = 0;
        let key = key_from_source(|buf: &mut [u8]| -> Result<(), ()> {
            calls += 1;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = if calls == 1 {
                    248 + (i % 8) as u8
                } else {
                    i as u8
                };
            }
            Ok(())
        })
        .expect("key");
        assert_eq!(calls, 2);
        let expected: String = (0..KEY_LEN).map(|i| ALPHABET[i % 62] as char).collect();
        assert_eq!(key, expected);
        // 62 + 10 = 72 maps to the same character as 10: the accepted range wraps exactly 4 times.
        let key = key_from_source(|buf: &mut [u8]| -> Result<(), ()> {
            buf.fill(72);
            Ok(())
        })
        .expect("key");
        assert_eq!(key, "a".repeat(KEY_LEN));
        let failed = key_from_source(|_: &mut [u8]| Err("no entropy"));
        assert_eq!(failed, Err("no entropy"));
    }

    #[test]
    fn every_character_gets_the_same_share_of_byte_values() {
        let mut counts: HashMap<char, usize> = HashMap::new();
        for b in 0..=255u8 {
            // One byte value, followed by zeros if it is rejected.
            let mut first = true;
            let key = key_from_source(|buf: &mut [u8]| -> Result<(), ()> {
                buf.fill(if first { b } else { 0 });
                first = false;
                Ok(())
            })
            .expect("key");
            let c = key.chars().next().unwrap_or('?');
            if b < ACCEPT_BELOW {
                assert_eq!(key, c.to_string().repeat(KEY_LEN));
                *counts.entry(c).or_insert(0) += 1;
            } else {
                assert_eq!(key, "0".repeat(KEY_LEN), "byte {b} must be rejected");
            }
        }
        assert_eq!(counts.len(), 62);
        assert!(counts.values().all(|&n| n == 4), "{counts:?}");
    }

    #[test]
    fn get_is_idempotent_and_maps_back() {
        let mut s = MemoryKeyStore::new();
        let k1 = s.get_or_create("movie").expect("get");
        let k2 = s.get_or_create("movie").expect("get");
        assert_eq!(k1, k2);
        assert_eq!(s.room_for_key(&k1), Ok(Some("movie".to_string())));
        let other = s.get_or_create("news").expect("get");
        assert_ne!(other, k1);
        assert_eq!(s.room_count(), 2);
        assert_eq!(s.room_for_key("movie"), Ok(None));
    }

    #[test]
    fn reset_revokes_old_key() {
        let mut s = MemoryKeyStore::new();
        let old = s.get_or_create("movie").expect("get");
        let new = s.reset("movie").expect("reset");
        assert_ne!(old, new);
        assert_eq!(s.room_for_key(&old), Ok(None));
        assert_eq!(s.room_for_key(&new), Ok(Some("movie".to_string())));
        assert_eq!(s.get_or_create("movie"), Ok(new));
        // reset creates an absent room
        let k = s.reset("fresh").expect("reset");
        assert_eq!(s.room_for_key(&k), Ok(Some("fresh".to_string())));
    }

    #[test]
    fn delete_revokes_and_reports() {
        let mut s = MemoryKeyStore::new();
        let k = s.get_or_create("movie").expect("get");
        assert_eq!(s.delete("movie"), Ok(true));
        assert_eq!(s.room_for_key(&k), Ok(None));
        assert_eq!(s.delete("movie"), Ok(false));
        assert_eq!(s.room_count(), 0);
        let again = s.get_or_create("movie").expect("get");
        assert_ne!(again, k);
    }

    #[test]
    fn colliding_keys_are_retried_then_reported() {
        let script = Rc::new(RefCell::new(vec!["A", "A", "A", "B"].into_iter()));
        let src = script.clone();
        let mut s = MemoryKeyStore::with_generator(move || {
            Ok(src.borrow_mut().next().unwrap_or("A").to_string())
        });
        assert_eq!(s.get_or_create("r1"), Ok("A".to_string()));
        // "A" is taken twice more, then "B" is free.
        assert_eq!(s.get_or_create("r2"), Ok("B".to_string()));
        // Only "A" from now on: bounded retries, then an error, and nothing changes.
        let err = s.reset("r2").expect_err("collision");
        assert!(matches!(err, StoreError::KeyGeneration(_)));
        assert_eq!(s.room_for_key("B"), Ok(Some("r2".to_string())));
    }

    #[test]
    fn generator_failure_is_an_error_not_a_panic() {
        let mut s =
            MemoryKeyStore::with_generator(|| Err(StoreError::KeyGeneration("no entropy".into())));
        let err = s.get_or_create("r").expect_err("fails");
        assert_eq!(err.to_string(), "cannot generate key: no entropy");
        assert_eq!(s.room_count(), 0);
    }

    #[test]
    fn debug_does_not_leak_keys() {
        let mut s = MemoryKeyStore::new();
        let k = s.get_or_create("movie").expect("get");
        let shown = format!("{s:?}");
        assert!(!shown.contains(&k));
        assert!(!shown.contains("movie"));
    }
}
