//! Per-shard engine: streams, mirrors, feeds, players, router messages.
