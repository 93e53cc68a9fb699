//! One run's figures, and their forms: a table, JSON, and an SVG chart of players against
//! server CPU and latency with one line per server.

use serde::Serialize;

use crate::proc_stats::ThreadCpu;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub server: String,
    pub scenario: String,
    pub proto: String,
    pub kbit: u32,
    pub streams: usize,
    pub players: usize,
    pub players_held: usize,
    pub players_behind: usize,
    pub players_bad: usize,
    pub players_failed: usize,
    pub publishers: usize,
    pub publishers_held: usize,
    pub window_s: f64,
    pub gbit_per_s: f64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_percent: Option<f64>,
    pub cpu_s_per_gbit: Option<f64>,
    pub publishers_per_cpu_s: Option<f64>,
    pub server_rss_mib: Option<f64>,
    pub rss_kib_per_player: Option<f64>,
    /// (RSS here - RSS at `marginal_from_players`) / (players - that count), for the nearest
    /// lower player count of the same server and shape: the cost of one more player without
    /// the process's fixed baseline.
    pub rss_kib_per_player_marginal: Option<f64>,
    pub marginal_from_players: Option<usize>,
    pub ttff_ms_p50: Option<f64>,
    pub ttff_ms_p99: Option<f64>,
    pub latency_samples: usize,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_ms_max: Option<f64>,
    pub stalls: u64,
    /// Server threads over the window, same-named threads of a process summed: each shard of
    /// livego-rs (idle ones too, so a one-sided split shows) and anything else at 1 % of a
    /// core or more, e.g. an nginx worker.
    pub threads: Vec<ThreadCpu>,
    /// Each data shard's share of all data-shard CPU, in shard order (empty without shards).
    pub shard_split_pct: Vec<f64>,
    pub first_problems: Vec<String>,
    /// Which round this summary is (1-based), in the `rounds` of a `--repeat` row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round: Option<usize>,
    /// With `--repeat N > 1`: every round's own summary; the fields above are then their
    /// medians (players held: the least, stalls and players behind/bad/failed: the most).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<Summary>,
}

impl Summary {
    /// Every player held and every publisher kept pace.
    pub fn held(&self) -> bool {
        self.players_held == self.players && self.publishers_held == self.publishers
    }
}

/// Nearest-rank percentile of sorted data.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// The index of a livego-rs data shard thread ("shard-<i>", named by the shards runtime).
fn shard_index(name: &str) -> Option<usize> {
    name.strip_prefix("shard-")?.parse().ok()
}

/// The threads worth a line: every livego-rs shard and its control thread, and anything else
/// at 1 % or more; shards first in index order, then the rest busiest first.
pub fn notable_threads(all: &[ThreadCpu]) -> Vec<ThreadCpu> {
    let mut out: Vec<ThreadCpu> = all
        .iter()
        .filter(|t| t.cpu_pct >= 1.0 || shard_index(&t.name).is_some() || t.name == "control")
        .cloned()
        .collect();
    out.sort_by(|a, b| match (shard_index(&a.name), shard_index(&b.name)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => b.cpu_pct.total_cmp(&a.cpu_pct),
    });
    out
}

/// Each shard thread's percentage of the CPU all shard threads used, in shard order.
pub fn shard_split(threads: &[ThreadCpu]) -> Vec<f64> {
    let mut shards: Vec<(usize, f64)> = threads
        .iter()
        .filter_map(|t| Some((shard_index(&t.name)?, t.cpu_pct)))
        .collect();
    shards.sort_by_key(|s| s.0);
    let total: f64 = shards.iter().map(|s| s.1).sum();
    if total <= 0.0 {
        return vec![];
    }
    shards.iter().map(|s| 100.0 * s.1 / total).collect()
}

/// Fills the marginal RSS per player of each row from the nearest earlier row with fewer
/// players of the same server and shape. The server keeps running between counts, so memory
/// it kept from a smaller run is reused by the larger one and does not inflate the figure.
pub fn add_marginal_rss(rows: &mut [Summary]) {
    for i in 0..rows.len() {
        let r = &rows[i];
        let Some(rss) = r.server_rss_mib.filter(|_| r.players > 0) else {
            continue;
        };
        let prev = rows[..i]
            .iter()
            .filter(|b| {
                b.server == r.server
                    && b.scenario == r.scenario
                    && b.proto == r.proto
                    && b.kbit == r.kbit
                    && b.streams == r.streams
                    && b.publishers == r.publishers
                    && b.players > 0
                    && b.players < r.players
            })
            .filter_map(|b| Some((b.players, b.server_rss_mib?)))
            .max_by_key(|b| b.0);
        if let Some((n1, rss1)) = prev {
            let per = (rss - rss1) * 1024.0 / (r.players - n1) as f64;
            rows[i].rss_kib_per_player_marginal = Some(per);
            rows[i].marginal_from_players = Some(n1);
        }
    }
}

