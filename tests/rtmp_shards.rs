//! Several streams on `--shards 2`: owners on both shards, players spread by the kernel over
//! both shards, every recording byte-exact.

mod common;

use common::*;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Three rooms owned by shard 0 and three by shard 1 (FNV-1a 64 of "live/<room>" mod 2).
fn rooms_on_both_shards() -> Vec<String> {
    let mut per_shard: [Vec<String>; 2] = [vec![], vec![]];
    for i in 0.. {
        let room = format!("room{i}");
        let owner = owner_shard(&room, 2) as usize;
        if per_shard[owner].len() < 3 {
            per_shard[owner].push(room);
        }
        if per_shard.iter().all(|v| v.len() == 3) {
            break;
        }
    }
    per_shard.concat()
}

#[test]
fn six_streams_on_two_shards_are_exact() {
    let rooms = rooms_on_both_shards();
    assert_eq!(rooms.len(), 6);
    let s = Server::start(&["--shards", "2", "--play_wait_timeout", "20"]);
    let dir = scratch_dir();
    let kinds = [Media::Av, Media::AvAlt];
    let mut players = Vec::new();
    for (i, room) in rooms.iter().enumerate() {
        let url = s.rtmp_url(&format!("live/{room}"));
        // Two ffmpeg players per stream: with the kernel spreading connections, some stream has
        // players on the shard that does not own it.
        for (j, kind) in [PlayerKind::Ffmpeg, PlayerKind::Ffmpeg, PlayerKind::Rtmpdump]
            .into_iter()
            .enumerate()
        {
            players.push((
                i,
                Recorder::start(kind, &url, dir.path(), &format!("{room}-{j}")),
            ));
        }
    }
    sleep(Duration::from_millis(700));
    let mut publishers: Vec<ProcGuard> = rooms
        .iter()
        .enumerate()
        .map(|(i, room)| {
            let key = s.key_for(room);
            ffmpeg_publish(&media(kinds[i % 2]), &s.rtmp_url(&format!("live/{key}")))
        })
        .collect();
    for p in &mut publishers {
        p.wait_success(PUBLISH_TIMEOUT);
    }
    let sources = [media_tags(kinds[0]), media_tags(kinds[1])];
    for (i, p) in &mut players {
        let m = assert_recording(p, &sources[*i % 2], true);
        assert_eq!(m.video_start, 0, "{}: frames missing at the start", p.label);
    }
}

#[test]
fn late_players_on_two_shards_are_exact() {
    let rooms = rooms_on_both_shards();
    let s = Server::start(&["--shards", "2"]);
    let dir = scratch_dir();
    let rooms = [&rooms[0], &rooms[3]];
    let mut publishers: Vec<ProcGuard> = rooms
        .iter()
        .map(|room| {
            let key = s.key_for(room);
            ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")))
        })
        .collect();
    // Join once each publisher is well past its first GOPs, measured by the server itself
    // (a fixed sleep is not enough on a loaded machine, where ffmpeg starts slowly).
    let source = media_tags(Media::Av);
    let source_video: u64 = source
        .iter()
        .filter(|t| t.kind == flv::TAG_VIDEO)
        .map(|t| t.data.len() as u64)
        .sum();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, stat) = s.api_json("/stat/livestat");
        let sent = |room: &str| -> u64 {
            stat["data"]["publishers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["key"] == format!("live/{room}").as_str())
                .filter_map(|p| p["video_total_bytes"].as_u64())
                .sum()
        };
        if rooms.iter().all(|r| sent(r) * 10 >= source_video * 4) {
            break;
        }
        assert!(Instant::now() < deadline, "publishers too slow: {stat}");
        sleep(Duration::from_millis(100));
    }
    let mut players = Vec::new();
    for room in rooms {
        for j in 0..3 {
            let url = s.rtmp_url(&format!("live/{room}"));
            players.push(Recorder::start(
                PlayerKind::Rtmpdump,
                &url,
                dir.path(),
                &format!("{room}-late{j}"),
            ));
        }
    }
    for p in &mut publishers {
        p.wait_success(PUBLISH_TIMEOUT);
    }
    for p in &mut players {
        let m = assert_recording(p, &source, true);
        assert!(
            m.video_start > 0,
            "{}: a late player got the whole stream",
            p.label
        );
    }
}
