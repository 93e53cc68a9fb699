//! Room keys in a real Redis (Debian `redis-server`, started by the test on a free port):
//! livego's layout, persistence across restarts, two servers sharing keys, and Redis going away
//! and coming back while the server runs.

mod common;

use common::rtmp::{Closed, RawRtmp};
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// A throwaway Redis without persistence, killed (own PID) on drop.
struct Redis {
    port: u16,
    proc: ProcGuard,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start_on(port: u16) -> Redis {
        Self::start_with(port, &[])
    }

    fn start_with(port: u16, extra: &[&str]) -> Redis {
        require_tool("redis-server");
        let dir = scratch_dir();
        let proc = ProcGuard::spawn(
            "redis-server",
            Command::new("redis-server")
                .current_dir(dir.path())
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(extra),
            &dir.path().join("redis.log"),
        );
        assert!(
            wait_port(port, Duration::from_secs(10)),
            "redis-server did not listen on {port}: {}",
            proc.log()
        );
        Redis {
            port,
            proc,
            _dir: dir,
        }
    }

    fn start() -> Redis {
        Self::start_on(free_port())
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `GET name` through redis-cli: what another livego would read.
    fn get(&self, name: &str) -> String {
        self.get_as(None, name)
    }

    fn get_as(&self, password: Option<&str>, name: &str) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(p) = password {
            // REDISCLI_AUTH keeps the password off the command line (and redis-cli's warning).
            cmd.env("REDISCLI_AUTH", p);
        }
        let out = cmd.args(["GET", name]).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn server_on(redis_addr: &str) -> Server {
    // Idle raw publishers must outlive the test's pauses.
    Server::start(&["--redis_addr", redis_addr, "--read_timeout", "60"])
}

/// connect + createStream + publish(name): the onStatus code and the open connection.
fn publish(s: &Server, name: &str) -> (String, RawRtmp) {
    let mut c = RawRtmp::connect(s.rtmp_port);
    c.handshake().expect("handshake");
    c.connect_app(s.rtmp_port, "live").expect("connect");
    let sid = c.create_stream().expect("createStream");
    let code = c
        .publish(sid, name)
        .unwrap_or_else(|e| panic!("publish: no onStatus ({e})"));
    (code, c)
}

#[track_caller]
fn assert_publish(s: &Server, name: &str, expected: &str) -> RawRtmp {
    let (code, c) = publish(s, name);
    assert_eq!(code, expected, "publish {name:?}");
    c
}

fn data(v: &serde_json::Value) -> String {
    v["data"].as_str().unwrap_or_default().to_string()
}

#[test]
fn livego_layout_persistence_and_two_servers() {
    let redis = Redis::start();
    let a = server_on(&redis.addr());
    let key = a.key_for("movie");
    // livego's layout: room -> key and key -> room, plain strings in DB 0.
    assert_eq!(redis.get("movie"), key);
    assert_eq!(redis.get(&key), "movie");

    // A second server on the same Redis sees the key and accepts it for publishing.
    let b = server_on(&redis.addr());
    assert_eq!(b.key_for("movie"), key);
    let publisher = assert_publish(&b, &key, "NetStream.Publish.Start");
    drop(publisher);

    // Reset on A revokes the old key on B too.
    let (status, v) = a.api_json("/control/reset?room=movie");
    assert_eq!(status, 200);
    let new_key = data(&v);
    assert_ne!(new_key, key);
    assert_eq!(redis.get(&key), "", "old key -> room must be deleted");
    assert_publish(&b, &key, "NetStream.Publish.BadName");
    drop(assert_publish(&b, &new_key, "NetStream.Publish.Start"));

    // Keys survive a restart.
    drop(a);
    let a = server_on(&redis.addr());
    assert_eq!(a.key_for("movie"), new_key);

    // Delete: 200 "Ok" (livego said 404), both entries gone, then 404.
    let (status, body) = a.api_get("/control/delete?room=movie");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":200,"data":"Ok"}"#)
    );
    assert_eq!(
        (redis.get("movie"), redis.get(&new_key)),
        (String::new(), String::new())
    );
    let (status, body) = b.api_get("/control/delete?room=movie");
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"status":404,"data":"room not found"}"#)
    );
    assert_publish(&b, &new_key, "NetStream.Publish.BadName");
    // A room name is never a key, even though rooms and keys share Redis' namespace.
    let other = a.key_for("news");
    assert_ne!(other, new_key);
    assert_publish(&b, "news", "NetStream.Publish.BadName");
}

