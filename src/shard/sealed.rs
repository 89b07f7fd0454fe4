//! A sealed segment as the shard sees it: the HNSW index with, in the same mapped file, what the
//! shard needs per internal id — the point id, the vector version, the record version and the
//! payload as they were when the segment was built — plus two bitsets in RAM: which entries are
//! live, and which have a newer version or payload in the shard's point table (an *overlay*,
//! left by a payload-only update after the build).
//!
//! Entries are sorted by point id (every numeric id before every UUID, as in Qdrant), so the id
//! table is its own index: finding a point is a binary search in the mapped array, and scroll
//! walks segments in id order without a separate sorted set. Internal id order is point id
//! order; the graph does not care in which order its nodes are numbered.
//!
//! | section | bytes per entry | contents |
//! |---|---|---|
//! | `points.ids` | 16 | the id as a `u128` (numeric ids first, then UUIDs) |
//! | `points.vector_versions` | 8 | version at which the vector was written |
//! | `points.versions` | 8 | version of the record when it was sealed |
//! | `payload.offsets` | 8 (+8) | start of each payload in `payload.data` |
//! | `payload.data` | the JSON text | the payload when it was sealed |
//!
//! Payloads are stored by internal id on purpose: a payload index (per field, values → internal
//! ids) can be built from this table at seal time, and a filter can read one payload by internal
//! id without going through the point id.

use super::check::FilterCheck;
use super::payload_index::{field_path, FieldIndex, PayloadSchema, SegmentIndex};
use super::point::{Payload, PointId};
use super::state::LiveBits;
use crate::index::{self, AttachedArray, Attachments, HnswParams, Metric, ScalarInt8, Segment};
use anyhow::{ensure, Context, Result};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use uuid::Uuid;

const IDS: &str = "points.ids";
const VECTOR_VERSIONS: &str = "points.vector_versions";
const VERSIONS: &str = "points.versions";
const PAYLOAD_OFFSETS: &str = "payload.offsets";
const PAYLOAD_DATA: &str = "payload.data";
/// Header attribute: how many of the ids are numeric (they come first).
const NUMERIC: &str = "points.numeric";

/// One point to seal: its id, versions, payload (JSON text) and vector.
pub struct SealEntry {
    pub id: PointId,
    pub vector_version: u64,
    pub version: u64,
    pub payload_json: Vec<u8>,
}

/// A built, mapped segment and its per-entry state.
pub struct SealedSegment {
    /// Directory name under the shard's `segments/` folder (`seg-<id>`); also its age: a larger
    /// id was built later.
    pub id: u64,
    pub index: Segment,
    ids: AttachedArray<u128>,
    numeric: usize,
    vector_versions: AttachedArray<u64>,
    versions: AttachedArray<u64>,
    payload_offsets: AttachedArray<u64>,
    pub live: LiveBits,
    pub overlaid: LiveBits,
    /// Payload indexes over the entries as sealed (replaced whole when the schema changes).
    payload_index: RwLock<Arc<SegmentIndex>>,
}

