//! Muxing one GOP (2 s of 25 fps H.264 at ~2 Mbit/s plus AAC) into MPEG-TS.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use livego::hls::Segmenter;
use livego::media::{Packet, PacketKind};

fn packet(kind: PacketKind, ts: u32, key: bool, seq: bool, payload: Vec<u8>) -> Packet {
    Packet {
        kind,
        timestamp: ts,
        keyframe: key,
        sequence_header: seq,
        payload: Bytes::from(payload),
    }
}

fn video(ts: u32, key: bool, size: usize) -> Packet {
    let mut p = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    // An SEI and one slice, 4-byte lengths.
    for (nal, len) in [(0x06u8, 20usize), (if key { 0x65 } else { 0x41 }, size)] {
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.push(nal);
        p.resize(p.len() + len - 1, 0x5a);
    }
    packet(PacketKind::Video, ts, key, false, p)
}

fn gop() -> (Vec<Packet>, usize) {
    let mut v = vec![
        packet(
            PacketKind::Video,
            0,
            false,
            true,
            vec![
                0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 3,
                0x68, 0xee, 0x3c,
            ],
        ),
        packet(PacketKind::Audio, 0, false, true, vec![0xaf, 0, 0x12, 0x10]),
    ];
    let mut bytes = 0;
    let mut audio_ts = 0u32;
    for i in 0..50u32 {
        let ts = i * 40;
        let size = if i == 0 { 60_000 } else { 8_000 };
        bytes += size;
        v.push(video(ts, i == 0, size));
        while audio_ts < ts + 40 {
            v.push(packet(PacketKind::Audio, audio_ts, false, false, {
                let mut a = vec![0xaf, 1];
                a.resize(372, 0x21);
                a
            }));
            audio_ts += 23;
            bytes += 370;
        }
    }
    // The next keyframe closes the segment.
    v.push(video(2000, true, 100));
    (v, bytes)
}

fn bench(c: &mut Criterion) {
    let (packets, bytes) = gop();
    let mut g = c.benchmark_group("ts_mux");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("gop_2s", |b| {
        b.iter(|| {
            let mut s = Segmenter::new(2000);
            let mut out = None;
            for p in &packets {
                if let Some(seg) = s.push(p) {
                    out = Some(seg);
                }
            }
            assert!(out.is_some());
            out
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
