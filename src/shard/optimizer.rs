//! Background indexing: folds the exact-scan tail into a new HNSW segment, and merges segments
//! once deletes and updates have left too much of them dead.
//!
//! A build never blocks readers or writers: it copies the live vectors it will index under a read
//! lock, builds and dumps the segment into `segments/tmp-<id>/` with no lock held, renames it to
//! `segments/seg-<id>/` (fsynced), and then, under the write lock, moves each point whose vector is
//! still the one that was copied into the new segment. Points changed meanwhile simply stay where
//! their newer vector is. Only after `manifest.json` is atomically replaced are retired segment
//! directories deleted, so a crash at any instant leaves a manifest naming complete segments.

use super::point::PointId;
use super::state::{IndexedSegment, Location, Tail};
use super::{indexed_segment, Shard};
use crate::fsutil;
use crate::index::{Metric, Segment};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// A tail build also absorbs every segment at most this many times the tail's size (size-tiered
/// merging): searching one graph is cheaper than searching several, and a segment is rebuilt only
/// when enough new points have arrived to be worth it.
const TIER_FACTOR: usize = 4;
/// Merge everything into one segment when more than this many exist.
const MAX_SEGMENTS: usize = 4;
/// Rebuild a segment once this fraction of its entries is dead…
const MAX_DEAD_FRACTION: f64 = 0.25;
/// …and at least this many are (Qdrant's `vacuum_min_vector_number`).
const MIN_DEAD_TO_MERGE: usize = 1000;

const MANIFEST: &str = "manifest.json";
const IDS_FILE: &str = "ids.bin";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    segments: Vec<u64>,
}

/// What a finished build reports.
#[derive(Debug, Clone, Copy)]
pub struct BuildReport {
    pub points: usize,
    pub seconds: f64,
}

/// Loads the segments named by the manifest and removes any directory it does not name (left by a
/// crash mid-build or mid-merge). A segment that fails to load is skipped with an error logged:
/// its points are still in sled and return to the tail, to be indexed again.
pub fn load_segments(dir: &Path, metric: Metric) -> anyhow::Result<Vec<Arc<IndexedSegment>>> {
    let manifest: Manifest = match std::fs::read(dir.join(MANIFEST)) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
        Err(e) => return Err(e.into()),
    };
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let keep = name == MANIFEST
            || name
                .strip_prefix("seg-")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|id| manifest.segments.contains(&id));
        if !keep {
            tracing::info!(path = %entry.path().display(), "removing leftover from an interrupted build");
            let _ = std::fs::remove_dir_all(entry.path())
                .or_else(|_| std::fs::remove_file(entry.path()));
        }
    }
    let mut segments = Vec::new();
    for id in manifest.segments {
        let seg_dir = dir.join(format!("seg-{id}"));
        let started = Instant::now();
        match open_segment(&seg_dir, metric) {
            Ok((index, ids)) => {
                let seconds = started.elapsed().as_secs_f64();
                metrics::histogram!("shoal_segment_reopen_seconds").record(seconds);
                tracing::info!(
                    segment = id,
                    points = ids.len(),
                    seconds,
                    "segment reopened"
                );
                segments.push(Arc::new(indexed_segment(id, index, ids)));
            }
            Err(e) => {
                tracing::error!(segment = id, error = %e, "segment unreadable; its points will be re-indexed")
            }
        }
    }
    Ok(segments)
}

/// Opens one segment directory with its `ids.bin` (internal id → point id and vector version).
pub fn open_segment(dir: &Path, metric: Metric) -> anyhow::Result<(Segment, Vec<(PointId, u64)>)> {
    let bytes = std::fs::read(dir.join(IDS_FILE))?;
    let (ids, _): (Vec<(PointId, u64)>, _) =
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard())?;
    let index = Segment::open(dir, metric)?;
    anyhow::ensure!(
        index.len() == ids.len(),
        "segment holds {} vectors but {} ids",
        index.len(),
        ids.len()
    );
    Ok((index, ids))
}

impl Shard {
    /// Runs one optimisation step if one is due. Returns what it built, if anything.
    pub fn optimize(&self, indexing_threshold: usize) -> anyhow::Result<Option<BuildReport>> {
        self.optimize_cancellable(indexing_threshold, &AtomicBool::new(false))
    }

