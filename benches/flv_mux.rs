//! FLV tag muxing (what an HTTP-FLV viewer's bytes cost once per shard): one 2 s GOP at
//! 25 fps video + 43 fps AAC, at 600 kbit/s and 2 Mbit/s, into one reused buffer.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use livego::flv::{encode_tag, tag_len};

/// (type, timestamp, body) of one GOP: a keyframe ~8x an inter frame, AAC frames of ~180 B.
fn gop(kbit: usize) -> Vec<(u8, u32, Vec<u8>)> {
    let video_bytes_per_frame = (kbit - 64) * 1000 / 8 / 25;
    let inter = video_bytes_per_frame * 50 / 57;
    let mut tags = vec![];
    for i in 0..50u32 {
        let size = if i == 0 { inter * 8 } else { inter };
        let mut body = vec![0x27u8; size];
        if i == 0 {
            body[0] = 0x17;
        }
        tags.push((9, i * 40, body));
    }
    for i in 0..86u32 {
        tags.push((8, i * 2000 / 86, vec![0xaf; 180]));
    }
    tags.sort_by_key(|t| t.1);
    tags
}

fn flv_mux(c: &mut Criterion) {
    let mut group = c.benchmark_group("flv_mux_gop");
    for kbit in [600usize, 2000] {
        let tags = gop(kbit);
        let total: usize = tags.iter().map(|t| tag_len(t.2.len())).sum();
        group.throughput(Throughput::Bytes(total as u64));
        group.bench_with_input(BenchmarkId::from_parameter(kbit), &tags, |b, tags| {
            let mut out = BytesMut::with_capacity(total);
            b.iter(|| {
                out.clear();
                for (t, ts, body) in tags {
                    encode_tag(&mut out, *t, *ts, body);
                }
                assert_eq!(out.len(), total);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, flv_mux);
criterion_main!(benches);
