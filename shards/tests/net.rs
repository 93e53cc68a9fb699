//! Sockets on real shards: SO_REUSEPORT listeners, split halves with vectored sends, hand-off.

mod common;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::os::fd::OwnedFd;
use std::time::Duration;

use bytes::Bytes;
use common::{collect, stop_and_join, Rng};
use futures_lite::future;
use shards::{
    attach, detach, reuseport_listener, split, Incoming, Runtime, RuntimeConfig, ShardCtx,
};

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn connect(addr: SocketAddr) -> StdTcpStream {
    let s = StdTcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

enum NetMsg {
    Port(u16),
    Conn(OwnedFd),
}

#[test]
fn two_shards_share_a_port_and_both_accept() {
    const CONNS: usize = 200;
    let (ready_tx, ready_rx) = crossbeam_channel::unbounded::<u16>();
    let handle = Runtime::start(
        RuntimeConfig {
            shards: 2,
            channel_capacity: 8,
        },
        move |ctx: ShardCtx<NetMsg>| {
            let ready_tx = ready_tx.clone();
            async move {
                // Shard 0 picks a free port and tells shard 1, which binds the same one.
                let port = if ctx.id == 0 {
                    let l = reuseport_listener(localhost(0)).expect("bind 0");
                    let port = l.local_addr().unwrap().port();
                    assert!(ctx.router.send(1, NetMsg::Port(port)).await.is_ok());
                    Some((l, port))
                } else {
                    None
                };
                let (listener, port) = match port {
                    Some(lp) => lp,
                    None => {
                        let (tx, rx) = glommio::channels::local_channel::new_bounded(1);
                        ctx.router.serve(move |inc: Incoming<NetMsg>| {
                            if let NetMsg::Port(p) = inc.msg {
                                let _ = tx.try_send(p);
                            }
                        });
                        let port = rx.recv().await.expect("port from shard 0");
                        (
                            reuseport_listener(localhost(port)).expect("bind same port"),
                            port,
                        )
                    }
                };
                ready_tx.send(port).unwrap();
                let id = ctx.id as u8;
                loop {
                    let accepted = future::or(async { Some(listener.accept().await) }, async {
                        ctx.stop.wait().await;
                        None
                    })
                    .await;
                    let Some(accepted) = accepted else { break };
                    let mut conn = accepted.expect("accept");
                    glommio::spawn_local(async move {
                        use futures_lite::{AsyncReadExt, AsyncWriteExt};
                        let mut b = [0u8; 1];
                        conn.read_exact(&mut b).await.unwrap();
                        conn.write_all(&[b[0], id]).await.unwrap();
                    })
                    .detach();
                }
            }
        },
        |ctx: ShardCtx<NetMsg>| async move { ctx.stop.wait().await },
    )
    .expect("start");

    let ports = collect(&ready_rx, 2, Duration::from_secs(10));
    assert_eq!(ports[0], ports[1]);
    let addr = localhost(ports[0]);
    let mut per_shard = [0usize; 2];
    for i in 0..CONNS {
        let mut s = connect(addr);
        s.write_all(&[i as u8]).unwrap();
        let mut reply = [0u8; 2];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(reply[0], i as u8);
        per_shard[usize::from(reply[1])] += 1;
    }
    assert_eq!(per_shard[0] + per_shard[1], CONNS);
    assert!(
        per_shard[0] > 0 && per_shard[1] > 0,
        "kernel spread: {per_shard:?}"
    );
    stop_and_join(handle, Duration::from_secs(10)).expect("clean join");
}

/// 1000 random-sized buffers totalling 20 MiB, deterministic content.
fn payload() -> Vec<Bytes> {
    const TOTAL: usize = 20 << 20;
    const N: usize = 1000;
    let mut rng = Rng::new(0x5eed);
    let mut sizes: Vec<usize> = (0..N)
        .map(|_| 1 + rng.below((2 * TOTAL / N) as u64) as usize)
        .collect();
    let sum: usize = sizes[..N - 1].iter().sum();
    sizes[N - 1] = TOTAL.saturating_sub(sum).max(1);
    let mut stream_rng = Rng::new(42);
    sizes
        .into_iter()
        .map(|n| {
            Bytes::from(
                (0..n)
                    .map(|_| stream_rng.next_u64() as u8)
                    .collect::<Vec<u8>>(),
            )
        })
        .collect()
}

#[test]
fn split_halves_send_20_mib_to_a_slow_reader_while_reading() {
    let bufs = payload();
    let expected: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
    let upload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let upload_len = upload.len();
    let upload_copy = upload.clone();

    let (port_tx, port_rx) = crossbeam_channel::unbounded::<u16>();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<(String, u64)>();
    // `bufs` moves into the shard through a Mutex<Option<_>> because data_main is Fn + Sync.
    let bufs = std::sync::Arc::new(std::sync::Mutex::new(Some(bufs)));
    let handle = Runtime::start(
        RuntimeConfig {
            shards: 1,
            channel_capacity: 4,
        },
        move |ctx: ShardCtx<()>| {
            let (port_tx, done_tx, bufs) = (port_tx.clone(), done_tx.clone(), bufs.clone());
            let upload = upload_copy.clone();
            async move {
                let listener = reuseport_listener(localhost(0)).unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let stream = listener.accept().await.unwrap();
                let (mut rd, mut wr) = split(stream).unwrap();
                let bufs = bufs.lock().unwrap().take().unwrap();

                let reader = glommio::spawn_local(async move {
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 8192];
                    loop {
                        let n = rd.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                        assert!(got.len() <= upload.len(), "peer sent too much");
                    }
                    assert!(got == upload, "read half got wrong bytes");
                    got.len() as u64
                });

                let mut sent = 0usize;
                let mut it = bufs.into_iter().peekable();
                let mut round = 0usize;
                while it.peek().is_some() {
                    // Varying batch sizes, some above what one sendmsg takes at once.
                    let take = [1usize, 7, 100, 300][round % 4];
                    round += 1;
                    let mut q: VecDeque<Bytes> = it.by_ref().take(take).collect();
                    sent += wr.write_vectored_all(&mut q).await.unwrap();
                    assert!(q.is_empty());
                }
                let stalls = wr.stalls();
                let read = reader.await;
                done_tx.send(("sent".into(), sent as u64)).unwrap();
                done_tx.send(("stalls".into(), stalls)).unwrap();
                done_tx.send(("read".into(), read)).unwrap();
                wr.shutdown();
                ctx.stop.wait().await;
            }
        },
        |ctx: ShardCtx<()>| async move { ctx.stop.wait().await },
    )
    .expect("start");

    let port = collect(&port_rx, 1, Duration::from_secs(10))[0];
    let mut s = connect(localhost(port));
    let mut up = s.try_clone().unwrap();
    let uploader = std::thread::spawn(move || {
        for chunk in upload.chunks(1000) {
            up.write_all(chunk).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
        up.shutdown(std::net::Shutdown::Write).unwrap();
    });
    // Slow reader: small reads with pauses, so the shard's socket buffer fills up.
    let mut got = Vec::with_capacity(expected.len());
    let mut buf = vec![0u8; 32 << 10];
    let mut reads = 0;
    while got.len() < expected.len() {
        reads += 1;
        assert!(reads < 1_000_000, "reader made no progress");
        let want = buf.len().min(expected.len() - got.len());
        let n = s.read(&mut buf[..want]).unwrap();
        assert!(n > 0, "early EOF after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        if reads % 4 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(got == expected, "byte mismatch in the 20 MiB stream");
    uploader.join().unwrap();

    let done = collect(&done_rx, 3, Duration::from_secs(30));
    assert_eq!(done[0], ("sent".to_string(), expected.len() as u64));
    assert!(done[1].1 > 0, "the slow reader never made the writer wait");
    assert_eq!(done[2], ("read".to_string(), upload_len as u64));
    // After shutdown the peer sees EOF.
    let mut rest = [0u8; 1];
    assert_eq!(s.read(&mut rest).unwrap(), 0);
    stop_and_join(handle, Duration::from_secs(10)).expect("clean join");
}

#[test]
fn shutdown_wakes_a_blocked_reader() {
    let (port_tx, port_rx) = crossbeam_channel::unbounded::<u16>();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<usize>();
    let handle = Runtime::start(
        RuntimeConfig {
            shards: 1,
            channel_capacity: 4,
        },
        move |ctx: ShardCtx<()>| {
            let (port_tx, done_tx) = (port_tx.clone(), done_tx.clone());
            async move {
                let listener = reuseport_listener(localhost(0)).unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let stream = listener.accept().await.unwrap();
                let (mut rd, wr) = split(stream).unwrap();
                let reader = glommio::spawn_local(async move {
                    let mut b = [0u8; 16];
                    rd.read(&mut b).await.unwrap_or(0)
                });
                glommio::timer::sleep(Duration::from_millis(50)).await;
                wr.shutdown();
                done_tx.send(reader.await).unwrap();
                ctx.stop.wait().await;
            }
        },
        |ctx: ShardCtx<()>| async move { ctx.stop.wait().await },
    )
    .expect("start");
    let port = collect(&port_rx, 1, Duration::from_secs(10))[0];
    let _client = connect(localhost(port));
    assert_eq!(collect(&done_rx, 1, Duration::from_secs(10)), vec![0]);
    stop_and_join(handle, Duration::from_secs(10)).expect("clean join");
}

#[test]
fn a_connection_moves_to_another_shard_mid_conversation() {
    let (port_tx, port_rx) = crossbeam_channel::unbounded::<u16>();
    let handle = Runtime::start(
        RuntimeConfig {
            shards: 2,
            channel_capacity: 4,
        },
        move |ctx: ShardCtx<NetMsg>| {
            let port_tx = port_tx.clone();
            async move {
                use futures_lite::{AsyncReadExt, AsyncWriteExt};
                if ctx.id == 0 {
                    let listener = reuseport_listener(localhost(0)).unwrap();
                    port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                    let mut conn = listener.accept().await.unwrap();
                    let mut b = [0u8; 5];
                    conn.read_exact(&mut b).await.unwrap();
                    assert_eq!(&b, b"hello");
                    conn.write_all(b"ack0").await.unwrap();
                    let fd = detach(conn).unwrap();
                    assert!(ctx.router.send(1, NetMsg::Conn(fd)).await.is_ok());
                } else {
                    let (tx, rx) = glommio::channels::local_channel::new_bounded(1);
                    ctx.router.serve(move |inc: Incoming<NetMsg>| {
                        if let NetMsg::Conn(fd) = inc.msg {
                            let _ = tx.try_send(fd);
                        }
                    });
                    let fd = rx.recv().await.unwrap();
                    let mut conn = attach(fd);
                    let mut b = [0u8; 5];
                    conn.read_exact(&mut b).await.unwrap();
                    assert_eq!(&b, b"world");
                    conn.write_all(format!("ack{}", ctx.id).as_bytes())
                        .await
                        .unwrap();
                    let mut end = [0u8; 1];
                    assert_eq!(conn.read(&mut end).await.unwrap(), 0);
                }
                ctx.stop.wait().await;
            }
        },
        |ctx: ShardCtx<NetMsg>| async move { ctx.stop.wait().await },
    )
    .expect("start");
    let port = collect(&port_rx, 1, Duration::from_secs(10))[0];
    let mut s = connect(localhost(port));
    s.write_all(b"hello").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ack0");
    s.write_all(b"world").unwrap();
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ack1");
    s.shutdown(std::net::Shutdown::Write).unwrap();
    drop(s);
    stop_and_join(handle, Duration::from_secs(10)).expect("clean join");
}
