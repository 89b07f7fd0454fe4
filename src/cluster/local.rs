//! This node's own replica of a shard, behind the [`Replica`] seam: what the coordinator uses for
//! the shards this node holds, and what the peer port runs its peers' operations on.
//!
//! Where an operation runs is decided by the work it implies ([`work`]): a short one runs right
//! on the async worker, where handing it to tokio's blocking pool would cost two thread
//! wake-ups, about as much as the work itself; anything longer runs on the blocking pool, so
//! that one heavy search (a wide `hnsw_ef`, an exact or filtered scan, many segments) never
//! stalls a worker and the requests queued behind it. A search stops when its deadline passes
//! ([`Shard::search_within`]), wherever it runs.

use super::protocol::{RecordsPage, RecordsRequest, ShardOp, ShardReply, ShardStats};
use super::replica::{ReadContext, Replica};
use super::PeerError;
use crate::collection::{Collection, ReplicaState};
use crate::shard::deadline::{Deadline, Stopped};
use crate::shard::search::SearchSpec;
use crate::shard::{Change, Shard, ShardError};
use futures::future::BoxFuture;
use std::path::Path;
use std::sync::Arc;

/// Most work (vector elements read, see [`work`]) an operation may imply to run on the async
/// worker: 2^21 elements are 16k distances at 128 dimensions, a few hundred microseconds.
pub const INLINE_WORK: u64 = 1 << 21;

/// Replica `shard` of a collection, on this node (ordinal `node`).
pub struct LocalReplica {
    node: u32,
    collection: Arc<Collection>,
    shard: u32,
    /// This node owns the shard: a write opens the replica if it is not held yet (it then
    /// starts by copying its data from its peers).
    owned: bool,
    /// The replica lacks (or may lack) writes the cluster acknowledged
    /// ([`super::behind::Behind::refuses_reads`]): it is no complete replica.
    lagging: bool,
}

impl LocalReplica {
    pub fn new(node: u32, collection: Arc<Collection>, shard: u32, owned: bool) -> LocalReplica {
        LocalReplica {
            node,
            collection,
            shard,
            owned,
            lagging: false,
        }
    }

    /// This replica, known (or suspected) to lack acknowledged writes, or not.
    pub fn lagging(mut self, lagging: bool) -> LocalReplica {
        self.lagging = lagging;
        self
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
            ReplicaState::Active if complete_only && self.lagging => {
                Err(self.missing("is catching up on writes it missed in"))
            }
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
            .map(|(id, record)| Change::replicated(id, record))
            .collect();
        Ok(RecordsPage { changes, next })
    }
}

/// The work an operation implies on a shard, in vector elements read (a distance over `dim`
/// floats reads `dim`; evaluating a filter on a point counts as [`FILTER_WORK`]). Estimated from
/// what the shard holds: a graph search reads about `ef` × its layer-0 links per segment (capped
/// by the segment), plus the unindexed tail; an exact search reads every point; a filter is
/// evaluated on every point. Scans whose size the estimate cannot bound (scroll, count, plans)
/// count as unbounded.
pub fn work(op: &ShardOp, shard: &Shard) -> u64 {
    let dim = shard.config().dim as u64;
    match op {
        ShardOp::Search {
            k,
            ef,
            exact,
            filter,
            ..
        } => {
            // Not Shard::stats: counting live entries would cost a quarter of a small search.
            let (points, tail, segments) = shard.extent();
            let (points, tail, segments) = (points as u64, tail as u64, segments as u64);
            let read = if *exact {
                points
            } else {
                let links = 2 * shard.config().hnsw.max_nb_connection() as u64;
                let beam = (*ef.max(k) as u64).saturating_mul(links);
                let indexed = points.saturating_sub(tail);
                let per_segment = beam.min(indexed.div_ceil(segments.max(1)));
                segments.saturating_mul(per_segment).saturating_add(tail)
            };
            let filtering = if filter.is_some() {
                points.saturating_mul(FILTER_WORK)
            } else {
                0
            };
            read.saturating_mul(dim).saturating_add(filtering)
        }
        ShardOp::Retrieve { ids, .. } => (ids.len() as u64).saturating_mul(dim),
        // A pass over the points per indexed field.
        ShardOp::Stats { .. } => (shard.len() as u64).saturating_mul(FILTER_WORK),
        ShardOp::Scroll { .. }
        | ShardOp::Count { .. }
        | ShardOp::Plan { .. }
        | ShardOp::Facet { .. }
        | ShardOp::ScrollOrdered { .. } => u64::MAX,
    }
}

/// What evaluating a filter on one point weighs, in vector elements.
pub const FILTER_WORK: u64 = 64;

