//! A short run of the load harness against our server: a few dozen native RTMP players on one
//! stream from the native publisher, each of which must receive a continuous stream that starts
//! at a keyframe, with delivery latency measured.

mod common;

use std::time::Duration;

use common::Server;
use loadtest::run::{run_once, Params, PublisherKind, Scenario, Target};
use loadtest::swarm::Proto;

#[test]
fn smoke_fanout_every_player_continuous() {
    let server = Server::start(&[]);
    let key = server.key_for("smoke");
    let params = Params {
        scenario: Scenario::Fanout,
        proto: Proto::Rtmp,
        publisher: PublisherKind::Native,
        streams: 1,
        viewers: 30,
        publishers: 1,
        kbit: 600,
        gop_secs: 2,
        duration: Duration::from_secs(4),
        warmup: Duration::from_secs(1),
        threads: 2,
        media_dir: common::target_dir().join("loadtest-media"),
        progress: false,
    };
    let target = Target::Urls {
        play: server.rtmp_url("live/smoke"),
        publish: Some(server.rtmp_url(&format!("live/{key}"))),
    };
    let s = run_once(&params, &target).expect("load run");
    assert_eq!(s.publishers_held, 1, "{:?}", s.first_problems);
    assert_eq!(s.players, 30);
    assert_eq!(
        s.players_held, 30,
        "players not holding: {:?}\nsummary: {s:?}",
        s.first_problems
    );
    assert_eq!(s.stalls, 0);
    // 30 players x 4 s x ~65 frames/s, allowing for slow CI
    assert!(
        s.latency_samples > 30 * 4 * 30,
        "{} latency samples",
        s.latency_samples
    );
    assert!(
        s.gbit_per_s * 1e3 > 30.0 * 0.4,
        "{} Gbit/s delivered",
        s.gbit_per_s
    );
    assert!(
        s.ttff_ms_p99.is_some_and(|t| t < 3000.0),
        "{:?}",
        s.ttff_ms_p99
    );
}
