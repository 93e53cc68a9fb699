//! `/control/pull`, `/control/push` and `/control/relays` on the control shard.
//!
//! livego's data strings are kept; its status codes are fixed: every error is a 4xx, a pull stop
//! that worked is 200, a duplicate start is 409 (livego silently leaked the old relay), an
//! unknown stop is 404. The control shard is the registry of API relays (one per session key);
//! the relay itself runs on the owner shard of its local stream.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::Value;
use shards::Router;

use super::url::RtmpUrl;
use super::{session_key, RelayKind, RelaySpec, RelayStatus};
use crate::config::Config;
use crate::control::{ApiRequest, ControlRouter};
use crate::engine::ShardMsg;
use crate::http::{envelope, envelope_of, Response};

pub const PARAM_ERROR: &str = "control push parameter error, please check them.";

/// What a request asks for, decided without I/O.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Reply(u16, String),
    Start(RelaySpec),
    Stop {
        session_key: String,
        stream_key: String,
        url: String,
    },
}

fn param<'a>(req: &'a ApiRequest, name: &str) -> Option<&'a str> {
    req.param(name).filter(|v| !v.is_empty())
}

/// `running`: session key -> remote url of the API relays started so far.
pub fn decide(
    kind: RelayKind,
    req: &ApiRequest,
    running: &HashMap<String, String>,
    app_configured: impl Fn(&str) -> bool,
) -> Decision {
    let (Some(app), Some(name)) = (param(req, "app"), param(req, "name")) else {
        return Decision::Reply(400, PARAM_ERROR.into());
    };
    let key = session_key(kind, app, name);
    let verb = kind.name();
    if req.param("oper") == Some("stop") {
        return match running.get(&key) {
            Some(url) => Decision::Stop {
                session_key: key,
                stream_key: format!("{app}/{name}"),
                url: url.clone(),
            },
            None if kind == RelayKind::Push => Decision::Reply(
                404,
                format!("<h1>session key[{key}] not exist, please check it again.</h1>"),
            ),
            None => Decision::Reply(
                404,
                format!("session key[{key}] not exist, please check it again."),
            ),
        };
    }
    // livego: any oper other than "stop" (even none) starts.
    let Some(raw_url) = param(req, "url") else {
        return Decision::Reply(400, PARAM_ERROR.into());
    };
    let url = match RtmpUrl::parse(raw_url) {
        Ok(u) => u,
        Err(e) => return Decision::Reply(400, format!("push error={e}")),
    };
    if !app_configured(app) {
        return Decision::Reply(
            400,
            format!("push error=application name={app} is not configured"),
        );
    }
    if let Some(existing) = running.get(&key) {
        return Decision::Reply(
            409,
            format!("session key[{key}] already exists ({verb} url {existing}), stop it first."),
        );
    }
    Decision::Start(RelaySpec {
        kind,
        app: app.to_string(),
        name: name.to_string(),
        url,
    })
}

struct RelayApi {
    router: Router<ShardMsg>,
    nr_shards: usize,
    cfg: Arc<Config>,
    running: RefCell<HashMap<String, String>>,
}

impl RelayApi {
    async fn handle(&self, kind: RelayKind, req: ApiRequest) -> Response {
        let decision = decide(kind, &req, &self.running.borrow(), |app| {
            self.cfg.app(app).is_some_and(|a| a.live)
        });
        let verb = kind.name();
        let reply = |status: u16, s: String| envelope(status, Value::String(s));
        match decision {
            Decision::Reply(status, s) => reply(status, s),
            Decision::Start(spec) => {
                let key = spec.session_key();
                let url = req.param("url").unwrap_or_default().to_string();
                // Registered before the await, so a concurrent duplicate sees it.
                self.running.borrow_mut().insert(key.clone(), url.clone());
                let owner = shards::shard_for(&spec.stream_key(), self.nr_shards);
                if self
                    .router
                    .send(owner, ShardMsg::RelayStart(Box::new(spec)))
                    .await
                    .is_err()
                {
                    self.running.borrow_mut().remove(&key);
                    return reply(503, format!("push error=shard {owner} unreachable"));
                }
                reply(200, format!("<h1>{verb} url start {url} ok</h1></br>"))
            }
            Decision::Stop {
                session_key,
                stream_key,
                url,
            } => {
                self.running.borrow_mut().remove(&session_key);
                let owner = shards::shard_for(&stream_key, self.nr_shards);
                if self
                    .router
                    .send(owner, ShardMsg::RelayStop { session_key })
                    .await
                    .is_err()
                {
                    return reply(503, format!("shard {owner} unreachable"));
                }
                reply(200, format!("<h1>{verb} url stop {url} ok</h1></br>"))
            }
        }
    }