/// Median of the values given, NaN left out; the mean of the two middle ones for an even count.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[m]),
        _ => Some((v[m - 1] + v[m]) / 2.0),
    }
}

/// The same measured point: server and load shape.
fn same_point(a: &Summary, b: &Summary) -> bool {
    a.server == b.server
        && a.scenario == b.scenario
        && a.proto == b.proto
        && a.kbit == b.kbit
        && a.streams == b.streams
        && a.players == b.players
        && a.publishers == b.publishers
}

/// One row per point (server and shape) over rounds run one after the other, in the order
/// the points first ran. Numbers are medians over the rounds that ran the point (a ramp round
/// stops early), since one run on a small shared machine can be off by a fifth; players and
/// publishers held are the least and stalls and players behind/bad/failed the most, so a bad
/// round is not hidden. A single round comes back as it is.
pub fn combine_rounds(rounds: Vec<Vec<Summary>>) -> Vec<Summary> {
    if rounds.len() <= 1 {
        return rounds.into_iter().flatten().collect();
    }
    let mut points: Vec<Vec<Summary>> = vec![];
    for (i, round) in rounds.into_iter().enumerate() {
        for mut s in round {
            s.round = Some(i + 1);
            match points.iter_mut().find(|g| same_point(&g[0], &s)) {
                Some(g) => g.push(s),
                None => points.push(vec![s]),
            }
        }
    }
    points.into_iter().map(combine_point).collect()
}

