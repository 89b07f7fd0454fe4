//! A shard: the points of one collection whose ids hash to it, durable in sled and searchable
//! through immutable HNSW segments plus a small exact-scan tail.
//!
//! Write path: a batch of versioned [`Record`]s is checked against the versions already held
//! (last writer wins, tombstones included), the changed ids are marked dirty, the records are
//! written to sled in one atomic batch, flushed to disk when the client asked for `wait=true`,
//! and only then made visible in memory. Memory is therefore never ahead of disk, and a batch is
//! all or nothing.
//!
//! Files, under the shard's directory:
//! - the records live in the node's sled database, in a tree named after the collection and
//!   shard (`c/<collection>/<shard>`), and the *dirty* ids in a second tree (`d/…`, see below);
//! - `segments/manifest.json` lists the segments in use; each `segments/seg-<id>/segment.shoal`
//!   is one segment file (`index::file`): vectors, graph, and per internal id the point id,
//!   versions and payload as sealed (`sealed.rs`).
//!
//! # Reopening without a pass over the records
//! An id is *dirty* from the moment a change to it is written until a segment holding its current
//! vector is installed (and, for a deleted id, until no segment holds a copy of it any more).
//! Every other point's current state is exactly its entry in the newest segment holding its id.
//! So a reopen maps the segments, marks in each the entries a newer segment supersedes (a merge
//! of the sorted id tables, no I/O beyond them), and replays only the dirty ids from sled: the
//! tail, payload overlays and recent deletes. Its cost follows what was written since the last
//! build, not the size of the shard. (Why the newest copy is the live one: a copy goes stale
//! only when its point changes after the copy was taken, which marks the point dirty until a
//! newer segment holds its new vector.) The highest version held, which peers ask for, is kept
//! in the manifest at every install and advanced by the dirty replay.
//!
//! A data dir of an older shoal (hnsw_rs dumps, or no manifest at all) and a segment whose file
//! fails to open are handled alike: the shard reads every record once, marks every live id dirty
//! and puts it in the tail, removes the old segment directories, and the optimizer rebuilds the
//! index in the current format. Nothing is lost because the records in sled are the truth.
//!
//! See [`state`] for how updates and deletes stay correct although hnsw_rs cannot remove points,
//! and [`optimizer`] for how the tail and dead entries are folded away.

pub mod check;
pub mod deadline;
mod dump;
pub mod facet;
pub mod filter;
pub mod optimizer;
pub mod payload;
pub mod payload_index;
pub mod point;
pub mod sealed;
pub mod search;
pub mod state;
pub mod version;

use crate::index::{HnswParams, Metric, ScalarInt8};
use crate::store::{Store, StoreError};
use deadline::{Deadline, Stopped};
use filter::Filter;
use parking_lot::{Mutex, RwLock};
pub use payload::apply_payload_op;
use payload_index::{FieldSchema, PayloadSchema};
use point::{Payload, PointId, Record, RecordBody};
use sealed::SealedSegment;
use state::{Entry, Found, Location, ShardState};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use version::VersionClock;

/// A page of [`Shard::records_since`]: the records, and the id the next page starts after.
pub type RecordPage = (Vec<(PointId, Record)>, Option<PointId>);

/// What a shard needs to know about its collection.
#[derive(Debug, Clone, Copy)]
pub struct ShardConfig {
    pub dim: usize,
    pub metric: Metric,
    pub hnsw: HnswParams,
    /// Filtered searches with at most this many candidates in a segment score them exactly
    /// (points: the collection converts Qdrant's KB, [`search::full_scan_points`]).
    pub full_scan_threshold: usize,
    /// Scalar int8 quantization of the segments built from now on.
    pub int8: Option<ScalarInt8>,
    /// When segments are built and merged (see [`optimizer`]).
    pub optimizer: optimizer::OptimizerConfig,
}

impl ShardConfig {
    /// A configuration with the default optimizer and no quantization (tests, benches).
    pub fn new(dim: usize, metric: Metric, hnsw: HnswParams) -> ShardConfig {
        ShardConfig {
            dim,
            metric,
            hnsw,
            full_scan_threshold: search::full_scan_points(search::FULL_SCAN_THRESHOLD, dim),
            int8: None,
            optimizer: optimizer::OptimizerConfig::for_dim(dim),
        }
    }
}

/// The longest a writer waits for room in a full tail: under the default request timeout (60 s),
/// so a slow build makes upserts slow rather than failed.
const TAIL_WAIT: std::time::Duration = std::time::Duration::from_secs(50);

/// The sled tree of a shard's dirty ids, next to its records tree `c/<collection>/<shard>`.
pub fn dirty_tree_name(records_tree: &str) -> String {
    format!(
        "d/{}",
        records_tree.strip_prefix("c/").unwrap_or(records_tree)
    )
}

/// A change to one point: the record to store and, for live records, its parsed payload. As
/// replicated between nodes it is the id and the record; the receiver parses the payload.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub id: PointId,
    pub record: Record,
    #[serde(skip)]
    pub payload: Option<Arc<Payload>>,
}

/// Where a page of a plan starts (after which id) and how much its changes may weigh
/// ([`Change::weight`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanPage {
    pub after: Option<PointId>,
    pub max_bytes: usize,
}

impl PlanPage {
    /// The whole plan in one page.
    pub const WHOLE: PlanPage = PlanPage {
        after: None,
        max_bytes: usize::MAX,
    };
}

