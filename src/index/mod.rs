//! The vector index: immutable HNSW segments and the distance kernels they share with the rest
//! of the node.
//!
//! # What a segment is
//! A [`Segment`] is an immutable set of prepared vectors (see [`Metric::prepare`]) with internal
//! ids `0..len`, indexed by an HNSW graph. The shard layer maps point ids to internal ids, keeps
//! liveness/filter bitsets, and passes them to [`Segment::search`] / [`Segment::exact`] as an
//! `accept` predicate; it also decides between HNSW and exact scan.
//!
//! # Build: hnsw_rs, then a flat copy (design brief: `/work/shared/NOTES.md`)
//! The graph is built by hnsw_rs (`Hnsw::new(max_nb_connection, n, 16, ef_construct, ShoalDist)`
//! and `parallel_insert_slice`, data id = internal id), then copied into flat arrays
//! (`flat.rs`): one contiguous vector slab, fixed-stride layer-0 adjacency, compact upper layers.
//! hnsw_rs's own search is not used: it makes one greedy hop per upper layer and walks
//! `Arc`/`RwLock`/`HashMap` structures; ours is textbook HNSW (greedy until no improvement on
//! every upper layer, then an `ef` beam on layer 0) with a generation-tagged visited array and
//! packed-key heaps in per-thread scratch (`scratch.rs`), prefetching, and AVX2/FMA kernels
//! chosen at run time (`distance.rs`). After extraction the graph is repaired (`repair.rs`):
//! nodes unreachable from the entry point on a layer get an in-edge from their nearest reachable
//! node (≈200 of 100k on layer 0 with the default mapping, ≈600 with `max_nb_connection = 16`).
//!
//! # Persistence and reopening
//! `build` writes into its (empty) directory: hnsw_rs's dump (`hnsw.hnsw.graph`,
//! `hnsw.hnsw.data`, via hnsw_rs's `file_dump`, then fsynced), and last, atomically,
//! `segment.shoal` (parameters, length + checksum of both dump files, the improved adjacency,
//! its own checksum; `persist.rs`). `open` reads and verifies `segment.shoal`, verifies the dump
//! files against it, reloads the dump with hnsw_rs's `HnswIo::load_hnsw_with_dist`, extracts the
//! vectors (and checks the reloaded graph's layers and entry point agree), and installs the
//! improved adjacency from `segment.shoal`, so the reopened segment answers exactly like the
//! built one. Nothing is rebuilt. A missing, truncated or corrupt file is an `Err`.
//!
//! # Mapping Qdrant's `m` to hnsw_rs: `max_nb_connection = ceil(1.5·m)`
//! (so `m = 16` → 24: up to 48 links per node on layer 0, 24 above; capped at 128.)
//! Measured with `shoal-bench` (release, 1 query thread, 2-core machine) on the NOTES data:
//! 100k × 128, 100 Gaussian clusters (centres N(0, 4²), points N(centre, 1)), 1000 queries, L2,
//! `ef_construct = 100`, reconnect repair on. recall@10 / QPS:
//!
//! | max_nb_connection | ef 32 | ef 48 | ef 64 | ef 100 | ef 256 |
//! |---|---|---|---|---|---|
//! | 16 (= m), seed 42 | 0.897 / 17.6k | 0.928 / 13.1k | 0.945 / 11.1k | 0.959 / 8.0k | 0.976 / 5.1k |
//! | 16 (= m), seed 7  | 0.883 / 16.7k | 0.916 / 12.4k | 0.932 / 10.5k | **0.945** / 8.1k | 0.956 / 4.9k |
//! | 24 (1.5·m), seed 42 | 0.952 / 13.0k | 0.979 / 10.2k | 0.991 / 8.6k | 0.996 / 6.9k | 0.999 / 4.2k |
//! | 24 (1.5·m), seed 7  | 0.944 / 12.7k | 0.971 / 9.8k | 0.980 / 8.4k | 0.985 / 6.6k | 0.995 / 4.1k |
//! | 32 (2·m), seed 42 | 0.957 / 10.8k | 0.979 / 8.9k | 0.990 / 7.6k | 0.996 / 5.8k | 1.000 / 3.9k |
//!
//! With `max_nb_connection = m` (hnswlib's and Qdrant's meaning of `m`) the hnsw_rs graph does
//! not reliably reach 0.95 at Qdrant's default `hnsw_ef = 100` (0.945 on one of two builds; the
//! parallel build is not deterministic) and tops out near 0.96–0.98 however large `ef` is. 1.5·m
//! gives ≥ 0.985 at `ef = 100` with margin, and is on the same recall/QPS front as 2·m for
//! recall ≥ 0.95 while storing a quarter fewer links (disk 132.5 MB vs 139.7 MB; 124 MB at 1·m).
//! For reference (NOTES): hnswlib M=16 gives 0.957 / 12.4k at ef 48 and 0.982 / 11.0k at ef 64.
//! Build takes 20–32 s for this data (hnsw_rs's parallel insert on 2 cores; it varied that much
//! between identical runs), reopen ≈ 2 s.
//!
//! # Contents
//! `distance.rs` metrics and kernels · `flat.rs` graph layout and search · `scratch.rs`
//! per-thread search state · `hnsw_build.rs` hnsw_rs build/dump/reload/extract · `repair.rs`
//! graph improvement · `persist.rs` segment file and integrity checks.

