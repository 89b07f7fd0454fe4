//! A collection on this node: its configuration, the version of that configuration (collections
//! are created and deleted cluster-wide, last writer wins), and the shard replicas this node holds.
//! Which replicas those are follows from the placement rule; routing points and merging results
//! across replicas is the coordinator's job ([`crate::cluster::coordinator`]).

pub mod aliases;
pub mod catalog;
pub mod snapshot;

use crate::error::{Error, Result};
use crate::index::{HnswParams, Metric, ScalarInt8};
use crate::shard::filter::Filter;
use crate::shard::optimizer::{self, OptimizerConfig};
use crate::shard::payload_index::{FieldSchema, PayloadSchema};
use crate::shard::point::{Payload, PointId};
use crate::shard::version::VersionClock;
use crate::shard::{PointView, Shard, ShardConfig};
use crate::store::Store;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The largest Euclidean norm a Dot, Euclid or Manhattan vector may have. Between two such
/// vectors every score is finite in `f32` with room to spare: a dot product is at most
/// `1e18 · 1e18 = 1e36`, a squared distance at most `(2e18)² = 4e36`, a Manhattan distance at
/// most `√65536 · 2e18 ≈ 5e20`, and so is every partial sum a kernel adds up (`f32::MAX` is
/// `3.4e38`). Elements as large as `1.8e19` would already overflow when squared. Cosine vectors
/// are normalised (in `f64`, so huge elements normalise correctly) and need no bound.
pub const MAX_VECTOR_NORM: f64 = 1e18;

/// The Euclidean norm, summed in `f64` so that no finite `f32` vector overflows it.
fn norm_f64(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// The persisted configuration of a collection (`config.json`). Between peers it travels as JSON
/// text inside the bincode envelope, so that fields added later (with defaults) do not change
/// the peer protocol's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionConfig {
    pub size: usize,
    pub distance: Metric,
    pub hnsw: HnswParams,
    pub shard_number: u32,
    pub replication_factor: u32,
    pub write_consistency_factor: u32,
    pub on_disk_payload: bool,
    /// Qdrant's `quantization_config.scalar` (int8), if any.
    pub quantization: Option<ScalarInt8>,
    /// Qdrant's `hnsw_config.full_scan_threshold` (KB of vectors) when set; otherwise
    /// [`FULL_SCAN_THRESHOLD`](crate::shard::search::FULL_SCAN_THRESHOLD).
    pub full_scan_threshold_kb: Option<usize>,
    /// Qdrant's `optimizers_config`: what the collection sets (unset fields take the node's).
    pub optimizers: OptimizersConfig,
    /// Payload indexes (Qdrant's `PUT /collections/{c}/index`), built on every replica.
    pub payload_schema: PayloadSchema,
    /// The version of the create this configuration descends from. A catalog entry with a
    /// newer version and the same incarnation changes the collection in place (see
    /// `Catalog::update_config`); any other replaces it. 0: not known (an older peer's entry).
    pub incarnation: u64,
}

