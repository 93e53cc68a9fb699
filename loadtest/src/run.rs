//! Scenarios: fanout (1 stream, N players), ingest (N publishers), mixed (S streams x V
//! viewers) and ramp (fanout with N raised step by step until players fall behind).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::latency::SendLog;
use crate::proc_stats;
use crate::report::{self, percentile, Summary};
use crate::server::{Kind, Server};
use crate::swarm::{self, Live, PlayerSpec, Proto, PublisherSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Fanout,
    Ingest,
    Mixed,
    Ramp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PublisherKind {
    /// Our RTMP client in this process; gives delivery latency.
    Native,
    /// ffmpeg -re -stream_loop -1 -c copy: the real encoder path; no latency figures.
    Ffmpeg,
}

/// Where players and publishers go.
#[derive(Clone)]
pub enum Target<'a> {
    Server(&'a Server),
    /// A server someone else runs: play URL (rtmp:// or http://...flv) and publish URL.
    Urls {
        play: String,
        publish: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Params {
    pub scenario: Scenario,
    pub proto: Proto,
    pub publisher: PublisherKind,
    pub streams: usize,
    pub viewers: usize,
    pub publishers: usize,
    pub kbit: u32,
    pub gop_secs: u32,
    pub duration: Duration,
    pub warmup: Duration,
    pub threads: usize,
    pub media_dir: PathBuf,
    pub progress: bool,
}

fn room(i: usize) -> String {
    format!("load{i}")
}

fn spawn_ffmpeg(media: &std::path::Path, url: &str) -> Result<Child, String> {
    Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
        ])
        .arg(media)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run ffmpeg: {e}"))
}

struct Children(Vec<Child>);
impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One measured run: publishers, then players, then the window.
pub fn run_once(p: &Params, target: &Target) -> Result<Summary, String> {
    let media = crate::media::ensure(&p.media_dir, p.kbit, p.gop_secs)?;
    let tags = Arc::new(crate::media::load(&media)?);
    let (streams, viewers) = match p.scenario {
        Scenario::Ingest => (p.publishers, 0),
        Scenario::Mixed => (p.streams, p.viewers),
        Scenario::Fanout | Scenario::Ramp => (1, p.viewers),
    };
    let mut publishers = vec![];
    let mut players = vec![];
    for i in 0..streams {
        let (publish, play) = match target {
            Target::Server(s) => {
                let play = match p.proto {
                    Proto::Rtmp => s.rtmp_url(&room(i)),
                    Proto::HttpFlv => s
                        .flv_url(&room(i))
                        .ok_or(format!("{} has no HTTP-FLV", s.kind.name()))?,
                };
                (Some(s.publish_url(&room(i))?), play)
            }
            Target::Urls { play, publish } if streams == 1 => (publish.clone(), play.clone()),
            Target::Urls { .. } => return Err("a URL target carries one stream".into()),
        };
        if let Some(url) = publish {
            publishers.push(PublisherSpec {
                url,
                stream: i as u32,
            });
        }
        for _ in 0..viewers {
            players.push((
                p.proto.clone(),
                PlayerSpec {
                    url: play.clone(),
                    stream: i as u32,
                },
            ));
        }
    }
    let mut ffmpegs = Children(vec![]);
    if p.publisher == PublisherKind::Ffmpeg {
        for pb in publishers.drain(..) {
            ffmpegs.0.push(spawn_ffmpeg(&media, &pb.url)?);
        }
    }
    let server_pid = match target {
        Target::Server(s) => Some(s.pid()),
        Target::Urls { .. } => None,
    };
    let n_players = players.len();
    let n_publishers = publishers.len().max(ffmpegs.0.len());
    let live = Arc::new(Live::default());
    let log = Arc::new(SendLog::new());
    // players join once the publishers have sent a GOP, so they start from a cached keyframe
    let player_delay = Duration::from_secs(p.gop_secs as u64 + 1)
        + Duration::from_millis(3 * publishers.len() as u64 / p.threads.max(1) as u64);
    let swarm = {
        let (live, log, threads) = (live.clone(), log.clone(), p.threads);
        std::thread::spawn(move || {
            swarm::run(threads, publishers, players, player_delay, tags, live, log)
        })
    };
    let started = Instant::now();
    let ramp_up =
        player_delay + Duration::from_millis(3 * n_players as u64 / p.threads.max(1) as u64);
    let begin = started + ramp_up + p.warmup;
    let end = begin + p.duration;
    let mut before = None;
    let mut bytes0 = 0;
    let mut rss_idle = None;
    let mut threads_before = vec![];
    loop {
        let now = Instant::now();
        if rss_idle.is_none()
            && now >= started + player_delay.saturating_sub(Duration::from_millis(500))
        {
            rss_idle = Some(server_pid.and_then(proc_stats::sample).map(|s| s.rss_bytes));
        }
        if before.is_none() && now >= begin {
            before = Some(server_pid.and_then(proc_stats::sample));
            threads_before = server_pid.map(proc_stats::threads).unwrap_or_default();
            bytes0 = live.bytes.load(Relaxed);
            live.measuring.store(true, Relaxed);
        }
        if now >= end {
            break;
        }
        if p.progress {
            let phase = if before.is_some() {
                "measuring"
            } else {
                "ramping up"
            };
            eprint!(
                "\r{:>5.1}s/{:.0}s {phase:<10} receiving {}/{}  publishing {}/{}  {:.0} MB   ",
                now.duration_since(started).as_secs_f64(),
                (end - started).as_secs_f64(),
                live.receiving.load(Relaxed),
                n_players,
                live.publishing.load(Relaxed),
                n_publishers,
                live.bytes.load(Relaxed) as f64 / 1e6,
            );
            let _ = std::io::stderr().flush();
        }
        std::thread::sleep(Duration::from_millis(250).min(end - now));
    }
    let after = server_pid.and_then(proc_stats::sample);
    let threads_after = server_pid.map(proc_stats::threads).unwrap_or_default();
    let bytes = live.bytes.load(Relaxed) - bytes0;
    live.stop.store(true, Relaxed);
    if p.progress {
        eprintln!();
    }
    let results = swarm.join().map_err(|_| "swarm thread panicked")?;
    let window = p.duration.as_secs_f64();
    let gbit = bytes as f64 * 8.0 / 1e9;
    let mut s = Summary {
        server: match target {
            Target::Server(s) => s.kind.name(),
            Target::Urls { play, .. } => play.clone(),
        },
        scenario: format!("{:?}", p.scenario).to_lowercase(),
        proto: match p.proto {
            Proto::Rtmp => "rtmp",
            Proto::HttpFlv => "httpflv",
        }
        .into(),
        kbit: p.kbit,
        streams,
        players: n_players,
        publishers: n_publishers,
        window_s: window,
        gbit_per_s: gbit / window,
        ..Default::default()
    };
    s.players_held = results.players.iter().filter(|r| r.held()).count();
    s.players_behind = results.players.iter().filter(|r| r.behind).count();
    s.players_bad = results
        .players
        .iter()
        .filter(|r| !r.problems.is_empty())
        .count();
    s.players_failed = results.players.iter().filter(|r| r.error.is_some()).count();
    s.stalls = results.players.iter().map(|r| r.stalls as u64).sum();
    s.publishers_held = if ffmpegs.0.is_empty() {
        results
            .publishers
            .iter()
            .filter(|r| r.started && !r.behind && r.error.is_none())
            .count()
    } else {
        ffmpegs
            .0
            .iter_mut()
            .filter_map(|c| c.try_wait().ok())
            .filter(|st| st.is_none())
            .count()
    };
    let mut problems: Vec<String> = vec![];
    for r in &results.players {
        problems.extend(r.error.iter().cloned());
        problems.extend(r.problems.iter().map(|p| format!("{p:?}")));
        if r.behind {
            problems.push("player behind".into());
        }
    }
    for r in &results.publishers {
        problems.extend(r.error.iter().map(|e| format!("publisher: {e}")));
        if r.behind {
            problems.push("publisher behind".into());
        }
    }
    problems.dedup();
    s.first_problems = problems.into_iter().take(5).collect();
    if let (Some(Some(b)), Some(a)) = (before, after) {
        let per_thread = proc_stats::thread_cpu(&threads_before, &threads_after, window);
        s.threads = report::notable_threads(&proc_stats::by_name(&per_thread));
        s.shard_split_pct = report::shard_split(&s.threads);
        let cpu = a.cpu_seconds - b.cpu_seconds;
        s.server_cpu_s = Some(cpu);
        s.server_cpu_percent = Some(100.0 * cpu / window);
        s.server_rss_mib = Some(a.rss_bytes as f64 / (1 << 20) as f64);
        if gbit > 0.0 {
            s.cpu_s_per_gbit = Some(cpu / gbit);
        }
        if n_publishers > 0 && cpu > 0.0 {
            s.publishers_per_cpu_s = Some(n_publishers as f64 / (cpu / window));
        }
        if let (Some(Some(idle)), true) = (rss_idle, n_players > 0) {
            s.rss_kib_per_player =
                Some(a.rss_bytes.saturating_sub(idle) as f64 / 1024.0 / n_players as f64);
        }
    }
    let mut ttff: Vec<u128> = results
        .players
        .iter()
        .filter_map(|r| r.ttff)
        .map(|d| d.as_micros())
        .collect();
    ttff.sort_unstable();
    s.ttff_ms_p50 = percentile(&ttff, 0.5).map(|v| v as f64 / 1e3);
    s.ttff_ms_p99 = percentile(&ttff, 0.99).map(|v| v as f64 / 1e3);
    let mut lat: Vec<u32> = results
        .players
        .iter()
        .flat_map(|r| r.latency_us.iter().copied())
        .collect();
    lat.sort_unstable();
    s.latency_samples = lat.len();
    s.latency_ms_p50 = percentile(&lat, 0.5).map(|v| v as f64 / 1e3);
    s.latency_ms_p99 = percentile(&lat, 0.99).map(|v| v as f64 / 1e3);
    s.latency_ms_max = lat.last().map(|v| *v as f64 / 1e3);
    Ok(s)
}

/// Every run of `counts` for each server in turn, each server started fresh and stopped
/// before the next. Ramp raises the count until a run does not hold and stops there.
/// With `repeat` > 1 the whole list runs that many times, round after round rather than
/// server after server, so a slow drift of the machine's speed hits every server alike; the
/// rows are then the rounds' medians (see `report::combine_rounds`).
pub fn run_servers(
    p: &Params,
    servers: &[Kind],
    counts: &[usize],
    repeat: usize,
) -> Result<Vec<Summary>, String> {
    let repeat = repeat.max(1);
    let mut rounds = vec![];
    for round in 1..=repeat {
        let mut rows = vec![];
        for kind in servers {
            let server = Server::start(kind.clone())?;
            for &n in counts {
                let mut q = p.clone();
                match p.scenario {
                    Scenario::Ingest => q.publishers = n,
                    Scenario::Fanout | Scenario::Ramp => q.viewers = n,
                    // streams x viewers is the whole shape: one run
                    Scenario::Mixed if rows.iter().any(|r: &Summary| r.server == kind.name()) => {
                        break
                    }
                    Scenario::Mixed => {}
                }
                if p.progress {
                    let of = if repeat > 1 {
                        format!(" (round {round}/{repeat})")
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "== {} {:?} n={n} {} kbit/s{of}",
                        kind.name(),
                        p.scenario,
                        p.kbit
                    );
                }
                let s = run_once(&q, &Target::Server(&server))?;
                let held = s.held();
                rows.push(s);
                if p.scenario == Scenario::Ramp && !held {
                    break;
                }
            }
        }
        // within a round: the server process is the same across its counts
        report::add_marginal_rss(&mut rows);
        rounds.push(rows);
    }
    Ok(report::combine_rounds(rounds))
}

/// Highest count per server where every player held, for ramp reports.
pub fn highest_held(rows: &[Summary]) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = vec![];
    for r in rows {
        let held = if r.held() {
            r.players.max(r.publishers)
        } else {
            0
        };
        match out.iter_mut().find(|(s, _)| *s == r.server) {
            Some((_, n)) => *n = (*n).max(held),
            None => out.push((r.server.clone(), held)),
        }
    }
    out
}