impl Default for PlanPage {
    fn default() -> PlanPage {
        PlanPage::WHOLE
    }
}

impl Change {
    /// About what the change weighs in memory and on the wire: its vector and payload text,
    /// and the rest of the record.
    pub fn weight(&self) -> usize {
        64 + self.record.body.as_ref().map_or(0, |b| {
            b.vector.len() * std::mem::size_of::<f32>() + b.payload_json.len()
        })
    }

    pub fn upsert(id: PointId, version: u64, vector: Vec<f32>, payload: Payload) -> Change {
        let payload_json = serde_json::Value::Object(payload.clone()).to_string();
        Change {
            id,
            record: Record {
                version,
                vector_version: version,
                body: Some(RecordBody {
                    vector,
                    payload_json,
                }),
            },
            payload: Some(Arc::new(payload)),
        }
    }

    /// A record as another replica holds it: the receiver parses its payload when it commits.
    pub fn replicated(id: PointId, record: Record) -> Change {
        Change {
            id,
            record,
            payload: None,
        }
    }

    pub fn delete(id: PointId, version: u64) -> Change {
        Change {
            id,
            record: Record {
                version,
                vector_version: version,
                body: None,
            },
            payload: None,
        }
    }
}

/// A point as read back: what retrieve, scroll and search return.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PointView {
    pub id: PointId,
    pub version: u64,
    #[serde(with = "point::payload_text")]
    pub payload: Arc<Payload>,
    pub vector: Option<Vec<f32>>,
}

/// How a payload is changed by the payload routes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum PayloadOp {
    /// Merge keys into the payload (at `key`, a nested object path, when given).
    Set {
        payload: Payload,
        key: Option<String>,
    },
    /// Replace the whole payload.
    Overwrite(Payload),
    /// Remove these keys (dotted paths allowed).
    DeleteKeys(Vec<String>),
    Clear,
}

/// Which points an operation applies to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Selector {
    Ids(Vec<PointId>),
    Filter(Filter),
}

/// A read-modify-write operation. One replica turns it into versioned [`Change`]s
/// ([`Shard::plan`]) and every replica commits those, so replicas converge on the same records.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Plan {
    Delete(Selector),
    Payload(Selector, PayloadOp),
    /// New vectors (prepared for the metric) of existing points; their payloads stay. An id
    /// that does not exist is skipped (the coordinator checks existence first).
    Vectors(Vec<(PointId, Vec<f32>)>),
    /// Removes the vector of the selected points: each keeps its payload, stored with an empty
    /// vector at a new vector version (see [`state::Location::Vectorless`]).
    DeleteVectors(Selector),
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("storage error: {0}")]
    Storage(String),
    /// The write cannot be taken now (the disk reserve, a store being reopened): a 503.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
    /// A read whose answer would hold more than its request may ([`Stopped::TooLarge`]): the
    /// client's 400, whichever replica answers.
    #[error("{0}")]
    TooLarge(String),
    /// The replica was removed (its collection deleted, or the replica moved to another node)
    /// while the write waited.
    #[error("this replica was removed: its collection was deleted or the replica moved")]
    Removed,
}

impl From<ShardError> for crate::error::Error {
    fn from(e: ShardError) -> Self {
        match e {
            ShardError::Invalid(m) | ShardError::TooLarge(m) => crate::error::Error::BadRequest(m),
            ShardError::Unavailable(m) => crate::error::Error::Unavailable(m),
            ShardError::Storage(s) => crate::error::Error::Internal(s),
            ShardError::Removed => crate::error::Error::NotFound(e.to_string()),
        }
    }
}

impl From<StoreError> for ShardError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ShardError::Unavailable(m),
            StoreError::Failed(m) => ShardError::Storage(m),
        }
    }
}

pub struct Shard {
    /// What the collection configures; the changeable parts (HNSW, quantization, optimizer,
    /// full-scan threshold) follow `PATCH /collections/{c}` ([`Shard::reconfigure`]).
    config: RwLock<ShardConfig>,
    /// The node's record store; every access names its tree (no tree handle is kept, so that the
    /// store can reopen sled after an I/O error).
    store: Store,
    /// The records tree, `c/<collection>/<shard>`.
    tree: String,
    /// The tree of ids changed since the segments holding them were built (see the module doc).
    dirty: String,
    dir: PathBuf,
    clock: Arc<VersionClock>,
    state: RwLock<ShardState>,
    /// Serialises writers so the version check and the sled batch see the same state; a segment
    /// install takes it too, so no change is between sled and memory while dirty marks go.
    write_lock: Mutex<()>,
    /// Set, under `write_lock`, when the replica's records are dropped ([`Shard::retire`]).
    retired: AtomicBool,
    /// Serialises segment builds of this shard.
    build_lock: Mutex<()>,
    /// Whether a build of this shard is running (collection status `yellow`).
    building: AtomicBool,
    /// Whether the optimizer indexes this shard (its threshold is not 0): writers then wait
    /// for room in the tail.
    indexing: AtomicBool,
    /// When the last change was applied (the optimizer indexes a small tail once writes stop).
    last_write: Mutex<Instant>,
    /// The last build error, cleared by the next success (collection `optimizer_status`).
    pub(crate) last_error: Mutex<Option<String>>,
    /// Points indexed by builds, for the metrics.
    pub(crate) built_points: AtomicU64,
    /// The payload indexes asked for (readers take a snapshot).
    schema: RwLock<Arc<PayloadSchema>>,
    /// Serialises changes to the segments' payload indexes, so that the last one follows the
    /// latest schema.
    schema_update: Mutex<()>,
}

