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

/// Lines under the table: per-thread CPU of each run and the marginal RSS per player.
pub fn details(rows: &[Summary]) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| !r.threads.is_empty()) {
        let mut line = format!("{} n={} threads:", r.server, r.players.max(r.publishers));
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
}