    async fn list(&self) -> Response {
        let all = gather_relays(&self.router, self.nr_shards).await;
        envelope_of(200, &all).unwrap_or_else(|e| envelope(500, Value::String(e.to_string())))
    }
}

/// Every data shard's relays (API relays and static pushes), in shard order.
pub async fn gather_relays(router: &Router<ShardMsg>, nr_shards: usize) -> Vec<RelayStatus> {
    let mut all: Vec<RelayStatus> = Vec::new();
    for reply in crate::engine::scatter(router, nr_shards, || ShardMsg::CollectRelays).await {
        match reply {
            Some(ShardMsg::Relays(list)) => all.extend(list),
            Some(_) => tracing::warn!("relays: unexpected reply"),
            None => {}
        }
    }
    all
}

/// The state of a relay as a metric label: the fixed word its state text starts with
/// ("retrying in 4s: refused" -> "retrying"), so label values stay few.
fn state_label(state: &str) -> &'static str {
    const STATES: [(&str, &str); 6] = [
        ("retrying", "retrying"),
        ("waiting", "waiting"),
        ("connecting", "connecting"),
        ("playing", "playing"),
        ("publishing", "publishing"),
        ("starting", "starting"),
    ];
    STATES
        .iter()
        .find(|(prefix, _)| state.starts_with(prefix))
        .map_or("other", |(_, label)| label)
}

/// Appends the relay families to a Prometheus text exposition.
pub fn render_metrics(relays: &[RelayStatus], out: &mut String) {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let mut by_state: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut connections: BTreeMap<&str, u64> = BTreeMap::new();
    for r in relays {
        *by_state
            .entry((r.kind.name(), state_label(&r.state)))
            .or_default() += 1;
        *connections.entry(r.kind.name()).or_default() += r.connections;
    }
    out.push_str("# HELP livego_relays Relays and static pushes by kind and state.\n");
    out.push_str("# TYPE livego_relays gauge\n");
    for ((kind, state), n) in &by_state {
        let _ = writeln!(
            out,
            "livego_relays{{kind=\"{kind}\",state=\"{state}\"}} {n}"
        );
    }
    out.push_str(
        "# HELP livego_relay_connections Connections of current relays that reached play/publish start.\n",
    );
    out.push_str("# TYPE livego_relay_connections gauge\n");
    for (kind, n) in &connections {
        let _ = writeln!(out, "livego_relay_connections{{kind=\"{kind}\"}} {n}");
    }
}

#[cfg(test)]
mod metrics_tests {
    use super::*;
    use crate::relay::RelayKind;

    fn status(kind: RelayKind, state: &str, connections: u64) -> RelayStatus {
        RelayStatus {
            kind,
            stream: "live/a".into(),
            url: "rtmp://127.0.0.1/live/a".into(),
            state: state.into(),
            connections,
            shard: 0,
        }
    }

    #[test]
    fn relay_metrics_group_by_kind_and_state_word() {
        let mut out = String::new();
        render_metrics(
            &[
                status(RelayKind::Pull, "playing", 2),
                status(RelayKind::Pull, "retrying in 4s: connection refused", 1),
                status(RelayKind::Push, "retrying in 1s: reset", 0),
                status(RelayKind::StaticPush, "publishing", 1),
            ],
            &mut out,
        );
        assert!(out.contains("livego_relays{kind=\"pull\",state=\"playing\"} 1\n"));
        assert!(out.contains("livego_relays{kind=\"pull\",state=\"retrying\"} 1\n"));
        assert!(out.contains("livego_relays{kind=\"push\",state=\"retrying\"} 1\n"));
        assert!(out.contains("livego_relays{kind=\"static_push\",state=\"publishing\"} 1\n"));
        assert!(out.contains("livego_relay_connections{kind=\"pull\"} 3\n"));
        assert_eq!(state_label("something new"), "other");
    }
}