fn combine_point(runs: Vec<Summary>) -> Summary {
    let med = |get: Metric| median(runs.iter().filter_map(get));
    let med_count = |get: fn(&Summary) -> usize| {
        median(runs.iter().map(|r| get(r) as f64)).map_or(0, |m| m.round() as usize)
    };
    // per-thread figures do not combine into a median; they come from the round whose
    // CPU is the median (the lower middle one for an even count)
    let mut with_cpu: Vec<(f64, &Summary)> = runs
        .iter()
        .filter_map(|r| Some((r.server_cpu_percent?, r)))
        .collect();
    with_cpu.sort_by(|a, b| a.0.total_cmp(&b.0));
    let middle = with_cpu
        .get(with_cpu.len().saturating_sub(1) / 2)
        .map_or(&runs[0], |m| m.1);
    // every round runs the same counts in the same order, so the base count agrees
    let marginal_from = runs.iter().find_map(|r| r.marginal_from_players);
    let mut problems: Vec<String> = vec![];
    for r in &runs {
        for p in &r.first_problems {
            let p = format!("round {}: {p}", r.round.unwrap_or(0));
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
    }
    let mut s = Summary {
        players_held: runs.iter().map(|r| r.players_held).min().unwrap_or(0),
        publishers_held: runs.iter().map(|r| r.publishers_held).min().unwrap_or(0),
        players_behind: runs.iter().map(|r| r.players_behind).max().unwrap_or(0),
        players_bad: runs.iter().map(|r| r.players_bad).max().unwrap_or(0),
        players_failed: runs.iter().map(|r| r.players_failed).max().unwrap_or(0),
        stalls: runs.iter().map(|r| r.stalls).max().unwrap_or(0),
        window_s: med(|r| Some(r.window_s)).unwrap_or(0.0),
        gbit_per_s: med(|r| Some(r.gbit_per_s)).unwrap_or(0.0),
        server_cpu_s: med(|r| r.server_cpu_s),
        server_cpu_percent: med(|r| r.server_cpu_percent),
        cpu_s_per_gbit: med(|r| r.cpu_s_per_gbit),
        publishers_per_cpu_s: med(|r| r.publishers_per_cpu_s),
        server_rss_mib: med(|r| r.server_rss_mib),
        rss_kib_per_player: med(|r| r.rss_kib_per_player),
        rss_kib_per_player_marginal: median(
            runs.iter()
                .filter(|r| r.marginal_from_players == marginal_from)
                .filter_map(|r| r.rss_kib_per_player_marginal),
        ),
        marginal_from_players: marginal_from,
        ttff_ms_p50: med(|r| r.ttff_ms_p50),
        ttff_ms_p99: med(|r| r.ttff_ms_p99),
        latency_samples: med_count(|r| r.latency_samples),
        latency_ms_p50: med(|r| r.latency_ms_p50),
        latency_ms_p99: med(|r| r.latency_ms_p99),
        latency_ms_max: med(|r| r.latency_ms_max),
        threads: middle.threads.clone(),
        shard_split_pct: middle.shard_split_pct.clone(),
        first_problems: problems.into_iter().take(5).collect(),
        round: None,
        ..middle.clone()
    };
    s.rounds = runs;
    s
}

/// Lines under the table: each round's CPU of a `--repeat` row, per-thread CPU of each run
/// and the marginal RSS per player.
pub fn details(rows: &[Summary]) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| !r.rounds.is_empty()) {
        let per: Vec<String> = r
            .rounds
            .iter()
            .map(|x| f(x.server_cpu_percent, 1))
            .collect();
        out += &format!(
            "{} n={} cpu% per round: {} (median {})\n",
            r.server,
            r.players.max(r.publishers),
            per.join(" "),
            f(r.server_cpu_percent, 1)
        );
    }
    for r in rows.iter().filter(|r| !r.threads.is_empty()) {
        let which = if r.rounds.is_empty() {
            ""
        } else {
            " (median-CPU round)"
        };
        let mut line = format!(
            "{} n={} threads{which}:",
            r.server,
            r.players.max(r.publishers)
        );
        for t in &r.threads {
            // a bare name when it is unique in the row, else name/pid (nginx names its master
            // and worker alike)
            if r.threads.iter().filter(|u| u.name == t.name).count() > 1 {
                line += &format!(" {}/{} {:.1}%", t.name, t.pid, t.cpu_pct);
            } else {
                line += &format!(" {} {:.1}%", t.name, t.cpu_pct);
            }
        }
        if !r.shard_split_pct.is_empty() {
            let split: Vec<String> = r
                .shard_split_pct
                .iter()
                .map(|p| format!("{p:.0}"))
                .collect();
            line += &format!(" (shard split {})", split.join("/"));
        }
        out += &line;
        out.push('\n');
    }
    for r in rows {
        if let (Some(per), Some(n1)) = (r.rss_kib_per_player_marginal, r.marginal_from_players) {
            out += &format!(
                "{}: marginal RSS {n1} -> {} players: {per:.1} KiB/player\n",
                r.server, r.players
            );
        }
    }
    out
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

pub fn table(rows: &[Summary]) -> String {
    let mut out = format!(
        "{:<11} {:<7} {:>5} {:>6} {:>6} {:>5} {:>6} {:>7} {:>8} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6}\n",
        "server", "proto", "kbit", "play", "held", "pubs", "Gbit/s", "cpu%", "cpu/Gbit", "RSS MiB",
        "KiB/play", "ttff50", "ttff99", "lat50", "lat99", "latmax", "stalls"
    );
    for r in rows {
        out += &format!(
            "{:<11} {:<7} {:>5} {:>6} {:>6} {:>5} {:>6.3} {:>7} {:>8} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6}\n",
            r.server,
            r.proto,
            r.kbit,
            r.players,
            r.players_held,
            format!("{}/{}", r.publishers_held, r.publishers),
            r.gbit_per_s,
            f(r.server_cpu_percent, 1),
            f(r.cpu_s_per_gbit, 2),
            f(r.server_rss_mib, 1),
            f(r.rss_kib_per_player, 1),
            f(r.ttff_ms_p50, 0),
            f(r.ttff_ms_p99, 0),
            f(r.latency_ms_p50, 2),
            f(r.latency_ms_p99, 2),
            f(r.latency_ms_max, 1),
            r.stalls
        );
    }
    out
}