/// The `optimizers_config` fields shoal honours; `None` is the node's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizersConfig {
    /// Qdrant's `max_segment_size`: the most vector data one segment holds, in KB.
    #[serde(default)]
    pub max_segment_size_kb: Option<usize>,
    /// Unindexed points (Qdrant counts KB of vectors; shoal counts points) before a build.
    #[serde(default)]
    pub indexing_threshold: Option<usize>,
    /// `indexing_threshold` as the client set it, in KB (what collection info reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexing_threshold_kb: Option<usize>,
    #[serde(default)]
    pub deleted_threshold: Option<f64>,
    #[serde(default)]
    pub vacuum_min_vector_number: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct ConfigFields {
    size: usize,
    distance: Metric,
    hnsw: HnswParams,
    shard_number: u32,
    replication_factor: u32,
    write_consistency_factor: u32,
    on_disk_payload: bool,
    #[serde(default)]
    quantization: Option<ScalarInt8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    full_scan_threshold_kb: Option<usize>,
    #[serde(default)]
    optimizers: OptimizersConfig,
    #[serde(default, skip_serializing_if = "PayloadSchema::is_empty")]
    payload_schema: PayloadSchema,
    #[serde(default, skip_serializing_if = "is_zero")]
    incarnation: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<ConfigFields> for CollectionConfig {
    fn from(f: ConfigFields) -> Self {
        CollectionConfig {
            size: f.size,
            distance: f.distance,
            hnsw: f.hnsw,
            shard_number: f.shard_number,
            replication_factor: f.replication_factor,
            write_consistency_factor: f.write_consistency_factor,
            on_disk_payload: f.on_disk_payload,
            quantization: f.quantization,
            full_scan_threshold_kb: f.full_scan_threshold_kb,
            optimizers: f.optimizers,
            payload_schema: f.payload_schema,
            incarnation: f.incarnation,
        }
    }
}

impl From<CollectionConfig> for ConfigFields {
    fn from(c: CollectionConfig) -> Self {
        ConfigFields {
            size: c.size,
            distance: c.distance,
            hnsw: c.hnsw,
            shard_number: c.shard_number,
            replication_factor: c.replication_factor,
            write_consistency_factor: c.write_consistency_factor,
            on_disk_payload: c.on_disk_payload,
            quantization: c.quantization,
            full_scan_threshold_kb: c.full_scan_threshold_kb,
            optimizers: c.optimizers,
            payload_schema: c.payload_schema,
            incarnation: c.incarnation,
        }
    }
}

/// The shape of peer protocol 1 (the previous release): the fields before quantization and
/// optimizers, inline. A config read in it has neither; one written in it loses them (a node of
/// that release has no use for them).
#[derive(Serialize, Deserialize)]
struct ConfigFieldsV1 {
    size: usize,
    distance: Metric,
    hnsw: HnswParams,
    shard_number: u32,
    replication_factor: u32,
    write_consistency_factor: u32,
    on_disk_payload: bool,
}

impl Serialize for CollectionConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let fields = ConfigFields::from(self.clone());
        if s.is_human_readable() {
            fields.serialize(s)
        } else if crate::codec::shape_version() == Some(1) {
            ConfigFieldsV1 {
                size: self.size,
                distance: self.distance,
                hnsw: self.hnsw,
                shard_number: self.shard_number,
                replication_factor: self.replication_factor,
                write_consistency_factor: self.write_consistency_factor,
                on_disk_payload: self.on_disk_payload,
            }
            .serialize(s)
        } else {
            let text = serde_json::to_string(&fields).map_err(serde::ser::Error::custom)?;
            s.serialize_str(&text)
        }
    }
}

impl<'de> Deserialize<'de> for CollectionConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        if d.is_human_readable() {
            ConfigFields::deserialize(d).map(Into::into)
        } else if crate::codec::shape_version() == Some(1) {
            let f = ConfigFieldsV1::deserialize(d)?;
            Ok(CollectionConfig {
                size: f.size,
                distance: f.distance,
                hnsw: f.hnsw,
                shard_number: f.shard_number,
                replication_factor: f.replication_factor,
                write_consistency_factor: f.write_consistency_factor,
                on_disk_payload: f.on_disk_payload,
                quantization: None,
                full_scan_threshold_kb: None,
                optimizers: OptimizersConfig::default(),
                // A node of the previous release knows no payload indexes; incarnation 0 is
                // "unknown", so its entry replaces the collection like any other create.
                payload_schema: PayloadSchema::new(),
                incarnation: 0,
            })
        } else {
            let text = String::deserialize(d)?;
            serde_json::from_str::<ConfigFields>(&text)
                .map(Into::into)
                .map_err(serde::de::Error::custom)
        }
    }
}

impl CollectionConfig {
    /// A one-shard configuration with every other setting at its default (tests).
    #[cfg(test)]
    pub fn plain(size: usize, distance: Metric) -> CollectionConfig {
        CollectionConfig {
            size,
            distance,
            hnsw: HnswParams::default(),
            shard_number: 1,
            replication_factor: 1,
            write_consistency_factor: 1,
            on_disk_payload: true,
            quantization: None,
            full_scan_threshold_kb: None,
            optimizers: OptimizersConfig::default(),
            payload_schema: PayloadSchema::new(),
            incarnation: 0,
        }
    }

