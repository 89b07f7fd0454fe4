//! A shard: the points of one collection whose ids hash to it, durable in sled and searchable
//! through immutable HNSW segments plus a small exact-scan tail.
//!
//! Write path: a batch of versioned [`Record`]s is checked against the versions already held
//! (last writer wins, tombstones included), written to sled in one atomic batch, flushed to disk
//! when the client asked for `wait=true`, and only then made visible in memory. Memory is therefore
//! never ahead of disk, and a batch is all or nothing.
//!
//! Files, under the shard's directory:
//! - the records live in the node's sled database, in a tree named after the collection and shard;
//! - `segments/manifest.json` lists the segments in use; each `segments/seg-<id>/` holds one
//!   hnsw_rs dump plus `ids.bin` (the point id and vector version of each internal id).
//!
//! Reopening reads the manifest, reloads each dumped graph without rebuilding it, and walks the
//! records once: a record whose vector version matches its segment entry is live there; anything
//! else was written after the last dump and goes to the tail. See [`state`] for how updates and
//! deletes stay correct although hnsw_rs cannot remove points, and [`optimizer`] for how the tail
//! and dead entries are folded away.

pub mod deadline;
pub mod filter;
pub mod optimizer;
pub mod payload;
pub mod point;
pub mod search;
pub mod state;
pub mod version;

use crate::index::{HnswParams, Metric, Segment};
use crate::store::{Store, StoreError};
use filter::Filter;
use parking_lot::{Mutex, RwLock};
pub use payload::apply_payload_op;
use point::{Payload, PointId, Record, RecordBody};
use state::{Entry, IndexedSegment, LiveBits, Location, ShardState};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use version::VersionClock;

/// A page of [`Shard::records_since`]: the records, and the id the next page starts after.
pub type RecordPage = (Vec<(PointId, Record)>, Option<PointId>);