impl Shard {
    /// Opens (or creates) a shard: maps its segments and replays the dirty records (see the
    /// module doc).
    pub fn open(
        store: &Store,
        tree_name: &str,
        dir: &Path,
        config: ShardConfig,
        clock: Arc<VersionClock>,
    ) -> anyhow::Result<Shard> {
        let started = Instant::now();
        let seg_dir = dir.join("segments");
        std::fs::create_dir_all(&seg_dir)?;
        let shard = Shard {
            config: RwLock::new(config),
            store: store.clone(),
            tree: tree_name.to_string(),
            dirty: dirty_tree_name(tree_name),
            dir: seg_dir,
            clock,
            state: RwLock::new(ShardState::default()),
            write_lock: Mutex::new(()),
            retired: AtomicBool::new(false),
            build_lock: Mutex::new(()),
            building: AtomicBool::new(false),
            indexing: AtomicBool::new(false),
            last_write: Mutex::new(Instant::now()),
            last_error: Mutex::new(None),
            built_points: AtomicU64::new(0),
            schema: Default::default(),
            schema_update: Mutex::new(()),
        };
        let loaded = optimizer::load_segments(&shard.dir, shard.config().metric)?;
        let state = match loaded {
            optimizer::Loaded::Current {
                segments,
                max_version,
            } => shard.settle(segments, max_version)?,
            optimizer::Loaded::Fresh
                if shard.store.with_tree(&shard.tree, |t| t.first())?.is_none() =>
            {
                optimizer::write_manifest(&shard.dir, &[], 0)?;
                ShardState::default()
            }
            optimizer::Loaded::Fresh | optimizer::Loaded::Rebuild => shard.rescan()?,
        };
        shard.clock.observe(state.max_version);
        tracing::debug!(
            tree = tree_name,
            points = state.live_count(),
            segments = state.segments.len(),
            replayed = state.points.len(),
            seconds = started.elapsed().as_secs_f64(),
            "shard opened"
        );
        let codes_in_ram = shard.config().int8.is_some_and(|q| q.always_ram);
        optimizer::finish_open_in_background(&shard.dir, &state.segments, codes_in_ram);
        *shard.state.write() = state;
        Ok(shard)
    }

    /// The state from current segments: newest copies live, dirty ids replayed from sled.
    fn settle(
        &self,
        segments: Vec<Arc<SealedSegment>>,
        max_version: u64,
    ) -> anyhow::Result<ShardState> {
        optimizer::supersede_older_copies(&segments);
        let mut state = ShardState {
            segments,
            max_version,
            ..Default::default()
        };
        let dirty: Vec<sled::IVec> = self
            .store
            .with_tree(&self.dirty, |t| t.iter().keys().collect())?;
        state.points.reserve(dirty.len());
        state.tail.reserve(dirty.len(), self.config().dim);
        for key in dirty {
            let Some(id) = PointId::from_key(&key) else {
                anyhow::bail!("unreadable dirty id in {}", self.dir.display());
            };
            let record = match self.store.with_tree(&self.tree, |t| t.get(&key))? {
                Some(bytes) => Record::decode(&bytes).map_err(anyhow::Error::msg)?,
                None => continue,
            };
            state.max_version = state.max_version.max(record.version);
            Self::replay(&mut state, id, record)?;
        }
        Ok(state)
    }

    /// Applies one dirty record over the segments' view of its point. A payload that cannot be
    /// read fails the open and names the point (it is never shown as `{}`).
    fn replay(state: &mut ShardState, id: PointId, record: Record) -> anyhow::Result<()> {
        if let Some(body) = &record.body {
            point::parse_payload(&body.payload_json)
                .map_err(|e| anyhow::anyhow!("point {id}: {e}"))?;
        }
        let copies: Vec<(Arc<SealedSegment>, u32)> = state
            .segments
            .iter()
            .filter_map(|s| s.find(&id).map(|i| (Arc::clone(s), i)))
            .collect();
        for (seg, i) in &copies {
            seg.live.set(*i, false);
        }
        let Some(body) = record.body else {
            if !copies.is_empty() {
                state.deleted_dirty.insert(id);
            }
            return Ok(());
        };
        let sealed = copies
            .iter()
            .rev()
            .find(|(seg, i)| seg.vector_version(*i) == record.vector_version);
        let location = match sealed {
            Some((seg, i)) => {
                seg.live.set(*i, true);
                if seg.sealed_version(*i) == record.version {
                    return Ok(());
                }
                seg.overlaid.set(*i, true);
                Location::Segment(Arc::clone(seg), *i)
            }
            None => state.place(id, record.vector_version, &body.vector),
        };
        state.points.insert(
            id,
            Entry {
                version: record.version,
                vector_version: record.vector_version,
                payload: body.payload_json.into_boxed_str(),
                location,
            },
        );
        Ok(())
    }

