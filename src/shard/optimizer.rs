//! Background indexing: folds the exact-scan tail into new HNSW segments, merges small segments
//! and vacuums ones that deletes and updates left too dead, within a bounded segment size and one
//! build at a time on the node.
//!
//! A build never blocks readers or writers: it copies the entries it will index under a read
//! lock, builds the segment file into `segments/tmp-<id>/` with no lock held, renames it to
//! `segments/seg-<id>/` (fsynced), and then, under the write locks, admits each entry whose point
//! still has the copied vector. Points changed meanwhile simply stay where their newer vector
//! is. Only after `manifest.json` is atomically replaced are dirty marks cleared and retired
//! segment directories deleted, so a crash at any instant leaves a manifest naming complete
//! segments and every change since them marked dirty.
//!
//! # Policy (checked every half second per shard, first match wins)
//! 1. **Tail**: once the tail holds `indexing_threshold` points or `max_tail_bytes` (vectors and
//!    payload text, [`ShardState::tail_bytes`]) — or, after [`QUIET`] without writes, at least
//!    [`QUIET_MIN_TAIL`] points or [`QUIET_MIN_TAIL_BYTES`] (a threshold of 0 disables
//!    indexing, as in Qdrant) — it is built into a segment of at most
//!    `max_segment_points`, absorbing the segments no larger than [`TIER_FACTOR`] times it
//!    (size-tiered: a point is rebuilt only when enough new points join it, and a build never
//!    exceeds the maximum, so a tail never rebuilds the whole shard).
//! 2. **Vacuum**: a segment whose dead entries exceed `deleted_threshold` of it (and
//!    `vacuum_min_vector_number`) is rebuilt without them.
//! 3. **Configuration**: a segment built under other HNSW parameters (`m`, `ef_construct`) or
//!    another quantization than the collection's now (`PATCH /collections/{c}`) is rebuilt as
//!    configured, one at a time; it serves searches as it is until its rebuild replaces it.
//! 4. **Merge**: when more than [`MAX_SMALL`] segments are under half the maximum, the smallest
//!    are merged (within the maximum).
//!
//! The maximum bounds a build's time and memory: hnsw_rs needs several KB per point while it
//! builds (docs/storage.md), so by default a segment holds what a build makes within a budget
//! per CPU (as Qdrant's default `max_segment_size` is per CPU), or within a quarter of the
//! node's memory where that is smaller (see [`crate::memory::sizing`]); Qdrant's
//! `optimizers_config.max_segment_size` wins when the collection sets it.

use super::point::{PointId, Record};
use super::sealed::{SealEntry, SealedSegment};
use super::state::{Found, Location, ShardState, Tail};
use super::Shard;
use crate::fsutil;
use crate::index::{dir_format, DirFormat, Metric};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A tail build also absorbs every segment at most this many times the tail's size.
const TIER_FACTOR: usize = 4;
/// Merge small segments (under half the maximum) once there are more than this many.
const MAX_SMALL: usize = 3;
/// Writes must have stopped this long before a tail under the threshold is indexed.
pub const QUIET: Duration = Duration::from_secs(3);
/// The smallest tail indexed once writes stop: below it an exact scan costs less than a few
/// graph hops.
pub const QUIET_MIN_TAIL: usize = 256;
/// A quiet tail holding this many bytes (vectors and payload text) is indexed whatever its
/// point count: a few points with large payloads would otherwise hold their text in RAM for
/// good (200 points of 1 MB held 200 MB), where a segment keeps it in its mapped file.
pub const QUIET_MIN_TAIL_BYTES: usize = 1 << 20;

const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 2;
/// Marker left in a segment directory whose file failed its checksums (see
/// [`finish_open_in_background`]): the next open re-indexes the shard from its records.
const CORRUPT: &str = "CORRUPT";

/// One build at a time on the whole node: builds are what needs memory (and both cores).
static BUILD_SLOT: Mutex<()> = Mutex::new(());

