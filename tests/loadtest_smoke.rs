//! Short runs of the load harness against our server: a few dozen native RTMP (then HTTP-FLV)
//! players on one stream from the native publisher, each of which must receive a continuous
//! stream that starts at a keyframe, with delivery latency measured.

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::Server;
use loadtest::report::Summary;
use loadtest::run::{run_once, run_servers, Params, PublisherKind, Scenario, Target};
use loadtest::server::Kind;
use loadtest::swarm::Proto;

const PLAYERS: usize = 30;

/// One load run at a time: each is a server, a 2-thread swarm and a publisher, and two at once
/// on a 2-vCPU machine starve each other into stalls, slow first frames and low throughput,
/// which the checks below would blame on the server.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A test that failed while holding the lock poisons it; the next run is still valid.
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn params(proto: Proto) -> Params {
    Params {
        scenario: Scenario::Fanout,
        proto,
        publisher: PublisherKind::Native,
        streams: 1,
        viewers: PLAYERS,
        publishers: 1,
        kbit: 600,
        gop_secs: 2,
        duration: Duration::from_secs(4),
        warmup: Duration::from_secs(1),
        threads: 2,
        media_dir: common::target_dir().join("loadtest-media"),
        progress: false,
    }
}

fn smoke(proto: Proto, play: impl Fn(&Server) -> String) -> Summary {
    let _turn = one_at_a_time();
    let server = Server::start(&[]);
    let key = server.key_for("smoke");
    let params = params(proto);
    let target = Target::Urls {
        play: play(&server),
        publish: Some(server.rtmp_url(&format!("live/{key}"))),
    };
    let s = run_once(&params, &target).expect("load run");
    assert_eq!(s.publishers_held, 1, "{:?}", s.first_problems);
    assert_eq!(s.players, PLAYERS);
    assert_eq!(
        s.players_held, PLAYERS,
        "players not holding: {:?}\nsummary: {s:?}",
        s.first_problems
    );
    assert_eq!(s.stalls, 0);
    // ~65 frames/s per player over the 4 s window, with room for a slow machine
    assert!(
        s.latency_samples > PLAYERS * 4 * 30,
        "{} latency samples",
        s.latency_samples
    );
    assert!(
        s.gbit_per_s * 1e6 > PLAYERS as f64 * 400.0,
        "{} Gbit/s delivered",
        s.gbit_per_s
    );
    assert!(
        s.ttff_ms_p99.is_some_and(|t| t < 3000.0),
        "{:?}",
        s.ttff_ms_p99
    );
    s
}

#[test]
fn smoke_rtmp_fanout_every_player_continuous() {
    smoke(Proto::Rtmp, |s| s.rtmp_url("live/smoke"));
}

#[test]
fn smoke_httpflv_fanout_every_player_continuous() {
    smoke(Proto::HttpFlv, |s| {
        format!("http://127.0.0.1:{}/live/smoke.flv", s.httpflv_port)
    });
}

/// `--server livego=PATH` starts the binary the way the Go livego is started (a `livego.yaml`
/// and livego's flags). Our binary reads livego's config as is, so it stands in for the Go one
/// here and the launch path is exercised end to end.
#[test]
fn livego_launch_path_runs_a_livego_compatible_binary() {
    let _turn = one_at_a_time();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_livego"));
    let rows = run_servers(&params(Proto::Rtmp), &[Kind::Livego(bin)], &[10], 1)
        .expect("run against livego=PATH");
    assert_eq!(rows.len(), 1);
    let s = &rows[0];
    assert_eq!(s.server, "livego");
    assert_eq!(s.players_held, 10, "{:?}", s.first_problems);
    assert!(s.server_cpu_percent.is_some(), "server CPU measured by PID");
}