pub mod distance;
mod flat;
mod hnsw_build;
mod hugepages;
mod persist;
mod repair;
mod scratch;

#[cfg(test)]
mod tests;

pub use distance::Metric;
pub use repair::{RepairOptions, RepairStats};

use anyhow::{bail, ensure, Context, Result};
use flat::FlatGraph;
use persist::{FileCheck, SegmentFile};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Asks the CPU to start loading the cache line at `p`: a hint, never a fault, whatever the
/// address.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Qdrant's `hnsw_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construct: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construct: 100,
        }
    }
}

/// hnsw_rs rejects (exits the process on) more than 256 and dumps the value as a `u8`.
const MAX_NB_CONNECTION: usize = 128;

impl HnswParams {
    /// hnsw_rs's `max_nb_connection` for this `m`: `ceil(1.5·m)`, at most 128 (see the module
    /// doc for the measurements behind it).
    pub fn max_nb_connection(&self) -> usize {
        (self.m.max(1) * 3).div_ceil(2).min(MAX_NB_CONNECTION)
    }
}

/// What a build cancelled by [`Segment::build_cancellable`] fails with (downcast it from the
/// `anyhow::Error` to tell a stop from a failure).
#[derive(Debug, thiserror::Error)]
#[error("index build cancelled")]
pub struct BuildCancelled;

/// Knobs for experiments (the bench); the defaults are what `Segment::build` uses.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildOptions {
    /// Overrides [`HnswParams::max_nb_connection`].
    pub max_nb_connection: Option<usize>,
    pub repair: RepairOptions,
}

/// An immutable HNSW-indexed set of prepared vectors with internal ids `0..len`.
pub struct Segment {
    graph: FlatGraph,
    metric: Metric,
    repair_stats: RepairStats,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("len", &self.graph.n)
            .field("dim", &self.graph.dim)
            .field("metric", &self.metric)
            .field("top_level", &self.graph.top_level)
            .finish()
    }
}

impl Segment {
    /// Builds the graph with hnsw_rs over `vectors` (row-major, `n * dim`, already prepared),
    /// writes everything needed to reopen it into `dir` (an existing empty directory, every file
    /// fsynced, `segment.shoal` last and atomically) and returns the searchable segment.
    pub fn build(
        vectors: Vec<f32>,
        dim: usize,
        metric: Metric,
        params: HnswParams,
        dir: &Path,
    ) -> Result<Segment> {
        Self::build_cancellable(vectors, dim, metric, params, dir, &AtomicBool::new(false))
    }

    /// [`Segment::build`] that stops when `cancel` is set (a node shutting down): the flag is
    /// checked between chunks of [`hnsw_build::CANCEL_CHUNK`] insertions and before the dump,
    /// and the build then fails with [`BuildCancelled`], leaving `dir` for the caller to remove.
    pub fn build_cancellable(
        vectors: Vec<f32>,
        dim: usize,
        metric: Metric,
        params: HnswParams,
        dir: &Path,
        cancel: &AtomicBool,
    ) -> Result<Segment> {
        Self::build_with_options(
            vectors,
            dim,
            metric,
            params,
            dir,
            BuildOptions::default(),
            cancel,
        )
    }

    /// [`Segment::build_cancellable`] with the experiments' knobs (the bench).
    #[doc(hidden)]
    pub fn build_with_options(
        vectors: Vec<f32>,
        dim: usize,
        metric: Metric,
        params: HnswParams,
        dir: &Path,
        opts: BuildOptions,
        cancel: &AtomicBool,
    ) -> Result<Segment> {
        ensure!(dim > 0, "vector dimension must be positive");
        ensure!(
            vectors.len().is_multiple_of(dim),
            "{} floats do not make vectors of dimension {dim}",
            vectors.len()
        );
        let n = vectors.len() / dim;
        ensure!(
            n < u32::MAX as usize,
            "too many vectors for one segment: {n}"
        );
        ensure!(
            params.m >= 1,
            "hnsw m must be at least 1 (m = 0, no graph, is the caller's exact scan)"
        );
        let mnc = opts
            .max_nb_connection
            .unwrap_or_else(|| params.max_nb_connection());
        ensure!(
            (2..=MAX_NB_CONNECTION).contains(&mnc),
            "max_nb_connection {mnc} out of range (2..=128)"
        );
        let ef_construct = params.ef_construct.max(mnc).max(1);
        if let Some(i) = vectors.iter().position(|x| !x.is_finite()) {
            bail!("vector {} has a non-finite component", i / dim);
        }
        ensure!(
            dir.is_dir(),
            "segment directory {} does not exist",
            dir.display()
        );

        let (graph, dump, repair_stats) = if n == 0 {
            (
                FlatGraph::empty(dim, mnc),
                Vec::new(),
                RepairStats::default(),
            )
        } else {
            let mut g =
                hnsw_build::build_and_dump(vectors, dim, metric, mnc, ef_construct, dir, cancel)?;
            let mut dump = Vec::new();
            for name in dump_files() {
                persist::fsync_file(&dir.join(&name))?;
                dump.push(persist::check_file(dir, &name)?);
            }
            let stats = repair::improve(&mut g, metric, opts.repair);
            tracing::debug!(?stats, n, "segment graph repaired");
            (g, dump, stats)
        };
        let file = SegmentFile {
            metric,
            m: params.m,
            ef_construct,
            max_nb_connection: mnc,
            n,
            dim,
            dump,
            m0: graph.m0,
            m_up: graph.m_up,
            entry: graph.entry,
            top_level: graph.top_level,
            levels: graph.levels.clone(),
            layer0: graph.layer0.clone(),
            upper_offset: graph.upper_offset.clone(),
            upper: graph.upper.clone(),
        };
        persist::write_segment_file(dir, &file)?;
        Ok(Segment::searchable(graph, metric, repair_stats))
    }

