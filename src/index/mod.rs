//! The vector index: immutable HNSW segments and the distance kernels they share with the rest
//! of the node.
//!
//! # What a segment is
//! A [`Segment`] is an immutable set of prepared vectors (see [`Metric::prepare`]) with internal
//! ids `0..len`, indexed by an HNSW graph. The shard layer maps point ids to internal ids, keeps
//! liveness/filter bitsets, and passes them to [`Segment::search`] / [`Segment::exact`] as an
//! `accept` predicate; it also decides between HNSW and exact scan.
//!
//! # Build: hnsw_rs, then a flat copy (measured against hnswlib: `docs/benchmarks.md`)
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
//! # Persistence and reopening: one memory-mapped file per segment
//! `build` writes everything a search needs into `segment.shoal` (`file.rs`): the vectors, the
//! repaired graph (layer 0 at a fixed stride, the upper layers compact), the int8 codes when the
//! collection quantizes, and whatever the caller attaches (the shard's point ids, versions and
//! payloads). The built graph is then dropped from the heap and the segment is served from a
//! read-only mapping of that file: the kernel pages it in on demand and may evict it under
//! memory pressure, and `open` costs a few syscalls (header checks, no pass over the data), so a
//! reopened segment answers exactly like the built one without rebuilding anything. Only the
//! int8 codes of an `always_ram` quantization are copied into the heap — by the builder for a
//! new segment, in the background for a reopened one (searches read the mapped codes until the
//! copy is in place).
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
//! `distance.rs` metrics and kernels · `flat.rs` graph layout and search · `filtered_walk.rs`
//! the walks of a filter an index answers · `scratch.rs`
//! per-thread search state · `hnsw_build.rs` hnsw_rs build and extraction · `repair.rs` graph
//! improvement · `file.rs` the segment file · `slab.rs` heap-or-mapped arrays · `quantized.rs`
//! scalar int8 codes.

pub mod distance;
pub mod file;
mod filtered_walk;
mod flat;
mod hnsw_build;
mod hugepages;
pub mod quantized;
mod repair;
mod scratch;
mod slab;

#[cfg(test)]
mod tests;

pub use distance::Metric;
pub use file::{dir_format, DirFormat};
pub use repair::{RepairOptions, RepairStats};

use anyhow::{ensure, Context, Result};
use file::{names, Header, MappedFile, SpaceHeader};
pub use filtered_walk::{
    members_are_dense_near, members_are_rare_near, members_walk_pays, Traversal,
};
use flat::{FlatGraph, Scorer};
use quantized::{Int8Params, Int8Scorer};
use serde::{Deserialize, Serialize};
use slab::Slab;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

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

/// What a build cancelled by [`Segment::build_full`] fails with (downcast it from the
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

/// Qdrant's `quantization_config.scalar` with `type: int8`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalarInt8 {
    /// The fraction of components the code range covers (0.5..=1; Qdrant's default 0.99).
    pub quantile: f32,
    /// Keep the codes in RAM (copied from the file) rather than mapped.
    pub always_ram: bool,
}

/// How a search uses a quantized segment (Qdrant's `params.quantization`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantSearch {
    /// Search the float vectors as if there were no codes.
    pub ignore: bool,
    /// Recompute the distances of the candidates found on the codes with the float vectors.
    pub rescore: bool,
    /// Candidates taken from the codes per result wanted (≥ 1), when rescoring.
    pub oversampling: f32,
}

impl Default for QuantSearch {
    fn default() -> Self {
        QuantSearch {
            ignore: false,
            rescore: true,
            oversampling: 1.0,
        }
    }
}

/// What the caller stores in a segment's file next to the index (see `file.rs`).
#[derive(Debug, Default)]
pub struct Attachments {
    pub sections: Vec<(String, Vec<u8>)>,
    pub attributes: Vec<(String, u64)>,
}

/// The int8 codes of a segment and how to decode them.
struct Int8Index {
    params: Int8Params,
    codes: Slab<u8>,
    norms: Slab<f32>,
    /// Heap copies of `codes` and `norms` once [`Segment::keep_codes_in_ram`] has made them;
    /// searches use them from then on, the mapped ones until then.
    in_ram: OnceLock<(Slab<u8>, Slab<f32>)>,
}

