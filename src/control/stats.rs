//! `/stat/livestat`: livego's statistics reply built from the sessions of every shard.
//!
//! Same envelope, field names and order as livego; empty lists are `null` (Go nil slices).
//! Unlike livego, players and publishers of every protocol are listed (HTTP-FLV, HLS, relays),
//! not only RTMP ones.

use serde::Serialize;

use crate::engine::{Role, SessionStat};
use crate::http::{envelope, envelope_of, Response};

/// One session, as livego's `stream` struct (field order matters: Go keeps declaration order).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct LiveStream {
    pub key: String,
    pub url: String,
    pub stream_id: u32,
    pub video_total_bytes: u64,
    pub video_speed: u64,
    pub audio_total_bytes: u64,
    pub audio_speed: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct LiveStat {
    pub publishers: Option<Vec<LiveStream>>,
    pub players: Option<Vec<LiveStream>>,
}

fn entry(s: &SessionStat) -> LiveStream {
    LiveStream {
        key: s.key.clone(),
        url: s.url.clone(),
        stream_id: s.stream_id,
        video_total_bytes: s.video_total_bytes,
        video_speed: s.video_speed,
        audio_total_bytes: s.audio_total_bytes,
        audio_speed: s.audio_speed,
    }
}

fn non_empty(v: Vec<LiveStream>) -> Option<Vec<LiveStream>> {
    (!v.is_empty()).then_some(v)
}

/// Groups `sessions` (optionally only those of stream `room`, the full `app/room` key).
/// `None` when a room was asked for and no session uses it (livego: no such stream).
pub fn live_stat(sessions: &[SessionStat], room: Option<&str>) -> Option<LiveStat> {
    let mut publishers = Vec::new();
    let mut players = Vec::new();
    let mut found = false;
    for s in sessions {
        if room.is_some_and(|r| r != s.key) {
            continue;
        }
        found = true;
        match s.role {
            Role::Publisher => publishers.push(entry(s)),
            Role::Player => players.push(entry(s)),
        }
    }
    if room.is_some() && !found {
        return None;
    }
    Some(LiveStat {
        publishers: non_empty(publishers),
        players: non_empty(players),
    })
}

/// The full `/stat/livestat` reply.
pub fn livestat_response(sessions: &[SessionStat], room: Option<&str>) -> Response {
    match live_stat(sessions, room) {
        None => envelope(
            404,
            serde_json::Value::String("room not found or inactive".into()),
        ),
        Some(stat) => envelope_of(200, &stat)
            .unwrap_or_else(|e| envelope(500, serde_json::Value::String(format!("stats: {e}")))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::Protocol;

    pub(crate) fn stat(role: Role, protocol: Protocol, key: &str, shard: usize) -> SessionStat {
        SessionStat {
            id: 1,
            shard,
            role,
            protocol,
            key: key.into(),
            url: format!("rtmp://h:1935/{key}"),
            remote: None,
            stream_id: 1,
            video_total_bytes: 100,
            audio_total_bytes: 20,
            video_speed: 8,
            audio_speed: 1,
            wire_bytes: 130,
            dropped_packets: 2,
            age_ms: 5,
        }
    }

    fn body(r: &Response) -> String {
        String::from_utf8(r.body.to_vec()).expect("utf8")
    }

    #[test]
    fn empty_lists_are_null() {
        let r = livestat_response(&[], None);
        assert_eq!(r.status, 200);
        assert_eq!(
            body(&r),
            r#"{"status":200,"data":{"publishers":null,"players":null}}"#
        );
    }

    #[test]
    fn field_order_and_room_filter() {
        let sessions = vec![
            stat(Role::Publisher, Protocol::Rtmp, "live/a", 0),
            stat(Role::Player, Protocol::HttpFlv, "live/a", 1),
            stat(Role::Player, Protocol::Rtmp, "live/b", 0),
        ];
        let r = livestat_response(&sessions, Some("live/a"));
        assert_eq!(
            body(&r),
            concat!(
                r#"{"status":200,"data":{"publishers":[{"key":"live/a","url":"rtmp://h:1935/live/a","stream_id":1,"video_total_bytes":100,"video_speed":8,"audio_total_bytes":20,"audio_speed":1}],"#,
                r#""players":[{"key":"live/a","url":"rtmp://h:1935/live/a","stream_id":1,"video_total_bytes":100,"video_speed":8,"audio_total_bytes":20,"audio_speed":1}]}}"#
            )
        );
        let all = live_stat(&sessions, None).expect("all");
        assert_eq!(all.publishers.map(|p| p.len()), Some(1));
        assert_eq!(all.players.map(|p| p.len()), Some(2));
        let only_player = live_stat(&sessions, Some("live/b")).expect("b");
        assert_eq!(only_player.publishers, None);
        let r = livestat_response(&sessions, Some("live/zzz"));
        assert_eq!(r.status, 404);
        assert_eq!(
            body(&r),
            r#"{"status":404,"data":"room not found or inactive"}"#
        );
    }
}
