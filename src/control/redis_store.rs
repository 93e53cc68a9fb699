//! Room keys in Redis, in livego's layout (DB 0, no prefix, no TTL): `SET <room> <key>` and
//! `SET <key> <room>`, so a Redis shared with livego servers keeps working.
//!
//! Differences from livego, all on the side of safety: reset and delete revoke the old key
//! (`DEL <oldkey>`), and a key authorises a publish only if the room still points back at it, so
//! stale `key -> room` entries that livego itself leaves behind do not work here.
//!
//! The client is the synchronous `redis` crate: every method blocks, bounded by the connect,
//! read and write timeouts. It must run off the shard executor (see `store::KeyService`). A
//! failed call drops the connection; the next call reconnects, so recovery needs no restart.

use std::fmt;
use std::time::Duration;

use redis::{Client, Connection, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};

use super::keys::{looks_like_key, try_generate_key, KeyStore, StoreError};

/// Bounds of one Redis round trip; with at most a few commands per operation the whole
/// operation stays under the API's 2 s answer bound in the usual failure modes (refused, reset).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
pub const IO_TIMEOUT: Duration = Duration::from_millis(1000);

/// Fresh keys tried before giving up on uniqueness.
const MAX_KEY_ATTEMPTS: usize = 16;

pub struct RedisKeyStore {
    client: Client,
    addr: String,
    /// Sent by us once the connection has its timeouts (empty = none): see `connection`.
    password: String,
    conn: Option<Connection>,
}

impl fmt::Debug for RedisKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password is never printed.
        f.debug_struct("RedisKeyStore")
            .field("addr", &self.addr)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

/// Splits livego's `host:port` (`:6379` means localhost, as go-redis dials it).
pub fn parse_addr(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("redis_addr '{addr}': expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("redis_addr '{addr}': bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    Ok((host.to_string(), port))
}

fn unavailable(e: impl fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

impl RedisKeyStore {
    /// A store for `addr` (`host:port`) and `password` (empty = none). Does not connect yet:
    /// the server starts even when Redis is down, and answers 503 until it is back.
    pub fn new(addr: &str, password: &str) -> Result<RedisKeyStore, String> {
        let (host, port) = parse_addr(addr)?;
        // No password and no setup commands (the crate's CLIENT SETINFO is compiled out): the
        // crate would send them and wait for the answers on a socket without a read timeout,
        // and a Redis that accepts but never answers would hold that wait, and the one
        // blocking thread the store runs on, forever.
        let info = ConnectionInfo {
            addr: ConnectionAddr::Tcp(host, port),
            redis: RedisConnectionInfo {
                db: 0,
                username: None,
                password: None,
                protocol: Default::default(),
            },
        };
        let client = Client::open(info).map_err(|e| format!("redis_addr '{addr}': {e}"))?;
        Ok(RedisKeyStore {
            client,
            addr: addr.to_string(),
            password: password.to_string(),
            conn: None,
        })
    }

    fn connection(&mut self) -> Result<&mut Connection, StoreError> {
        if self.conn.is_none() {
            let mut conn = self
                .client
                .get_connection_with_timeout(CONNECT_TIMEOUT)
                .map_err(unavailable)?;
            conn.set_read_timeout(Some(IO_TIMEOUT))
                .map_err(unavailable)?;
            conn.set_write_timeout(Some(IO_TIMEOUT))
                .map_err(unavailable)?;
            if !self.password.is_empty() {
                redis::cmd("AUTH")
                    .arg(&self.password)
                    .query::<()>(&mut conn)
                    .map_err(unavailable)?;
            }
            tracing::info!("key store: connected to Redis at {}", self.addr);
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connection set above"))
    }

    /// Runs `f` on the connection; any error drops it so the next call reconnects.
    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let conn = self.connection()?;
        match f(conn) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.conn = None;
                Err(unavailable(e))
            }
        }
    }

    fn get(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        self.with_conn(|c| redis::cmd("GET").arg(name).query(c))
    }

    /// A key no room uses yet (checked against Redis, as livego did).
    fn unused_key(&mut self) -> Result<String, StoreError> {
        for _ in 0..MAX_KEY_ATTEMPTS {
            let key = try_generate_key().map_err(|e| StoreError::KeyGeneration(e.to_string()))?;
            let taken: bool = self.with_conn(|c| redis::cmd("EXISTS").arg(&key).query(c))?;
            if !taken {
                return Ok(key);
            }
        }
        Err(StoreError::KeyGeneration(
            "no unused key after repeated attempts".into(),
        ))
    }
}

