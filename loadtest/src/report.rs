//! One run's figures, and their forms: a table, JSON, and an SVG chart of players against
//! server CPU and latency with one line per server.

use serde::Serialize;

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
    pub ttff_ms_p50: Option<f64>,
    pub ttff_ms_p99: Option<f64>,
    pub latency_samples: usize,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_ms_max: Option<f64>,
    pub stalls: u64,
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
            )
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
}
