//! Listeners and connection tasks: the main function of each data shard and of the control
//! shard, and the RTMP connection handling.

mod hls;
mod httpflv;
mod player;
mod rtmp;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;
use shards::ShardCtx;

use crate::config::Config;
use crate::control::MemoryKeyStore;
use crate::engine::{EngineConfig, Hub, ShardMsg};
use crate::media::GopLimits;
use crate::rtmp::server_session::ServerConfig;

use self::rtmp::{handle_connection, resume_publisher};
use crate::engine::OUT_CHUNK_SIZE;

/// How long a publish waits for the control shard to check its key.
const KEY_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection task of a data shard needs.
pub struct ShardState {
    pub hub: Rc<Hub>,
    pub cfg: Arc<Config>,
    pub read_timeout: Option<Duration>,
    pub write_timeout: Duration,
    pub play_wait_timeout: Duration,
    /// Batched publisher reads under heavy ingest; `None` when `ingest_batch_ms` is 0.
    pub ingest: Option<Rc<shards::TickPoller>>,
    /// `play_merge_ms`: the clock players wait for before each write; `None` sends at once.
    pub play_merge: Option<Rc<shards::SharedTick>>,
    /// HLS: this shard's cache of every stream's playlist and segments, and the segmenters of
    /// the streams it owns.
    pub hls: Rc<crate::hls::HlsService>,
    control_id: usize,
}

impl ShardState {
    pub fn rtmp_config(&self) -> ServerConfig {
        ServerConfig {
            max_message_size: self.cfg.max_message_size,
            max_chunk_size: self.cfg.max_chunk_size.min(u32::MAX as usize) as u32,
            out_chunk_size: OUT_CHUNK_SIZE,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
        }
    }

    pub fn app_is_live(&self, app: &str) -> bool {
        self.cfg.app(app).is_some_and(|a| a.live)
    }

    /// Publish name -> room. With `rtmp_noauth` the name is the room; otherwise it must be a
    /// channel key the control shard knows.
    pub async fn resolve_publish(&self, name: &str) -> Result<String, String> {
        if self.cfg.rtmp_noauth {
            return Ok(name.to_string());
        }
        let reply = self
            .hub
            .router()
            .request_timeout(
                self.control_id,
                ShardMsg::KeyLookup {
                    key: name.to_string(),
                },
                KEY_LOOKUP_TIMEOUT,
            )
            .await;
        match reply {
            Ok(ShardMsg::KeyLookupReply(Ok(Some(room)))) => Ok(room),
            Ok(ShardMsg::KeyLookupReply(Ok(None))) => {
                Err(format!("invalid key: '{name}' is not a channel key"))
            }
            Ok(ShardMsg::KeyLookupReply(Err(e))) => Err(format!("key store unavailable: {e}")),
            Ok(_) => Err("key lookup: unexpected reply".into()),
            Err(e) => Err(format!("key lookup failed: {e:?}")),
        }
    }
}

fn ingest_poller(cfg: &Config) -> Option<Rc<shards::TickPoller>> {
    if cfg.ingest_batch.is_zero() {
        return None;
    }
    match shards::TickPoller::new(cfg.ingest_batch, cfg.ingest_batch_above) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!("ingest batching off: {e}");
            None
        }
    }
}