    /// Reads every record once (an older data dir, or a segment that cannot be opened): every
    /// live point goes to the tail and is marked dirty, the old segments are removed, and the
    /// optimizer rebuilds the index.
    fn rescan(&self) -> anyhow::Result<ShardState> {
        tracing::warn!(dir = %self.dir.display(), "segments of an older format or unreadable: re-indexing this shard from its records");
        let mut state = ShardState::default();
        let mut marks = sled::Batch::default();
        let scan = |tree: &sled::Tree| -> sled::Result<anyhow::Result<()>> {
            for item in tree.iter() {
                let (key, value) = item?;
                let (Some(id), Ok(record)) = (PointId::from_key(&key), Record::decode(&value))
                else {
                    return Ok(Err(anyhow::anyhow!(
                        "unreadable point record in {}",
                        self.dir.display()
                    )));
                };
                state.max_version = state.max_version.max(record.version);
                if record.body.is_some() {
                    marks.insert(key, &[]);
                    if let Err(e) = Self::replay(&mut state, id, record) {
                        return Ok(Err(e));
                    }
                }
            }
            Ok(Ok(()))
        };
        self.store.with_tree(&self.tree, scan)??;
        // Marks first (durably), then the manifest that drops the old segments: a crash between
        // the two finds the old manifest and scans again.
        self.store
            .with_tree(&self.dirty, |t| t.apply_batch(marks))?;
        self.store.flush()?;
        optimizer::write_manifest(&self.dir, &[], state.max_version)?;
        optimizer::remove_unlisted(&self.dir, &[])?;
        Ok(state)
    }

    /// The configuration in force.
    pub fn config(&self) -> ShardConfig {
        *self.config.read()
    }

    /// Takes a collection's new configuration (its dimension and metric never change): searches
    /// and builds from now on follow it, and the optimizer rebuilds, in the background, every
    /// segment built under other HNSW or quantization parameters ([`optimizer`]).
    pub fn reconfigure(&self, config: ShardConfig) {
        let mut held = self.config.write();
        debug_assert!(held.dim == config.dim && held.metric == config.metric);
        *held = ShardConfig {
            dim: held.dim,
            metric: held.metric,
            ..config
        };
    }

    pub fn len(&self) -> usize {
        self.state.read().live_count()
    }

    /// The payload indexes asked for.
    pub fn payload_schema(&self) -> Arc<PayloadSchema> {
        Arc::clone(&self.schema.read())
    }

    /// Indexes exactly the fields of `schema`: builds the indexes every segment lacks (a pass
    /// over its payloads per new field) and drops the others. Idempotent; the collection calls
    /// it after open and whenever its configuration changes.
    pub fn set_payload_schema(&self, schema: PayloadSchema) {
        let _one_at_a_time = self.schema_update.lock();
        *self.schema.write() = Arc::new(schema);
        let segments = self.state.read().segments.clone();
        for seg in segments {
            self.follow_schema(&seg);
        }
    }

