//! A collection on this node: its configuration, the version of that configuration (collections
//! are created and deleted cluster-wide, last writer wins), and the shard replicas this node holds.
//! Which replicas those are follows from the placement rule; routing points and merging results
//! across replicas is the coordinator's job ([`crate::cluster::coordinator`]).

pub mod catalog;

use crate::error::{Error, Result};
use crate::index::{HnswParams, Metric};
use crate::shard::point::{Payload, PointId};
use crate::shard::version::VersionClock;
use crate::shard::{PointView, Shard, ShardConfig};
use crate::shard::filter::Filter;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
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
    /// Version of the create that made this collection (catalog last-writer-wins).
    pub version: u64,
    dir: PathBuf,
    db: sled::Db,
    clock: Arc<VersionClock>,
    local: RwLock<BTreeMap<u32, Arc<Shard>>>,
}

pub(crate) fn tree_name(collection: &str, shard: u32) -> String {
    format!("c/{collection}/{shard}")
}

impl Collection {
    pub(crate) fn new(
        name: String,
        config: CollectionConfig,
        version: u64,
        dir: PathBuf,
        db: sled::Db,
        clock: Arc<VersionClock>,
    ) -> Self {
        Collection { name, config, version, dir, db, clock, local: RwLock::new(BTreeMap::new()) }
    }

    /// Opens this node's replica of `shard` (creating it if new); a no-op if already open.
    pub fn open_shard(&self, shard: u32) -> anyhow::Result<Arc<Shard>> {
        if let Some(s) = self.local.read().get(&shard) {
            return Ok(Arc::clone(s));
        }
        let config = ShardConfig { dim: self.config.size, metric: self.config.distance, hnsw: self.config.hnsw };
        let dir = self.dir.join("shards").join(shard.to_string());
        let opened = Arc::new(Shard::open(&self.db, &tree_name(&self.name, shard), &dir, config, Arc::clone(&self.clock))?);
        Ok(Arc::clone(self.local.write().entry(shard).or_insert(opened)))
    }

    /// Removes this node's replica of `shard` and its files (after it moved elsewhere).
    pub fn drop_shard(&self, shard: u32) -> anyhow::Result<()> {
        if self.local.write().remove(&shard).is_some() {
            self.db.drop_tree(tree_name(&self.name, shard))?;
            let _ = std::fs::remove_dir_all(self.dir.join("shards").join(shard.to_string()));
        }
        Ok(())
    }

    pub fn local_shard(&self, shard: u32) -> Option<Arc<Shard>> {
        self.local.read().get(&shard).cloned()
    }

    pub fn local_shards(&self) -> Vec<(u32, Arc<Shard>)> {
        self.local.read().iter().map(|(k, v)| (*k, Arc::clone(v))).collect()
    }

    pub fn clock(&self) -> &VersionClock {
        &self.clock
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

    /// Live points, points inside HNSW segments, and segments, over the local replicas.
    pub fn stats(&self) -> (usize, usize, usize) {
        self.local_shards()
            .iter()
            .map(|(_, s)| s.stats())
            .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
    }
}