/// When segments are built and merged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    /// The collection's `indexing_threshold` (points), overriding the node's when set.
    pub indexing_threshold: Option<usize>,
    /// The most points one segment may hold.
    pub max_segment_points: usize,
    /// The most points the (in-RAM) tail holds before writers wait for builds.
    pub max_tail_points: usize,
    /// The most bytes (vectors and payload text) the tail holds before it is built whatever its
    /// point count, and writers wait for builds.
    pub max_tail_bytes: usize,
    pub deleted_threshold: f64,
    pub vacuum_min_vector_number: usize,
}

/// The fewest points a segment is allowed to hold, whatever `max_segment_size` says: each
/// segment costs a file, a mapping and a search per query, and one-point segments (a
/// `max_segment_size` of 1 KB at 256 dimensions) kept the optimizer building two a second for
/// hours and would exceed the kernel's mapping limit. Collection info reports the size in force.
pub const MIN_SEGMENT_POINTS: usize = 1000;

impl OptimizerConfig {
    /// Defaults for vectors of `dim` on this node: Qdrant's vacuum settings, and segment and
    /// tail sizes from the node's CPUs and memory ([`crate::memory::sizing`]).
    pub fn for_dim(dim: usize) -> OptimizerConfig {
        let sizes = crate::memory::default_sizing(dim);
        OptimizerConfig {
            indexing_threshold: None,
            max_segment_points: sizes.max_segment_points,
            max_tail_points: sizes.max_tail_points,
            max_tail_bytes: sizes.max_tail_bytes,
            deleted_threshold: 0.2,
            vacuum_min_vector_number: 1000,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// Absent in manifests of older shoal versions (hnsw_rs dumps).
    #[serde(default)]
    format: u32,
    segments: Vec<u64>,
    #[serde(default)]
    max_version: u64,
}

/// What a shard's `segments/` directory holds.
pub enum Loaded {
    /// No manifest: a new shard, or one of an older shoal that had built no segment yet.
    Fresh,
    /// Segments of the current format, oldest first.
    Current {
        segments: Vec<Arc<SealedSegment>>,
        max_version: u64,
    },
    /// Segments of an older format, or unreadable: re-index from the records.
    Rebuild,
}

/// What a finished build reports.
#[derive(Debug, Clone, Copy)]
pub struct BuildReport {
    pub points: usize,
    pub seconds: f64,
}

/// Maps the segments named by the manifest; removes leftovers of interrupted builds.
pub fn load_segments(dir: &Path, metric: Metric) -> anyhow::Result<Loaded> {
    let manifest: Manifest = match std::fs::read(dir.join(MANIFEST)) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Fresh),
        Err(e) => return Err(e.into()),
    };
    if manifest.format != FORMAT {
        return Ok(Loaded::Rebuild);
    }
    remove_unlisted(dir, &manifest.segments)?;
    let mut segments = Vec::new();
    for id in manifest.segments {
        let seg_dir = dir.join(format!("seg-{id}"));
        if seg_dir.join(CORRUPT).exists() || dir_format(&seg_dir) != DirFormat::Current {
            tracing::error!(
                segment = id,
                "segment failed its checksums or is of another format; re-indexing the shard"
            );
            return Ok(Loaded::Rebuild);
        }
        let started = Instant::now();
        match SealedSegment::open(id, &seg_dir, metric) {
            Ok(seg) => {
                let seconds = started.elapsed().as_secs_f64();
                metrics::histogram!("shoal_segment_reopen_seconds").record(seconds);
                tracing::info!(segment = id, points = seg.len(), seconds, "segment mapped");
                segments.push(Arc::new(seg));
            }
            Err(e) => {
                tracing::error!(segment = id, error = %e, "segment unreadable; re-indexing the shard from its records");
                return Ok(Loaded::Rebuild);
            }
        }
    }
    Ok(Loaded::Current {
        segments,
        max_version: manifest.max_version,
    })
}

/// Removes every entry of `dir` but the manifest and the listed segments.
pub fn remove_unlisted(dir: &Path, keep: &[u64]) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let listed = name == MANIFEST
            || name
                .strip_prefix("seg-")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|id| keep.contains(&id));
        if !listed {
            tracing::info!(path = %entry.path().display(), "removing a segment directory no manifest names");
            let _ = std::fs::remove_dir_all(entry.path())
                .or_else(|_| std::fs::remove_file(entry.path()));
        }
    }
    Ok(())
}