impl KeyStore for RedisKeyStore {
    fn get_or_create(&mut self, room: &str) -> Result<String, StoreError> {
        if let Some(key) = self.get(room)? {
            return Ok(key);
        }
        let key = self.unused_key()?;
        // `key -> room` first, then `room -> key` only if no other server created the room
        // meanwhile; the loser removes its key and returns the winner's.
        let created: bool = self.with_conn(|c| {
            redis::cmd("SET").arg(&key).arg(room).query::<()>(c)?;
            let r: Option<String> = redis::cmd("SET").arg(room).arg(&key).arg("NX").query(c)?;
            Ok(r.is_some())
        })?;
        if created {
            return Ok(key);
        }
        self.with_conn(|c| redis::cmd("DEL").arg(&key).query::<()>(c))?;
        self.get(room)?
            .ok_or_else(|| StoreError::Unavailable("redis: room vanished during creation".into()))
    }

    fn reset(&mut self, room: &str) -> Result<String, StoreError> {
        let key = self.unused_key()?;
        let old: Option<String> = self.with_conn(|c| {
            let (_, old): ((), Option<String>) = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&key)
                .arg(room)
                .cmd("GETSET")
                .arg(room)
                .arg(&key)
                .query(c)?;
            Ok(old)
        })?;
        if let Some(old) = old.filter(|o| *o != key) {
            self.with_conn(|c| redis::cmd("DEL").arg(&old).query::<()>(c))?;
        }
        Ok(key)
    }

    fn delete(&mut self, room: &str) -> Result<bool, StoreError> {
        let Some(key) = self.get(room)? else {
            return Ok(false);
        };
        self.with_conn(|c| redis::cmd("DEL").arg(room).arg(&key).query::<()>(c))?;
        Ok(true)
    }

    fn room_for_key(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        // Rooms and keys share one namespace: without the shape check a room name would
        // "resolve" to its own key.
        if !looks_like_key(key) {
            return Ok(None);
        }
        let Some(room) = self.get(key)? else {
            return Ok(None);
        };
        let current = self.get(&room)?;
        Ok((current.as_deref() == Some(key)).then_some(room))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("localhost:6379"), Ok(("localhost".into(), 6379)));
        assert_eq!(parse_addr(":6380"), Ok(("127.0.0.1".into(), 6380)));
        assert_eq!(parse_addr("[::1]:7000"), Ok(("::1".into(), 7000)));
        assert!(parse_addr("localhost").is_err());
        assert!(parse_addr("h:99999").is_err());
    }

    #[test]
    fn down_redis_is_an_error_not_a_hang() {
        // Port 1 on loopback: nothing listens, the connect is refused at once.
        let mut s = RedisKeyStore::new("127.0.0.1:1", "pw").expect("store");
        let t0 = std::time::Instant::now();
        let err = s.get_or_create("movie").expect_err("down");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(err
            .to_string()
            .starts_with("key store unavailable: redis: "));
        assert!(t0.elapsed() < CONNECT_TIMEOUT * 2);
        assert!(!format!("{s:?}").contains("pw"));
        // Not a key shape: no Redis round trip at all.
        assert_eq!(s.room_for_key("movie"), Ok(None));
    }
}
