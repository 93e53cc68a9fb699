//! `livego-loadtest`: see `livego-loadtest --help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use loadtest::report;
use loadtest::run::{self, Params, PublisherKind, Scenario, Target};
use loadtest::server::Kind;
use loadtest::swarm::Proto;

#[derive(Parser, Debug)]
#[command(
    name = "livego-loadtest",
    about = "Load test of livego-rs, nginx-rtmp and livego"
)]
struct Cli {
    #[arg(value_enum)]
    scenario: Scenario,
    /// Servers to start, one after the other: livego-rs[=BIN], nginx-rtmp, livego=PATH.
    #[arg(long, value_delimiter = ',')]
    server: Vec<String>,
    /// Play URL of a server run elsewhere (rtmp://HOST:PORT/APP/NAME or http://.../NAME.flv).
    #[arg(long)]
    url: Option<String>,
    /// Publish URL for --url (omit when something else publishes).
    #[arg(long)]
    publish_url: Option<String>,
    /// Players (fanout, ramp steps: comma list) or publishers (ingest).
    #[arg(long, value_delimiter = ',', default_value = "100")]
    players: Vec<usize>,
    /// Streams for mixed.
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// Viewers per stream for mixed (ingest has none: it measures the publishers alone).
    #[arg(long, default_value_t = 10)]
    viewers: usize,
    /// Ramp: first count, step and last count (overrides --players).
    #[arg(long, num_args = 3, value_names = ["START", "STEP", "MAX"])]
    ramp: Vec<usize>,
    #[arg(long, value_enum, default_value = "native")]
    publisher: PublisherKind,
    #[arg(long, default_value = "rtmp", value_parser = ["rtmp", "httpflv"])]
    proto: String,
    /// Media bitrate in kbit/s (video + 64 kbit/s audio).
    #[arg(long, default_value_t = 600)]
    kbit: u32,
    #[arg(long, default_value_t = 2)]
    gop: u32,
    /// Measurement window in seconds.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds between the last player joining and the window.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Swarm threads (glommio executors).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// JSON report; the SVG chart goes next to it.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where the generated media is cached.
    #[arg(long, default_value = "target/loadtest-media")]
    media_dir: PathBuf,
    #[arg(long)]
    quiet: bool,
    /// Rounds: run every server and count this many times, round after round, and report
    /// medians (players held: the least over the rounds, stalls: the most).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("livego-loadtest: {e}");
        std::process::exit(2);
    }
}

fn real_main(cli: Cli) -> Result<(), String> {
    let counts: Vec<usize> = match cli.ramp[..] {
        [start, step, max] if step > 0 => (start..=max).step_by(step).collect(),
        [_, _, _] => return Err("--ramp step must be > 0".into()),
        _ => cli.players.clone(),
    };
    let proto = if cli.proto == "httpflv" {
        Proto::HttpFlv
    } else {
        Proto::Rtmp
    };
    let p = Params {
        scenario: cli.scenario,
        proto,
        publisher: cli.publisher,
        streams: cli.streams,
        viewers: cli.viewers,
        publishers: 1,
        kbit: cli.kbit,
        gop_secs: cli.gop,
        duration: Duration::from_secs(cli.duration),
        warmup: Duration::from_secs(cli.warmup),
        threads: cli.threads,
        media_dir: cli.media_dir.clone(),
        progress: !cli.quiet,
    };
    let rows = match (&cli.url, cli.server.is_empty()) {
        (Some(url), true) => {
            let mut rounds = vec![];
            for _ in 0..cli.repeat {
                let mut rows = vec![];
                for &n in &counts {
                    let mut q = p.clone();
                    q.viewers = n;
                    q.proto = if url.starts_with("http") {
                        Proto::HttpFlv
                    } else {
                        Proto::Rtmp
                    };
                    let t = Target::Urls {
                        play: url.clone(),
                        publish: cli.publish_url.clone(),
                    };
                    rows.push(run::run_once(&q, &t)?);
                }
                rounds.push(rows);
            }
            report::combine_rounds(rounds)
        }
        (None, false) => {
            let workspace = std::env::current_dir().map_err(|e| e.to_string())?;
            let kinds = cli
                .server
                .iter()
                .map(|s| Kind::parse(s, &workspace))
                .collect::<Result<Vec<_>, _>>()?;
            run::run_servers(&p, &kinds, &counts, cli.repeat as usize)?
        }
        _ => return Err("give either --url or --server".into()),
    };
    print!("{}", report::table(&rows));
    print!("{}", report::details(&rows));
    print!("{}", report::ratios(&rows));
    if cli.scenario == Scenario::Ramp {
        for (s, n) in run::highest_held(&rows) {
            println!("{s}: highest count that held: {n}");
        }
    }
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        let svg = path.with_extension("svg");
        std::fs::write(&svg, report::svg(&rows)).map_err(|e| format!("{}: {e}", svg.display()))?;
        eprintln!("wrote {} and {}", path.display(), svg.display());
    }
    // a ramp runs until a step fails: that failure is its result, not an error
    if cli.scenario == Scenario::Ramp || rows.iter().all(|r| r.held()) {
        Ok(())
    } else {
        for r in rows.iter().filter(|r| !r.held()) {
            eprintln!("{}: {:?}", r.server, r.first_problems);
        }
        Err("some players or publishers did not hold".into())
    }
}
