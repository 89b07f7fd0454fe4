//! The coordinator: this node's part in the cluster. Any node accepts any request and turns it
//! into work on the shard replicas involved, through the [`Replica`] seam, never asking whether a
//! replica is its own or a peer's.
//!
//! - **Writes** are split by shard and sent to every owner of each shard in parallel; the request
//!   succeeds once `write_consistency_factor` owners of every shard applied it (fsynced when the
//!   client asked `wait=true`). An owner that stopped answering ([`super::health`]) is skipped
//!   when the others are enough, so a frozen peer does not slow writes down; owners that missed
//!   a write catch up later ([`super::sync`]).
//! - **Deletes and payload changes** are read-modify-write: one live replica computes the new
//!   records (a [`Plan`]), then they are written like any other change, so replicas converge.
//! - **Reads** go to one live replica of every shard in parallel, this node's first when it holds
//!   one, then the others in placement order ([`ClusterReplicas::read_order`]); a replica that
//!   fails, is unreachable or answers the wrong kind of reply is skipped for the next one, and
//!   only a shard with no live replica fails the request, with an error naming it.
//!
//! The coordinator also holds what the peer port and the background tasks work on: the
//! [`Catalog`] of collections and the [`Cluster`] (membership, peers, health).

use super::membership::SizeSource;
use super::protocol::{CatalogEntry, CatalogPush, ShardOp, ShardReply, ShardStats, WrongReply};
use super::replica::{ClusterReplicas, ReadContext, Replica, Replicas};
use super::{Cluster, PeerError};
use crate::collection::aliases::AliasChange;
use crate::collection::catalog::Catalog;
use crate::collection::{Collection, CollectionConfig, NewPoint, ScoredPoint, SearchRequest};
use crate::error::{Error, Result};
use crate::shard::deadline::Deadline;
use crate::shard::facet::{sort_values, Direction, FacetValue, IndexedKey};
use crate::shard::filter::Filter;
use crate::shard::point::PointId;
use crate::shard::search::TopK;
use crate::shard::{Change, PayloadOp, Plan, PlanPage, PointView, Selector, ShardError};
use futures::future::join_all;
use reqwest::Method;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the changes of one page of a plan may weigh: a payload change by filter over a whole
/// shard (each change carries its point's vector and whole payload) is planned and written a
/// page at a time, so that neither the planning node nor the writing one holds all of it.
pub const PLAN_PAGE_BYTES: usize = 16 << 20;

/// This node in the cluster: its collections, its peers, and how a request reaches every
/// replica it involves.
pub struct Coordinator {
    pub catalog: Catalog,
    pub cluster: Arc<Cluster>,
    replicas: Box<dyn Replicas>,
    /// Set once every local shard is open; `/readyz` and the peer status report it.
    ready: AtomicBool,
    /// Where the cluster size comes from, in cluster mode.
    size_source: Option<Arc<SizeSource>>,
    /// Largest body the peer port reads ([`super::protocol::peer_body_limit`]).
    pub peer_body_limit: usize,
}

impl Coordinator {
    /// The coordinator of a node: replicas found through `cluster`'s placement and health.
    pub fn new(
        catalog: Catalog,
        cluster: Cluster,
        size_source: Option<Arc<SizeSource>>,
        max_request_bytes: usize,
    ) -> Coordinator {
        let cluster = Arc::new(cluster);
        let peer_body_limit = super::protocol::peer_body_limit(max_request_bytes);
        let replicas = ClusterReplicas {
            cluster: Arc::clone(&cluster),
            commit_budget: peer_body_limit / 2,
        };
        Coordinator {
            catalog,
            cluster,
            replicas: Box::new(replicas),
            ready: AtomicBool::new(false),
            size_source,
            peer_body_limit,
        }
    }