    /// The JSON object of `config.json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(ConfigFields::from(self.clone())).unwrap_or_default()
    }

    /// Qdrant's `hnsw_config.full_scan_threshold` in force, in KB.
    pub fn full_scan_threshold_kb(&self) -> usize {
        self.full_scan_threshold_kb
            .unwrap_or(crate::shard::search::FULL_SCAN_THRESHOLD)
    }

    /// What this collection's shards are configured with.
    pub fn shard_config(&self) -> ShardConfig {
        ShardConfig {
            dim: self.size,
            metric: self.distance,
            hnsw: self.hnsw,
            full_scan_threshold: crate::shard::search::full_scan_points(
                self.full_scan_threshold_kb(),
                self.size,
            ),
            int8: self.quantization,
            optimizer: self.optimizer(),
        }
    }

    /// The optimizer settings of this collection's shards.
    pub fn optimizer(&self) -> OptimizerConfig {
        let mut o = OptimizerConfig::for_dim(self.size);
        let opt = &self.optimizers;
        if let Some(kb) = opt.max_segment_size_kb {
            o.max_segment_points = (kb.saturating_mul(1024) / (4 * self.size.max(1)))
                .max(optimizer::MIN_SEGMENT_POINTS);
            o.max_tail_points = o.max_tail_points.max(o.max_segment_points);
        }
        o.indexing_threshold = opt.indexing_threshold;
        if let Some(t) = opt.deleted_threshold {
            o.deleted_threshold = t;
        }
        if let Some(v) = opt.vacuum_min_vector_number {
            o.vacuum_min_vector_number = v;
        }
        o
    }
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
    /// How quantized segments are searched.
    pub quantization: crate::index::QuantSearch,
    pub score_threshold: Option<f32>,
    pub with_vector: bool,
    /// Whether the caller shows any payload (local shards then skip fetching it).
    pub with_payload: bool,
}

/// A search result with Qdrant's score.
#[derive(Debug, Clone)]
pub struct ScoredPoint {
    pub score: f32,
    pub point: PointView,
}

/// What a node holds of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaState {
    Active,
    Syncing,
    Absent,
}

pub struct Collection {
    pub name: String,
    pub config: CollectionConfig,
    /// Version of the create that made this collection (catalog last-writer-wins).
    pub version: u64,
    dir: PathBuf,
    store: Store,
    clock: Arc<VersionClock>,
    /// Shared with the collection's next configuration ([`Collection::reconfigured`]).
    local: Arc<RwLock<BTreeMap<u32, Arc<Shard>>>>,
    /// Local replicas still copying their data from peers: they take writes but serve no reads
    /// while a complete replica is reachable. Marked on disk by a `SYNCING` file so a restart
    /// resumes the copy.
    syncing: Arc<RwLock<BTreeSet<u32>>>,
    /// Set (under `local`'s write lock) once the collection is deleted: no replica opens after.
    /// Shared like `local` with the reconfigured collections of the same incarnation, so a
    /// delete seen through any of them stops all of them.
    removed: Arc<AtomicBool>,
}

/// Marker file of a replica still copying from its peers.
const SYNCING_MARKER: &str = "SYNCING";

pub(crate) fn tree_name(collection: &str, shard: u32) -> String {
    format!("c/{collection}/{shard}")
}

impl Collection {
    pub(crate) fn new(
        name: String,
        config: CollectionConfig,
        version: u64,
        dir: PathBuf,
        store: Store,
        clock: Arc<VersionClock>,
    ) -> Self {
        Collection {
            name,
            config,
            version,
            dir,
            store,
            clock,
            local: Default::default(),
            syncing: Default::default(),
            removed: Default::default(),
        }
    }

    /// The same collection under a newer configuration of the same incarnation: it shares
    /// the open replicas, and applies what they can change while open: the payload indexes,
    /// and HNSW, quantization, optimizer and full-scan settings (segments built otherwise are
    /// rebuilt in the background, [`crate::shard::optimizer`]).
    pub(crate) fn reconfigured(&self, config: CollectionConfig, version: u64) -> Collection {
        let next = Collection {
            name: self.name.clone(),
            config,
            version,
            dir: self.dir.clone(),
            store: self.store.clone(),
            clock: Arc::clone(&self.clock),
            local: Arc::clone(&self.local),
            syncing: Arc::clone(&self.syncing),
            removed: Arc::clone(&self.removed),
        };
        let shard_config = next.config.shard_config();
        for (_, shard) in next.local_shards() {
            shard.reconfigure(shard_config);
            shard.set_payload_schema(next.config.payload_schema.clone());
        }
        next
    }

