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

/// Every data shard's sessions, and how many shards answered.
pub async fn gather_sessions(
    router: &Router<ShardMsg>,
    nr_shards: usize,
) -> (Vec<SessionStat>, usize) {
    let mut all = Vec::new();
    let mut answered = 0;
    for reply in scatter(router, nr_shards, || ShardMsg::CollectSessions).await {
        match reply {
            Some(ShardMsg::Sessions(list)) => {
                answered += 1;
                all.extend(list);
            }
            Some(_) => tracing::warn!("stats: unexpected reply"),
            None => {}
        }
    }
    (all, answered)
}

/// Every data shard's byte totals since start, summed, and how many shards answered.
pub async fn gather_totals(router: &Router<ShardMsg>, nr_shards: usize) -> (Totals, usize) {
    let mut sum = Totals::default();
    let mut answered = 0;
    for reply in scatter(router, nr_shards, || ShardMsg::CollectTotals).await {
        match reply {
            Some(ShardMsg::Totals(t)) => {
                answered += 1;
                sum.merge(&t);
            }
            Some(_) => tracing::warn!("stats: unexpected reply"),
            None => {}
        }
    }
    (sum, answered)
}
