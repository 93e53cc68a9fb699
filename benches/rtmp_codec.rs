//! Hot paths of the RTMP layer: chunk decode and encode of video-sized messages, AMF0 of a
//! connect command object.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use livego::rtmp::amf0::{self, Value};
use livego::rtmp::chunk::{encode_message, ChunkDecoder, ChunkLimits, Message};

const CHUNK_SIZE: usize = 4096;
const MESSAGES: usize = 100;
const MESSAGE_LEN: usize = 16 * 1024;

fn video_messages() -> Vec<Message> {
    (0..MESSAGES)
        .map(|i| Message {
            type_id: 9,
            timestamp: i as u32 * 40,
            stream_id: 1,
            payload: Bytes::from(vec![(i % 251) as u8; MESSAGE_LEN]),
        })
        .collect()
}

fn chunk_codec(c: &mut Criterion) {
    let msgs = video_messages();
    let mut wire = BytesMut::new();
    for m in &msgs {
        encode_message(&mut wire, CHUNK_SIZE, 6, m);
    }
    let wire = wire.freeze();

    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Bytes((MESSAGES * MESSAGE_LEN) as u64));
    g.bench_function("decode_100x16KiB_cs4096", |b| {
        b.iter(|| {
            let mut d = ChunkDecoder::new(ChunkLimits::default());
            d.set_chunk_size(CHUNK_SIZE as u32).unwrap();
            // Socket-sized reads.
            let mut n = 0;
            for piece in wire.chunks(64 * 1024) {
                d.push(piece);
                while let Some(m) = d.next_message().unwrap() {
                    n += m.payload.len();
                }
            }
            black_box(n)
        })
    });
    g.bench_function("encode_100x16KiB_cs4096", |b| {
        let mut out = BytesMut::with_capacity(wire.len());
        b.iter(|| {
            out.clear();
            for m in &msgs {
                encode_message(&mut out, CHUNK_SIZE, 6, m);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

fn amf(c: &mut Criterion) {
    let connect = vec![
        Value::from("connect"),
        Value::Number(1.0),
        amf0::object(&[
            ("app", "live".into()),
            ("type", "nonprivate".into()),
            ("flashVer", "FMLE/3.0 (compatible; FMSc/1.0)".into()),
            ("swfUrl", "rtmp://127.0.0.1:1935/live".into()),
            ("tcUrl", "rtmp://127.0.0.1:1935/live".into()),
            ("fpad", false.into()),
            ("capabilities", Value::Number(239.0)),
            ("audioCodecs", Value::Number(3575.0)),
            ("videoCodecs", Value::Number(252.0)),
            ("videoFunction", Value::Number(1.0)),
            ("objectEncoding", Value::Number(0.0)),
        ]),
    ];
    let bytes = amf0::encode_all(&connect).freeze();
    let mut g = c.benchmark_group("amf0");
    g.bench_function("decode_connect", |b| {
        b.iter(|| black_box(amf0::decode_all(black_box(&bytes)).unwrap()))
    });
    g.bench_function("encode_connect", |b| {
        b.iter(|| black_box(amf0::encode_all(black_box(&connect))))
    });
    g.finish();
}

criterion_group!(benches, chunk_codec, amf);
criterion_main!(benches);
