use std::time::Duration;

use shards::Router;

use super::messages::ShardMsg;
use super::sessions::SessionStat;

/// A shard that does not answer within this time is left out of the stats (and logged).
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// Scatter-gather of every data shard's sessions (shards `0..nr_shards`), in shard order.
pub async fn gather_sessions(router: &Router<ShardMsg>, nr_shards: usize) -> Vec<SessionStat> {
    let mut all = Vec::new();
    for shard in 0..nr_shards {
        match router
            .request_timeout(shard, ShardMsg::CollectSessions, GATHER_TIMEOUT)
            .await
        {
            Ok(ShardMsg::Sessions(list)) => all.extend(list),
            Ok(_) => tracing::warn!(shard, "stats: unexpected reply"),
            Err(e) => tracing::warn!(shard, "stats: shard did not answer: {e:?}"),
        }
    }
    all
}