    /// Per indexed field: its schema and the live points of the local replicas holding it.
    pub fn payload_index_info(&self) -> BTreeMap<String, (FieldSchema, usize)> {
        let mut out: BTreeMap<String, (FieldSchema, usize)> = self
            .config
            .payload_schema
            .iter()
            .map(|(k, f)| (k.clone(), (f.clone(), 0)))
            .collect();
        for (_, shard) in self.local_shards() {
            for (key, (_, points)) in shard.payload_index_info() {
                if let Some(e) = out.get_mut(&key) {
                    e.1 += points;
                }
            }
        }
        out
    }

    fn shard_dir(&self, shard: u32) -> PathBuf {
        self.dir.join("shards").join(shard.to_string())
    }

    /// Opens this node's replica of `shard` (creating it if new); a no-op if already open.
    pub fn open_shard(&self, shard: u32) -> anyhow::Result<Arc<Shard>> {
        if let Some(s) = self.local.read().get(&shard) {
            return Ok(Arc::clone(s));
        }
        if self.removed.load(Ordering::Acquire) {
            // Opening would create the records tree (and directory) by name: those of a
            // collection created again with this name, if there is one by now.
            anyhow::bail!("collection `{}` was deleted", self.name);
        }
        let config = self.config.shard_config();
        let dir = self.shard_dir(shard);
        let opened = Arc::new(Shard::open(
            &self.store,
            &tree_name(&self.name, shard),
            &dir,
            config,
            Arc::clone(&self.clock),
        )?);
        opened.set_payload_schema_in_background(self.config.payload_schema.clone());
        if dir.join(SYNCING_MARKER).exists() {
            self.syncing.write().insert(shard);
        }
        let mut local = self.local.write();
        if self.removed.load(Ordering::Acquire) {
            // Deleted while this replica opened: its (new, empty) records go too.
            opened.retire()?;
            anyhow::bail!("collection `{}` was deleted", self.name);
        }
        Ok(Arc::clone(local.entry(shard).or_insert(opened)))
    }

