//! `/metrics`: Prometheus text exposition (format 0.0.4) of the server's sessions and the key
//! store, gathered from every shard by the control shard at scrape time.
//!
//! Byte and drop figures are sums over the sessions open at scrape time (gauges): the shards
//! keep no totals for sessions that have ended.
//!
//! Other control-shard components (relays) add their own families through [`MetricsSources`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::rc::Rc;

use crate::engine::{Protocol, Role, SessionStat, Totals};
use crate::http::Response;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const PROTOCOLS: [Protocol; 5] = [
    Protocol::Rtmp,
    Protocol::HttpFlv,
    Protocol::WsFlv,
    Protocol::Hls,
    Protocol::Relay,
];

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Publisher => "publisher",
        Role::Player => "player",
    }
}

/// Writers of extra metric families (complete `# HELP`/`# TYPE`/sample lines), called at
/// every scrape on the control shard. The relay manager registers one for its relay states.
#[derive(Clone, Default)]
pub struct MetricsSources(Rc<RefCell<Vec<MetricsSource>>>);

/// Appends complete metric families to the exposition text.
pub type MetricsSource = Box<dyn Fn(&mut String)>;

impl MetricsSources {
    pub fn add(&self, source: impl Fn(&mut String) + 'static) {
        self.0.borrow_mut().push(Box::new(source));
    }

    pub fn render_into(&self, out: &mut String) {
        for s in self.0.borrow().iter() {
            s(out);
        }
    }
}