/// Runs a read on a shard; a search, a scan or a facet stops once `deadline` passes, and a read
/// whose answer's payloads (a facet's distinct values) are over its payload limit is refused.
pub fn run(shard: &Shard, op: &ShardOp, deadline: &Deadline) -> Result<ShardReply, Stopped> {
    Ok(match op {
        ShardOp::Search {
            vector,
            k,
            ef,
            exact,
            filter,
            with_vector,
            with_payload,
            quantization,
        } => {
            let spec = SearchSpec {
                vector,
                k: *k,
                ef: *ef,
                exact: *exact,
                filter: filter.as_ref(),
                with_vector: *with_vector,
                with_payload: *with_payload,
                quantization: *quantization,
            };
            let hits = shard.search_within(&spec, deadline).inspect_err(|_| {
                // Counted here: the request that waited for it may be gone already.
                metrics::counter!("shoal_reads_stopped_total", "op" => "search").increment(1);
            })?;
            ShardReply::Hits(hits)
        }
        ShardOp::Retrieve { ids, with_vector } => {
            ShardReply::Points(shard.get_within(ids, *with_vector, deadline)?)
        }
        ShardOp::Scroll {
            from,
            limit,
            filter,
            with_vector,
        } => ShardReply::Points(shard.scroll_within(
            *from,
            *limit,
            filter.as_ref(),
            *with_vector,
            deadline,
        )?),
        ShardOp::Count { filter } => {
            ShardReply::Count(shard.count_within(filter.as_ref(), deadline)? as u64)
        }
        ShardOp::Plan {
            plan,
            version,
            page,
        } => ShardReply::Changes(shard.plan_page(plan, *version, *page)),
        ShardOp::Stats { indexing_threshold } => {
            ShardReply::Stats(ShardStats::of(shard, *indexing_threshold as usize))
        }
        ShardOp::Facet { field, filter } => {
            let counts =
                (shard.facet_within(field, filter.as_ref(), deadline)).inspect_err(|stop| {
                    if *stop == Stopped::Expired {
                        metrics::counter!("shoal_reads_stopped_total", "op" => "facet")
                            .increment(1);
                    }
                })?;
            ShardReply::Facet(counts.into_iter().map(|(v, n)| (v, n as u64)).collect())
        }
        ShardOp::ScrollOrdered {
            field,
            direction,
            start_from,
            limit,
            filter,
            with_vector,
        } => ShardReply::Ordered(shard.scroll_ordered_within(
            (field, *direction, *start_from, *limit),
            filter.as_ref(),
            *with_vector,
            deadline,
        )?),
    })
}

impl Replica for LocalReplica {
    fn node(&self) -> u32 {
        self.node
    }

    fn read<'a>(
        &'a self,
        op: &'a ShardOp,
        how: &'a ReadContext,
    ) -> BoxFuture<'a, Result<ShardReply, PeerError>> {
        Box::pin(async move {
            let shard = self.to_read(how.complete_only)?;
            let stopped = |stop| match stop {
                Stopped::Expired => PeerError::Expired { ordinal: self.node },
                Stopped::TooLarge(m) => PeerError::Shard {
                    ordinal: self.node,
                    error: ShardError::TooLarge(m),
                },
            };
            how.deadline.check().map_err(|e| stopped(e.into()))?;
            if work(op, &shard) <= INLINE_WORK {
                return run(&shard, op, &how.deadline).map_err(stopped);
            }
            let (op, deadline) = (op.clone(), how.deadline.clone());
            let ran = self.blocking(move || run(&shard, &op, &deadline)).await?;
            ran.map_err(stopped)
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
            applied.map(|n| n as u64).map_err(|error| PeerError::Shard {
                ordinal: self.node,
                error,
            })
        })
    }

    fn dump<'a>(&'a self, dest: &'a Path) -> BoxFuture<'a, Result<u64, PeerError>> {
        Box::pin(async move {
            let shard = self.to_read(true)?;
            let dest = dest.to_path_buf();
            let dumped = self
                .blocking(move || crate::collection::snapshot::dump_shard(&shard, &dest))
                .await?;
            dumped.map_err(|error| PeerError::Shard {
                ordinal: self.node,
                error,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{HnswParams, Metric};
    use crate::shard::version::VersionClock;
    use crate::shard::ShardConfig;

    /// A shard of `n` unindexed 128-d points.
    fn shard(n: u64) -> (tempfile::TempDir, Shard) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::Store::from_db(sled::Config::new().temporary(true).open().unwrap());
        let config = ShardConfig::new(128, Metric::Euclid, HnswParams::default());
        let clock = Arc::new(VersionClock::default());
        let shard = Shard::open(&store, "t", dir.path(), config, Arc::clone(&clock)).unwrap();
        let changes = (0..n)
            .map(|i| {
                Change::upsert(
                    crate::shard::point::PointId::Num(i),
                    clock.next(),
                    vec![i as f32; 128],
                    Default::default(),
                )
            })
            .collect();
        shard.commit(changes, false).unwrap();
        (dir, shard)
    }

    fn search(ef: usize, exact: bool, filter: bool) -> ShardOp {
        ShardOp::Search {
            vector: vec![0.0; 128],
            k: 10,
            ef,
            exact,
            filter: filter.then(Default::default),
            with_vector: false,
            with_payload: false,
            quantization: Default::default(),
        }
    }

    #[test]
    fn the_work_a_query_implies_decides_where_it_runs() {
        let (_d, small) = shard(100);
        assert!(
            work(&search(100_000, false, false), &small) <= INLINE_WORK,
            "a tail of 100 is short at any ef"
        );
        assert!(work(&search(10, true, true), &small) <= INLINE_WORK);
        let (_d, large) = shard(20_000);
        assert!(
            work(&search(10, true, false), &large) > INLINE_WORK,
            "20k exact distances"
        );
        assert!(
            work(&search(10, false, true), &large) > INLINE_WORK,
            "the tail is scanned"
        );
        let retrieve = |n: u64| ShardOp::Retrieve {
            ids: (0..n).map(crate::shard::point::PointId::Num).collect(),
            with_vector: true,
        };
        assert!(work(&retrieve(64), &large) <= INLINE_WORK);
        assert!(work(&ShardOp::Count { filter: None }, &small) > INLINE_WORK);
    }

    #[test]
    fn a_search_past_its_deadline_stops() {
        let (_d, s) = shard(10_000);
        let passed = Deadline::after(Some(std::time::Duration::ZERO));
        assert_eq!(
            run(&s, &search(10, true, false), &passed).unwrap_err(),
            Stopped::Expired
        );
        let open = Deadline::default();
        let hits = run(&s, &search(10, true, false), &open)
            .unwrap()
            .hits()
            .unwrap();
        assert_eq!(hits.len(), 10);
    }
}