    /// [`Shard::set_payload_schema`] for a shard just opened: the schema is in force at once
    /// (segments built from now on carry its indexes, and a segment without an index yet has
    /// its payloads checked instead, with the same answers), and the indexes of the segments
    /// found on disk are built on a background thread, so that a restart does not wait for
    /// them before it is Ready (a pass over the payloads per field: ~6 s at 1M points).
    pub fn set_payload_schema_in_background(self: &Arc<Self>, schema: PayloadSchema) {
        let indexed = !schema.is_empty();
        {
            let _one_at_a_time = self.schema_update.lock();
            *self.schema.write() = Arc::new(schema);
        }
        let segments = self.state.read().segments.clone();
        if !indexed || segments.is_empty() {
            return;
        }
        let shard = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("payload-index".into())
            .spawn(move || {
                let started = Instant::now();
                for seg in &segments {
                    // A shard closed or retired meanwhile needs none.
                    let Some(shard) = shard.upgrade() else {
                        return;
                    };
                    shard.index_segment(seg);
                }
                let seconds = started.elapsed().as_secs_f64();
                tracing::info!(
                    segments = segments.len(),
                    seconds,
                    "payload indexes built after open"
                );
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot build payload indexes in the background; building them now");
            let schema = self.payload_schema();
            self.set_payload_schema((*schema).clone());
        }
    }

    /// Brings one segment's payload indexes to the current schema.
    pub(crate) fn index_segment(&self, seg: &SealedSegment) {
        let _one_at_a_time = self.schema_update.lock();
        self.follow_schema(seg);
    }

    fn follow_schema(&self, seg: &SealedSegment) {
        let schema = self.payload_schema();
        let started = Instant::now();
        let built = seg.follow_schema(&schema);
        if built > 0 {
            tracing::debug!(
                segment = seg.id,
                fields = built,
                points = seg.len(),
                seconds = started.elapsed().as_secs_f64(),
                "payload indexes built"
            );
        }
    }

    /// Per indexed field: its schema and how many live points hold a value for it (Qdrant's
    /// `payload_schema` in collection info).
    pub fn payload_index_info(&self) -> BTreeMap<String, (FieldSchema, usize)> {
        let schema = self.payload_schema();
        let state = self.state.read();
        let mut out = BTreeMap::new();
        for (key, field) in schema.iter() {
            let Ok(path) = payload_index::field_path(key) else {
                out.insert(key.clone(), (field.clone(), 0));
                continue;
            };
            let mut points = 0;
            for seg in &state.segments {
                let index = seg.payload_index();
                match index.fields.get(key) {
                    Some(f) => {
                        points += (0..seg.len() as u32)
                            .filter(|&i| seg.plain(i) && f.has_value(i))
                            .count()
                    }
                    None => {
                        points += (0..seg.len() as u32)
                            .filter(|&i| seg.plain(i))
                            .filter(|&i| holds_value(seg.payload_json(i), &path, field))
                            .count()
                    }
                }
            }
            points += state
                .points
                .iter()
                .filter(|(_, e)| holds_value(e.payload.as_bytes(), &path, field))
                .count();
            out.insert(key.clone(), (field.clone(), points));
        }
        out
    }

    /// A filter as this shard evaluates it: value alternatives on one key merged into a set
    /// ([`Filter::with_merged_alternatives`]), and `match.text` on a field with a full-text
    /// index testing tokens.
    pub fn prepare_filter<'f>(&self, filter: &'f Filter) -> Cow<'f, Filter> {
        let merged = filter.with_merged_alternatives();
        let schema = self.payload_schema();
        if schema.values().any(|f| f.text().is_some()) {
            let filter = merged.as_ref().unwrap_or(filter);
            Cow::Owned(payload_index::with_text_indexes(filter, &schema))
        } else {
            merged.map_or(Cow::Borrowed(filter), Cow::Owned)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resident bytes of this shard's structures (see [`MemoryReport`]).
    pub fn memory(&self) -> MemoryReport {
        let s = self.state.read();
        let mut r = MemoryReport::default();
        for seg in &s.segments {
            let m = seg.index.memory();
            r.vectors += m.vectors.1;
            r.graph += m.graph.1;
            r.codes += m.codes.1;
            let (ids, payloads) = seg.table_memory();
            r.point_table += ids.1 + 2 * seg.len().div_ceil(8);
            r.payloads += payloads.1;
            r.payload_index += seg.payload_index().bytes();
        }
        r.vectors += s.tail.vectors.capacity() * 4;
        r.point_table += s.tail.ids.capacity() * 33
            + s.points.len() * TABLE_ENTRY_BYTES
            + s.deleted_dirty.len() * 40;
        r.payloads += s
            .points
            .iter()
            .map(|(_, e)| PAYLOAD_OVERHEAD + e.payload.len())
            .sum::<usize>();
        r
    }

    /// (live points, points inside HNSW segments, segment count)
    pub fn stats(&self) -> (usize, usize, usize) {
        let s = self.state.read();
        (s.live_count(), s.indexed_count(), s.segments.len())
    }

    /// What a search may walk, read in time proportional to the segment count (unlike
    /// [`Shard::stats`], which counts every segment's live entries: ~60k instructions at 100k
    /// points, a quarter of a search request's): (segment entries, dead ones included, plus the
    /// tail's live points; the tail's live points; segment count).
    pub fn extent(&self) -> (usize, usize, usize) {
        let s = self.state.read();
        let sealed: usize = s.segments.iter().map(|seg| seg.len()).sum();
        let tail = s.tail.live_count;
        (sealed + tail, tail, s.segments.len())
    }

    /// Applies versioned changes: each one wins only over an older version of its point. Within one
    /// call a later change to the same id replaces an earlier one. Returns how many took effect.
    pub fn commit(&self, changes: Vec<Change>, durable: bool) -> Result<usize, ShardError> {
        self.store.recover()?;
        self.wait_for_tail_room();
        let _writer = self.write_lock.lock();
        if self.is_retired() {
            return Err(ShardError::Removed);
        }
        let mut latest: BTreeMap<PointId, Change> = BTreeMap::new();
        for c in changes {
            latest.insert(c.id, c);
        }
        let mut accepted = Vec::with_capacity(latest.len());
        let mut batch = sled::Batch::default();
        let mut marks = sled::Batch::default();
        let mut batch_bytes = 0u64;
        {
            let state = self.state.read();
            for (id, change) in latest {
                let held = match state.find(&id) {
                    Some(found) => Some(ShardState::version(found)),
                    None => self.stored_version(&id)?,
                };
                if held.is_some_and(|v| v >= change.record.version) {
                    continue;
                }
                // A change from a peer carries its payload as text only: read it now, so that
                // one that cannot be read is refused before anything is written.
                if let (None, Some(body)) = (&change.payload, &change.record.body) {
                    point::parse_payload(&body.payload_json)
                        .map_err(|e| ShardError::Invalid(format!("point {id}: {e}")))?;
                }
                self.clock.observe(change.record.version);
                let key = id.to_key();
                let encoded = change.record.encode();
                batch_bytes += (encoded.len() + 2 * key.len()) as u64 + 48;
                marks.insert(key.clone(), &[]);
                batch.insert(key, encoded);
                accepted.push(change);
            }
        }
        if accepted.is_empty() {
            return Ok(0);
        }
        // Room for the records, their marks and sled's log of them, with the disk reserve
        // still free.
        let _room = self.store.admit(2 * batch_bytes)?;
        // Dirty marks before the records: a mark without its change only costs a replay.
        self.store
            .with_tree(&self.dirty, |t| t.apply_batch(marks))?;
        self.store.with_tree(&self.tree, |t| t.apply_batch(batch))?;
        if durable {
            self.store.flush()?;
        } else {
            self.store.note_unflushed();
        }
        let mut state = self.state.write();
        let n = accepted.len();
        for change in accepted {
            Self::apply_in_memory(&mut state, change);
        }
        drop(state);
        *self.last_write.lock() = Instant::now();
        Ok(n)
    }

    /// Drops this replica's records and dirty marks for good (its collection is deleted, or
    /// the replica moved elsewhere). Commits waiting for the write lock fail afterwards with
    /// [`ShardError::Removed`], and a build running now installs nothing: a store operation
    /// opens its tree by name, creating it if it is missing, so a write that waited through the
    /// drop used to land in a new tree of the same name — which the next collection created
    /// with that name opened and served.
    pub fn retire(&self) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock();
        self.retired.store(true, Ordering::Release);
        self.store.drop_tree(&self.dirty)?;
        self.store.drop_tree(&self.tree).map(drop)
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Backpressure: while the unindexed tail (held in RAM) is at its bound (points or bytes) and the optimizer is
    /// indexing, a writer waits for builds to catch up — up to [`TAIL_WAIT`], then it proceeds
    /// anyway (a build that slow means a starved machine, and refusing the write would not help). A bulk load thus runs at the speed of indexing instead of filling the pod's memory
    /// with a tail that would take minutes to index after it.
    fn wait_for_tail_room(&self) {
        let config = self.config();
        let (points, bytes) = (
            config.optimizer.max_tail_points,
            config.optimizer.max_tail_bytes,
        );
        let full = |state: &ShardState| {
            state.tail.live_count >= points || state.tail_bytes(config.dim) >= bytes
        };
        let started = Instant::now();
        while self.indexing.load(std::sync::atomic::Ordering::Relaxed)
            && full(&self.state.read())
            && started.elapsed() < TAIL_WAIT
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn stored_version(&self, id: &PointId) -> Result<Option<u64>, ShardError> {
        let stored = self.store.with_tree(&self.tree, |t| t.get(id.to_key()))?;
        Ok(match stored {
            Some(bytes) => Some(Record::decode(&bytes).map_err(ShardError::Invalid)?.version),
            None => None,
        })
    }

    fn apply_in_memory(state: &mut ShardState, change: Change) {
        let Change {
            id,
            record,
            payload,
        } = change;
        state.max_version = state.max_version.max(record.version);
        let previous = state
            .find(&id)
            .map(|f| (ShardState::location(f), ShardState::vector_version(f)));
        state.points.remove(&id);
        let Some(body) = record.body else {
            if let Some((location, _)) = previous {
                if matches!(location, Location::Segment(..)) {
                    state.deleted_dirty.insert(id);
                }
                state.retire(&location);
            }
            return;
        };
        let location = match previous {
            Some((location, vv)) if vv == record.vector_version => {
                if let Location::Segment(seg, i) = &location {
                    seg.overlaid.set(*i, true);
                }
                location
            }
            Some((location, _)) => {
                state.retire(&location);
                state.place(id, record.vector_version, &body.vector)
            }
            None => state.place(id, record.vector_version, &body.vector),
        };
        state.deleted_dirty.remove(&id);
        drop(payload);
        state.points.insert(
            id,
            Entry {
                version: record.version,
                vector_version: record.vector_version,
                payload: body.payload_json.into_boxed_str(),
                location,
            },
        );
    }

    /// Ids of live points the selector names (ids that do not exist are left out).
    pub fn select(&self, selector: &Selector) -> Vec<PointId> {
        let selector = self.prepare_selector(selector);
        select_in(&self.state.read(), &selector)
    }

    fn prepare_selector<'s>(&self, selector: &'s Selector) -> Cow<'s, Selector> {
        match selector {
            Selector::Filter(f) => match self.prepare_filter(f) {
                Cow::Owned(f) => Cow::Owned(Selector::Filter(f)),
                Cow::Borrowed(_) => Cow::Borrowed(selector),
            },
            Selector::Ids(_) => Cow::Borrowed(selector),
        }
    }