    /// Reopens a segment written by [`Segment::build`] without rebuilding it.
    pub fn open(dir: &Path, metric: Metric) -> Result<Segment> {
        let file = persist::read_segment_file(dir)?;
        ensure!(
            file.metric == metric,
            "segment in {} was built for {:?}, opened as {:?}",
            dir.display(),
            file.metric,
            metric
        );
        if file.n == 0 {
            ensure!(file.dump.is_empty(), "empty segment lists dump files");
            return Ok(Segment {
                graph: file.graph_with_vectors(Vec::new()),
                metric,
                repair_stats: RepairStats::default(),
            });
        }
        let expected: Vec<String> = dump_files();
        ensure!(
            file.dump.iter().map(|c| &c.name).eq(expected.iter()),
            "segment file lists unexpected dump files"
        );
        for want in &file.dump {
            let got: FileCheck = persist::check_file(dir, &want.name)?;
            ensure!(
                got.len == want.len,
                "{} has {} bytes, expected {}",
                want.name,
                got.len,
                want.len
            );
            ensure!(
                got.hash == want.hash,
                "{} is corrupt (checksum mismatch)",
                want.name
            );
        }
        let reloaded = hnsw_build::load(dir, metric, file.n, file.dim, file.max_nb_connection)
            .with_context(|| format!("reopening segment {}", dir.display()))?;
        ensure!(
            reloaded.levels == file.levels,
            "reloaded hnsw_rs layers disagree with segment file"
        );
        ensure!(
            reloaded.entry == file.entry,
            "reloaded hnsw_rs entry point disagrees with segment file"
        );
        let graph = file.graph_with_vectors(reloaded.vectors);
        Ok(Segment::searchable(graph, metric, RepairStats::default()))
    }

    /// The finished segment, its big arrays moved onto huge pages (see [`hugepages`]).
    fn searchable(mut graph: FlatGraph, metric: Metric, repair_stats: RepairStats) -> Segment {
        graph.vectors = hugepages::on_huge_pages(std::mem::take(&mut graph.vectors));
        graph.layer0 = hugepages::on_huge_pages(std::mem::take(&mut graph.layer0));
        Segment {
            graph,
            metric,
            repair_stats,
        }
    }

    pub fn len(&self) -> usize {
        self.graph.n
    }

    pub fn is_empty(&self) -> bool {
        self.graph.n == 0
    }

    pub fn dim(&self) -> usize {
        self.graph.dim
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The stored (prepared) vector of internal id `id`. Panics if `id >= len()`.
    pub fn vector(&self, id: u32) -> &[f32] {
        self.graph.vector(id)
    }

    /// Approximate k nearest among ids for which `accept(id)` is true, with beam width
    /// `max(ef, k)`. Returns `(internal distance, id)` ascending, at most `k` entries. Rejected
    /// ids are still traversed, never returned.
    pub fn search<F: Fn(u32) -> bool>(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: F,
    ) -> Vec<(f32, u32)> {
        self.graph.search(self.metric, query, k, ef, accept)
    }

    /// Exact k nearest among accepted ids (brute-force scan), same output shape.
    pub fn exact<F: Fn(u32) -> bool>(&self, query: &[f32], k: usize, accept: F) -> Vec<(f32, u32)> {
        self.graph.exact(self.metric, query, k, accept)
    }

    /// What the post-build repair did (zeros for a reopened segment).
    #[doc(hidden)]
    pub fn repair_stats(&self) -> RepairStats {
        self.repair_stats
    }
}

fn dump_files() -> Vec<String> {
    let b = hnsw_build::DUMP_BASENAME;
    vec![format!("{b}.hnsw.graph"), format!("{b}.hnsw.data")]
}
