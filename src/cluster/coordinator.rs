//! The coordinator: any node accepts any request and turns it into work on the shard replicas
//! involved, local or on peers.
//!
//! - **Writes** are split by shard and sent to every owner of each shard in parallel; the request
//!   succeeds once `write_consistency_factor` owners of every shard applied it (fsynced when the
//!   client asked `wait=true`). An owner that stopped answering ([`super::health`]) is skipped
//!   when the others are enough, so a frozen peer does not slow writes down; owners that missed
//!   a write catch up later ([`super::sync`]).
//! - **Deletes and payload changes** are read-modify-write: one live replica computes the new
//!   records (a [`Plan`]), then they are written like any other change, so replicas converge.
//! - **Reads** go to one live owner of every shard in parallel, this node first when it is an
//!   owner, then the others in placement order; an unreachable owner is skipped for the next one,
//!   and only a shard with no live owner fails the request, with an error naming it.

use super::protocol::{
    self, CatalogEntry, CatalogPush, ShardOp, ShardReply, WireChange, WireOp, WireReply,
};
use super::PeerError;
use crate::collection::ReplicaState;
use crate::collection::{Collection, NewPoint, ScoredPoint, SearchRequest};
use crate::error::{Error, Result};
use crate::node::Node;
use crate::shard::filter::Filter;
use crate::shard::point::PointId;
use crate::shard::search::TopK;
use crate::shard::{Change, PayloadOp, Plan, PointView, Selector};
use futures::future::join_all;
use reqwest::Method;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

fn shard_path(c: &Collection, shard: u32, what: &str) -> String {
    protocol::shard_path(&c.name, shard, what)
}