    /// The changes `plan` makes at `version`, computed from this replica's current records.
    ///
    /// Each change is made from the record it replaces, so it must win over it: a record
    /// written through a node whose clock runs ahead of the coordinator's (clocks may differ by
    /// up to [`version::MAX_SKEW`]) holds a version above `version`, and a change at `version`
    /// would be dropped as stale (a delete answered "completed" and changed nothing) or refused
    /// (a payload change older than the vector version it keeps). Such a change takes the
    /// record's version plus one instead.
    pub fn plan(&self, plan: &Plan, version: u64) -> Vec<Change> {
        self.plan_page(plan, version, PlanPage::WHOLE)
    }

    /// A page of [`Shard::plan`]: the changes to the selected points after `page.after`, in id
    /// order, until they weigh `page.max_bytes` (at least one). A plan over many points or large
    /// payloads is written page by page, so that no node holds all its changes at once.
    pub fn plan_page(&self, plan: &Plan, version: u64, page: PlanPage) -> Vec<Change> {
        let state = self.state.read();
        let over = |found: Found<'_>| version.max(ShardState::version(found).saturating_add(1));
        // New vectors by id (the last one given for an id wins, as applying them in order would).
        let new_vectors: HashMap<PointId, &Vec<f32>> = match plan {
            Plan::Vectors(points) => points.iter().map(|(id, v)| (*id, v)).collect(),
            _ => HashMap::new(),
        };
        let mut ids = match plan {
            Plan::Delete(s) | Plan::Payload(s, _) | Plan::DeleteVectors(s) => {
                select_in(&state, &self.prepare_selector(s))
            }
            Plan::Vectors(_) => new_vectors.keys().copied().collect(),
        };
        ids.retain(|id| page.after.is_none_or(|after| *id > after));
        ids.sort_unstable();
        ids.dedup();
        let mut changes = Vec::new();
        let mut bytes = 0usize;
        for id in ids {
            if bytes >= page.max_bytes {
                break;
            }
            let Some(found) = state.find(&id) else {
                continue;
            };
            let payload = || (*ShardState::payload(found)).clone();
            let change = match plan {
                Plan::Delete(_) => Change::delete(id, over(found)),
                Plan::Payload(_, op) => {
                    let mut payload = payload();
                    apply_payload_op(&mut payload, op);
                    let vector = state.vector(found, self.config().dim).to_vec();
                    let mut change = Change::upsert(id, over(found), vector, payload);
                    change.record.vector_version = ShardState::vector_version(found);
                    change
                }
                // A new vector version: the point leaves its segment (or tail slot) for the
                // tail, where searches find it by its new vector only.
                Plan::Vectors(_) => match new_vectors.get(&id) {
                    Some(vector) => Change::upsert(id, over(found), (*vector).clone(), payload()),
                    None => continue,
                },
                Plan::DeleteVectors(_) if !ShardState::has_vector(found) => continue,
                Plan::DeleteVectors(_) => Change::upsert(id, over(found), Vec::new(), payload()),
            };
            bytes = bytes.saturating_add(change.weight());
            changes.push(change);
        }
        changes
    }