/// What a shard needs to know about its collection.
#[derive(Debug, Clone, Copy)]
pub struct ShardConfig {
    pub dim: usize,
    pub metric: Metric,
    pub hnsw: HnswParams,
    /// Filtered searches with at most this many candidates in a segment scan them exactly.
    pub full_scan_threshold: usize,
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

impl Change {
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
}

impl From<ShardError> for crate::error::Error {
    fn from(e: ShardError) -> Self {
        match e {
            ShardError::Invalid(m) => crate::error::Error::BadRequest(m),
            ShardError::Unavailable(m) => crate::error::Error::Unavailable(m),
            ShardError::Storage(s) => crate::error::Error::Internal(s),
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
    pub config: ShardConfig,
    store: Store,
    tree: String,
    dir: PathBuf,
    clock: Arc<VersionClock>,
    state: RwLock<ShardState>,
    /// Serialises writers so the version check and the sled batch see the same state.
    write_lock: Mutex<()>,
    /// Serialises segment builds of this shard.
    build_lock: Mutex<()>,
}

impl Shard {
    /// Opens (or creates) a shard: reloads its segments and replays the records written since.
    pub fn open(
        store: &Store,
        tree_name: &str,
        dir: &Path,
        config: ShardConfig,
        clock: Arc<VersionClock>,
    ) -> anyhow::Result<Shard> {
        let seg_dir = dir.join("segments");
        std::fs::create_dir_all(&seg_dir)?;
        let segments = optimizer::load_segments(&seg_dir, config.metric)?;

        // Where each (point, vector version) sits in the reloaded segments.
        let mut indexed: HashMap<PointId, (usize, u32, u64)> = HashMap::new();
        for (s, seg) in segments.iter().enumerate() {
            for (i, (id, vv)) in seg.ids.iter().enumerate() {
                indexed.insert(*id, (s, i as u32, *vv));
            }
        }

        let mut state = ShardState {
            segments,
            ..Default::default()
        };
        let replay = |tree: &sled::Tree| -> sled::Result<anyhow::Result<()>> {
            for item in tree.iter() {
                let (key, value) = item?;
                if let Err(e) = replay_record(&mut state, &indexed, &clock, &key, &value) {
                    return Ok(Err(e.context(format!("in {tree_name}"))));
                }
            }
            Ok(Ok(()))
        };
        store.with_tree(tree_name, replay)??;
        tracing::debug!(
            tree = tree_name,
            points = state.points.len(),
            segments = state.segments.len(),
            replayed = state.tail.live_count,
            "shard opened"
        );
        Ok(Shard {
            config,
            store: store.clone(),
            tree: tree_name.to_string(),
            dir: seg_dir,
            clock,
            state: RwLock::new(state),
            write_lock: Mutex::new(()),
            build_lock: Mutex::new(()),
        })
    }
}

/// Replays one stored record into the state being opened: a live point goes where its vector
/// is indexed, or to the tail.
fn replay_record(
    state: &mut ShardState,
    indexed: &HashMap<PointId, (usize, u32, u64)>,
    clock: &VersionClock,
    key: &[u8],
    value: &[u8],
) -> anyhow::Result<()> {
    let (Some(id), Ok(record)) = (PointId::from_key(key), Record::decode(value)) else {
        anyhow::bail!("unreadable point record");
    };
    clock.observe(record.version);
    let Some(body) = record.body else {
        return Ok(());
    };
    let payload =
        point::parse_payload(&body.payload_json).map_err(|e| anyhow::anyhow!("point {id}: {e}"))?;
    let location = match indexed.get(&id) {
        Some(&(s, i, vv)) if vv == record.vector_version => {
            let seg = &state.segments[s];
            seg.admit(i, record.version);
            Location::Segment(Arc::clone(seg), i)
        }
        _ => Location::Tail(state.tail.push(id, record.vector_version, &body.vector)),
    };
    let entry = Entry {
        version: record.version,
        vector_version: record.vector_version,
        payload: Arc::new(payload),
        location,
    };
    state.points.insert(id, entry);
    Ok(())
}

impl Shard {
    pub fn len(&self) -> usize {
        self.state.read().points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (live points, points inside HNSW segments, segment count)
    pub fn stats(&self) -> (usize, usize, usize) {
        let s = self.state.read();
        (s.points.len(), s.indexed_count(), s.segments.len())
    }

    /// Applies versioned changes: each one wins only over an older version of its point. Within one
    /// call a later change to the same id replaces an earlier one. Returns how many took effect.
    pub fn commit(&self, changes: Vec<Change>, durable: bool) -> Result<usize, ShardError> {
        let _writer = self.write_lock.lock();
        self.store.recover()?;
        let mut latest: BTreeMap<PointId, Change> = BTreeMap::new();
        for c in changes {
            latest.insert(c.id, c);
        }
        let mut accepted = Vec::with_capacity(latest.len());
        let mut batch = sled::Batch::default();
        let mut batch_bytes = 0u64;
        {
            let state = self.state.read();
            for (id, change) in latest {
                let held = match state.points.get(&id) {
                    Some(e) => Some(e.version),
                    None => self.stored_version(&id)?,
                };
                if held.is_some_and(|v| v >= change.record.version) {
                    continue;
                }
                // A change from a peer carries its payload as text only: read it now, so that
                // one that cannot be read is refused before anything is written.
                let payload = match (change.payload, &change.record.body) {
                    (Some(payload), _) => payload,
                    (None, Some(body)) => Arc::new(
                        point::parse_payload(&body.payload_json)
                            .map_err(|e| ShardError::Invalid(format!("point {id}: {e}")))?,
                    ),
                    (None, None) => point::empty_payload(),
                };
                self.clock.observe(change.record.version);
                let encoded = change.record.encode();
                batch_bytes += encoded.len() as u64 + 32;
                batch.insert(id.to_key(), encoded);
                accepted.push((id, change.record, payload));
            }
        }
        if accepted.is_empty() {
            return Ok(0);
        }
        // Room for the records and sled's log of them, with the disk reserve still free.
        let _room = self.store.admit(2 * batch_bytes)?;
        self.store.with_tree(&self.tree, |t| t.apply_batch(batch))?;
        if durable {
            self.store.flush()?;
        } else {
            self.store.note_unflushed();
        }
        let mut state = self.state.write();
        let n = accepted.len();
        for (id, record, payload) in accepted {
            Self::apply_in_memory(&mut state, id, record, payload);
        }
        Ok(n)
    }

    fn stored_version(&self, id: &PointId) -> Result<Option<u64>, ShardError> {
        let stored = self.store.with_tree(&self.tree, |t| t.get(id.to_key()))?;
        Ok(match stored {
            Some(bytes) => Some(Record::decode(&bytes).map_err(ShardError::Invalid)?.version),
            None => None,
        })
    }

    /// Makes a committed record visible; `payload` is the record's, parsed (unused for a
    /// tombstone).
    fn apply_in_memory(state: &mut ShardState, id: PointId, record: Record, payload: Arc<Payload>) {
        let previous = state.points.remove(&id);
        let Some(body) = record.body else {
            if let Some(prev) = previous {
                state.retire(&prev.location);
            }
            return;
        };
        let location = match previous {
            Some(prev) if prev.vector_version == record.vector_version => {
                if let Location::Segment(seg, i) = &prev.location {
                    seg.set_version(*i, record.version);
                }
                prev.location
            }
            Some(prev) => {
                state.retire(&prev.location);
                Location::Tail(state.tail.push(id, record.vector_version, &body.vector))
            }
            None => Location::Tail(state.tail.push(id, record.vector_version, &body.vector)),
        };
        state.points.insert(
            id,
            Entry {
                version: record.version,
                vector_version: record.vector_version,
                payload,
                location,
            },
        );
    }

    /// Ids of live points the selector names (ids that do not exist are left out).
    pub fn select(&self, selector: &Selector) -> Vec<PointId> {
        select_in(&self.state.read(), selector)
    }

    /// The changes `plan` makes at `version`, computed from this replica's current records.
    pub fn plan(&self, plan: &Plan, version: u64) -> Vec<Change> {
        let state = self.state.read();
        match plan {
            Plan::Delete(selector) => select_in(&state, selector)
                .into_iter()
                .map(|id| Change::delete(id, version))
                .collect(),
            Plan::Payload(selector, op) => select_in(&state, selector)
                .into_iter()
                .filter_map(|id| {
                    let e = state.points.get(&id)?;
                    let mut payload = (*e.payload).clone();
                    apply_payload_op(&mut payload, op);
                    let vector = state.vector(e, self.config.dim).to_vec();
                    let mut change = Change::upsert(id, version, vector, payload);
                    change.record.vector_version = e.vector_version;
                    Some(change)
                })
                .collect(),
        }
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
                let Some(id) = PointId::from_key(&key) else {
                    return Ok(Err(ShardError::Invalid("corrupt point key".into())));
                };
                let record = match Record::decode(&value) {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(ShardError::Invalid(e))),
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

    /// The highest version of any record held, tombstones included.
    pub fn max_version(&self) -> u64 {
        let highest = |tree: &sled::Tree| -> sled::Result<u64> {
            Ok(tree
                .iter()
                .values()
                .filter_map(|v| v.ok().and_then(|b| Record::decode(&b).ok()))
                .map(|r| r.version)
                .max()
                .unwrap_or(0))
        };
        self.store.with_tree(&self.tree, highest).unwrap_or(0)
    }

    /// Reads points by id, in the order asked; missing ids are skipped.
    pub fn get(&self, ids: &[PointId], with_vector: bool) -> Vec<PointView> {
        let state = self.state.read();
        ids.iter()
            .filter_map(|id| {
                state
                    .points
                    .get(id)
                    .map(|e| self.view(&state, id, e, with_vector, true))
            })
            .collect()
    }

    /// Up to `limit` points with id ≥ `from` in id order that pass the filter.
    pub fn scroll(
        &self,
        from: Option<PointId>,
        limit: usize,
        filter: Option<&Filter>,
        with_vector: bool,
    ) -> Vec<PointView> {
        let state = self.state.read();
        state
            .points
            .ordered_from(from)
            .filter(|(id, e)| filter.is_none_or(|f| f.matches(id, &e.payload)))
            .take(limit)
            .map(|(id, e)| self.view(&state, id, e, with_vector, true))
            .collect()
    }

    /// Number of live points passing the filter.
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        let state = self.state.read();
        match filter {
            None => state.points.len(),
            Some(f) => state
                .points
                .iter()
                .filter(|(id, e)| f.matches(id, &e.payload))
                .count(),
        }
    }

    /// What a reader gets of a point. Without `with_payload` the payload is the shared empty
    /// one: cloning the point's own `Arc` would touch a cold cache line per hit.
    fn view(
        &self,
        state: &ShardState,
        id: &PointId,
        e: &Entry,
        with_vector: bool,
        with_payload: bool,
    ) -> PointView {
        PointView {
            id: *id,
            version: e.version,
            payload: if with_payload {
                Arc::clone(&e.payload)
            } else {
                point::empty_payload()
            },
            vector: with_vector.then(|| state.vector(e, self.config.dim).to_vec()),
        }
    }
}

fn select_in(state: &ShardState, selector: &Selector) -> Vec<PointId> {
    match selector {
        Selector::Ids(ids) => ids
            .iter()
            .filter(|id| state.points.contains_key(id))
            .copied()
            .collect(),
        Selector::Filter(f) => state
            .points
            .iter()
            .filter(|(id, e)| f.matches(id, &e.payload))
            .map(|(id, _)| *id)
            .collect(),
    }
}

/// Builds an [`IndexedSegment`] whose live bits are all clear; the caller sets them.
pub(crate) fn indexed_segment(id: u64, index: Segment, ids: Vec<(PointId, u64)>) -> IndexedSegment {
    let live = LiveBits::new(ids.len());
    let versions = ids.iter().map(|_| Default::default()).collect();
    IndexedSegment {
        id,
        index,
        ids,
        live,
        versions,
    }
}

#[cfg(test)]
mod tests;
