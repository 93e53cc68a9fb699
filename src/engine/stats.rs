use std::time::Duration;

use shards::Router;

use super::messages::ShardMsg;
use super::sessions::{SessionStat, Totals};

/// A shard that does not answer within this time is left out (and logged).
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends the request `make()` to every data shard (`0..nr_shards`) at once and returns the
/// replies in shard order; `None` for a shard that did not answer in time.
pub async fn scatter(
    router: &Router<ShardMsg>,
    nr_shards: usize,
    make: impl Fn() -> ShardMsg,
) -> Vec<Option<ShardMsg>> {
    let pending: Vec<_> = (0..nr_shards)
        .map(|shard| {
            let router = router.clone();
            let msg = make();
            glommio::spawn_local(
                async move { router.request_timeout(shard, msg, GATHER_TIMEOUT).await },
            )
        })
        .collect();
    let mut replies = Vec::with_capacity(nr_shards);
    for (shard, task) in pending.into_iter().enumerate() {
        match task.await {
            Ok(reply) => replies.push(Some(reply)),
            Err(e) => {
                tracing::warn!(shard, "shard did not answer: {e:?}");
                replies.push(None);
            }
        }
    }
    replies
}

/// Sends `make()` to every data shard and keeps the replies `pick` accepts; also returns how
/// many shards gave one.
async fn gather<T>(
    router: &Router<ShardMsg>,
    nr_shards: usize,
    make: impl Fn() -> ShardMsg,
    pick: impl Fn(ShardMsg) -> Option<T>,
) -> (Vec<T>, usize) {
    let mut got = Vec::with_capacity(nr_shards);
    for reply in scatter(router, nr_shards, make).await.into_iter().flatten() {
        match pick(reply) {
            Some(t) => got.push(t),
            None => tracing::warn!("stats: unexpected reply"),
        }
    }
    let answered = got.len();
    (got, answered)
}

/// Every data shard's sessions, and how many shards answered.
pub async fn gather_sessions(
    router: &Router<ShardMsg>,
    nr_shards: usize,
) -> (Vec<SessionStat>, usize) {
    let (lists, answered) = gather(
        router,
        nr_shards,
        || ShardMsg::CollectSessions,
        |m| match m {
            ShardMsg::Sessions(list) => Some(list),
            _ => None,
        },
    )
    .await;
    (lists.into_iter().flatten().collect(), answered)
}

/// Every data shard's byte totals since start, summed, and how many shards answered.
pub async fn gather_totals(router: &Router<ShardMsg>, nr_shards: usize) -> (Totals, usize) {
    let (each, answered) = gather(
        router,
        nr_shards,
        || ShardMsg::CollectTotals,
        |m| match m {
            ShardMsg::Totals(t) => Some(t),
            _ => None,
        },
    )
    .await;
    let mut sum = Totals::default();
    for t in &each {
        sum.merge(t);
    }
    (sum, answered)
}