    /// Plans and commits in one step (a single replica).
    pub fn execute(&self, plan: &Plan, version: u64, durable: bool) -> Result<usize, ShardError> {
        self.commit(self.plan(plan, version), durable)
    }

    /// Records (tombstones included) with a version above `since`, in id order after `after`:
    /// a page of what a returning replica may have missed. Returns the page and where the next
    /// one starts.
    pub fn records_since(
        &self,
        since: u64,
        after: Option<PointId>,
        limit: usize,
    ) -> Result<RecordPage, ShardError> {
        let page = |tree: &sled::Tree| -> sled::Result<Result<RecordPage, ShardError>> {
            let range = match after {
                Some(a) => tree.range((
                    std::ops::Bound::Excluded(a.to_key()),
                    std::ops::Bound::Unbounded,
                )),
                None => tree.iter(),
            };
            let mut out = Vec::new();
            let mut scanned = 0usize;
            for item in range {
                let (key, value) = item?;
                let (id, record) = match decode_entry(&key, &value) {
                    Ok(entry) => entry,
                    Err(e) => return Ok(Err(e)),
                };
                scanned += 1;
                if record.version > since {
                    out.push((id, record));
                }
                if out.len() >= limit || scanned >= limit * 20 {
                    return Ok(Ok((out, Some(id))));
                }
            }
            Ok(Ok((out, None)))
        };
        self.store.with_tree(&self.tree, page)?
    }

    /// The highest version of any record held, tombstones included (kept in memory: see the
    /// module doc).
    pub fn max_version(&self) -> u64 {
        self.state.read().max_version
    }

    /// Reads points by id, in the order asked; missing ids are skipped.
    pub fn get(&self, ids: &[PointId], with_vector: bool) -> Vec<PointView> {
        (self.get_within(ids, with_vector, &Deadline::default())).unwrap_or_default()
    }

    /// [`Shard::get`], refusing an answer whose payloads are over `limits`' payload limit.
    pub fn get_within(
        &self,
        ids: &[PointId],
        with_vector: bool,
        limits: &Deadline,
    ) -> Result<Vec<PointView>, Stopped> {
        let state = self.state.read();
        let found = ids.iter().filter_map(|id| Some((*id, state.find(id)?)));
        self.views(&state, found.collect(), with_vector, true, limits)
    }

    /// Up to `limit` points with id ≥ `from` in id order that pass the filter.
    pub fn scroll(
        &self,
        from: Option<PointId>,
        limit: usize,
        filter: Option<&Filter>,
        with_vector: bool,
    ) -> Vec<PointView> {
        (self.scroll_within(from, limit, filter, with_vector, &Deadline::default()))
            .unwrap_or_default()
    }

    /// [`Shard::scroll`], refusing an answer whose payloads are over `limits`' payload limit.
    pub fn scroll_within(
        &self,
        from: Option<PointId>,
        limit: usize,
        filter: Option<&Filter>,
        with_vector: bool,
        limits: &Deadline,
    ) -> Result<Vec<PointView>, Stopped> {
        let filter = filter.map(|f| self.prepare_filter(f));
        let state = self.state.read();
        let check = filter.as_deref().map(check::FilterCheck::new);
        let found = (state.ordered_from(from))
            .filter(|(id, f)| check.as_ref().is_none_or(|c| c.found(id, *f)))
            .take(limit);
        self.views(&state, found.collect(), with_vector, true, limits)
    }

    /// [`Shard::views`] of the points among `items` still live, each with what it came with
    /// (its distance, the value it is ordered by).
    fn views_of<T>(
        &self,
        state: &ShardState,
        items: Vec<(T, PointId)>,
        with_vector: bool,
        with_payload: bool,
        limits: &Deadline,
    ) -> Result<Vec<(T, PointView)>, Stopped> {
        let (mut tags, mut found) = (Vec::with_capacity(items.len()), Vec::new());
        for (tag, id) in items {
            if let Some(f) = state.find(&id) {
                tags.push(tag);
                found.push((id, f));
            }
        }
        let views = self.views(state, found, with_vector, with_payload, limits)?;
        Ok(tags.into_iter().zip(views).collect())
    }

