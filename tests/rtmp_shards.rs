//! Several streams on `--shards 2`: owners on both shards, players spread by the kernel over
//! both shards and served there from mirrors (`hot_players = 0`) or moved to the owner (the
//! default, for small audiences), every recording byte-exact.

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
    // Players stay on the shard that accepted them: streams are served through mirrors.
    let config = format!("{DEFAULT_CONFIG}[shards]\nhot_players = 0\n");
    let s = Server::start_with_config(&config, &["--shards", "2", "--play_wait_timeout", "20"]);
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
    wait_players(&s, players.len() as u64);
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

#[test]
fn a_small_audience_is_served_by_the_owner_shard() {
    let room = "movie";
    let owner = owner_shard(room, 2);
    let s = Server::start(&[
        "--shards",
        "2",
        "--play_wait_timeout",
        "20",
        "--flv_wait_publisher",
    ]);
    let dir = scratch_dir();
    let url = s.rtmp_url(&format!("live/{room}"));
    let flv = format!("http://127.0.0.1:{}/live/{room}.flv", s.httpflv_port);
    // The kernel spreads these over both shards; the ones on the other shard move to the owner.
    let mut players: Vec<Recorder> = (0..6)
        .map(|j| {
            let (kind, url) = match j {
                0 | 2 => (PlayerKind::Ffmpeg, &url),
                1 | 3 => (PlayerKind::Rtmpdump, &url),
                _ => (PlayerKind::Ffmpeg, &flv),
            };
            Recorder::start(kind, url, dir.path(), &format!("p{j}"))
        })
        .collect();
    wait_players(&s, players.len() as u64);
    let key = s.key_for(room);
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let (status, text) = s.api_get("/metrics");
        assert_eq!(status, 200);
        if metric(&text, "livego_players{protocol=\"rtmp\"}") == 4
            && metric(&text, "livego_players{protocol=\"http-flv\"}") == 2
            && metric(&text, "livego_publishers") == 1
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "players never all joined:\n{text}"
        );
        sleep(Duration::from_millis(100));
    };
    let on = |shard: u64| {
        metric(
            &text,
            &format!("livego_shard_sessions{{shard=\"{shard}\"}}"),
        )
    };
    assert_eq!(
        on(owner),
        7,
        "publisher and every player on the owner:\n{text}"
    );
    assert_eq!(on(1 - owner), 0, "nothing left on the other shard:\n{text}");
    publisher.wait_success(PUBLISH_TIMEOUT);
    let source = media_tags(Media::Av);
    for p in &mut players {
        let m = assert_recording(p, &source, true);
        assert_eq!(m.video_start, 0, "{}: frames missing at the start", p.label);
    }
}