/// What the control shard knows besides the sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFacts {
    pub nr_shards: usize,
    /// Data shards that answered the stats request.
    pub shards_answered: usize,
    pub keystore_backend: &'static str,
    pub keystore_errors: u64,
    /// Every data shard's totals since start (low while a shard does not answer).
    pub totals: Totals,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The exposition text for `sessions` (every shard's) and `facts`.
pub fn render(sessions: &[SessionStat], facts: &ControlFacts) -> String {
    let mut out = String::with_capacity(4096);
    let mut by_role_proto: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for role in [Role::Publisher, Role::Player] {
        for p in PROTOCOLS {
            by_role_proto.insert((role_name(role), p.name()), 0);
        }
    }
    let mut per_shard = vec![0u64; facts.nr_shards];
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let (mut media_in, mut media_out) = (0u64, 0u64);
    let mut dropped = 0u64;
    let mut streams = std::collections::HashSet::new();
    for s in sessions {
        *by_role_proto
            .entry((role_name(s.role), s.protocol.name()))
            .or_insert(0) += 1;
        if let Some(n) = per_shard.get_mut(s.shard) {
            *n += 1;
        }
        let media = s.video_total_bytes + s.audio_total_bytes;
        match s.role {
            Role::Publisher => {
                bytes_in += s.wire_bytes;
                media_in += media;
                streams.insert(s.key.as_str());
            }
            Role::Player => {
                bytes_out += s.wire_bytes;
                media_out += media;
            }
        }
        dropped += s.dropped_packets;
    }

    family(
        &mut out,
        "livego_sessions",
        "gauge",
        "Open sessions (connections) by role and protocol.",
    );
    for ((role, proto), n) in &by_role_proto {
        let _ = writeln!(
            out,
            "livego_sessions{{role=\"{role}\",protocol=\"{proto}\"}} {n}"
        );
    }
    family(&mut out, "livego_publishers", "gauge", "Open publishers.");
    let publishers: u64 = by_role_proto
        .iter()
        .filter(|((r, _), _)| *r == "publisher")
        .map(|(_, n)| n)
        .sum();
    let _ = writeln!(out, "livego_publishers {publishers}");
    family(
        &mut out,
        "livego_players",
        "gauge",
        "Open players by protocol.",
    );
    for ((role, proto), n) in &by_role_proto {
        if *role == "player" {
            let _ = writeln!(out, "livego_players{{protocol=\"{proto}\"}} {n}");
        }
    }
    family(
        &mut out,
        "livego_live_streams",
        "gauge",
        "Streams with a publisher.",
    );
    let _ = writeln!(out, "livego_live_streams {}", streams.len());
    family(
        &mut out,
        "livego_session_bytes",
        "gauge",
        "Bytes on the wire of the open sessions (in = from publishers, out = to players).",
    );
    let _ = writeln!(out, "livego_session_bytes{{direction=\"in\"}} {bytes_in}");
    let _ = writeln!(out, "livego_session_bytes{{direction=\"out\"}} {bytes_out}");
    family(
        &mut out,
        "livego_session_media_bytes",
        "gauge",
        "Audio and video payload bytes of the open sessions.",
    );
    let _ = writeln!(
        out,
        "livego_session_media_bytes{{direction=\"in\"}} {media_in}"
    );
    let _ = writeln!(
        out,
        "livego_session_media_bytes{{direction=\"out\"}} {media_out}"
    );
    let t = &facts.totals;
    family(
        &mut out,
        "livego_bytes_total",
        "counter",
        "Bytes on the wire since start, ended sessions included (in = from publishers, out = to players).",
    );
    let _ = writeln!(out, "livego_bytes_total{{direction=\"in\"}} {}", t.wire_in);
    let _ = writeln!(
        out,
        "livego_bytes_total{{direction=\"out\"}} {}",
        t.wire_out
    );
    family(
        &mut out,
        "livego_media_bytes_total",
        "counter",
        "Audio and video payload bytes since start, ended sessions included.",
    );
    let _ = writeln!(
        out,
        "livego_media_bytes_total{{direction=\"in\"}} {}",
        t.media_in
    );
    let _ = writeln!(
        out,
        "livego_media_bytes_total{{direction=\"out\"}} {}",
        t.media_out
    );
    family(
        &mut out,
        "livego_dropped_packets_total",
        "counter",
        "Packets dropped for slow players since start.",
    );
    let _ = writeln!(out, "livego_dropped_packets_total {}", t.dropped);
    family(
        &mut out,
        "livego_session_dropped_packets",
        "gauge",
        "Packets dropped for slow players, summed over the open sessions.",
    );
    let _ = writeln!(out, "livego_session_dropped_packets {dropped}");
    family(
        &mut out,
        "livego_shard_sessions",
        "gauge",
        "Open sessions per data shard.",
    );
    for (i, n) in per_shard.iter().enumerate() {
        let _ = writeln!(out, "livego_shard_sessions{{shard=\"{i}\"}} {n}");
    }
    family(&mut out, "livego_shards", "gauge", "Data shards.");
    let _ = writeln!(out, "livego_shards {}", facts.nr_shards);
    family(
        &mut out,
        "livego_stats_shards_answered",
        "gauge",
        "Data shards that answered this scrape in time.",
    );
    let _ = writeln!(
        out,
        "livego_stats_shards_answered {}",
        facts.shards_answered
    );
    family(
        &mut out,
        "livego_keystore_errors_total",
        "counter",
        "Failed key store calls (API and publish checks) since start.",
    );
    let _ = writeln!(
        out,
        "livego_keystore_errors_total{{backend=\"{}\"}} {}",
        facts.keystore_backend, facts.keystore_errors
    );
    family(
        &mut out,
        "livego_relay_sessions",
        "gauge",
        "Open relay sessions (pull, push, static push) by role.",
    );
    for role in ["publisher", "player"] {
        let n = by_role_proto
            .get(&(role, Protocol::Relay.name()))
            .copied()
            .unwrap_or(0);
        let _ = writeln!(out, "livego_relay_sessions{{role=\"{role}\"}} {n}");
    }
    out
}

/// The HTTP reply for a rendered exposition.
pub fn response(text: String) -> Response {
    Response::new(200)
        .header("Content-Type", CONTENT_TYPE)
        .body(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::stats::tests::stat;

    fn facts() -> ControlFacts {
        ControlFacts {
            nr_shards: 2,
            shards_answered: 2,
            keystore_backend: "redis",
            keystore_errors: 3,
            totals: Totals {
                wire_in: 5000,
                wire_out: 7000,
                media_in: 4000,
                media_out: 6000,
                dropped: 9,
            },
        }
    }

    #[test]
    fn families_and_values() {
        let sessions = vec![
            stat(Role::Publisher, Protocol::Rtmp, "live/a", 0),
            stat(Role::Player, Protocol::Rtmp, "live/a", 1),
            stat(Role::Player, Protocol::HttpFlv, "live/a", 1),
            stat(Role::Publisher, Protocol::Relay, "live/b", 1),
        ];
        let text = render(&sessions, &facts());
        for line in [
            "livego_sessions{role=\"publisher\",protocol=\"rtmp\"} 1",
            "livego_sessions{role=\"player\",protocol=\"http-flv\"} 1",
            "livego_sessions{role=\"player\",protocol=\"hls\"} 0",
            "livego_publishers 2",
            "livego_players{protocol=\"rtmp\"} 1",
            "livego_players{protocol=\"http-flv\"} 1",
            "livego_live_streams 2",
            "livego_session_bytes{direction=\"in\"} 260",
            "livego_session_bytes{direction=\"out\"} 260",
            "livego_session_media_bytes{direction=\"in\"} 240",
            "livego_session_dropped_packets 8",
            "livego_shard_sessions{shard=\"0\"} 1",
            "livego_shard_sessions{shard=\"1\"} 3",
            "livego_keystore_errors_total{backend=\"redis\"} 3",
            "livego_relay_sessions{role=\"publisher\"} 1",
            "# TYPE livego_keystore_errors_total counter",
            "# TYPE livego_bytes_total counter",
            "livego_bytes_total{direction=\"in\"} 5000",
            "livego_bytes_total{direction=\"out\"} 7000",
            "livego_media_bytes_total{direction=\"out\"} 6000",
            "livego_dropped_packets_total 9",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        // Every sample line belongs to a family declared just before it.
        let mut declared = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap_or("").to_string());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap_or("");
                assert!(declared.contains(name), "undeclared {name}");
            }
        }
    }

    #[test]
    fn extra_sources_are_appended() {
        let sources = MetricsSources::default();
        sources.add(|out| out.push_str("livego_relays{state=\"up\"} 1\n"));
        let mut text = render(&[], &facts());
        sources.render_into(&mut text);
        assert!(text.ends_with("livego_relays{state=\"up\"} 1\n"));
        let r = response(text);
        assert_eq!(r.get_header("Content-Type"), Some(CONTENT_TYPE));
    }
}