    /// A coordinator whose replicas come from `replicas` (tests plug in fakes).
    pub fn with_replicas(catalog: Catalog, cluster: Cluster, replicas: Box<dyn Replicas>) -> Self {
        Coordinator {
            replicas,
            ..Coordinator::new(catalog, cluster, None, 1 << 20)
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn size_source(&self) -> Option<Arc<SizeSource>> {
        self.size_source.clone()
    }

    // ---------- collections ----------

    pub async fn create_collection(&self, name: &str, config: CollectionConfig) -> Result<()> {
        let local = self.cluster.local_shards(&config);
        let entry = tokio::task::block_in_place(|| self.catalog.create(name, config, &local))?;
        self.broadcast_catalog(&entry, true).await;
        Ok(())
    }

    pub async fn delete_collection(&self, name: &str) -> Result<bool> {
        let entry = tokio::task::block_in_place(|| self.catalog.delete(name))?;
        match entry {
            Some(e) => {
                self.broadcast_catalog(&e, false).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Changes a collection's configuration in place (a newer catalog entry of the same
    /// incarnation, [`Catalog::update_config`]) and tells every peer.
    pub async fn update_config(
        &self,
        name: &str,
        change: impl FnOnce(&mut CollectionConfig) -> Result<()>,
    ) -> Result<()> {
        let entry = tokio::task::block_in_place(|| self.catalog.update_config(name, change))?;
        self.broadcast_catalog(&entry, false).await;
        Ok(())
    }

    /// Applies a client's alias actions here, all or none, and tells every peer.
    pub async fn update_aliases(&self, changes: &[AliasChange]) -> Result<()> {
        let entries = tokio::task::block_in_place(|| self.catalog.update_aliases(changes))?;
        if entries.is_empty() {
            return Ok(());
        }
        self.broadcast("/peer/v1/aliases", &entries, "aliases")
            .await;
        Ok(())
    }

    /// Qdrant's `PUT /collections/{c}/index`: a newer configuration with the index, on this
    /// node (its local replicas build the index before this returns) and then on every peer.
    /// Returns the operation id (the configuration's version).
    pub async fn create_payload_index(
        &self,
        name: &str,
        field: &str,
        schema: &serde_json::Value,
    ) -> Result<u64> {
        let entry =
            tokio::task::block_in_place(|| self.catalog.create_payload_index(name, field, schema))?;
        self.broadcast_catalog(&entry, false).await;
        Ok(entry.version)
    }

    /// Qdrant's `DELETE /collections/{c}/index/{field}`, everywhere, like a create.
    pub async fn delete_payload_index(&self, name: &str, field: &str) -> Result<u64> {
        let entry = tokio::task::block_in_place(|| self.catalog.delete_payload_index(name, field))?;
        self.broadcast_catalog(&entry, false).await;
        Ok(entry.version)
    }

    /// Tells every peer about a catalog change (a create, a delete, a new configuration); a
    /// peer that misses it learns it on its next sync. `fresh` for a create: the peer's new
    /// replicas start empty and complete (never for a change of an existing collection, which a
    /// peer that missed the create must copy from the others).
    async fn broadcast_catalog(&self, entry: &CatalogEntry, fresh: bool) {
        let push = &CatalogPush {
            entry: entry.clone(),
            fresh,
        };
        self.broadcast("/peer/v1/catalog", &push, &entry.name).await;
    }

    /// PUTs a catalog change to every peer at once; a peer that misses it learns it on its next
    /// sync ([`super::sync`]). `what` names the change in the log.
    async fn broadcast<T: serde::Serialize + Sync>(&self, path: &str, body: &T, what: &str) {
        let calls = self.cluster.peers().into_iter().map(|o| async move {
            let pushed = self.cluster.call::<_, bool>(o, Method::PUT, path, body).await;
            if let Err(e) = pushed {
                tracing::warn!(peer = o, change = what, error = %e, "peer will learn of this catalog change on its next sync");
            }
        });
        join_all(calls).await;
    }

    // ---------- replicas ----------

    /// Runs a read on one live replica of the shard and takes its reply with `take`: a complete
    /// replica if any answers, else (a collection created a moment ago, whose replicas are all
    /// still confirming they are empty) any replica. A read past its deadline stops at once.
    async fn read_shard<T>(
        &self,
        c: &Arc<Collection>,
        shard: u32,
        op: &ShardOp,
        take: fn(ShardReply) -> std::result::Result<T, WrongReply>,
        deadline: &Deadline,
    ) -> Result<T> {
        let replicas = self.replicas.to_read(c, shard);
        let mut errors = Vec::new();
        let mut superseded = false;
        for complete_only in [true, false] {
            let how = ReadContext {
                complete_only,
                deadline: deadline.clone(),
            };
            for replica in &replicas {
                if deadline.expired() {
                    return Err(timed_out(c, shard));
                }
                let reply = replica.read(op, &how).await;
                match reply.and_then(|r| take(r).map_err(|e| bad_answer(replica.as_ref(), e))) {
                    Ok(answer) => return Ok(answer),
                    Err(PeerError::Expired { .. }) => return Err(timed_out(c, shard)),
                    // The read's answer is over its payload limit: so would it be anywhere
                    // else.
                    Err(PeerError::Shard {
                        error: ShardError::TooLarge(m),
                        ..
                    })
                    | Err(PeerError::Refused {
                        status: 413,
                        message: m,
                        ..
                    }) => return Err(Error::BadRequest(m)),
                    Err(e) => {
                        superseded |= matches!(e, PeerError::Superseded { .. });
                        errors.push(e.to_string())
                    }
                }
            }
        }
        Err(self.gone_or(
            c,
            superseded,
            Error::Unavailable(format!(
                "shard {shard} of collection `{}` has no live replica: {}",
                c.name,
                errors.join("; ")
            )),
        ))
    }

    /// A shard that failed because its collection was deleted (or deleted and created again)
    /// under the request: the client's 404, as if the request had come a moment later, rather
    /// than a 503 that tells it to retry. `superseded`: a replica's node already deleted it,
    /// though this node has not heard yet.
    fn gone_or(&self, c: &Collection, superseded: bool, error: Error) -> Error {
        match self.catalog.get(&c.name) {
            Ok(current) if !superseded && std::ptr::eq(current.as_ref(), c) => error,
            _ => Error::NotFound(format!("Collection `{}` doesn't exist!", c.name)),
        }
    }

    /// Runs a read on every shard in parallel.
    async fn read_all<T>(
        &self,
        c: &Arc<Collection>,
        shards: Vec<u32>,
        op: impl Fn(u32) -> ShardOp,
        take: fn(ShardReply) -> std::result::Result<T, WrongReply>,
        deadline: &Deadline,
    ) -> Result<Vec<T>> {
        // One shard (the default collection): no join, no vectors of futures and operations.
        if let [shard] = shards[..] {
            let op = op(shard);
            return Ok(vec![self.read_shard(c, shard, &op, take, deadline).await?]);
        }
        let ops: Vec<(u32, ShardOp)> = shards.into_iter().map(|s| (s, op(s))).collect();
        join_all(
            ops.iter()
                .map(|(s, op)| self.read_shard(c, *s, op, take, deadline)),
        )
        .await
        .into_iter()
        .collect()
    }

    /// Writes changes to the replicas of a shard; enough of them must acknowledge.
    async fn write_shard(
        &self,
        c: &Arc<Collection>,
        shard: u32,
        changes: Vec<Change>,
        durable: bool,
    ) -> Result<()> {
        let oldest = (changes.iter().map(|ch| ch.record.version).min()).unwrap_or(0);
        let set = self.replicas.to_write(c, shard, oldest);
        let results = join_all(set.replicas.iter().map(|r| r.commit(&changes, durable))).await;
        let (acked, failed): (Vec<_>, Vec<_>) = (set.replicas.iter().zip(&results))
            .map(|(replica, r)| (replica.node(), r.is_ok()))
            .partition(|(_, ok)| *ok);
        let acked: Vec<u32> = acked.into_iter().map(|(node, _)| node).collect();
        if acked.len() >= set.required {
            let failed: Vec<u32> = failed.into_iter().map(|(node, _)| node).collect();
            self.note_failed(c, shard, &failed, &acked, oldest);
            return Ok(());
        }
        let acked = acked.len();
        let superseded = (results.iter()).any(|r| matches!(r, Err(PeerError::Superseded { .. })));
        let errors: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        Err(self.gone_or(c, superseded, Error::Unavailable(format!(
            "shard {shard} of collection `{}`: {acked} of {} replicas acknowledged the write, {} required: {}",
            c.name,
            set.owners,
            set.required,
            errors.join("; ")
        ))))
    }

    /// A write acknowledged although the replicas of `failed` did not take it: they lack it
    /// until they catch up ([`super::missed`]; owners left out of the write were recorded as
    /// they were). This node's own replica is marked behind at once.
    fn note_failed(&self, c: &Collection, shard: u32, failed: &[u32], acked: &[u32], oldest: u64) {
        if failed.is_empty() {
            return;
        }
        let me = self.cluster.ordinal;
        if failed.contains(&me) {
            let from = acked.iter().copied().filter(|o| *o != me);
            (self.cluster.behind).mark(&c.name, shard, oldest.saturating_sub(1), from);
        }
        let peers: Vec<u32> = (failed.iter().copied()).filter(|o| *o != me).collect();
        if !peers.is_empty() {
            (self.cluster.deferred).record((&c.name, shard), &peers, acked, oldest);
        }
    }

    /// Dumps one shard into `dest` from the first replica that can ([`super::snapshot`]).
    pub async fn dump_shard(&self, c: &Arc<Collection>, shard: u32, dest: &Path) -> Result<u64> {
        let mut errors = Vec::new();
        for replica in self.replicas.to_read(c, shard) {
            match replica.dump(dest).await {
                Ok(points) => return Ok(points),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(Error::Unavailable(format!(
            "no replica of shard {shard} of {} could be dumped: {}",
            c.name,
            errors.join("; ")
        )))
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
            let vector = c
                .prepare_vector(p.vector)
                .map_err(|e| about_point(p.id, e))?;
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

    /// The plan each shard runs: a list of ids is cut by shard (each shard plans only its own
    /// points), a filter goes to every shard.
    fn plans_by_shard(&self, c: &Collection, plan: Plan) -> Vec<(u32, Plan)> {
        let shard_number = c.config.shard_number;
        let shard_of = |id: &PointId| super::placement::shard_of(id, shard_number);
        fn by_shard<T>(items: Vec<T>, shard: impl Fn(&T) -> u32) -> BTreeMap<u32, Vec<T>> {
            let mut out: BTreeMap<u32, Vec<T>> = BTreeMap::new();
            for item in items {
                out.entry(shard(&item)).or_default().push(item);
            }
            out
        }
        let selected = |selector: Selector, plan: &dyn Fn(Selector) -> Plan| match selector {
            Selector::Filter(f) => (0..shard_number)
                .map(|s| (s, plan(Selector::Filter(f.clone()))))
                .collect(),
            Selector::Ids(ids) => by_shard(ids, shard_of)
                .into_iter()
                .map(|(s, ids)| (s, plan(Selector::Ids(ids))))
                .collect(),
        };
        match plan {
            Plan::Delete(selector) => selected(selector, &Plan::Delete),
            Plan::DeleteVectors(selector) => selected(selector, &Plan::DeleteVectors),
            Plan::Payload(selector, op) => selected(selector, &|s| Plan::Payload(s, op.clone())),
            Plan::Vectors(points) => by_shard(points, |(id, _)| shard_of(id))
                .into_iter()
                .map(|(s, points)| (s, Plan::Vectors(points)))
                .collect(),
        }
    }

    /// A read-modify-write: on every shard involved, one replica plans the changes, and every
    /// owner commits them, a page of at most [`PLAN_PAGE_BYTES`] at a time.
    async fn run_plan(&self, c: &Arc<Collection>, plan: Plan, wait: bool) -> Result<u64> {
        let version = c.clock().next();
        let plans = self.plans_by_shard(c, plan);
        let work = plans.iter().map(|(s, plan)| async move {
            // A plan is part of a write: it runs to its end.
            let whole = Deadline::default();
            let mut after = None;
            loop {
                let page = PlanPage {
                    after,
                    max_bytes: PLAN_PAGE_BYTES,
                };
                let op = ShardOp::Plan {
                    plan: plan.clone(),
                    version,
                    page,
                };
                let changes = (self.read_shard(c, *s, &op, ShardReply::changes, &whole)).await?;
                // A node of an older build answers the whole plan whatever the page: seen again
                // from the start, it was all written already.
                if changes.is_empty()
                    || (changes.iter()).any(|ch| after.is_some_and(|a| ch.id <= a))
                {
                    return Ok(());
                }
                let full = (changes.iter()).map(Change::weight).sum::<usize>() >= PLAN_PAGE_BYTES;
                let last = changes.last().map(|ch| ch.id);
                self.write_shard(c, *s, changes, wait).await?;
                if !full {
                    return Ok(());
                }
                after = last;
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

    /// Replaces the vectors of existing points, keeping their payloads: Qdrant's 404 names the
    /// first id that does not exist, and then nothing is written.
    pub async fn update_vectors(
        &self,
        c: &Arc<Collection>,
        points: Vec<(PointId, Vec<f32>)>,
        wait: bool,
    ) -> Result<u64> {
        let points = points
            .into_iter()
            .map(|(id, v)| Ok((id, c.prepare_vector(v).map_err(|e| about_point(id, e))?)))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<PointId> = points.iter().map(|(id, _)| *id).collect();
        let found: HashSet<PointId> = (self.retrieve(c, &ids, false, &Deadline::default()))
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
            return Err(Error::NotFound(format!("No point with id {missing} found")));
        }
        self.run_plan(c, Plan::Vectors(points), wait).await
    }

    /// Removes the vectors of the selected points; their payloads stay.
    pub async fn delete_vectors(
        &self,
        c: &Arc<Collection>,
        selector: Selector,
        wait: bool,
    ) -> Result<u64> {
        self.run_plan(c, Plan::DeleteVectors(selector), wait).await
    }

    /// Points by id in the order asked, each once; missing ids are left out.
    pub async fn retrieve(
        &self,
        c: &Arc<Collection>,
        ids: &[PointId],
        with_vector: bool,
        deadline: &Deadline,
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
        let op = |s| ShardOp::Retrieve {
            ids: by_shard.get(&s).cloned().unwrap_or_default(),
            with_vector,
        };
        let replies = (self.read_all(c, shards, op, ShardReply::points, deadline)).await?;
        let mut found: HashMap<PointId, PointView> =
            replies.into_iter().flatten().map(|p| (p.id, p)).collect();
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
        deadline: &Deadline,
    ) -> Result<(Vec<PointView>, Option<PointId>)> {
        let shards = (0..c.config.shard_number).collect();
        let op = |_| ShardOp::Scroll {
            from: offset,
            limit: limit + 1,
            filter: filter.clone(),
            with_vector,
        };
        let replies = (self.read_all(c, shards, op, ShardReply::points, deadline)).await?;
        let mut all: Vec<PointView> = replies.into_iter().flatten().collect();
        all.sort_by_key(|p| p.id);
        let next = all.get(limit).map(|p| p.id);
        all.truncate(limit);
        Ok((all, next))
    }

    /// What the collection holds over every shard (one replica of each): collection info's
    /// counts, the same through every node.
    pub async fn stats(
        &self,
        c: &Arc<Collection>,
        indexing_threshold: usize,
        deadline: &Deadline,
    ) -> Result<ShardStats> {
        let shards = (0..c.config.shard_number).collect();
        let op = |_| ShardOp::Stats {
            indexing_threshold: indexing_threshold as u64,
        };
        let replies = (self.read_all(c, shards, op, ShardReply::stats, deadline)).await?;
        Ok(replies
            .into_iter()
            .fold(ShardStats::default(), ShardStats::plus))
    }

    /// How many points (passing `filter`) hold each value of a field, over every shard: the
    /// `limit` most frequent, most frequent first, equal counts in value order (Qdrant's order).
    /// Exact: every shard counts every value, within the deadline and its share of the request's
    /// memory (the deadline's payload limit); what the shards' answers hold is passed to
    /// `admit` before they are merged.
    pub async fn facet(
        &self,
        c: &Arc<Collection>,
        (field, filter, limit): (IndexedKey, Option<Filter>, usize),
        deadline: &Deadline,
        admit: impl FnOnce(usize) -> Result<()>,
    ) -> Result<Vec<(FacetValue, u64)>> {
        let shards = (0..c.config.shard_number).collect();
        let op = |_| ShardOp::Facet {
            field: field.clone(),
            filter: filter.clone(),
        };
        let replies = (self.read_all(c, shards, op, ShardReply::facet, deadline)).await?;
        admit(replies.iter().flatten().map(|(v, _)| v.held_bytes()).sum())?;
        let mut counts: HashMap<FacetValue, u64> = HashMap::new();
        for (value, n) in replies.into_iter().flatten() {
            *counts.entry(value).or_insert(0) += n;
        }
        let mut hits: Vec<(FacetValue, u64)> = counts.into_iter().collect();
        hits.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        hits.truncate(limit);
        Ok(hits)
    }

    /// Up to `limit` points ordered by a field over every shard (each shard's first `limit`,
    /// merged), with the value each is ordered by.
    #[allow(clippy::too_many_arguments)]
    pub async fn scroll_ordered(
        &self,
        c: &Arc<Collection>,
        field: IndexedKey,
        direction: Direction,
        start_from: Option<f64>,
        limit: usize,
        filter: Option<Filter>,
        with_vector: bool,
        deadline: &Deadline,
    ) -> Result<Vec<(f64, PointView)>> {
        let shards = (0..c.config.shard_number).collect();
        let op = |_| ShardOp::ScrollOrdered {
            field: field.clone(),
            direction,
            start_from,
            limit,
            filter: filter.clone(),
            with_vector,
        };
        let replies = (self.read_all(c, shards, op, ShardReply::ordered, deadline)).await?;
        let mut all: Vec<(f64, PointView)> = replies.into_iter().flatten().collect();
        sort_values(&mut all, direction, |(x, p)| (*x, p.id));
        all.truncate(limit);
        Ok(all)
    }

    pub async fn count(
        &self,
        c: &Arc<Collection>,
        filter: Option<Filter>,
        deadline: &Deadline,
    ) -> Result<u64> {
        let shards = (0..c.config.shard_number).collect();
        let op = |_| ShardOp::Count {
            filter: filter.clone(),
        };
        let counts = (self.read_all(c, shards, op, ShardReply::count, deadline)).await?;
        Ok(counts.into_iter().sum())
    }

    /// The nearest points to a query: every shard's `offset + limit` nearest, merged.
    pub async fn search(
        &self,
        c: &Arc<Collection>,
        req: &SearchRequest,
        deadline: &Deadline,
    ) -> Result<Vec<ScoredPoint>> {
        let vector = c.prepare_vector(req.vector.clone())?;
        let k = req.offset.saturating_add(req.limit);
        let ef = req.hnsw_ef.unwrap_or(c.config.hnsw.ef_construct).max(k);
        let shards = (0..c.config.shard_number).collect();
        let op = |_| ShardOp::Search {
            vector: vector.clone(),
            k,
            ef,
            exact: req.exact,
            filter: req.filter.clone(),
            with_vector: req.with_vector,
            with_payload: req.with_payload,
            quantization: req.quantization,
        };
        let replies = (self.read_all(c, shards, op, ShardReply::hits, deadline)).await?;
        let nearest = match <[Vec<_>; 1]>::try_from(replies) {
            // One shard's hits are its nearest k already, nearest first.
            Ok([hits]) => hits.into_iter().map(|h| (h.distance, h.point)).collect(),
            Err(replies) => {
                let mut top = TopK::new(k);
                for h in replies.into_iter().flatten() {
                    top.push(h.distance, h.point);
                }
                top.into_sorted()
            }
        };
        let metric = c.config.distance;
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

/// A bad vector's error, naming its point.
fn about_point(id: PointId, e: Error) -> Error {
    match e {
        Error::BadRequest(m) => Error::BadRequest(format!("point {id}: {m}")),
        other => other,
    }
}

/// What a read that overran its deadline fails with.
fn timed_out(c: &Collection, shard: u32) -> Error {
    Error::Timeout(format!(
        "the request's deadline passed while shard {shard} of collection `{}` was read (--request-timeout-secs)",
        c.name
    ))
}

/// A reply of the wrong kind, as the replica's failure.
fn bad_answer(replica: &dyn Replica, wrong: WrongReply) -> PeerError {
    PeerError::BadAnswer {
        ordinal: replica.node(),
        message: wrong.to_string(),
    }
}

#[cfg(test)]
mod tests;
