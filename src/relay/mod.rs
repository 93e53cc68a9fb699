//! Relays run by the server itself: API pulls (`/control/pull`: a remote stream becomes a local
//! publish), API pushes (`/control/push`: a local stream is published to a remote server) and
//! `static_push` (every stream of an app pushed to each configured URL).
//!
//! All of them are RTMP client sessions (`rtmp::client_session`, sans-I/O) driven by a task on
//! the owner shard of the local stream, so their packets never cross shards. They reconnect with
//! exponential backoff (1 s .. 30 s) whenever either end drops. A push reads a bounded player
//! queue (the engine's drop policy), so a slow or dead target never slows the stream.

pub mod api;
mod client;
mod pull;
mod push;
pub mod resync;
pub mod url;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Poll, Waker};

use serde::Serialize;

use crate::config::Config;
use crate::engine::{Hub, PublishInfo, StreamSink};

pub use url::RtmpUrl;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayKind {
    Pull,
    Push,
    StaticPush,
}

impl RelayKind {
    pub fn name(self) -> &'static str {
        match self {
            RelayKind::Pull => "pull",
            RelayKind::Push => "push",
            RelayKind::StaticPush => "static_push",
        }
    }
}

/// A relay the API asked for, sent by the control shard to the owner shard of `app/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelaySpec {
    pub kind: RelayKind,
    pub app: String,
    pub name: String,
    pub url: RtmpUrl,
}

impl RelaySpec {
    /// The local stream key, `app/name`.
    pub fn stream_key(&self) -> String {
        format!("{}/{}", self.app, self.name)
    }

    /// livego's session key, `pull:app/name` or `push:app/name`.
    pub fn session_key(&self) -> String {
        session_key(self.kind, &self.app, &self.name)
    }
}

pub fn session_key(kind: RelayKind, app: &str, name: &str) -> String {
    format!("{}:{app}/{name}", kind.name())
}

/// One relay as listed by `/control/relays`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RelayStatus {
    pub kind: RelayKind,
    /// Local stream, `app/name`.
    pub stream: String,
    /// Remote end.
    pub url: String,
    /// `connecting`, `waiting for the stream`, `playing`, `publishing`, `retrying in Ns: <why>`.
    pub state: String,
    /// Connections that reached play/publish start.
    pub connections: u64,
    pub shard: usize,
}

/// A one-shot stop signal for one relay task (same shard).
#[derive(Default)]
pub struct Stop {
    fired: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Stop {
    pub fn fire(&self) {
        self.fired.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.fired.get() {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// A relay's entry in its shard's status table; removed when the task ends.
pub struct StatusHandle {
    table: Rc<RefCell<BTreeMap<u64, RelayStatus>>>,
    id: u64,
}

impl StatusHandle {
    pub fn set_state(&self, state: impl Into<String>) {
        if let Some(s) = self.table.borrow_mut().get_mut(&self.id) {
            s.state = state.into();
        }
    }

    pub fn connected(&self, state: &str) {
        if let Some(s) = self.table.borrow_mut().get_mut(&self.id) {
            s.state = state.to_string();
            s.connections += 1;
        }
    }
}

impl Drop for StatusHandle {
    fn drop(&mut self) {
        self.table.borrow_mut().remove(&self.id);
    }
}

/// The relays running on one data shard.
pub struct ShardRelays {
    hub: Rc<Hub>,
    /// API relays by session key (`pull:app/name`), to stop them.
    api: RefCell<HashMap<String, Rc<Stop>>>,
    statuses: Rc<RefCell<BTreeMap<u64, RelayStatus>>>,
    next_id: Cell<u64>,
}

impl ShardRelays {
    pub fn new(hub: Rc<Hub>) -> Rc<ShardRelays> {
        Rc::new(ShardRelays {
            hub,
            api: RefCell::new(HashMap::new()),
            statuses: Rc::new(RefCell::new(BTreeMap::new())),
            next_id: Cell::new(0),
        })
    }

    fn status(&self, kind: RelayKind, stream: &str, url: &RtmpUrl) -> StatusHandle {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        self.statuses.borrow_mut().insert(
            id,
            RelayStatus {
                kind,
                stream: stream.to_string(),
                url: url.to_string(),
                state: "starting".into(),
                connections: 0,
                shard: self.hub.shard(),
            },
        );
        StatusHandle {
            table: self.statuses.clone(),
            id,
        }
    }

    /// Starts an API relay. One already running under the same session key is replaced (the
    /// control shard refuses duplicates, so this only happens if messages crossed).
    pub fn start(&self, spec: RelaySpec) {
        let stop = Rc::new(Stop::default());
        if let Some(old) = self
            .api
            .borrow_mut()
            .insert(spec.session_key(), stop.clone())
        {
            old.fire();
        }
        let status = self.status(spec.kind, &spec.stream_key(), &spec.url);
        let hub = self.hub.clone();
        tracing::info!(relay = %spec.session_key(), url = %spec.url, "relay start");
        match spec.kind {
            RelayKind::Pull => {
                glommio::spawn_local(pull::run(hub, spec, stop, status)).detach();
            }
            RelayKind::Push | RelayKind::StaticPush => {
                glommio::spawn_local(push::run_api(hub, spec, stop, status)).detach();
            }
        }
    }

    pub fn stop(&self, session_key: &str) {
        if let Some(stop) = self.api.borrow_mut().remove(session_key) {
            tracing::info!(relay = %session_key, "relay stop");
            stop.fire();
        }
    }

    pub fn list(&self) -> Vec<RelayStatus> {
        self.statuses.borrow().values().cloned().collect()
    }

    /// Makes every publish session on an app with `static_push` URLs push to `<url>/<room>`.
    /// Replaces the hub's sink factory: it must be the only one installed.
    pub fn install_static_push(self: &Rc<Self>, cfg: Arc<Config>) {
        if cfg.server.iter().all(|a| a.static_push.is_empty()) {
            return;
        }
        let me: Weak<ShardRelays> = Rc::downgrade(self);
        self.hub
            .add_sink_factory(Rc::new(move |info: &PublishInfo| {
                let Some(me) = me.upgrade() else {
                    return Vec::new();
                };
                let Some(app) = cfg.app(&info.app) else {
                    return Vec::new();
                };
                let mut sinks: Vec<Box<dyn StreamSink>> = Vec::new();
                for base in &app.static_push {
                    match RtmpUrl::with_room(base, &info.room) {
                        Ok(url) => {
                            let status = me.status(RelayKind::StaticPush, &info.key, &url);
                            sinks.push(push::static_push(
                                &info.key,
                                url,
                                status,
                                me.hub.sessions().clone(),
                            ));
                        }
                        Err(e) => tracing::warn!(url = %base, "static_push: bad url: {e}"),
                    }
                }
                sinks
            }));
    }
}