/// Runs on every data shard: the engine hub, the router handler and the RTMP listener.
pub async fn data_shard_main(ctx: ShardCtx<ShardMsg>, cfg: Arc<Config>) {
    let engine = EngineConfig {
        gop: GopLimits::with_gop_num(cfg.gop_num),
    };
    let hub = Hub::new(ctx.id, ctx.nr_shards, ctx.router.clone(), engine);
    let hls = crate::hls::HlsService::start(ctx.id, ctx.nr_shards, ctx.router.clone(), cfg.clone());
    {
        // HLS segments every publish session on the owner; the recorder and static push add
        // their own sink factories below.
        let hls = hls.clone();
        hub.add_sink_factory(Rc::new(move |info| hls.sinks(info)));
    }
    let st = Rc::new(ShardState {
        hub: hub.clone(),
        hls,
        read_timeout: (cfg.read_timeout > Duration::ZERO).then_some(cfg.read_timeout),
        write_timeout: if cfg.write_timeout > Duration::ZERO {
            cfg.write_timeout
        } else {
            Duration::from_secs(3600)
        },
        play_wait_timeout: cfg.play_wait_timeout,
        ingest: ingest_poller(&cfg),
        play_merge: (!cfg.play_merge.is_zero()).then(|| shards::SharedTick::new(cfg.play_merge)),
        control_id: ctx.control_id,
        cfg,
    });
    let relays = crate::relay::ShardRelays::new(hub.clone());
    relays.install_static_push(st.cfg.clone());
    {
        let st = st.clone();
        ctx.router.serve(move |incoming| {
            let from = incoming.from;
            match incoming.msg {
                ShardMsg::RelayStart(_) | ShardMsg::RelayStop { .. } => {
                    let (_, msg, _) = incoming.into_parts();
                    match msg {
                        ShardMsg::RelayStart(spec) => relays.start(*spec),
                        ShardMsg::RelayStop { session_key } => relays.stop(&session_key),
                        _ => {}
                    }
                }
                ShardMsg::CollectRelays => {
                    incoming.reply(ShardMsg::Relays(relays.list()));
                }
                ShardMsg::PlayerHandOff(_) => {
                    let (_, msg, responder) = incoming.into_parts();
                    if let ShardMsg::PlayerHandOff(offer) = msg {
                        let back = player::on_player_offer(&st, offer);
                        if let Some(r) = responder {
                            r.reply(ShardMsg::PlayerHandOffReply(back));
                        }
                    }
                }
                ShardMsg::HandOff(_) => {
                    let (_, msg, _) = incoming.into_parts();
                    if let ShardMsg::HandOff(h) = msg {
                        glommio::spawn_local(resume_publisher(st.clone(), *h)).detach();
                    }
                }
                ShardMsg::Hls(_) => {
                    let (_, msg, _) = incoming.into_parts();
                    if let ShardMsg::Hls(m) = msg {
                        st.hls.on_message(m);
                    }
                }
                ShardMsg::CollectSessions => {
                    incoming.reply(ShardMsg::Sessions(st.hub.sessions().snapshot()));
                }
                ShardMsg::CollectTotals => {
                    incoming.reply(ShardMsg::Totals(st.hub.sessions().totals()));
                }
                ShardMsg::IsPublished { ref key } => {
                    let published = st.hub.is_published(key);
                    incoming.reply(ShardMsg::Published(published));
                }
                _ => {
                    let (_, msg, _) = incoming.into_parts();
                    st.hub.on_message(from, msg);
                }
            }
        });
    }
    httpflv::install_recorder(&st);
    glommio::spawn_local(httpflv::listen(st.clone(), ctx.stop.clone(), ctx.id)).detach();
    let listener = match shards::reuseport_listener(st.cfg.rtmp_addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                "shard {}: cannot listen on {}: {e}",
                ctx.id,
                st.cfg.rtmp_addr
            );
            std::process::exit(1);
        }
    };
    if ctx.id == 0 {
        tracing::info!("RTMP Listen On {}", st.cfg.rtmp_addr);
    }
    match shards::reuseport_listener(st.cfg.hls_addr) {
        Ok(l) => {
            if ctx.id == 0 {
                tracing::info!("HLS listen On {}", st.cfg.hls_addr);
            }
            glommio::spawn_local(hls::serve(st.clone(), l, ctx.stop.clone())).detach();
        }
        Err(e) => {
            tracing::error!(
                "shard {}: cannot listen on {}: {e}",
                ctx.id,
                st.cfg.hls_addr
            );
            std::process::exit(1);
        }
    }
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            ctx.stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                glommio::spawn_local(handle_connection(st.clone(), stream)).detach();
            }
            Some(Err(e)) => {
                tracing::warn!("accept: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The key store chosen by the config: Redis when `redis_addr` is set (blocking client on the
/// blocking pool), else memory.
fn key_service(cfg: &Config) -> crate::control::KeyService {
    if cfg.redis_addr.is_empty() {
        return crate::control::KeyService::local(Rc::new(RefCell::new(MemoryKeyStore::new())));
    }
    match crate::control::RedisKeyStore::new(&cfg.redis_addr, &cfg.redis_pwd) {
        Ok(store) => {
            tracing::info!("key store: Redis at {}", cfg.redis_addr);
            crate::control::KeyService::blocking(
                store,
                "redis",
                crate::control::store::DEFAULT_TIMEOUT,
            )
        }
        Err(e) => {
            tracing::error!("{e}");
            std::process::exit(1);
        }
    }
}

/// Runs on the control shard: the key store, key lookups for publishers, the HTTP API.
pub async fn control_main(ctx: ShardCtx<ShardMsg>, cfg: Arc<Config>) {
    let store = key_service(&cfg);
    {
        let store = store.clone();
        ctx.router.serve(move |incoming| {
            if !matches!(incoming.msg, ShardMsg::KeyLookup { .. }) {
                return;
            }
            let (_, msg, responder) = incoming.into_parts();
            let (ShardMsg::KeyLookup { key }, Some(responder)) = (msg, responder) else {
                return;
            };
            let store = store.clone();
            // The store may be remote: answer from a task so the handler never blocks.
            glommio::spawn_local(async move {
                let found = store.room_for_key(&key).await.map_err(|e| e.to_string());
                responder.reply(ShardMsg::KeyLookupReply(found));
            })
            .detach();
        });
    }
    let Some(api_addr) = cfg.api_addr else {
        ctx.stop.wait().await;
        return;
    };
    // SO_REUSEADDR (which glommio's own bind leaves off): the API closes its connections first,
    // and without it their TIME_WAIT sockets would keep a restarted server off this port for a
    // minute. There is one API listener, so SO_REUSEPORT shares nothing (main checks the port).
    let listener = match shards::reuseport_listener(api_addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {api_addr}: {e}");
            std::process::exit(1);
        }
    };
    tracing::info!("HTTP-API listen On {api_addr}");
    // Control-shard components with metrics of their own (relays) add a source here.
    let metrics_sources = crate::control::metrics::MetricsSources::default();
    let router = Rc::new(api_router(&ctx, &cfg, store, metrics_sources));
    let stop = ctx.stop.clone();
    crate::control::serve_router(
        listener,
        router,
        crate::control::ApiServerOptions::default(),
        async move { stop.wait().await },
    )
    .await;
}

/// The API routes: key routes, `/stat/livestat`, `/metrics`, behind JWT and CORS as configured.
fn api_router(
    ctx: &ShardCtx<ShardMsg>,
    cfg: &Arc<Config>,
    store: crate::control::KeyService,
    sources: crate::control::metrics::MetricsSources,
) -> crate::control::ControlRouter {
    use crate::control::{metrics, stats};
    let mut api = crate::control::ControlRouter::with_service(store.clone());
    api.set_cors_origin(&cfg.api_cors_origin);
    if !cfg.jwt.secret.is_empty() {
        api.set_jwt(Some(crate::control::JwtGate::new(
            &cfg.jwt.secret,
            cfg.jwt.algorithm,
        )));
    }
    let nr_shards = ctx.nr_shards;
    crate::relay::api::add_routes(&mut api, ctx.router.clone(), nr_shards, cfg.clone());
    {
        let router = ctx.router.clone();
        api.add_route("/stat/livestat", move |req: crate::control::ApiRequest| {
            let router = router.clone();
            async move {
                let (sessions, _) = crate::engine::gather_sessions(&router, nr_shards).await;
                let room = req.param("room").filter(|r| !r.is_empty());
                stats::livestat_response(&sessions, room)
            }
        });
    }
    {
        let router = ctx.router.clone();
        api.add_route("/metrics", move |_req: crate::control::ApiRequest| {
            let router = router.clone();
            let store = store.clone();
            let sources = sources.clone();
            async move {
                let (sessions, answered) = crate::engine::gather_sessions(&router, nr_shards).await;
                let (totals, totals_answered) =
                    crate::engine::gather_totals(&router, nr_shards).await;
                let facts = metrics::ControlFacts {
                    nr_shards,
                    shards_answered: answered.min(totals_answered),
                    totals,
                    keystore_backend: store.backend_name(),
                    keystore_errors: store.error_count(),
                };
                let mut text = metrics::render(&sessions, &facts);
                sources.render_into(&mut text);
                let relays = crate::relay::api::gather_relays(&router, nr_shards).await;
                crate::relay::api::render_metrics(&relays, &mut text);
                metrics::response(text)
            }
        });
    }
    api
}