/// Adds `/control/pull`, `/control/push` and `/control/relays` to the API.
pub fn add_routes(
    api: &mut ControlRouter,
    router: Router<ShardMsg>,
    nr_shards: usize,
    cfg: Arc<Config>,
) {
    let state = Rc::new(RelayApi {
        router,
        nr_shards,
        cfg,
        running: RefCell::new(HashMap::new()),
    });
    for (path, kind) in [
        ("/control/pull", RelayKind::Pull),
        ("/control/push", RelayKind::Push),
    ] {
        let st = state.clone();
        api.add_route(path, move |req| {
            let st = st.clone();
            async move { st.handle(kind, req).await }
        });
    }
    let st = state;
    api.add_route("/control/relays", move |_req| {
        let st = st.clone();
        async move { st.list().await }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(q: &[(&str, &str)]) -> ApiRequest {
        let params: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ApiRequest {
            method: "GET".into(),
            path: "/control/pull".into(),
            params: params.clone(),
            query: params,
            headers: vec![],
        }
    }

    fn live_only(app: &str) -> bool {
        app == "live"
    }

    const URL: &str = "rtmp://10.0.0.1:1936/live/src";

    #[test]
    fn missing_params() {
        let none = HashMap::new();
        for q in [
            vec![("app", "live"), ("url", URL)],
            vec![("name", "a"), ("url", URL)],
            vec![("app", "live"), ("name", "a")],
            vec![("app", ""), ("name", "a"), ("url", URL)],
        ] {
            assert_eq!(
                decide(RelayKind::Pull, &req(&q), &none, live_only),
                Decision::Reply(400, PARAM_ERROR.into()),
                "{q:?}"
            );
        }
    }

    #[test]
    fn start_validates_url_and_app() {
        let none = HashMap::new();
        let d = decide(
            RelayKind::Push,
            &req(&[("app", "live"), ("name", "a"), ("url", "http://x/y/z")]),
            &none,
            live_only,
        );
        assert!(matches!(d, Decision::Reply(400, ref s) if s.starts_with("push error=")));
        let d = decide(
            RelayKind::Pull,
            &req(&[("app", "other"), ("name", "a"), ("url", URL)]),
            &none,
            live_only,
        );
        assert!(matches!(d, Decision::Reply(400, ref s) if s.contains("not configured")));
        let d = decide(
            RelayKind::Pull,
            &req(&[
                ("oper", "start"),
                ("app", "live"),
                ("name", "a"),
                ("url", URL),
            ]),
            &none,
            live_only,
        );
        let Decision::Start(spec) = d else {
            panic!("{d:?}")
        };
        assert_eq!(spec.session_key(), "pull:live/a");
        assert_eq!(spec.url.to_string(), URL);
    }

    #[test]
    fn duplicate_start_and_stops() {
        let mut running = HashMap::new();
        running.insert("pull:live/a".to_string(), URL.to_string());
        let d = decide(
            RelayKind::Pull,
            &req(&[("app", "live"), ("name", "a"), ("url", URL)]),
            &running,
            live_only,
        );
        assert!(matches!(d, Decision::Reply(409, ref s) if s.contains("already exists")));
        let d = decide(
            RelayKind::Pull,
            &req(&[("oper", "stop"), ("app", "live"), ("name", "a")]),
            &running,
            live_only,
        );
        assert_eq!(
            d,
            Decision::Stop {
                session_key: "pull:live/a".into(),
                stream_key: "live/a".into(),
                url: URL.into()
            }
        );
        let d = decide(
            RelayKind::Pull,
            &req(&[
                ("oper", "stop"),
                ("app", "live"),
                ("name", "b"),
                ("url", URL),
            ]),
            &running,
            live_only,
        );
        assert_eq!(
            d,
            Decision::Reply(
                404,
                "session key[pull:live/b] not exist, please check it again.".into()
            )
        );
        let d = decide(
            RelayKind::Push,
            &req(&[
                ("oper", "stop"),
                ("app", "live"),
                ("name", "a"),
                ("url", URL),
            ]),
            &running,
            live_only,
        );
        assert!(matches!(d, Decision::Reply(404, ref s) if s.contains("push:live/a")));
    }
}
