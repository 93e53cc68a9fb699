//! `livego-loadtest`: a swarm of native RTMP players in one process, for measuring a server
//! (ours, nginx-rtmp, livego) on the same machine. Each player checks what it receives
//! (starts at a sequence header or keyframe, timestamps never go back per track) and the
//! harness reports throughput, time to first frame, stalls and the server's CPU and memory.
//!
//! Usage: livego-loadtest fanout --url rtmp://127.0.0.1:1935/live/ROOM --players 100
//!        [--duration 20] [--server-pid PID] [--json out.json]

mod player;
mod proc_stats;

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match player::Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("livego-loadtest: {e}\n{}", player::USAGE);
            std::process::exit(2);
        }
    };
    let before = opts.server_pid.and_then(proc_stats::sample);
    let report = player::run_swarm(&opts);
    let after = opts.server_pid.and_then(proc_stats::sample);
    let window = Duration::from_secs(opts.duration_secs).as_secs_f64();
    let mut json = report.to_json();
    if let (Some(b), Some(a)) = (before, after) {
        let cpu = a.cpu_seconds - b.cpu_seconds;
        let gbit = report.total_bytes as f64 * 8.0 / 1e9;
        json["server_cpu_seconds"] = cpu.into();
        json["server_cpu_percent"] = (100.0 * cpu / window).into();
        json["server_rss_bytes"] = a.rss_bytes.into();
        if gbit > 0.0 {
            json["server_cpu_seconds_per_gbit"] = (cpu / gbit).into();
        }
        if report.players > 0 {
            json["server_rss_bytes_per_player"] = (a.rss_bytes / report.players as u64).into();
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json).unwrap_or_default()
    );
    if let Some(path) = &opts.json {
        if let Err(e) = std::fs::write(path, json.to_string()) {
            eprintln!("livego-loadtest: cannot write {path}: {e}");
        }
    }
    if report.players_receiving < report.players || report.bad_streams > 0 {
        std::process::exit(1);
    }
}