impl Int8Index {
    fn new(params: Int8Params, codes: Slab<u8>, norms: Slab<f32>) -> Int8Index {
        Int8Index {
            params,
            codes,
            norms,
            in_ram: OnceLock::new(),
        }
    }

    /// The codes and norms searches read: the heap copies when made, else the file's.
    fn served(&self) -> (&Slab<u8>, &Slab<f32>) {
        match self.in_ram.get() {
            Some((codes, norms)) => (codes, norms),
            None => (&self.codes, &self.norms),
        }
    }
}

/// Bytes of a segment's parts: their size, and how much of it is in memory now.
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentMemory {
    pub vectors: (usize, usize),
    pub graph: (usize, usize),
    pub codes: (usize, usize),
}

/// An immutable HNSW-indexed set of prepared vectors with internal ids `0..len`, served from its
/// memory-mapped file.
pub struct Segment {
    graph: FlatGraph,
    metric: Metric,
    int8: Option<Int8Index>,
    file: Option<MappedFile>,
    repair_stats: RepairStats,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("len", &self.graph.n)
            .field("dim", &self.graph.dim)
            .field("metric", &self.metric)
            .field("top_level", &self.graph.top_level)
            .field("int8", &self.int8.as_ref().map(|q| q.params))
            .finish()
    }
}

/// The unnamed (default) vector space: the only one today.
const SPACE: &str = "";

impl Segment {
    /// Builds the graph with hnsw_rs over `vectors` (row-major, `n * dim`, already prepared),
    /// writes the segment file into `dir` (an existing directory) and returns the segment served
    /// from it.
    pub fn build(
        vectors: Vec<f32>,
        dim: usize,
        metric: Metric,
        params: HnswParams,
        dir: &Path,
    ) -> Result<Segment> {
        Self::build_with_options(
            vectors,
            dim,
            metric,
            params,
            dir,
            BuildOptions::default(),
            &AtomicBool::new(false),
        )
    }