    /// Drops the records of every local replica, for good: the collection is deleted. Writes
    /// still in flight to it fail from now on, and no replica of it opens again, so nothing of
    /// it reaches a collection created later with the same name ([`Shard::retire`]).
    pub fn remove_replicas(&self) -> Result<()> {
        let local = self.local.write();
        self.removed.store(true, Ordering::Release);
        for replica in local.values() {
            replica
                .retire()
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        Ok(())
    }

    /// Opens a replica that must first copy its data from peers (a shard this node newly owns).
    pub fn open_syncing(&self, shard: u32) -> anyhow::Result<Arc<Shard>> {
        if let Some(s) = self.local.read().get(&shard) {
            return Ok(Arc::clone(s));
        }
        let dir = self.shard_dir(shard);
        std::fs::create_dir_all(&dir)?;
        crate::fsutil::write_atomic(&dir.join(SYNCING_MARKER), b"copying from peers\n")?;
        self.open_shard(shard)
    }

    /// Holds reads back from a replica until it has caught up with its peers (after a restart
    /// in a cluster: it may have missed writes while it was down).
    pub fn mark_syncing(&self, shard: u32) {
        if self.local.read().contains_key(&shard) {
            self.syncing.write().insert(shard);
        }
    }

    /// Whether the replica was created empty to copy a shard this node newly owns (its copy must
    /// start from the beginning), rather than reopened with data of its own.
    pub fn is_new_copy(&self, shard: u32) -> bool {
        self.shard_dir(shard).join(SYNCING_MARKER).exists()
    }

    /// The local replica, opened as syncing if this node did not hold it yet.
    pub fn open_syncing_if_new(&self, shard: u32) -> anyhow::Result<Arc<Shard>> {
        match self.local_shard(shard) {
            Some(s) => Ok(s),
            None => self.open_syncing(shard),
        }
    }

    /// Marks a replica complete: it now serves reads.
    pub fn finish_sync(&self, shard: u32) -> anyhow::Result<()> {
        let marker = self.shard_dir(shard).join(SYNCING_MARKER);
        match std::fs::remove_file(&marker) {
            Ok(()) => crate::fsutil::sync_dir(&self.shard_dir(shard))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        self.syncing.write().remove(&shard);
        Ok(())
    }

    pub fn is_syncing(&self, shard: u32) -> bool {
        self.syncing.read().contains(&shard)
    }

    /// The replica of `shard` if this node holds one.
    pub fn replica_state(&self, shard: u32) -> ReplicaState {
        match (
            self.local.read().contains_key(&shard),
            self.is_syncing(shard),
        ) {
            (false, _) => ReplicaState::Absent,
            (true, true) => ReplicaState::Syncing,
            (true, false) => ReplicaState::Active,
        }
    }

    /// Removes this node's replica of `shard` and its files (after it moved elsewhere).
    pub fn drop_shard(&self, shard: u32) -> anyhow::Result<()> {
        if let Some(replica) = self.local.write().remove(&shard) {
            self.syncing.write().remove(&shard);
            replica.retire()?;
            let _ = std::fs::remove_dir_all(self.shard_dir(shard));
        }
        Ok(())
    }

    pub fn local_shard(&self, shard: u32) -> Option<Arc<Shard>> {
        self.local.read().get(&shard).cloned()
    }

    pub fn local_shards(&self) -> Vec<(u32, Arc<Shard>)> {
        self.local
            .read()
            .iter()
            .map(|(k, v)| (*k, Arc::clone(v)))
            .collect()
    }

    pub fn clock(&self) -> &VersionClock {
        &self.clock
    }

    /// Checks a vector against the collection and prepares it for the metric: the dimension,
    /// finite elements, and a norm small enough that every score is a finite number (see
    /// [`MAX_VECTOR_NORM`]). Query vectors pass the same check as stored ones.
    pub fn prepare_vector(&self, mut v: Vec<f32>) -> Result<Vec<f32>> {
        self.check_vector(&v)?;
        self.config.distance.prepare(&mut v);
        Ok(v)
    }

    /// The checks of [`Collection::prepare_vector`] without preparing: a batch of writes checks
    /// every vector of every operation before it applies the first.
    pub fn check_vector(&self, v: &[f32]) -> Result<()> {
        if v.len() != self.config.size {
            return Err(Error::BadRequest(format!(
                "Vector dimension error: expected dim: {}, got {}",
                self.config.size,
                v.len()
            )));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::BadRequest(format!(
                "vector element {i} is {} but must be a finite number",
                v[i]
            )));
        }
        let norm = norm_f64(v);
        if self.config.distance != Metric::Cosine && norm > MAX_VECTOR_NORM {
            return Err(Error::BadRequest(format!(
                "vector norm {norm:e} is above {MAX_VECTOR_NORM:e}, the largest a {:?} vector may have: \
                 scores between such vectors overflow 32-bit floats",
                self.config.distance
            )));
        }
        Ok(())
    }

    /// Whether any local replica is optimizing or has a build due, and the last build error.
    pub fn optimizer_state(&self, node_threshold: usize) -> (bool, Option<String>) {
        let shards = self.local_shards();
        let busy = shards.iter().any(|(_, s)| s.optimizing(node_threshold));
        let error = shards.iter().find_map(|(_, s)| s.last_error.lock().clone());
        (busy, error)
    }

    /// Resident bytes of the local replicas' structures.
    pub fn memory(&self) -> crate::shard::MemoryReport {
        let mut total = crate::shard::MemoryReport::default();
        for (_, s) in self.local_shards() {
            total += s.memory();
        }
        total
    }

    /// Live points, points inside HNSW segments, and segments, over the local replicas.
    pub fn stats(&self) -> (usize, usize, usize) {
        self.local_shards()
            .iter()
            .map(|(_, s)| s.stats())
            .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
    }
}
