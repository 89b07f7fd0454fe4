//! A collection: its configuration and its shards, and the point operations that span shards
//! (routing each point to `shard_of(id)`, merging search, scroll and count results).

pub mod catalog;

use crate::cluster::placement::shard_of;
use crate::error::{Error, Result};
use crate::index::{HnswParams, Metric};
use crate::shard::filter::Filter;
use crate::shard::point::{Payload, PointId};
use crate::shard::search::{SearchSpec, TopK};
use crate::shard::version::VersionClock;
use crate::shard::{Change, PayloadOp, PointView, Selector, Shard};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The persisted configuration of a collection (`config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionConfig {
    pub size: usize,
    pub distance: Metric,
    pub hnsw: HnswParams,
    pub shard_number: u32,
    pub replication_factor: u32,
    pub write_consistency_factor: u32,
    pub on_disk_payload: bool,
}

/// A point to upsert, as the API parsed it (vector not yet checked or prepared).
#[derive(Debug, Clone)]
pub struct NewPoint {
    pub id: PointId,
    pub vector: Vec<f32>,
    pub payload: Payload,
}

/// A nearest-neighbour request, already validated for shape.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub vector: Vec<f32>,
    pub filter: Option<Filter>,
    pub limit: usize,
    pub offset: usize,
    pub hnsw_ef: Option<usize>,
    pub exact: bool,
    pub score_threshold: Option<f32>,
    pub with_vector: bool,
}

/// A search result with Qdrant's score.
#[derive(Debug, Clone)]
pub struct ScoredPoint {
    pub score: f32,
    pub point: PointView,
}

pub struct Collection {
    pub name: String,
    pub config: CollectionConfig,
    shards: Vec<Arc<Shard>>,
    clock: Arc<VersionClock>,
    operations: AtomicU64,
}

impl Collection {
    pub fn new(name: String, config: CollectionConfig, shards: Vec<Arc<Shard>>, clock: Arc<VersionClock>) -> Self {
        Collection { name, config, shards, clock, operations: AtomicU64::new(0) }
    }

    pub fn shards(&self) -> &[Arc<Shard>] {
        &self.shards
    }

    fn shard(&self, id: &PointId) -> &Arc<Shard> {
        &self.shards[shard_of(id, self.shards.len() as u32) as usize]
    }

    fn next_operation(&self) -> u64 {
        self.operations.fetch_add(1, Ordering::Relaxed)
    }

    /// Checks a vector against the collection and prepares it for the metric.
    pub fn prepare_vector(&self, mut v: Vec<f32>) -> Result<Vec<f32>> {
        if v.len() != self.config.size {
            return Err(Error::BadRequest(format!(
                "Vector dimension error: expected dim: {}, got {}",
                self.config.size,
                v.len()
            )));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::BadRequest(format!("vector element {i} is {} but must be a finite number", v[i])));
        }
        self.config.distance.prepare(&mut v);
        Ok(v)
    }

    /// Upserts a batch: all vectors are checked first, so a bad one changes nothing.
    pub fn upsert(&self, points: Vec<NewPoint>, wait: bool) -> Result<u64> {
        let version = self.clock.next();
        let mut per_shard: Vec<Vec<Change>> = vec![Vec::new(); self.shards.len()];
        for p in points {
            let vector = self.prepare_vector(p.vector).map_err(|e| match e {
                Error::BadRequest(m) => Error::BadRequest(format!("point {}: {m}", p.id)),
                other => other,
            })?;
            let shard = shard_of(&p.id, self.shards.len() as u32) as usize;
            per_shard[shard].push(Change::upsert(p.id, version, vector, p.payload));
        }
        for (shard, changes) in self.shards.iter().zip(per_shard) {
            if !changes.is_empty() {
                shard.commit(changes, wait)?;
            }
        }
        Ok(self.next_operation())
    }

    pub fn delete(&self, selector: &Selector, wait: bool) -> Result<u64> {
        let version = self.clock.next();
        for shard in self.shards_for(selector) {
            shard.delete(selector, version, wait)?;
        }
        Ok(self.next_operation())
    }

    pub fn modify_payload(&self, selector: &Selector, op: &PayloadOp, wait: bool) -> Result<u64> {
        let version = self.clock.next();
        for shard in self.shards_for(selector) {
            shard.modify_payload(selector, op, version, wait)?;
        }
        Ok(self.next_operation())
    }

    /// Shards a selector can touch: those of its ids, or all for a filter.
    fn shards_for<'a>(&'a self, selector: &Selector) -> Vec<&'a Arc<Shard>> {
        match selector {
            Selector::Filter(_) => self.shards.iter().collect(),
            Selector::Ids(ids) => {
                let mut hit = vec![false; self.shards.len()];
                for id in ids {
                    hit[shard_of(id, self.shards.len() as u32) as usize] = true;
                }
                self.shards.iter().zip(hit).filter(|(_, h)| *h).map(|(s, _)| s).collect()
            }
        }
    }

    /// Points by id in the order asked, each once; missing ids are left out.
    pub fn retrieve(&self, ids: &[PointId], with_vector: bool) -> Vec<PointView> {
        let mut seen = std::collections::HashSet::new();
        ids.iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|id| self.shard(id).get(std::slice::from_ref(id), with_vector).pop())
            .collect()
    }

    /// A page of points in id order from `offset`, and the id the next page starts at.
    pub fn scroll(
        &self,
        offset: Option<PointId>,
        limit: usize,
        filter: Option<&Filter>,
        with_vector: bool,
    ) -> (Vec<PointView>, Option<PointId>) {
        let mut all: Vec<PointView> =
            self.shards.iter().flat_map(|s| s.scroll(offset, limit + 1, filter, with_vector)).collect();
        all.sort_by_key(|p| p.id);
        let next = all.get(limit).map(|p| p.id);
        all.truncate(limit);
        (all, next)
    }

    pub fn count(&self, filter: Option<&Filter>) -> usize {
        self.shards.iter().map(|s| s.count(filter)).sum()
    }

    pub fn search(&self, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        let vector = self.prepare_vector(req.vector.clone())?;
        let k = req.offset.saturating_add(req.limit);
        let spec = SearchSpec {
            vector: &vector,
            k,
            ef: req.hnsw_ef.unwrap_or(self.config.hnsw.ef_construct).max(k),
            exact: req.exact,
            filter: req.filter.as_ref(),
            with_vector: req.with_vector,
        };
        let metric = self.config.distance;
        let mut top = TopK::new(k);
        for shard in &self.shards {
            for hit in shard.search(&spec) {
                top.push(hit.distance, hit.point);
            }
        }
        Ok(top
            .into_sorted()
            .into_iter()
            .skip(req.offset)
            .map(|(d, point)| ScoredPoint { score: metric.score(d), point })
            .filter(|p| req.score_threshold.is_none_or(|t| metric.passes_threshold(p.score, t)))
            .collect())
    }

    /// Total live points, points inside HNSW segments, and segments.
    pub fn stats(&self) -> (usize, usize, usize) {
        self.shards.iter().map(|s| s.stats()).fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
    }
}