    /// What a reader gets of the points found, once their payloads' stored sizes are known to
    /// be within `limits` (none of them is read otherwise).
    fn views(
        &self,
        state: &ShardState,
        found: Vec<(PointId, Found<'_>)>,
        with_vector: bool,
        with_payload: bool,
        limits: &Deadline,
    ) -> Result<Vec<PointView>, Stopped> {
        if with_payload && limits.payload_limit().is_some() {
            let bytes = (found.iter()).fold(0usize, |sum, (_, f)| {
                sum.saturating_add(ShardState::payload_len(*f))
            });
            limits.admit_payloads(bytes)?;
        }
        Ok((found.into_iter())
            .map(|(id, f)| self.view(state, &id, f, with_vector, with_payload))
            .collect())
    }

    /// Number of live points passing the filter.
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        (self.count_within(filter, &Deadline::default())).unwrap_or_default()
    }

    /// [`Shard::count`] that stops once `deadline` passes.
    pub fn count_within(
        &self,
        filter: Option<&Filter>,
        deadline: &Deadline,
    ) -> Result<usize, Stopped> {
        let Some(flt) = filter else {
            return Ok(self.state.read().live_count());
        };
        let flt = self.prepare_filter(flt);
        let scanned = deadline.checkpoints_weighted(flt.size());
        let mut n = 0;
        for_each_match(&self.state.read(), &flt, &scanned, |_| n += 1);
        scanned.result()?;
        Ok(n)
    }

    /// What a reader gets of a point. Without `with_payload` the payload is the shared empty
    /// one (a sealed payload is then never read from its file).
    fn view(
        &self,
        state: &ShardState,
        id: &PointId,
        found: Found<'_>,
        with_vector: bool,
        with_payload: bool,
    ) -> PointView {
        PointView {
            id: *id,
            version: ShardState::version(found),
            payload: if with_payload {
                ShardState::payload(found)
            } else {
                point::empty_payload()
            },
            vector: with_vector.then(|| state.vector(found, self.config().dim).to_vec()),
        }
    }
}

/// Resident bytes by component. Mapped parts count the pages in core (`mincore`); heap parts
/// are estimated from their sizes (docs/storage.md has the per-entry figures).
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryReport {
    pub vectors: usize,
    pub codes: usize,
    pub graph: usize,
    pub point_table: usize,
    pub payloads: usize,
    /// Payload indexes of the sealed segments (heap).
    pub payload_index: usize,
}

impl std::ops::AddAssign for MemoryReport {
    fn add_assign(&mut self, o: MemoryReport) {
        self.vectors += o.vectors;
        self.codes += o.codes;
        self.graph += o.graph;
        self.point_table += o.point_table;
        self.payloads += o.payloads;
        self.payload_index += o.payload_index;
    }
}

/// A point-table entry of the tail or an overlay: the hash map slot (id 24 B, entry 56 B, control
/// byte, load factor) and the ordered set's share (measured, docs/storage.md).
const TABLE_ENTRY_BYTES: usize = 150;
/// A payload's text allocation beyond its length.
const PAYLOAD_OVERHEAD: usize = 16;

/// Whether a stored payload holds a value at `key` that an index of `field`'s type holds (Qdrant
/// counts the points an index holds: a uuid index does not hold a string that is no UUID).
fn holds_value(json: &[u8], key: &payload::KeyPath, field: &FieldSchema) -> bool {
    let payload = check::project(json, std::slice::from_ref(&key.first));
    filter::values_at(&payload, key)
        .iter()
        .any(|v| field.data_type.holds(v))
}

fn select_in(state: &ShardState, selector: &Selector) -> Vec<PointId> {
    match selector {
        Selector::Ids(ids) => ids
            .iter()
            .filter(|id| state.find(id).is_some())
            .copied()
            .collect(),
        Selector::Filter(f) => {
            let mut ids = Vec::new();
            for_each_match(state, f, &Deadline::default().checkpoints(), |id| {
                ids.push(id)
            });
            ids
        }
    }
}

/// Calls `f` with every live point passing a (prepared) filter: the point table's, then each
/// segment's plain entries — those the payload indexes give, without reading their payloads
/// when the indexes answer the whole filter. Once `scanned` says the deadline passed, no more
/// payloads are checked (the caller answers that it stopped).
fn for_each_match(
    state: &ShardState,
    filter: &Filter,
    scanned: &deadline::Checkpoints,
    mut f: impl FnMut(PointId),
) {
    let check = check::FilterCheck::new(filter);
    for (id, e) in state.points.iter() {
        if scanned.tick() && check.json(id, e.payload.as_bytes()) {
            f(*id);
        }
    }
    for seg in &state.segments {
        let passes = |i: u32| scanned.tick() && seg.plain_and_passes(i, Some(&check));
        let mut take = |i: u32| f(seg.point_id(i));
        match seg.payload_index().candidates(filter, seg) {
            Some(c) if c.exact => c.ids.iter().filter(|&i| seg.plain(i)).for_each(&mut take),
            Some(c) => c.ids.iter().filter(|&i| passes(i)).for_each(&mut take),
            None => (0..seg.len() as u32)
                .filter(|&i| passes(i))
                .for_each(&mut take),
        }
    }
}

/// An entry of a records tree, read back.
fn decode_entry(key: &[u8], value: &[u8]) -> Result<(PointId, Record), ShardError> {
    let id =
        PointId::from_key(key).ok_or_else(|| ShardError::Invalid("corrupt point key".into()))?;
    let record = Record::decode(value).map_err(ShardError::Invalid)?;
    Ok((id, record))
}

#[cfg(test)]
mod filtered_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod unindexed_tests;
