//! The engine's hot path without sockets: one packet in, N player queues out, and the writer
//! side taking the shared RTMP bytes. Measures per-packet cost as the player count grows.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use livego::engine::{Feed, Item, PlayerQueue, QueueLimits};
use livego::media::{GopLimits, Packet};

fn video(ts: u32, size: usize) -> Packet {
    let mut body = vec![0u8; size];
    body[0] = if ts % 2000 == 0 { 0x17 } else { 0x27 };
    body[1] = 1;
    Packet::from_message(9, ts, Bytes::from(body)).unwrap()
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_4k_video_packet");
    for players in [1usize, 100, 1000] {
        group.throughput(Throughput::Elements(players as u64));
        group.bench_with_input(BenchmarkId::from_parameter(players), &players, |b, &n| {
            let mut feed = Feed::new(GopLimits::with_gop_num(1));
            let queues: Vec<_> = (0..n)
                .map(|i| {
                    let q = Rc::new(RefCell::new(PlayerQueue::new(QueueLimits::default())));
                    feed.add_player(i as u64, q.clone());
                    q
                })
                .collect();
            feed.set_live();
            let mut ts = 0u32;
            b.iter(|| {
                ts += 40;
                feed.push(video(ts, 4096));
                // every player's writer takes the frame's shared wire bytes
                let mut total = 0usize;
                for q in &queues {
                    while let Some(item) = q.borrow_mut().pop() {
                        if let Item::Frame(f) = item {
                            total += f.rtmp().len();
                        }
                    }
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