/// Ratios of each other server against the first one, per player count.
pub fn ratios(rows: &[Summary]) -> String {
    let Some(base) = rows.first().map(|r| r.server.clone()) else {
        return String::new();
    };
    let mut out = String::new();
    for r in rows.iter().filter(|r| r.server != base) {
        let Some(b) = rows
            .iter()
            .find(|b| b.server == base && b.players == r.players && b.publishers == r.publishers)
        else {
            continue;
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
            _ => "-".into(),
        };
        let what = if r.players > 0 {
            format!(
                "cpu-s/Gbit {}, RSS/player {}, latency p50 {}",
                ratio(r.cpu_s_per_gbit, b.cpu_s_per_gbit),
                ratio(r.rss_kib_per_player, b.rss_kib_per_player),
                ratio(r.latency_ms_p50, b.latency_ms_p50)
            ) + &match (r.rss_kib_per_player_marginal, b.rss_kib_per_player_marginal) {
                // only comparable over the same pair of counts
                (Some(_), Some(_)) if r.marginal_from_players == b.marginal_from_players => {
                    format!(
                        ", marginal RSS/player {}",
                        ratio(r.rss_kib_per_player_marginal, b.rss_kib_per_player_marginal)
                    )
                }
                _ => String::new(),
            }
        } else {
            format!(
                "publishers per cpu-s {}",
                ratio(r.publishers_per_cpu_s, b.publishers_per_cpu_s)
            )
        };
        out += &format!(
            "{} / {} at {} players, {} publishers: {what}\n",
            r.server, base, r.players, r.publishers
        );
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

type Metric = fn(&Summary) -> Option<f64>;

const COLORS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

/// Two panels side by side: server CPU % and latency p50 against player (or publisher) count.
pub fn svg(rows: &[Summary]) -> String {
    let x_of = |r: &Summary| (r.players.max(r.publishers)) as f64;
    let mut servers: Vec<&str> = vec![];
    for r in rows {
        if !servers.contains(&r.server.as_str()) {
            servers.push(&r.server);
        }
    }
    let xmax = rows.iter().map(x_of).fold(1.0, f64::max);
    let (w, h, pad) = (420.0, 300.0, 50.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        2.0 * w,
        h + 30.0
    );
    let panels: [(&str, Metric); 2] = [
        ("server CPU %", |r| r.server_cpu_percent),
        ("delivery latency p50 (ms)", |r| r.latency_ms_p50),
    ];
    for (pi, (title, y_of)) in panels.iter().enumerate() {
        let ox = pi as f64 * w;
        let ymax = rows.iter().filter_map(y_of).fold(1e-9, f64::max) * 1.1;
        let px = |x: f64| ox + pad + (x / xmax) * (w - 2.0 * pad);
        let py = |y: f64| h - pad + 20.0 - (y / ymax) * (h - 2.0 * pad);
        out += &format!(
            "<text x=\"{}\" y=\"16\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n",
            ox + w / 2.0,
            esc(title)
        );
        out += &format!(
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/><line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{3}\" stroke=\"black\"/>\n",
            px(0.0), py(0.0), px(xmax), py(ymax)
        );
        for t in 0..=4 {
            let (xv, yv) = (xmax * t as f64 / 4.0, ymax * t as f64 / 4.0);
            out += &format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}</text>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.*}</text>\n",
                px(xv), py(0.0) + 14.0, xv,
                px(0.0) - 4.0, py(yv) + 4.0, if ymax < 10.0 { 2 } else { 0 }, yv
            );
        }
        out += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">players / publishers</text>\n",
            ox + w / 2.0,
            h + 26.0
        );
        for (si, s) in servers.iter().enumerate() {
            let color = COLORS[si % COLORS.len()];
            let mut pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.server == *s)
                .filter_map(|r| Some((x_of(r), y_of(r)?)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let path: Vec<String> = pts
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
                .collect();
            out += &format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
                path.join(" ")
            );
            for (x, y) in &pts {
                out += &format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>\n",
                    px(*x),
                    py(*y)
                );
            }
            out += &format!(
                "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{}</text>\n",
                ox + pad + 8.0,
                40.0 + 14.0 * si as f64,
                esc(s)
            );
        }
    }
    out + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&[7u32], 0.99), Some(7));
        assert_eq!(percentile::<u32>(&[], 0.5), None);
    }

    fn row(server: &str, players: usize, cpu: f64) -> Summary {
        Summary {
            server: server.into(),
            players,
            players_held: players,
            server_cpu_percent: Some(cpu),
            cpu_s_per_gbit: Some(cpu / 10.0),
            latency_ms_p50: Some(1.0),
            ..Default::default()
        }
    }

    #[test]
    fn chart_and_ratios() {
        let rows = vec![
            row("livego-rs", 100, 5.0),
            row("livego-rs", 1000, 30.0),
            row("nginx-rtmp", 100, 10.0),
            row("x<y", 1000, 90.0),
        ];
        let s = svg(&rows);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert_eq!(s.matches("<polyline").count(), 6, "3 servers x 2 panels");
        assert!(s.contains("x&lt;y") && !s.contains("x<y"));
        let r = ratios(&rows);
        assert!(
            r.contains("nginx-rtmp / livego-rs at 100 players, 0 publishers: cpu-s/Gbit 2.00x"),
            "{r}"
        );
        assert!(
            r.contains("x<y / livego-rs at 1000 players, 0 publishers: cpu-s/Gbit 3.00x"),
            "{r}"
        );
        assert_eq!(table(&rows).lines().count(), 5);
    }

    fn rss_row(server: &str, players: usize, rss_mib: Option<f64>) -> Summary {
        Summary {
            server: server.into(),
            scenario: "fanout".into(),
            proto: "rtmp".into(),
            players,
            server_rss_mib: rss_mib,
            ..Default::default()
        }
    }

    #[test]
    fn marginal_rss_between_consecutive_counts() {
        let mut rows = vec![
            rss_row("livego-rs", 100, Some(10.0)),
            rss_row("livego-rs", 1000, Some(19.0)),
            rss_row("livego-rs", 2000, Some(24.0)),
            rss_row("nginx-rtmp", 1000, Some(50.0)),
            rss_row("nginx-rtmp", 100, Some(20.0)),
            rss_row("livego", 100, None),
            rss_row("livego", 200, Some(3.0)),
            rss_row("x", 0, Some(1.0)),
            rss_row("x", 0, Some(2.0)),
        ];
        rows.push(Summary {
            proto: "httpflv".into(),
            ..rss_row("livego-rs", 3000, Some(30.0))
        });
        add_marginal_rss(&mut rows);
        let got: Vec<(Option<f64>, Option<usize>)> = rows
            .iter()
            .map(|r| (r.rss_kib_per_player_marginal, r.marginal_from_players))
            .collect();
        assert_eq!(
            got,
            [
                (None, None),
                // 9 MiB over 900 players; then 5 MiB over the next 1000
                (Some(9.0 * 1024.0 / 900.0), Some(100)),
                (Some(5.0 * 1024.0 / 1000.0), Some(1000)),
                // nginx ran its counts downwards: 100 has no smaller earlier run
                (None, None),
                (None, None),
                (None, None),
                // the 100 run has no RSS
                (None, None),
                // ingest-like rows without players
                (None, None),
                (None, None),
                // another protocol is another shape
                (None, None),
            ]
        );
        let d = details(&rows);
        assert!(
            d.contains("livego-rs: marginal RSS 100 -> 1000 players: 10.2 KiB/player\n"),
            "{d}"
        );
        assert_eq!(d.lines().count(), 2, "{d}");
    }

    #[test]
    fn marginal_rss_ratio_needs_same_counts() {
        let mut rows = vec![
            rss_row("livego-rs", 100, Some(10.0)),
            rss_row("livego-rs", 1100, Some(20.0)),
            rss_row("nginx-rtmp", 100, Some(10.0)),
            rss_row("nginx-rtmp", 1100, Some(50.0)),
        ];
        add_marginal_rss(&mut rows);
        let r = ratios(&rows);
        assert!(r.contains("at 1100 players, 0 publishers: cpu-s/Gbit -, RSS/player -, latency p50 -, marginal RSS/player 4.00x\n"), "{r}");
        assert!(
            !r.contains(
                "at 100 players, 0 publishers: cpu-s/Gbit -, RSS/player -, latency p50 -, marginal"
            ),
            "{r}"
        );
    }

    fn tc(name: &str, pid: u32, cpu_pct: f64) -> ThreadCpu {
        ThreadCpu {
            name: name.into(),
            pid,
            threads: 1,
            cpu_pct,
        }
    }

    #[test]
    fn thread_lines_and_shard_split() {
        let all = [
            tc("shard-1", 12, 30.0),
            tc("worker", 20, 5.0),
            tc("shard-10", 13, 0.0),
            tc("control", 14, 0.2),
            tc("shard-0", 11, 10.0),
            tc("blocking-0", 15, 0.9),
            tc("helper", 21, 7.0),
        ];
        let n = notable_threads(&all);
        let names: Vec<&str> = n.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["shard-0", "shard-1", "shard-10", "helper", "worker", "control"]
        );
        assert_eq!(shard_split(&n), [25.0, 75.0, 0.0]);
        assert!(shard_split(&[tc("shard-0", 1, 0.0)]).is_empty());
        assert!(shard_split(&[tc("nginx", 1, 40.0)]).is_empty());
        let rows = [
            Summary {
                server: "livego-rs".into(),
                players: 50,
                shard_split_pct: shard_split(&n),
                threads: n,
                ..Default::default()
            },
            Summary {
                server: "nginx-rtmp".into(),
                players: 50,
                threads: vec![tc("nginx", 7, 12.0), tc("nginx", 9, 3.24)],
                ..Default::default()
            },
        ];
        let d = details(&rows);
        assert_eq!(
            d,
            "livego-rs n=50 threads: shard-0 10.0% shard-1 30.0% shard-10 0.0% helper 7.0% \
             worker 5.0% control 0.2% (shard split 25/75/0)\n\
             nginx-rtmp n=50 threads: nginx/7 12.0% nginx/9 3.2%\n"
        );
        let json = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(json["threads"][1]["name"], "shard-1");
        assert_eq!(json["threads"][1]["cpu_pct"], 30.0);
        assert_eq!(json["shard_split_pct"][1], 75.0);
    }

    #[test]
    fn medians() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([7.5]), Some(7.5));
        assert_eq!(median([f64::NAN, 1.0, 5.0]), Some(3.0));
        assert_eq!(median([]), None);
    }

    /// One round's fan-out of 100 players with the figures that vary.
    fn round_row(server: &str, cpu: Option<f64>, held: usize, stalls: u64, lat: f64) -> Summary {
        Summary {
            server: server.into(),
            scenario: "fanout".into(),
            proto: "rtmp".into(),
            kbit: 600,
            streams: 1,
            players: 100,
            players_held: held,
            publishers: 1,
            publishers_held: 1,
            window_s: 20.0,
            gbit_per_s: cpu.map_or(0.06, |c| c / 1000.0),
            server_cpu_percent: cpu,
            server_cpu_s: cpu.map(|c| c / 5.0),
            cpu_s_per_gbit: cpu.map(|c| c / 10.0),
            latency_samples: 1000 + stalls as usize,
            latency_ms_p50: Some(lat),
            stalls,
            threads: vec![tc("shard-0", 1, cpu.unwrap_or(0.0))],
            shard_split_pct: vec![100.0],
            ..Default::default()
        }
    }

    #[test]
    fn odd_rounds_take_medians_least_held_most_stalls() {
        let mut bad = round_row("livego-rs", Some(40.0), 97, 3, 0.9);
        bad.players_behind = 3;
        bad.first_problems = vec!["player behind".into()];
        let rounds = vec![
            vec![
                round_row("livego-rs", Some(46.1), 100, 0, 1.2),
                round_row("nginx-rtmp", Some(80.0), 100, 0, 2.0),
            ],
            vec![bad, round_row("nginx-rtmp", Some(60.0), 100, 1, 3.0)],
            vec![
                round_row("livego-rs", Some(46.3), 100, 0, 1.0),
                round_row("nginx-rtmp", None, 100, 0, 2.5),
            ],
        ];
        let rows = combine_rounds(rounds);
        assert_eq!(rows.len(), 2);
        let rs = &rows[0];
        assert_eq!(rs.server, "livego-rs");
        assert_eq!(rs.server_cpu_percent, Some(46.1));
        assert_eq!(rs.cpu_s_per_gbit, Some(4.61));
        assert_eq!(rs.server_cpu_s, Some(46.1 / 5.0));
        assert_eq!(rs.gbit_per_s, 46.1 / 1000.0);
        assert_eq!(rs.latency_ms_p50, Some(1.0));
        assert_eq!(rs.latency_samples, 1000);
        assert_eq!((rs.players_held, rs.players_behind, rs.stalls), (97, 3, 3));
        assert!(!rs.held(), "one round lost players: the point did not hold");
        assert_eq!(rs.first_problems, ["round 2: player behind"]);
        // per-thread figures of the round whose CPU is the median one
        assert_eq!(rs.threads[0].cpu_pct, 46.1);
        assert_eq!(rs.round, None);
        let got: Vec<Option<usize>> = rs.rounds.iter().map(|r| r.round).collect();
        assert_eq!(got, [Some(1), Some(2), Some(3)]);
        // a round without CPU figures leaves the others' median
        let ng = &rows[1];
        assert_eq!(ng.server_cpu_percent, Some(70.0));
        assert_eq!(ng.cpu_s_per_gbit, Some(7.0));
        assert_eq!(ng.latency_ms_p50, Some(2.5));
        assert_eq!((ng.players_held, ng.stalls), (100, 1));
        assert!(ng.held());
        // lower middle of the two rounds with CPU
        assert_eq!(ng.threads[0].cpu_pct, 60.0);

        let d = details(&rows);
        assert!(
            d.contains("livego-rs n=100 cpu% per round: 46.1 40.0 46.3 (median 46.1)\n"),
            "{d}"
        );
        assert!(
            d.contains("nginx-rtmp n=100 cpu% per round: 80.0 60.0 - (median 70.0)\n"),
            "{d}"
        );
        assert!(
            d.contains("livego-rs n=100 threads (median-CPU round): shard-0 46.1%"),
            "{d}"
        );
        let r = ratios(&rows);
        assert!(r.contains("cpu-s/Gbit 1.52x"), "{r}");
        let json = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(json["server_cpu_percent"], 46.1);
        assert_eq!(json["rounds"].as_array().unwrap().len(), 3);
        assert_eq!(json["rounds"][1]["server_cpu_percent"], 40.0);
        assert_eq!(json["rounds"][1]["round"], 2);
        assert!(json.get("round").is_none());
        assert!(json["rounds"][1].get("rounds").is_none());
    }

    #[test]
    fn even_rounds_average_the_middle_pair() {
        let mut a = round_row("livego-rs", Some(40.0), 100, 0, 1.0);
        let mut b = round_row("livego-rs", Some(50.0), 100, 2, 2.0);
        a.ttff_ms_p50 = None;
        b.ttff_ms_p50 = Some(300.0);
        a.rss_kib_per_player_marginal = Some(20.0);
        a.marginal_from_players = Some(10);
        b.rss_kib_per_player_marginal = Some(30.0);
        b.marginal_from_players = Some(10);
        let rows = combine_rounds(vec![vec![a], vec![b]]);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.server_cpu_percent, Some(45.0));
        assert_eq!(r.latency_ms_p50, Some(1.5));
        assert_eq!(r.latency_samples, 1001);
        // only one round had a TTFF figure
        assert_eq!(r.ttff_ms_p50, Some(300.0));
        // nobody had an RSS figure
        assert_eq!(r.server_rss_mib, None);
        assert_eq!(r.rss_kib_per_player_marginal, Some(25.0));
        assert_eq!(r.marginal_from_players, Some(10));
        assert_eq!(r.stalls, 2);
        assert_eq!(
            r.threads[0].cpu_pct, 40.0,
            "the lower middle round's threads"
        );
    }

    #[test]
    fn one_round_is_unchanged_and_ramp_rounds_may_differ() {
        let rows = vec![
            round_row("livego-rs", Some(10.0), 100, 0, 1.0),
            round_row("nginx-rtmp", Some(20.0), 100, 0, 1.0),
        ];
        let once = combine_rounds(vec![rows.clone()]);
        assert_eq!(format!("{once:?}"), format!("{rows:?}"));
        assert!(details(&once).lines().all(|l| !l.contains("per round")));
        let json = serde_json::to_value(&once[0]).unwrap();
        assert!(json.get("rounds").is_none() && json.get("round").is_none());

        // a ramp round stops at its first failing count: later points have fewer rounds
        let at = |n: usize, cpu: f64, held: usize| Summary {
            players: n,
            ..round_row("livego-rs", Some(cpu), held, 0, 1.0)
        };
        let rows = combine_rounds(vec![
            vec![at(100, 10.0, 100), at(200, 20.0, 200), at(300, 30.0, 250)],
            vec![at(100, 12.0, 100), at(200, 22.0, 150)],
        ]);
        let got: Vec<(usize, usize, usize, Option<f64>)> = rows
            .iter()
            .map(|r| {
                (
                    r.players,
                    r.players_held,
                    r.rounds.len(),
                    r.server_cpu_percent,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (100, 100, 2, Some(11.0)),
                (200, 150, 2, Some(21.0)),
                (300, 250, 1, Some(30.0))
            ]
        );
    }
}