pub fn write_manifest(dir: &Path, segments: &[u64], max_version: u64) -> anyhow::Result<()> {
    let manifest = Manifest {
        format: FORMAT,
        segments: segments.to_vec(),
        max_version,
    };
    fsutil::write_atomic(&dir.join(MANIFEST), &serde_json::to_vec(&manifest)?)?;
    Ok(())
}

/// Marks every entry superseded by a copy of its point in a newer segment as dead: with the ids
/// of each segment sorted, one merge over them (see the shard's module doc for why the newest
/// copy is the live one).
pub fn supersede_older_copies(segments: &[Arc<SealedSegment>]) {
    if segments.len() < 2 {
        return;
    }
    let mut cursors: Vec<u32> = vec![0; segments.len()];
    loop {
        let mut smallest: Option<PointId> = None;
        for (s, seg) in segments.iter().enumerate() {
            if (cursors[s] as usize) < seg.len() {
                let id = seg.point_id(cursors[s]);
                if smallest.is_none_or(|m| id < m) {
                    smallest = Some(id);
                }
            }
        }
        let Some(id) = smallest else { break };
        let mut newest = true;
        for s in (0..segments.len()).rev() {
            let seg = &segments[s];
            if (cursors[s] as usize) < seg.len() && seg.point_id(cursors[s]) == id {
                if !newest {
                    seg.live.set(cursors[s], false);
                }
                newest = false;
                cursors[s] += 1;
            }
        }
    }
}