/// Polls `f` until it returns `Some` or `bound` passes.
fn eventually<T>(bound: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn redis_down_gives_503_and_refusals_then_recovers() {
    let mut redis = Redis::start();
    let port = redis.port;
    let s = server_on(&redis.addr());
    let key = s.key_for("movie");
    let mut running = assert_publish(&s, &key, "NetStream.Publish.Start");

    redis.proc.kill();
    // The API answers 503 with the reason, within the bound.
    let t0 = Instant::now();
    let (status, v) = s.api_json("/control/get?room=movie");
    let took = t0.elapsed();
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"], 503);
    assert!(
        data(&v).starts_with("key store unavailable: redis: "),
        "{v}"
    );
    assert!(took < Duration::from_secs(3), "503 took {took:?}");
    for path in ["/control/reset?room=movie", "/control/delete?room=movie"] {
        assert_eq!(s.api_get(path).0, 503, "{path}");
    }
    // Publishing is refused while the store is down; the running publisher is untouched.
    assert_publish(&s, &key, "NetStream.Publish.BadName");
    assert!(s.log().contains("key store"), "no log line about the store");
    assert_eq!(
        running.wait_closed(Duration::from_millis(300)),
        Closed::TimedOut
    );
    let (_, stat) = s.api_json("/stat/livestat?room=live/movie");
    assert_eq!(stat["data"]["publishers"][0]["key"], "live/movie", "{stat}");
    let metrics = s.api_get("/metrics").1;
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("livego_keystore_errors_total{backend=\"redis\"} "))
        .and_then(|n| n.parse().ok())
        .expect("keystore error metric");
    assert!(errors >= 4, "{errors}");

    // Redis back on the same port (empty: it kept nothing): the server recovers by itself.
    let redis = Redis::start_on(port);
    let fresh = eventually(Duration::from_secs(10), || {
        let (status, v) = s.api_json("/control/get?room=movie");
        (status == 200).then(|| data(&v))
    })
    .expect("API did not recover after Redis came back");
    assert_eq!(redis.get("movie"), fresh);
    drop(assert_publish(&s, &fresh, "NetStream.Publish.Start"));
    drop(running);
}

#[test]
fn stalled_redis_answers_503_within_the_bound_then_recovers() {
    let redis = Redis::start();
    let s = server_on(&redis.addr());
    let key = s.key_for("movie");
    let pid = redis.proc.pid().expect("redis pid");
    // A stopped process keeps its socket open but never answers: the slow-Redis case.
    signal(pid, libc::SIGSTOP);
    let t0 = Instant::now();
    let (status, v) = s.api_json("/control/get?room=movie");
    let took = t0.elapsed();
    signal(pid, libc::SIGCONT);
    assert_eq!(status, 503, "{v}");
    assert!(took < Duration::from_secs(3), "503 took {took:?}");
    let again = eventually(Duration::from_secs(10), || {
        let (status, v) = s.api_json("/control/get?room=movie");
        (status == 200).then(|| data(&v))
    })
    .expect("API did not recover after Redis resumed");
    assert_eq!(again, key);
    drop(assert_publish(&s, &key, "NetStream.Publish.Start"));
}

/// Signals our own redis-server child (by its PID, never by name).
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the PID of a child this test spawned and still owns.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// `redis_pwd`: a Redis that requires a password is used with it; with a wrong one the API says
/// 503 (the store is unusable) and publishing is refused, without the password in the log.
#[test]
fn redis_password_is_used_and_a_wrong_one_refused() {
    const PASSWORD: &str = "s3cret-pw";
    let redis = Redis::start_with(free_port(), &["--requirepass", PASSWORD]);
    let s = Server::start(&[
        "--redis_addr",
        &redis.addr(),
        "--redis_pwd",
        PASSWORD,
        "--read_timeout",
        "60",
    ]);
    let key = s.key_for("movie");
    assert_eq!(redis.get_as(Some(PASSWORD), "movie"), key);
    drop(assert_publish(&s, &key, "NetStream.Publish.Start"));

    let wrong = Server::start(&["--redis_addr", &redis.addr(), "--redis_pwd", "nope"]);
    let (status, v) = wrong.api_json("/control/get?room=movie");
    assert_eq!(status, 503, "{v}");
    assert_publish(&wrong, &key, "NetStream.Publish.BadName");
    assert!(!wrong.log().contains("nope"), "password in the log");
    assert!(!s.log().contains(PASSWORD), "password in the log");
}

/// A Redis address where something accepts connections but never answers (a frozen process, a
/// proxy in front of a dead backend) gives 503s, and once a real Redis serves that address the
/// keys work again: no call stays stuck on the silent connection.
#[test]
fn a_silent_redis_gives_503_and_a_real_one_later_is_used() {
    let port = free_port();
    let silent = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the silent end");
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let accepter = {
        let silent = silent.try_clone().expect("clone listener");
        let held = held.clone();
        std::thread::spawn(move || {
            // Bounded: the test stops it by closing the listener (accept then fails).
            for _ in 0..64 {
                match silent.accept() {
                    Ok((conn, _)) => held.lock().unwrap().push(conn),
                    Err(_) => return,
                }
            }
        })
    };
    let s = server_on(&format!("127.0.0.1:{port}"));
    let t0 = Instant::now();
    let (status, v) = s.api_json("/control/get?room=movie");
    assert_eq!(status, 503, "{v}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // The silent end stops accepting but keeps the connections it holds open.
    // SAFETY: shutdown(2) on a listener we own wakes the accept thread with an error.
    unsafe {
        libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&silent), libc::SHUT_RDWR);
    }
    accepter.join().expect("accept thread");
    drop(silent);
    let redis = Redis::start_on(port);
    let key = eventually(Duration::from_secs(15), || {
        let (status, v) = s.api_json("/control/get?room=movie");
        (status == 200).then(|| data(&v))
    })
    .unwrap_or_else(|| {
        panic!(
            "the API never used the real Redis while {} silent connection(s) stayed open",
            held.lock().unwrap().len()
        )
    });
    assert_eq!(redis.get("movie"), key);
    drop(held);
}