impl SealedSegment {
    /// Builds a segment from entries sorted by id and their vectors (row `i` for entry `i`)
    /// into `dir`.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        id: u64,
        entries: &[SealEntry],
        vectors: Vec<f32>,
        dim: usize,
        metric: Metric,
        hnsw: HnswParams,
        int8: Option<ScalarInt8>,
        dir: &Path,
        cancel: &AtomicBool,
    ) -> Result<SealedSegment> {
        ensure!(
            entries.windows(2).all(|w| w[0].id < w[1].id),
            "seal entries must be sorted by id, without repeats"
        );
        let numeric = entries
            .iter()
            .take_while(|e| matches!(e.id, PointId::Num(_)))
            .count();
        let ids: Vec<u128> = entries.iter().map(|e| key(&e.id)).collect();
        let vv: Vec<u64> = entries.iter().map(|e| e.vector_version).collect();
        let versions: Vec<u64> = entries.iter().map(|e| e.version).collect();
        let mut offsets = Vec::with_capacity(entries.len() + 1);
        let mut data = Vec::new();
        for e in entries {
            offsets.push(data.len() as u64);
            data.extend_from_slice(&e.payload_json);
        }
        offsets.push(data.len() as u64);
        let attachments = Attachments {
            sections: vec![
                (IDS.into(), index::as_bytes(&ids).to_vec()),
                (VECTOR_VERSIONS.into(), index::as_bytes(&vv).to_vec()),
                (VERSIONS.into(), index::as_bytes(&versions).to_vec()),
                (PAYLOAD_OFFSETS.into(), index::as_bytes(&offsets).to_vec()),
                (PAYLOAD_DATA.into(), data),
            ],
            attributes: vec![(NUMERIC.into(), numeric as u64)],
        };
        drop((ids, vv, versions, offsets));
        let index = Segment::build_full(
            vectors,
            dim,
            metric,
            hnsw,
            int8,
            attachments,
            dir,
            Default::default(),
            cancel,
        )?;
        Self::wrap(id, index, int8.is_some_and(|q| q.always_ram))
    }

    /// Opens a segment directory written by [`SealedSegment::build`]. Every entry starts live;
    /// the shard then settles which are. Int8 codes stay mapped: the shard copies those of an
    /// `always_ram` quantization into the heap in the background ([`Segment::keep_codes_in_ram`]).
    pub fn open(id: u64, dir: &Path, metric: Metric) -> Result<SealedSegment> {
        Self::wrap(id, Segment::open(dir, metric)?, false)
    }

    fn wrap(id: u64, index: Segment, codes_in_ram: bool) -> Result<SealedSegment> {
        if codes_in_ram {
            index.keep_codes_in_ram();
        }
        let n = index.len();
        let numeric = index
            .header()
            .and_then(|h| h.attribute(NUMERIC))
            .context("segment file lacks the point id table")? as usize;
        ensure!(numeric <= n, "bad numeric id count");
        let seg = SealedSegment {
            id,
            ids: index.attachment_array(IDS, n)?,
            numeric,
            vector_versions: index.attachment_array(VECTOR_VERSIONS, n)?,
            versions: index.attachment_array(VERSIONS, n)?,
            payload_offsets: index.attachment_array(PAYLOAD_OFFSETS, n + 1)?,
            live: LiveBits::new(n),
            overlaid: LiveBits::new(n),
            payload_index: Default::default(),
            index,
        };
        let data_len = seg.index.attachment(PAYLOAD_DATA).map_or(0, <[u8]>::len) as u64;
        ensure!(
            seg.payload_offsets.last().copied() == Some(data_len),
            "payload table does not match its data"
        );
        (0..n as u32).for_each(|i| seg.live.set(i, true));
        Ok(seg)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The point id of entry `i`.
    #[inline]
    pub fn point_id(&self, i: u32) -> PointId {
        let k = self.ids[i as usize];
        if (i as usize) < self.numeric {
            PointId::Num(k as u64)
        } else {
            PointId::Uuid(Uuid::from_u128(k))
        }
    }

    /// The entry holding `id`, live or not.
    pub fn find(&self, id: &PointId) -> Option<u32> {
        let (range, k) = match id {
            PointId::Num(n) => (0..self.numeric, *n as u128),
            PointId::Uuid(u) => (self.numeric..self.ids.len(), u.as_u128()),
        };
        let start = range.start;
        self.ids[range]
            .binary_search(&k)
            .ok()
            .map(|i| (start + i) as u32)
    }

    /// The first entry whose id is ≥ `from`.
    pub fn lower_bound(&self, from: &PointId) -> u32 {
        let i = match from {
            PointId::Num(n) => self.ids[..self.numeric].partition_point(|&k| k < *n as u128),
            PointId::Uuid(u) => {
                self.numeric + self.ids[self.numeric..].partition_point(|&k| k < u.as_u128())
            }
        };
        i as u32
    }

    pub fn vector_version(&self, i: u32) -> u64 {
        self.vector_versions[i as usize]
    }

    /// The record version the entry was sealed with.
    pub fn sealed_version(&self, i: u32) -> u64 {
        self.versions[i as usize]
    }

    /// The payload's JSON text as sealed.
    pub fn payload_json(&self, i: u32) -> &[u8] {
        let (a, b) = (
            self.payload_offsets[i as usize] as usize,
            self.payload_offsets[i as usize + 1] as usize,
        );
        self.index
            .attachment(PAYLOAD_DATA)
            .and_then(|d| d.get(a..b))
            .unwrap_or(b"{}")
    }

    /// The payload as sealed, parsed.
    pub fn payload(&self, i: u32) -> Payload {
        super::point::read_held_payload(self.payload_json(i))
    }

    /// The payload indexes as they are now.
    pub fn payload_index(&self) -> Arc<SegmentIndex> {
        Arc::clone(&self.payload_index.read())
    }

    /// Makes the segment's payload indexes follow `schema`: builds the missing ones (a pass over
    /// the segment's payloads per field), drops the ones no longer asked for. Returns how many
    /// fields it built.
    pub fn follow_schema(&self, schema: &PayloadSchema) -> usize {
        let current = self.payload_index();
        let mut fields = HashMap::new();
        let mut built = 0;
        for (key, field) in schema {
            let index = match current.fields.get(key) {
                Some(idx) if idx.schema() == field => Arc::clone(idx),
                _ => {
                    let path = match field_path(key) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(segment = self.id, "{e}; not indexed");
                            continue;
                        }
                    };
                    built += 1;
                    Arc::new(FieldIndex::build(self, &path, field))
                }
            };
            fields.insert(key.clone(), index);
        }
        if built > 0 || fields.len() != current.fields.len() {
            *self.payload_index.write() = Arc::new(SegmentIndex::new(fields));
        }
        built
    }

    /// Live entries that are not overlaid (their state is all in the file).
    #[inline]
    pub fn plain(&self, i: u32) -> bool {
        self.live.get(i) && !self.overlaid.get(i)
    }

    /// Whether entry `i` is plain and passes `check` (no check: every plain entry does), read
    /// from the payload as it was sealed.
    pub fn plain_and_passes(&self, i: u32, check: Option<&FilterCheck>) -> bool {
        self.plain(i) && check.is_none_or(|c| c.json(&self.point_id(i), self.payload_json(i)))
    }

    /// Starts loading entry `i`'s id and version (a search's hits are scattered over the tables).
    pub fn prefetch_entry(&self, i: u32) {
        crate::index::prefetch(self.ids.as_ptr().wrapping_add(i as usize));
        crate::index::prefetch(self.versions.as_ptr().wrapping_add(i as usize));
    }

    /// Bytes of the point table and payload sections, and how much of them is resident.
    pub fn table_memory(&self) -> ((usize, usize), (usize, usize)) {
        let n = self.len();
        let ids = (
            n * 32,
            self.ids.resident_bytes()
                + self.vector_versions.resident_bytes()
                + self.versions.resident_bytes(),
        );
        let data = self.index.attachment(PAYLOAD_DATA).unwrap_or(&[]);
        let payloads = (
            data.len() + (n + 1) * 8,
            crate::memory::resident_bytes(data) + self.payload_offsets.resident_bytes(),
        );
        (ids, payloads)
    }
}

/// The sort key of an id within its kind.
fn key(id: &PointId) -> u128 {
    match id {
        PointId::Num(n) => *n as u128,
        PointId::Uuid(u) => u.as_u128(),
    }
}
