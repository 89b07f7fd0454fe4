//! This node's own replica of a shard, behind the [`Replica`] seam: what the coordinator uses for
//! the shards this node holds, and what the peer port runs its peers' operations on.
//!
//! Operations that can take long run on tokio's blocking pool, so that they never stall an async
//! worker; short ones run right on the worker, where handing them over would cost two thread
//! wake-ups, about as much as the work itself ([`runs_inline`]).

use super::protocol::{RecordsPage, RecordsRequest, ShardOp, ShardReply};
use super::replica::Replica;
use super::PeerError;
use crate::collection::{Collection, ReplicaState};
use crate::shard::search::SearchSpec;
use crate::shard::{Change, Shard};
use futures::future::BoxFuture;
use std::sync::Arc;

/// Replica `shard` of a collection, on this node (ordinal `node`).
pub struct LocalReplica {
    node: u32,
    collection: Arc<Collection>,
    shard: u32,
    /// This node owns the shard: a write opens the replica if it is not held yet (it then
    /// starts by copying its data from its peers).
    owned: bool,
}

impl LocalReplica {
    pub fn new(node: u32, collection: Arc<Collection>, shard: u32, owned: bool) -> LocalReplica {
        LocalReplica {
            node,
            collection,
            shard,
            owned,
        }
    }

    fn missing(&self, why: &'static str) -> PeerError {
        PeerError::NoReplica {
            ordinal: self.node,
            shard: self.shard,
            why,
        }
    }

    fn opened(&self, opened: anyhow::Result<Arc<Shard>>) -> Result<Arc<Shard>, PeerError> {
        opened.map_err(|e| PeerError::Internal {
            ordinal: self.node,
            message: format!("replica of shard {}: {e:#}", self.shard),
        })
    }

    /// The shard to read from: any held replica, or only a complete one.
    fn to_read(&self, complete_only: bool) -> Result<Arc<Shard>, PeerError> {
        match self.collection.replica_state(self.shard) {
            ReplicaState::Absent => Err(self.missing("holds no replica of")),
            ReplicaState::Syncing if complete_only => Err(self.missing("is still syncing")),
            _ => self.opened(self.collection.open_shard(self.shard)),
        }
    }

    /// The shard to write to, opened (syncing) if this node owns it but does not hold it yet.
    fn to_write(&self) -> Result<Arc<Shard>, PeerError> {
        match self.collection.replica_state(self.shard) {
            ReplicaState::Absent if self.owned => {
                self.opened(self.collection.open_syncing(self.shard))
            }
            ReplicaState::Absent => Err(self.missing("holds no replica of")),
            _ => self.opened(self.collection.open_shard(self.shard)),
        }
    }

    /// Runs `work` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PeerError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| PeerError::Internal {
                ordinal: self.node,
                message: format!("shard task failed: {e}"),
            })
    }

    /// A page of records changed since `req.since` (tombstones included): what a peer that was
    /// away catches up from. Any held replica answers.
    pub async fn records(&self, req: RecordsRequest) -> Result<RecordsPage, PeerError> {
        let shard = self.to_read(false)?;
        let limit = req.limit.clamp(1, 10_000);
        let page = self
            .blocking(move || shard.records_since(req.since, req.after, limit))
            .await?;
        let (records, next) = page.map_err(|error| PeerError::Shard {
            ordinal: self.node,
            error,
        })?;
        let changes = records
            .into_iter()
            .map(|(id, record)| Change {
                id,
                record,
                payload: None,
            })
            .collect();
        Ok(RecordsPage { changes, next })
    }
}

/// Whether an operation is short enough (an unfiltered HNSW search, a lookup of a few ids) to
/// run right on the async worker. Scans (exact, filtered, scroll, count, plans) go to the
/// blocking pool so that they never stall the worker.
pub fn runs_inline(op: &ShardOp) -> bool {
    match op {
        ShardOp::Search { exact, filter, .. } => !exact && filter.is_none(),
        ShardOp::Retrieve { ids, .. } => ids.len() <= 64,
        _ => false,
    }
}

/// Runs a read on a shard.
pub fn run(shard: &Shard, op: &ShardOp) -> ShardReply {
    match op {
        ShardOp::Search {
            vector,
            k,
            ef,
            exact,
            filter,
            with_vector,
            with_payload,
        } => {
            let spec = SearchSpec {
                vector,
                k: *k,
                ef: *ef,
                exact: *exact,
                filter: filter.as_ref(),
                with_vector: *with_vector,
                with_payload: *with_payload,
            };
            ShardReply::Hits(shard.search(&spec))
        }
        ShardOp::Retrieve { ids, with_vector } => ShardReply::Points(shard.get(ids, *with_vector)),
        ShardOp::Scroll {
            from,
            limit,
            filter,
            with_vector,
        } => ShardReply::Points(shard.scroll(*from, *limit, filter.as_ref(), *with_vector)),
        ShardOp::Count { filter } => ShardReply::Count(shard.count(filter.as_ref()) as u64),
        ShardOp::Plan { plan, version } => ShardReply::Changes(shard.plan(plan, *version)),
    }
}

impl Replica for LocalReplica {
    fn node(&self) -> u32 {
        self.node
    }

    fn read<'a>(
        &'a self,
        op: &'a ShardOp,
        complete_only: bool,
    ) -> BoxFuture<'a, Result<ShardReply, PeerError>> {
        Box::pin(async move {
            let shard = self.to_read(complete_only)?;
            if runs_inline(op) {
                return Ok(run(&shard, op));
            }
            let op = op.clone();
            self.blocking(move || run(&shard, &op)).await
        })
    }

    fn commit<'a>(
        &'a self,
        changes: &'a [Change],
        durable: bool,
    ) -> BoxFuture<'a, Result<u64, PeerError>> {
        Box::pin(async move {
            let shard = self.to_write()?;
            let changes = changes.to_vec();
            let applied = self
                .blocking(move || shard.commit(changes, durable))
                .await?;
            applied
                .map(|n| n as u64)
                .map_err(|error| PeerError::Shard {
                    ordinal: self.node,
                    error,
                })
        })
    }
}