    /// [`Shard::optimize`] that gives up when `cancel` is set (the node is stopping): the build
    /// fails with [`crate::index::BuildCancelled`], its directory is removed, and the points
    /// stay in the tail, to be built again after the restart.
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
        let (merge, sources) = {
            let state = self.state.read();
            let needs_merge = state.segments.len() > MAX_SEGMENTS
                || state.segments.iter().any(|s| {
                    let dead = s.ids.len() - s.live.count();
                    dead >= MIN_DEAD_TO_MERGE
                        && dead as f64 > MAX_DEAD_FRACTION * s.ids.len() as f64
                });
            if !needs_merge && state.tail.live_count < indexing_threshold.max(1) {
                return Ok(None);
            }
            let mut ids = Vec::new();
            let mut vectors = Vec::new();
            let dim = self.config.dim;
            for (slot, (id, vv)) in state.tail.ids.iter().enumerate() {
                if state.tail.live[slot] {
                    ids.push((*id, *vv));
                    vectors.extend_from_slice(state.tail.vector(slot as u32, dim));
                }
            }
            let absorbed = state.segments.iter().filter(|seg| {
                needs_merge || seg.live.count() <= TIER_FACTOR * state.tail.live_count
            });
            for seg in absorbed {
                for (i, (id, vv)) in seg.ids.iter().enumerate() {
                    if seg.live.get(i as u32) {
                        ids.push((*id, *vv));
                        vectors.extend_from_slice(seg.index.vector(i as u32));
                    }
                }
            }
            (needs_merge, (ids, vectors))
        };
        let (ids, vectors) = sources;
        let report = BuildReport {
            points: ids.len(),
            seconds: 0.0,
        };
        let started = Instant::now();
        let segment = if ids.is_empty() {
            None
        } else {
            Some(self.build_segment(ids, vectors, cancel)?)
        };
        if self.is_retired() {
            // Removed while it built: leave nothing in a directory that a collection created
            // again with the same name may be using by now.
            if let Some(seg) = &segment {
                let _ = std::fs::remove_dir_all(self.dir.join(format!("seg-{}", seg.id)));
            }
            return Ok(None);
        }
        self.install(segment)?;
        let report = BuildReport {
            seconds: started.elapsed().as_secs_f64(),
            ..report
        };
        tracing::info!(
            points = report.points,
            seconds = report.seconds,
            merge,
            "segment built"
        );
        Ok(Some(report))
    }

    /// Builds and dumps a segment into `tmp-<id>/`, then renames it `seg-<id>/`. A build that
    /// fails (a full disk, a stop) removes its directory, so that nothing it wrote is left to
    /// fill the disk until the next restart.
    fn build_segment(
        &self,
        ids: Vec<(PointId, u64)>,
        vectors: Vec<f32>,
        cancel: &AtomicBool,
    ) -> anyhow::Result<IndexedSegment> {
        let id = self.clock.next();
        let tmp = self.dir.join(format!("tmp-{id}"));
        let _ = std::fs::remove_dir_all(&tmp);
        let built = (|| {
            std::fs::create_dir_all(&tmp)?;
            let (dim, metric, hnsw) = (self.config.dim, self.config.metric, self.config.hnsw);
            let index = Segment::build_cancellable(vectors, dim, metric, hnsw, &tmp, cancel)?;
            let bytes = bincode::serde::encode_to_vec(&ids, bincode::config::standard())?;
            fsutil::write_atomic(&tmp.join(IDS_FILE), &bytes)?;
            fsutil::rename_dir_durably(&tmp, &self.dir.join(format!("seg-{id}")))?;
            Ok(index)
        })();
        match built {
            Ok(index) => Ok(indexed_segment(id, index, ids)),
            Err(e) => {
                if let Err(rm) = std::fs::remove_dir_all(&tmp) {
                    if rm.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(path = %tmp.display(), error = %rm, "cannot remove a failed build");
                    }
                }
                Err(e)
            }
        }
    }

    /// Moves every point whose vector is unchanged since the copy into the new segment, compacts
    /// the tail, drops segments left with nothing live, and records the result in the manifest.
    fn install(&self, segment: Option<IndexedSegment>) -> anyhow::Result<()> {
        let segment = segment.map(Arc::new);
        let retired: Vec<u64>;
        {
            let mut state = self.state.write();
            if let Some(segment) = &segment {
                for (i, (id, vv)) in segment.ids.iter().enumerate() {
                    let current = state.points.get(id).filter(|e| e.vector_version == *vv);
                    let Some((old, version)) = current.map(|e| (e.location.clone(), e.version))
                    else {
                        continue;
                    };
                    state.retire(&old);
                    segment.admit(i as u32, version);
                    if let Some(e) = state.points.get_mut(id) {
                        e.location = Location::Segment(Arc::clone(segment), i as u32);
                    }
                }
            }
            compact_tail(&mut state, self.config.dim);
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
            let manifest = Manifest {
                segments: state.segments.iter().map(|s| s.id).collect(),
            };
            fsutil::write_atomic(&self.dir.join(MANIFEST), &serde_json::to_vec(&manifest)?)?;
        }
        for id in retired {
            let _ = std::fs::remove_dir_all(self.dir.join(format!("seg-{id}")));
        }
        Ok(())
    }
}

/// Rewrites the tail without its dead slots, repointing the entries that stay in it.
fn compact_tail(state: &mut super::state::ShardState, dim: usize) {
    let old = std::mem::take(&mut state.tail);
    let mut tail = Tail::default();
    for (slot, (id, vv)) in old.ids.iter().enumerate() {
        if !old.live[slot] {
            continue;
        }
        let new_slot = tail.push(*id, *vv, old.vector(slot as u32, dim));
        if let Some(e) = state.points.get_mut(id) {
            e.location = Location::Tail(new_slot);
        }
    }
    state.tail = tail;
}