/// Cuts changes into runs whose encoded size stays within `budget` bytes (a change larger than
/// that goes alone), so that no commit body outgrows the peer port's limit.
fn runs_within(changes: &[Change], budget: usize) -> Vec<&[Change]> {
    let size = |c: &Change| {
        64 + c.record.body.as_ref().map_or(0, |b| {
            b.vector.len() * std::mem::size_of::<f32>() + b.payload_json.len()
        })
    };
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, c) in changes.iter().enumerate() {
        let n = size(c);
        if i > start && bytes + n > budget {
            runs.push(&changes[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < changes.len() {
        runs.push(&changes[start..]);
    }
    runs
}

impl Node {
    // ---------- collections ----------

    pub async fn create_collection(
        &self,
        name: &str,
        config: crate::collection::CollectionConfig,
    ) -> Result<()> {
        let local = self.cluster.local_shards(&config);
        let entry = tokio::task::block_in_place(|| self.catalog.create(name, config, &local))?;
        self.broadcast_catalog(&entry).await;
        Ok(())
    }

    pub async fn delete_collection(&self, name: &str) -> Result<bool> {
        let entry = tokio::task::block_in_place(|| self.catalog.delete(name))?;
        match entry {
            Some(e) => {
                self.broadcast_catalog(&e).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Tells every peer about a create or delete; a peer that misses it learns it on its next sync.
    async fn broadcast_catalog(&self, entry: &CatalogEntry) {
        let push = CatalogPush {
            entry: entry.clone(),
            fresh: true,
        };
        let push = &push;
        let calls = self.cluster.peers().into_iter().map(|o| async move {
            let r: std::result::Result<bool, PeerError> = self.cluster.call(o, Method::PUT, "/peer/v1/catalog", push).await;
            if let Err(e) = r {
                tracing::warn!(collection = %entry.name, error = %e, "peer will learn of this collection change on its next sync");
            }
        });
        join_all(calls).await;
    }

    /// Makes sure a peer knows a collection before sending it shard traffic.
    async fn push_catalog(
        &self,
        c: &Collection,
        ordinal: u32,
    ) -> std::result::Result<(), PeerError> {
        let entry = CatalogEntry {
            name: c.name.clone(),
            version: c.version,
            config: Some(c.config.clone()),
        };
        let push = CatalogPush {
            entry,
            fresh: false,
        };
        self.cluster
            .call::<_, bool>(ordinal, Method::PUT, "/peer/v1/catalog", &push)
            .await
            .map(|_| ())
    }

    // ---------- replica access ----------

    /// Nodes in the order reads of a shard should try them: this node if it owns the shard, then
    /// healthy owners in placement order, then the other owners, then every other node (one may
    /// still hold the replica while ownership moves after a scale event).
    fn read_order(&self, c: &Collection, shard: u32) -> Vec<u32> {
        let owners = self.cluster.owners(&c.config, shard);
        let me = self.cluster.ordinal;
        let mut order: Vec<u32> = owners.iter().copied().filter(|o| *o == me).collect();
        order.extend(
            owners
                .iter()
                .copied()
                .filter(|o| *o != me && self.cluster.is_healthy(*o)),
        );
        order.extend(
            owners
                .iter()
                .copied()
                .filter(|o| *o != me && !self.cluster.is_healthy(*o)),
        );
        if !order.contains(&me) && c.replica_state(shard) != ReplicaState::Absent {
            order.push(me);
        }
        order.extend(
            self.cluster
                .peers()
                .into_iter()
                .filter(|o| !owners.contains(o) && self.cluster.is_healthy(*o)),
        );
        order
    }

    /// Runs an operation on one node's replica. Reads (`complete_only`) refuse a replica that is
    /// still copying from its peers, so that answers are never missing points.
    async fn on_replica(
        &self,
        c: &Arc<Collection>,
        shard: u32,
        owner: u32,
        op: &ShardOp,
        complete_only: bool,
    ) -> std::result::Result<ShardReply, String> {
        if owner == self.cluster.ordinal {
            match c.replica_state(shard) {
                ReplicaState::Absent => {
                    return Err(format!("node {owner} holds no replica of shard {shard}"))
                }
                ReplicaState::Syncing if complete_only => {
                    return Err(format!(
                        "replica of shard {shard} on node {owner} is still syncing"
                    ))
                }
                _ => {}
            }
            let replica = c
                .open_shard(shard)
                .map_err(|e| format!("local replica of shard {shard}: {e:#}"))?;
            if op.is_quick() {
                return Ok(protocol::execute(&replica, op));
            }
            let op = op.clone();
            return tokio::task::spawn_blocking(move || protocol::execute(&replica, &op))
                .await
                .map_err(|e| format!("local shard task failed: {e}"));
        }
        let path = format!(
            "{}?complete_only={complete_only}",
            shard_path(c, shard, "op")
        );
        // Boxed: the peer call's future is ~1.8 KB, and inline it would make every local read's
        // future (and each future awaiting it, up to the request's) that large, copied as it
        // is built and moved on every request.
        Box::pin(self.call_knowing(c, owner, &path, &WireOp::from(op)))
            .await
            .map(|r: WireReply| ShardReply::from(r))
    }

    /// Sends shard traffic to a peer; a peer that does not know the collection yet (404) is told
    /// about it and asked again.
    async fn call_knowing<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        c: &Collection,
        owner: u32,
        path: &str,
        body: &Req,
    ) -> std::result::Result<Resp, String> {
        let mut result = self.cluster.call(owner, Method::POST, path, body).await;
        if matches!(result, Err(PeerError::Refused { status: 404, .. })) {
            self.push_catalog(c, owner)
                .await
                .map_err(|e| e.to_string())?;
            result = self.cluster.call(owner, Method::POST, path, body).await;
        }
        result.map_err(|e| e.to_string())
    }

    /// Runs a read on one live replica of the shard: a complete one if any answers, else (a
    /// collection created a moment ago, whose replicas are all still confirming they are empty)
    /// any replica.
    async fn read_shard(
        &self,
        c: &Arc<Collection>,
        shard: u32,
        op: &ShardOp,
    ) -> Result<ShardReply> {
        let mut errors = Vec::new();
        let order = self.read_order(c, shard);
        for complete_only in [true, false] {
            for owner in &order {
                match self.on_replica(c, shard, *owner, op, complete_only).await {
                    Ok(reply) => return Ok(reply),
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(self.gone_or(
            c,
            Error::Unavailable(format!(
                "shard {shard} of collection `{}` has no live replica: {}",
                c.name,
                errors.join("; ")
            )),
        ))
    }

    /// A shard that failed because its collection was deleted (or deleted and created again)
    /// under the request: the client's 404, as if the request had come a moment later, rather
    /// than a 503 that tells it to retry.
    fn gone_or(&self, c: &Collection, error: Error) -> Error {
        match self.catalog.get(&c.name) {
            Ok(current) if std::ptr::eq(current.as_ref(), c) => error,
            _ => Error::NotFound(format!("Collection `{}` doesn't exist!", c.name)),
        }
    }

    /// Runs a read on every shard in parallel.
    async fn read_all(
        &self,
        c: &Arc<Collection>,
        shards: Vec<u32>,
        op: impl Fn(u32) -> ShardOp,
    ) -> Result<Vec<ShardReply>> {
        // One shard (the default collection): no join, no vectors of futures and operations.
        if let [shard] = shards[..] {
            return Ok(vec![self.read_shard(c, shard, &op(shard)).await?]);
        }
        let ops: Vec<(u32, ShardOp)> = shards.into_iter().map(|s| (s, op(s))).collect();
        join_all(ops.iter().map(|(s, op)| self.read_shard(c, *s, op)))
            .await
            .into_iter()
            .collect()
    }

    /// Commits changes on one owner's replica (a replica this node newly owns starts by syncing).
    pub(crate) async fn commit_on(
        &self,
        c: &Arc<Collection>,
        shard: u32,
        owner: u32,
        changes: &[Change],
        durable: bool,
    ) -> std::result::Result<(), String> {
        if owner == self.cluster.ordinal {
            let replica = c.open_syncing_if_new(shard).map_err(|e| format!("{e:#}"))?;
            let changes = changes.to_vec();
            return tokio::task::spawn_blocking(move || replica.commit(changes, durable))
                .await
                .map_err(|e| e.to_string())?
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        let path = format!("{}?durable={durable}", shard_path(c, shard, "commit"));
        let budget = protocol::peer_body_limit(self.config.max_request_bytes) / 2;
        for run in runs_within(changes, budget) {
            let wire: Vec<WireChange> = run.iter().cloned().map(Into::into).collect();
            self.call_knowing(c, owner, &path, &wire)
                .await
                .map(|_: u64| ())?;
        }
        Ok(())
    }

    /// Writes changes to every owner of a shard; enough of them must acknowledge. Owners whose
    /// calls hang are left out when the others are enough (they catch up once they answer
    /// again); owners that fail at once are tried, as they may be back already.
    async fn write_shard(
        &self,
        c: &Arc<Collection>,
        shard: u32,
        changes: Vec<Change>,
        durable: bool,
    ) -> Result<()> {
        let owners = self.cluster.owners(&c.config, shard);
        let required = (c.config.write_consistency_factor as usize).clamp(1, owners.len());
        let up: Vec<u32> = owners
            .iter()
            .copied()
            .filter(|o| !self.cluster.hangs(*o))
            .collect();
        let targets = if up.len() >= required {
            if up.len() < owners.len() {
                metrics::counter!("shoal_replica_writes_deferred_total").increment(1);
            }
            &up
        } else {
            &owners
        };
        let results = join_all(
            targets
                .iter()
                .map(|o| self.commit_on(c, shard, *o, &changes, durable)),
        )
        .await;
        let acked = results.iter().filter(|r| r.is_ok()).count();
        if acked >= required {
            return Ok(());
        }
        let errors: Vec<String> = results.into_iter().filter_map(|r| r.err()).collect();
        Err(self.gone_or(c, Error::Unavailable(format!(
            "shard {shard} of collection `{}`: {acked} of {} replicas acknowledged the write, {required} required: {}",
            c.name,
            owners.len(),
            errors.join("; ")
        ))))
    }

    // ---------- points ----------

    pub async fn upsert(
        &self,
        c: &Arc<Collection>,
        points: Vec<NewPoint>,
        wait: bool,
    ) -> Result<u64> {
        let version = c.clock().next();
        let shard_number = c.config.shard_number;
        let mut per_shard: BTreeMap<u32, Vec<Change>> = BTreeMap::new();
        for p in points {
            let vector = c.prepare_vector(p.vector).map_err(|e| match e {
                Error::BadRequest(m) => Error::BadRequest(format!("point {}: {m}", p.id)),
                other => other,
            })?;
            let shard = super::placement::shard_of(&p.id, shard_number);
            per_shard
                .entry(shard)
                .or_default()
                .push(Change::upsert(p.id, version, vector, p.payload));
        }
        let writes = per_shard
            .into_iter()
            .map(|(s, changes)| self.write_shard(c, s, changes, wait));
        join_all(writes)
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()?;
        Ok(version)
    }

    /// Shards a selector can touch: those of its ids, or all of them for a filter.
    fn shards_for(&self, c: &Collection, selector: &Selector) -> Vec<u32> {
        match selector {
            Selector::Filter(_) => (0..c.config.shard_number).collect(),
            Selector::Ids(ids) => {
                let set: std::collections::BTreeSet<u32> = ids
                    .iter()
                    .map(|id| super::placement::shard_of(id, c.config.shard_number))
                    .collect();
                set.into_iter().collect()
            }
        }
    }

    async fn run_plan(&self, c: &Arc<Collection>, plan: Plan, wait: bool) -> Result<u64> {
        let version = c.clock().next();
        let shards = self.shards_for(
            c,
            match &plan {
                Plan::Delete(s) | Plan::Payload(s, _) => s,
            },
        );
        let work = shards.into_iter().map(|s| {
            let op = ShardOp::Plan {
                plan: plan.clone(),
                version,
            };
            async move {
                let changes = match self.read_shard(c, s, &op).await? {
                    ShardReply::Changes(changes) => changes,
                    _ => {
                        return Err(Error::Internal(
                            "a replica answered a plan with something else".into(),
                        ))
                    }
                };
                if changes.is_empty() {
                    return Ok(());
                }
                self.write_shard(c, s, changes, wait).await
            }
        });
        join_all(work)
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()?;
        Ok(version)
    }

    pub async fn delete_points(
        &self,
        c: &Arc<Collection>,
        selector: Selector,
        wait: bool,
    ) -> Result<u64> {
        self.run_plan(c, Plan::Delete(selector), wait).await
    }

    pub async fn modify_payload(
        &self,
        c: &Arc<Collection>,
        selector: Selector,
        op: PayloadOp,
        wait: bool,
    ) -> Result<u64> {
        self.run_plan(c, Plan::Payload(selector, op), wait).await
    }

    /// Points by id in the order asked, each once; missing ids are left out.
    pub async fn retrieve(
        &self,
        c: &Arc<Collection>,
        ids: &[PointId],
        with_vector: bool,
    ) -> Result<Vec<PointView>> {
        let mut by_shard: BTreeMap<u32, Vec<PointId>> = BTreeMap::new();
        let mut seen = HashSet::new();
        for id in ids.iter().filter(|id| seen.insert(**id)) {
            by_shard
                .entry(super::placement::shard_of(id, c.config.shard_number))
                .or_default()
                .push(*id);
        }
        let shards: Vec<u32> = by_shard.keys().copied().collect();
        let replies = self
            .read_all(c, shards, |s| ShardOp::Retrieve {
                ids: by_shard.get(&s).cloned().unwrap_or_default(),
                with_vector,
            })
            .await?;
        let mut found: HashMap<PointId, PointView> = HashMap::new();
        for reply in replies {
            if let ShardReply::Points(points) = reply {
                found.extend(points.into_iter().map(|p| (p.id, p)));
            }
        }
        let mut seen = HashSet::new();
        Ok(ids
            .iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|id| found.remove(id))
            .collect())
    }

    /// A page of points in id order from `offset`, and where the next page starts.
    pub async fn scroll(
        &self,
        c: &Arc<Collection>,
        offset: Option<PointId>,
        limit: usize,
        filter: Option<Filter>,
        with_vector: bool,
    ) -> Result<(Vec<PointView>, Option<PointId>)> {
        let shards = (0..c.config.shard_number).collect();
        let replies = self
            .read_all(c, shards, |_| ShardOp::Scroll {
                from: offset,
                limit: limit + 1,
                filter: filter.clone(),
                with_vector,
            })
            .await?;
        let mut all: Vec<PointView> = replies
            .into_iter()
            .flat_map(|r| match r {
                ShardReply::Points(p) => p,
                _ => Vec::new(),
            })
            .collect();
        all.sort_by_key(|p| p.id);
        let next = all.get(limit).map(|p| p.id);
        all.truncate(limit);
        Ok((all, next))
    }

    pub async fn count(&self, c: &Arc<Collection>, filter: Option<Filter>) -> Result<u64> {
        let shards = (0..c.config.shard_number).collect();
        let replies = self
            .read_all(c, shards, |_| ShardOp::Count {
                filter: filter.clone(),
            })
            .await?;
        Ok(replies
            .into_iter()
            .map(|r| if let ShardReply::Count(n) = r { n } else { 0 })
            .sum())
    }

    pub async fn search(
        &self,
        c: &Arc<Collection>,
        req: &SearchRequest,
    ) -> Result<Vec<ScoredPoint>> {
        let vector = c.prepare_vector(req.vector.clone())?;
        let k = req.offset.saturating_add(req.limit);
        let ef = req.hnsw_ef.unwrap_or(c.config.hnsw.ef_construct).max(k);
        let shards = (0..c.config.shard_number).collect();
        let replies = self
            .read_all(c, shards, |_| ShardOp::Search {
                vector: vector.clone(),
                k,
                ef,
                exact: req.exact,
                filter: req.filter.clone(),
                with_vector: req.with_vector,
                with_payload: req.with_payload,
                quantization: req.quantization,
            })
            .await?;
        let metric = c.config.distance;
        let nearest = match <[ShardReply; 1]>::try_from(replies) {
            // One shard's hits are its nearest k already, nearest first.
            Ok([ShardReply::Hits(hits)]) => {
                hits.into_iter().map(|h| (h.distance, h.point)).collect()
            }
            Ok(_) => Vec::new(),
            Err(replies) => {
                let mut top = TopK::new(k);
                for reply in replies {
                    if let ShardReply::Hits(hits) = reply {
                        for h in hits {
                            top.push(h.distance, h.point);
                        }
                    }
                }
                top.into_sorted()
            }
        };
        Ok(nearest
            .into_iter()
            .skip(req.offset)
            .map(|(d, point)| ScoredPoint {
                score: metric.score(d),
                point,
            })
            .filter(|p| {
                req.score_threshold
                    .is_none_or(|t| metric.passes_threshold(p.score, t))
            })
            .collect())
    }
}