    /// [`Segment::build`] with the experiments' knobs (the bench), stopping when `cancel` is set.
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
        Self::build_full(
            vectors,
            dim,
            metric,
            params,
            None,
            Attachments::default(),
            dir,
            opts,
            cancel,
        )
    }

    /// [`Segment::build`] with int8 quantization and the caller's attachments, stopping when
    /// `cancel` is set (a node shutting down): the flag is checked between chunks of
    /// [`hnsw_build::CANCEL_CHUNK`] insertions and before the file is written, and the build then
    /// fails with [`BuildCancelled`], leaving `dir` for the caller to remove.
    #[allow(clippy::too_many_arguments)]
    pub fn build_full(
        vectors: Vec<f32>,
        dim: usize,
        metric: Metric,
        params: HnswParams,
        int8: Option<ScalarInt8>,
        attachments: Attachments,
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
            anyhow::bail!("vector {} has a non-finite component", i / dim);
        }
        ensure!(
            dir.is_dir(),
            "segment directory {} does not exist",
            dir.display()
        );
        let (graph, repair_stats) = if n == 0 {
            (FlatGraph::empty(dim, mnc), RepairStats::default())
        } else {
            let mut g = hnsw_build::build(vectors, dim, metric, mnc, ef_construct, cancel)?;
            let stats = repair::improve(&mut g, metric, opts.repair);
            tracing::debug!(?stats, n, "segment graph repaired");
            (g, stats)
        };
        let coded = int8.map(|cfg| {
            let p = quantized::fit(&graph.vectors, cfg.quantile);
            let (codes, norms) = quantized::encode(&graph.vectors, dim, p);
            (p, codes, norms)
        });
        let space = SpaceHeader {
            name: SPACE.into(),
            metric,
            dim: dim as u64,
            m: params.m as u64,
            ef_construct: ef_construct as u64,
            max_nb_connection: mnc as u64,
            m0: graph.m0 as u64,
            m_up: graph.m_up as u64,
            entry: graph.entry,
            top_level: graph.top_level,
            int8: coded.as_ref().map(|c| c.0),
        };
        let header = Header {
            n: n as u64,
            spaces: vec![space],
            sections: Vec::new(),
            attributes: attachments.attributes,
        };
        let mut sections: Vec<(String, &[u8])> = vec![
            (names::vectors(SPACE), graph.vectors.as_bytes()),
            (names::layer0(SPACE), graph.layer0.as_bytes()),
            (names::levels(SPACE), graph.levels.as_bytes()),
            (names::upper_offset(SPACE), graph.upper_offset.as_bytes()),
            (names::upper(SPACE), graph.upper.as_bytes()),
        ];
        if let Some((_, codes, norms)) = &coded {
            sections.push((names::int8_codes(SPACE), codes));
            sections.push((format!("{SPACE}/int8.norms"), slab::bytes_of(norms)));
        }
        for (name, bytes) in &attachments.sections {
            sections.push((name.clone(), bytes));
        }
        file::write(dir, header, &sections)?;
        drop(sections);
        drop(coded);
        drop(graph);
        let mut seg = Segment::open(dir, metric)?;
        seg.repair_stats = repair_stats;
        Ok(seg)
    }

    /// Opens a segment written by [`Segment::build`]: maps its file and checks the header (the
    /// section checksums are checked by [`Segment::verify`]).
    pub fn open(dir: &Path, metric: Metric) -> Result<Segment> {
        let file = MappedFile::open(dir)?;
        let space = file
            .header
            .spaces
            .iter()
            .find(|s| s.name == SPACE)
            .cloned()
            .with_context(|| format!("segment in {} has no default vector", dir.display()))?;
        ensure!(
            space.metric == metric,
            "segment in {} was built for {:?}, opened as {:?}",
            dir.display(),
            space.metric,
            metric
        );
        let n = usize::try_from(file.header.n)?;
        let (dim, m0, m_up) = (space.dim as usize, space.m0 as usize, space.m_up as usize);
        ensure!(dim >= 1 && m0 >= 1 && m_up >= 1, "bad segment parameters");
        let levels: Slab<u8> = file.slab(&names::levels(SPACE), n)?;
        let upper_len = file
            .section(&names::upper(SPACE))
            .map(|s| s.len as usize / 4)
            .unwrap_or(0);
        let graph = FlatGraph {
            n,
            dim,
            vectors: file.slab(&names::vectors(SPACE), n * dim)?,
            m0,
            m_up,
            layer0: file.slab(&names::layer0(SPACE), n * (1 + m0))?,
            levels,
            upper_offset: file.slab(&names::upper_offset(SPACE), n)?,
            upper: file.slab(&names::upper(SPACE), upper_len)?,
            entry: space.entry,
            top_level: space.top_level,
        };
        if n > 0 {
            ensure!(
                (graph.entry as usize) < n && graph.levels[graph.entry as usize] == graph.top_level,
                "segment in {} has a bad entry point",
                dir.display()
            );
        }
        let int8 = match space.int8 {
            None => None,
            Some(params) => Some(Int8Index::new(
                params,
                file.slab(&names::int8_codes(SPACE), n * dim)?,
                file.slab(&format!("{SPACE}/int8.norms"), n)?,
            )),
        };
        Ok(Segment {
            graph,
            metric,
            int8,
            file: Some(file),
            repair_stats: RepairStats::default(),
        })
    }

    /// Copies the int8 codes into the heap (Qdrant's `always_ram`), on huge pages where possible.
    /// Takes `&self` so that a reopened segment can serve from the mapped codes while a
    /// background thread copies them (a reopen does not wait for a pass over every code).
    pub fn keep_codes_in_ram(&self) {
        if let Some(q) = &self.int8 {
            if q.codes.is_mapped() && q.in_ram.get().is_none() {
                let codes = hugepages::on_huge_pages(q.codes.as_slice()).into();
                let _ = q.in_ram.set((codes, q.norms.to_vec().into()));
            }
        }
    }

    /// Verifies the checksum of every section of the file (reads all of it).
    pub fn verify(&self) -> Result<()> {
        match &self.file {
            Some(f) => f.verify(),
            None => Ok(()),
        }
    }

    /// The file's header.
    pub fn header(&self) -> Option<&Header> {
        self.file.as_ref().map(|f| &f.header)
    }

    /// A section the caller attached at build time.
    pub fn attachment(&self, name: &str) -> Option<&[u8]> {
        self.file.as_ref()?.bytes(name)
    }

    /// An attached section as `count` values of a plain type (u64, u32, f32, u8).
    pub fn attachment_array<T: Copy + 'static>(
        &self,
        name: &str,
        count: usize,
    ) -> Result<AttachedArray<T>> {
        let f = self.file.as_ref().context("segment has no file")?;
        Ok(AttachedArray(f.slab(name, count)?))
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

    /// Whether the segment was built as `params` and `int8` ask (a collection's configuration
    /// changed since, when not: the optimizer rebuilds it). A segment without a header (built
    /// in memory) counts as built so.
    pub fn built_with(&self, params: HnswParams, int8: Option<ScalarInt8>) -> bool {
        let Some(space) = self
            .header()
            .and_then(|h| h.spaces.iter().find(|s| s.name == SPACE))
        else {
            return true;
        };
        // A build widens ef_construct to at least the connections per node (`build_full`).
        let ef_construct = params
            .ef_construct
            .max(space.max_nb_connection as usize)
            .max(1);
        space.m as usize == params.m
            && space.ef_construct as usize == ef_construct
            && space.int8.map(|p| p.quantile) == int8.map(|q| q.quantile)
    }

    /// The int8 parameters when the segment is quantized.
    pub fn int8(&self) -> Option<Int8Params> {
        self.int8.as_ref().map(|q| q.params)
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

    /// [`Segment::search`] on the int8 codes when the segment has them (and `how` does not say
    /// to ignore them): `max(ef, ceil(k · oversampling))` candidates from the codes, rescored
    /// with the float vectors unless `how.rescore` is off (then the distances are the
    /// approximate ones and `k` are taken from a beam of `ef`).
    pub fn search_quantized<F: Fn(u32) -> bool>(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        how: QuantSearch,
        accept: F,
    ) -> Vec<(f32, u32)> {
        self.walk(query, k, ef, how, &Accepting(accept))
    }

    /// [`Segment::search_quantized`] among the members of `only` (a payload index's candidates
    /// and the rest of a filter), walking layer 0 as `only.traversal` says: see
    /// `FlatGraph::search_filtered`.
    pub fn search_filtered<M: Fn(u32) -> bool, A: Fn(u32) -> bool>(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        how: QuantSearch,
        only: &Members<M, A>,
    ) -> Vec<(f32, u32)> {
        self.walk(query, k, ef, how, only)
    }

    /// A graph walk on the float vectors, or on the int8 codes with the beam rescored.
    fn walk(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        how: QuantSearch,
        w: &impl Walk,
    ) -> Vec<(f32, u32)> {
        let Some(q) = self.int8.as_ref().filter(|_| !how.ignore) else {
            return w.walk(
                &self.graph,
                &self.graph.float_scorer(self.metric, query),
                k,
                ef,
            );
        };
        let (codes, norms) = q.served();
        let sc = Int8Scorer::new(self.metric, query, q.params, codes, norms, self.graph.dim);
        if !how.rescore {
            return w.walk(&self.graph, &sc, k, ef);
        }
        // Qdrant rescores `limit × oversampling` of the beam; at oversampling 1 that only
        // reorders the codes' own top `limit`, and on the reference data the codes' top 10 hold
        // 0.869 of the true 10 at ef 32 (tight clusters differ by less than a code step). The
        // whole beam rescored gives 0.943 there (f32: 0.933) for ~3 µs of a ~45 µs search: so
        // the whole beam is rescored, and never fewer than Qdrant's count.
        let want = (((k as f32) * how.oversampling.max(1.0)).ceil() as usize).max(ef);
        let found = w.walk(&self.graph, &sc, want, want);
        let exact = self.graph.float_scorer(self.metric, query);
        for &(_, id) in &found {
            exact.prefetch(id);
        }
        let mut rescored: Vec<(f32, u32)> = found
            .into_iter()
            .map(|(_, id)| (exact.dist(id), id))
            .collect();
        rescored.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        rescored.truncate(k);
        rescored
    }

    /// Exact k nearest among accepted ids (brute-force scan), same output shape.
    pub fn exact<F: Fn(u32) -> bool>(&self, query: &[f32], k: usize, accept: F) -> Vec<(f32, u32)> {
        self.graph.exact(self.metric, query, k, accept)
    }

    /// Exact k-NN among the given ids (a payload index's candidates), out-of-range ids skipped.
    pub fn exact_among(
        &self,
        query: &[f32],
        k: usize,
        ids: impl IntoIterator<Item = u32>,
    ) -> Vec<(f32, u32)> {
        let n = self.len() as u32;
        let sc = self.graph.float_scorer(self.metric, query);
        flat::exact_among(&sc, ids.into_iter().filter(|&i| i < n), k)
    }

    /// What the parts of this segment take, and how much of each is resident (`mincore`).
    pub fn memory(&self) -> SegmentMemory {
        let part = |bytes: &[u8], mapped: bool| {
            let resident = if mapped {
                crate::memory::resident_bytes(bytes)
            } else {
                bytes.len()
            };
            (bytes.len(), resident)
        };
        let g = &self.graph;
        let graph_parts = [
            part(g.layer0.as_bytes(), g.layer0.is_mapped()),
            part(g.levels.as_bytes(), g.levels.is_mapped()),
            part(g.upper_offset.as_bytes(), g.upper_offset.is_mapped()),
            part(g.upper.as_bytes(), g.upper.is_mapped()),
        ];
        let graph = graph_parts
            .iter()
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let codes = self.int8.as_ref().map_or((0, 0), |q| {
            let (codes, norms) = q.served();
            let c = part(codes.as_bytes(), codes.is_mapped());
            let n = part(norms.as_bytes(), norms.is_mapped());
            (c.0 + n.0, c.1 + n.1)
        });
        SegmentMemory {
            vectors: part(g.vectors.as_bytes(), g.vectors.is_mapped()),
            graph,
            codes,
        }
    }

    /// What the post-build repair did (zeros for a reopened segment).
    #[doc(hidden)]
    pub fn repair_stats(&self) -> RepairStats {
        self.repair_stats
    }
}

/// One of the graph walks a search can make, generic over the scorer (floats or int8 codes).
trait Walk {
    fn walk<S: Scorer>(&self, g: &FlatGraph, sc: &S, k: usize, ef: usize) -> Vec<(f32, u32)>;
}

/// The walk that scores every node it meets and keeps the accepted ones.
struct Accepting<F>(F);

impl<F: Fn(u32) -> bool> Walk for Accepting<F> {
    fn walk<S: Scorer>(&self, g: &FlatGraph, sc: &S, k: usize, ef: usize) -> Vec<(f32, u32)> {
        g.search_with(sc, k, ef, &self.0)
    }
}

/// What [`Segment::search_filtered`] walks: the `member` entries (a bitset test, about `count`
/// of them) that `accept` takes (asked only of members close enough to enter the beam), and how.
pub struct Members<M, A> {
    pub count: usize,
    pub member: M,
    pub accept: A,
    pub traversal: Traversal,
}

impl<M: Fn(u32) -> bool, A: Fn(u32) -> bool> Walk for Members<M, A> {
    fn walk<S: Scorer>(&self, g: &FlatGraph, sc: &S, k: usize, ef: usize) -> Vec<(f32, u32)> {
        let (m, a) = (&self.member, &self.accept);
        g.search_filtered(sc, k, ef, self.count, m, a, self.traversal)
    }
}

/// An attached section viewed as an array (mapped).
pub struct AttachedArray<T: Copy + 'static>(Slab<T>);

impl<T: Copy + 'static> std::ops::Deref for AttachedArray<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        self.0.as_slice()
    }
}

impl<T: Copy + 'static> AttachedArray<T> {
    /// How many bytes of the array are resident now.
    pub fn resident_bytes(&self) -> usize {
        crate::memory::resident_bytes(self.0.as_bytes())
    }
}

/// Views plain values as bytes, to attach them.
pub fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    slab::bytes_of(v)
}