/// What a reopen leaves for later, on one background thread per shard so that the shard serves
/// at once: copying `always_ram` int8 codes into the heap (searches read the mapped codes until
/// then), then verifying every segment's checksums. A corrupt segment is marked so that the next
/// open re-indexes the shard from its records (it keeps serving until then).
pub fn finish_open_in_background(dir: &Path, segments: &[Arc<SealedSegment>], codes_in_ram: bool) {
    if segments.is_empty() {
        return;
    }
    let segments: Vec<Arc<SealedSegment>> = segments.to_vec();
    let dir = dir.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("segment-settle".into())
        .spawn(move || {
            if codes_in_ram {
                let started = Instant::now();
                segments.iter().for_each(|seg| seg.index.keep_codes_in_ram());
                let seconds = started.elapsed().as_secs_f64();
                tracing::info!(segments = segments.len(), seconds, "int8 codes copied into RAM");
            }
            for seg in &segments {
                if let Err(e) = seg.index.verify() {
                    metrics::counter!("shoal_segment_corrupt_total").increment(1);
                    tracing::error!(segment = seg.id, error = %e, "segment file is corrupt; the shard will be re-indexed from its records at the next start");
                    let marker = dir.join(format!("seg-{}", seg.id)).join(CORRUPT);
                    let _ = fsutil::write_atomic(&marker, e.to_string().as_bytes());
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the background work of a shard's open");
    }
}

/// What one build takes: tail slots and whole segments.
struct Job {
    tail_slots: Vec<u32>,
    absorbed: Vec<Arc<SealedSegment>>,
    reason: &'static str,
}

impl Shard {
    /// The indexing threshold in force: the collection's, else the node's; 0 disables
    /// indexing (Qdrant's meaning).
    fn threshold(&self, node_threshold: usize) -> usize {
        self.config()
            .optimizer
            .indexing_threshold
            .unwrap_or(node_threshold)
    }

    /// Whether the shard has optimization work due or running (collection status `yellow`).
    pub fn optimizing(&self, node_threshold: usize) -> bool {
        self.building.load(Ordering::Acquire)
            || self
                .plan_build(&self.state.read(), self.threshold(node_threshold), true)
                .is_some()
    }

    /// Decides the next build (see the module doc). `quiet_now` pretends writes have stopped.
    fn plan_build(&self, state: &ShardState, threshold: usize, quiet_now: bool) -> Option<Job> {
        let opt = self.config().optimizer;
        let max = opt.max_segment_points.max(1);
        let tail = state.tail.live_count;
        let bytes = state.tail_bytes(self.config().dim);
        let quiet = quiet_now || self.last_write.lock().elapsed() >= QUIET;
        let due = tail >= threshold
            || bytes >= opt.max_tail_bytes
            || (quiet && (tail >= QUIET_MIN_TAIL.min(threshold) || bytes >= QUIET_MIN_TAIL_BYTES));
        if threshold > 0 && tail > 0 && due {
            let tail_slots: Vec<u32> = (0..state.tail.ids.len() as u32)
                .filter(|&s| state.tail.live[s as usize])
                .take(max)
                .collect();
            let mut total = tail_slots.len();
            let mut small: Vec<&Arc<SealedSegment>> = state
                .segments
                .iter()
                .filter(|s| s.live.count() <= TIER_FACTOR * tail_slots.len())
                .collect();
            small.sort_by_key(|s| s.live.count());
            let mut absorbed = Vec::new();
            for s in small {
                let live = s.live.count();
                if total + live > max {
                    break;
                }
                total += live;
                absorbed.push(Arc::clone(s));
            }
            return Some(Job {
                tail_slots,
                absorbed,
                reason: "tail",
            });
        }
        if let Some(seg) = state.segments.iter().find(|s| {
            let dead = s.len() - s.live.count();
            dead >= opt.vacuum_min_vector_number
                && dead as f64 > opt.deleted_threshold * s.len() as f64
        }) {
            return Some(Job {
                tail_slots: Vec::new(),
                absorbed: vec![Arc::clone(seg)],
                reason: "vacuum",
            });
        }
        let config = self.config();
        if let Some(seg) = state
            .segments
            .iter()
            .find(|s| !s.index.built_with(config.hnsw, config.int8))
        {
            return Some(Job {
                tail_slots: Vec::new(),
                absorbed: vec![Arc::clone(seg)],
                reason: "config",
            });
        }
        let mut small: Vec<&Arc<SealedSegment>> = state
            .segments
            .iter()
            .filter(|s| s.live.count() < max / 2)
            .collect();
        if small.len() > MAX_SMALL {
            small.sort_by_key(|s| s.live.count());
            let mut total = 0;
            let mut absorbed = Vec::new();
            for s in small {
                if total + s.live.count() > max && absorbed.len() >= 2 {
                    break;
                }
                total += s.live.count();
                absorbed.push(Arc::clone(s));
            }
            return Some(Job {
                tail_slots: Vec::new(),
                absorbed,
                reason: "merge",
            });
        }
        None
    }

    /// Runs one optimisation step if one is due. Returns what it built, if anything.
    pub fn optimize(&self, indexing_threshold: usize) -> anyhow::Result<Option<BuildReport>> {
        self.optimize_cancellable(indexing_threshold, &AtomicBool::new(false))
    }

    /// [`Shard::optimize`] that gives up when `cancel` is set (the node is stopping): the build
    /// fails with [`crate::index::BuildCancelled`], its directory is removed, and the points
    /// stay where they were, to be built again after the restart.
    pub fn optimize_cancellable(
        &self,
        indexing_threshold: usize,
        cancel: &AtomicBool,
    ) -> anyhow::Result<Option<BuildReport>> {
        let Some(_building) = self.build_lock.try_lock() else {
            return Ok(None);
        };
        if self.is_retired() {
            return Ok(None);
        }
        let threshold = self.threshold(indexing_threshold);
        self.indexing.store(threshold > 0, Ordering::Relaxed);
        if self
            .plan_build(&self.state.read(), threshold, false)
            .is_none()
        {
            return Ok(None);
        }
        let _slot = BUILD_SLOT.lock();
        self.building.store(true, Ordering::Release);
        let result = self.run_build(threshold, cancel);
        self.building.store(false, Ordering::Release);
        match &result {
            Ok(_) => *self.last_error.lock() = None,
            Err(e) => *self.last_error.lock() = Some(format!("{e:#}")),
        }
        result
    }

    fn run_build(
        &self,
        threshold: usize,
        cancel: &AtomicBool,
    ) -> anyhow::Result<Option<BuildReport>> {
        let started = Instant::now();
        let (entries, vectors, reason) = {
            let state = self.state.read();
            let Some(job) = self.plan_build(&state, threshold, false) else {
                return Ok(None);
            };
            let (entries, vectors) = self.copy_entries(&state, &job);
            (entries, vectors, job.reason)
        };
        let points = entries.len();
        let segment = if entries.is_empty() {
            None
        } else {
            let seg = Arc::new(self.build_segment(&entries, vectors, cancel)?);
            // Payload indexes before the segment serves searches, and again after: the schema
            // may have changed in between (a no-op otherwise).
            self.index_segment(&seg);
            Some(seg)
        };
        drop(entries);
        self.install(segment.clone())?;
        if let Some(seg) = &segment {
            self.index_segment(seg);
        }
        crate::memory::release_build_memory();
        let report = BuildReport {
            points,
            seconds: started.elapsed().as_secs_f64(),
        };
        self.built_points
            .fetch_add(points as u64, Ordering::Relaxed);
        tracing::info!(points, seconds = report.seconds, reason, "segment built");
        Ok(Some(report))
    }

    /// The entries a job indexes, sorted by id, and their vectors in the same order.
    fn copy_entries(&self, state: &ShardState, job: &Job) -> (Vec<SealEntry>, Vec<f32>) {
        let dim = self.config().dim;
        let mut picked: Vec<(SealEntry, &[f32])> = Vec::new();
        for &slot in &job.tail_slots {
            let (id, vv) = state.tail.ids[slot as usize];
            let Some(e) = state.points.get(&id) else {
                continue;
            };
            picked.push((
                SealEntry {
                    id,
                    vector_version: vv,
                    version: e.version,
                    payload_json: e.payload.as_bytes().to_vec(),
                },
                state.tail.vector(slot, dim),
            ));
        }
        for seg in &job.absorbed {
            for i in 0..seg.len() as u32 {
                if !seg.live.get(i) {
                    continue;
                }
                let id = seg.point_id(i);
                let (version, payload_json) = match state.points.get(&id) {
                    Some(e) if seg.overlaid.get(i) => (e.version, e.payload.as_bytes().to_vec()),
                    _ => (seg.sealed_version(i), seg.payload_json(i).to_vec()),
                };
                picked.push((
                    SealEntry {
                        id,
                        vector_version: seg.vector_version(i),
                        version,
                        payload_json,
                    },
                    seg.index.vector(i),
                ));
            }
        }
        picked.sort_by_key(|(e, _)| e.id);
        picked.dedup_by_key(|(e, _)| e.id);
        let mut vectors = Vec::with_capacity(picked.len() * dim);
        for (_, v) in &picked {
            vectors.extend_from_slice(v);
        }
        (picked.into_iter().map(|(e, _)| e).collect(), vectors)
    }

    /// Builds a segment file into `tmp-<id>/`, then renames it `seg-<id>/`. A build that fails
    /// (a full disk, a stop) removes its directory, so that nothing it wrote is left to fill the
    /// disk until the next restart.
    fn build_segment(
        &self,
        entries: &[SealEntry],
        vectors: Vec<f32>,
        cancel: &AtomicBool,
    ) -> anyhow::Result<SealedSegment> {
        let id = self.clock.next();
        let tmp = self.dir.join(format!("tmp-{id}"));
        let _ = std::fs::remove_dir_all(&tmp);
        let built = (|| {
            std::fs::create_dir_all(&tmp)?;
            let c = self.config();
            let seg = SealedSegment::build(
                id, entries, vectors, c.dim, c.metric, c.hnsw, c.int8, &tmp, cancel,
            )?;
            // Entries start dead; install admits the ones still current.
            (0..seg.len() as u32).for_each(|i| seg.live.set(i, false));
            fsutil::rename_dir_durably(&tmp, &self.dir.join(format!("seg-{id}")))?;
            Ok(seg)
        })();
        if built.is_err() {
            if let Err(rm) = std::fs::remove_dir_all(&tmp) {
                if rm.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %tmp.display(), error = %rm, "cannot remove a failed build");
                }
            }
        }
        built
    }

    /// Admits every entry whose point still has the copied vector, compacts the tail, drops
    /// segments left with nothing live, records the result in the manifest, and only then
    /// clears the dirty marks the new segment covers.
    fn install(&self, segment: Option<Arc<SealedSegment>>) -> anyhow::Result<()> {
        let _writer = self.write_lock.lock();
        if self.is_retired() {
            // Removed while it built (see [`Shard::retire`]): install nothing, and write no
            // manifest into a directory that a collection created again with the same name may
            // be using by now. Segment ids come from the node's clock, so this one is ours.
            if let Some(seg) = &segment {
                let _ = std::fs::remove_dir_all(self.dir.join(format!("seg-{}", seg.id)));
            }
            return Ok(());
        }
        let mut cleaned: Vec<PointId> = Vec::new();
        let retired: Vec<u64>;
        {
            let mut state = self.state.write();
            if let Some(seg) = &segment {
                let admitted: Vec<(u32, PointId, Location, u64, bool)> = (0..seg.len() as u32)
                    .filter_map(|i| {
                        let id = seg.point_id(i);
                        let found = state.find(&id)?;
                        (ShardState::vector_version(found) == seg.vector_version(i)).then(|| {
                            (
                                i,
                                id,
                                ShardState::location(found),
                                ShardState::version(found),
                                matches!(found, Found::Table(_)),
                            )
                        })
                    })
                    .collect();
                for (i, id, old, version, in_table) in admitted {
                    state.retire(&old);
                    seg.live.set(i, true);
                    if version == seg.sealed_version(i) {
                        if in_table {
                            state.points.remove(&id);
                            cleaned.push(id);
                        }
                    } else if state.points.contains_key(&id) {
                        state
                            .points
                            .relocate(&id, Location::Segment(Arc::clone(seg), i));
                        seg.overlaid.set(i, true);
                    }
                }
            }
            state.points.shrink_if_sparse();
            compact_tail(&mut state, self.config().dim);
            let (keep, dropped): (Vec<_>, Vec<_>) = std::mem::take(&mut state.segments)
                .into_iter()
                .partition(|s| s.live.count() > 0);
            state.segments = keep;
            let mut dropped: Vec<u64> = dropped.iter().map(|s| s.id).collect();
            match segment {
                Some(s) if s.live.count() > 0 => state.segments.push(s),
                Some(s) => dropped.push(s.id),
                None => {}
            }
            retired = dropped;
            let gone: Vec<PointId> = state
                .deleted_dirty
                .iter()
                .filter(|id| state.segments.iter().all(|s| s.find(id).is_none()))
                .copied()
                .collect();
            for id in gone {
                state.deleted_dirty.remove(&id);
                cleaned.push(id);
            }
            let ids: Vec<u64> = state.segments.iter().map(|s| s.id).collect();
            write_manifest(&self.dir, &ids, state.max_version)?;
        }
        let mut unmark = sled::Batch::default();
        // A removal logs its key and a header.
        self.store.note_written(cleaned.len() as u64 * 40);
        for id in cleaned {
            unmark.remove(id.to_key());
        }
        self.store
            .with_tree(&self.dirty, |t| t.apply_batch(unmark))?;
        drop(_writer);
        for id in retired {
            let _ = std::fs::remove_dir_all(self.dir.join(format!("seg-{id}")));
        }
        Ok(())
    }

    /// Re-reads one record (tests: what sled holds for an id).
    #[doc(hidden)]
    pub fn stored_record(&self, id: &PointId) -> Option<Record> {
        self.store
            .with_tree(&self.tree, |t| t.get(id.to_key()))
            .ok()
            .flatten()
            .and_then(|b| Record::decode(&b).ok())
    }
}

/// Rewrites the tail without its dead slots, repointing the entries that stay in it.
fn compact_tail(state: &mut ShardState, dim: usize) {
    let old = std::mem::take(&mut state.tail);
    let mut tail = Tail::default();
    for (slot, (id, vv)) in old.ids.iter().enumerate() {
        if !old.live[slot] {
            continue;
        }
        let new_slot = tail.push(*id, *vv, old.vector(slot as u32, dim));
        state.points.relocate(id, Location::Tail(new_slot));
    }
    state.tail = tail;
}
