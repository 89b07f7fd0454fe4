//! Everything that touches hnsw_rs: building the graph (parallel insert), dumping it with
//! hnsw_rs's own `file_dump`, reloading the dump with `HnswIo`, and extracting a [`FlatGraph`]
//! from the in-memory `Hnsw`.
//!
//! hnsw_rs is given its own distance type, [`ShoalDist`], computed with our kernels, because
//! hnsw_rs asserts that distances are ≥ 0 (its `DistDot` even asserts `1 - a·b ≥ 0`).
//! Cosine is `1 - a·b` on normalised vectors (clamped at 0), Euclid squared L2, Manhattan L1.
//!
//! **Dot** is not a metric, and the HNSW pruning heuristic fed with `-a·b` keeps almost nothing
//! (a large-norm neighbour "covers" every other candidate), which gave recall@10 ≈ 0.8 at ef 256
//! on 3k clustered points. So for Dot segments hnsw_rs indexes the standard MIPS-to-L2 reduction
//! instead: each vector gets one extra component `sqrt(R² - |x|²)` (R = the largest norm), which
//! puts every point on a sphere where `|x' - y'|² = 2R² - 2 x·y`, and the graph is an ordinary L2
//! graph there. A query `(q, 0)` ranks points by `|q|² + R² - 2 q·x`, i.e. exactly by `-q·x`,
//! so searching that graph with the internal Dot distance is the L2 search on the augmented
//! data. The dump therefore holds `dim + 1` floats per Dot vector; the extra one is dropped on
//! extraction.
//!
//! The dump records the distance type's path (`shoal::index::hnsw_build::ShoalDist`); moving or
//! renaming it makes older dumps fail to open (with an error, not a panic).
//!
//! hnsw_rs panics or even calls `process::exit` on some malformed dumps, so [`load`] must only
//! be called on files whose length and checksum `persist` has verified; it is additionally run
//! under `catch_unwind`.

use super::distance::Metric;
use super::flat::{FlatGraph, NO_UPPER};
use anyhow::{anyhow, bail, ensure, Context, Result};
use hnsw_rs::prelude::{AnnT, Distance, Hnsw, HnswIo};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Points inserted between two looks at the cancellation flag: well under a second of a build
/// on one core at 128 dimensions.
pub(crate) const CANCEL_CHUNK: usize = 2048;

/// Base name of the hnsw_rs dump: `hnsw.hnsw.graph` and `hnsw.hnsw.data`.
pub(crate) const DUMP_BASENAME: &str = "hnsw";
/// hnsw_rs's layer count; its dump refuses any other value.
const NB_LAYER: usize = 16;

/// The distance hnsw_rs computes with during the build (see the module doc).
#[derive(Clone, Copy, Debug)]
pub struct ShoalDist {
    metric: Metric,
}

impl Distance<f32> for ShoalDist {
    #[inline]
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        self.metric.distance(va, vb).max(0.0)
    }
}

/// How a segment's vectors are stored in the hnsw_rs dump.
fn graph_space(metric: Metric) -> (ShoalDist, usize) {
    match metric {
        Metric::Dot => (
            ShoalDist {
                metric: Metric::Euclid,
            },
            1,
        ),
        m => (ShoalDist { metric: m }, 0),
    }
}

/// The MIPS-to-L2 augmentation of Dot vectors (see the module doc).
fn augment(vectors: &[f32], dim: usize) -> Vec<f32> {
    let norms: Vec<f32> = vectors
        .chunks_exact(dim)
        .map(|v| super::distance::kernels::dot(v, v))
        .collect();
    let r2 = norms.iter().copied().fold(0.0f32, f32::max);
    let mut out = Vec::with_capacity(vectors.len() + norms.len());
    for (v, n2) in vectors.chunks_exact(dim).zip(norms) {
        out.extend_from_slice(v);
        out.push((r2 - n2).max(0.0).sqrt());
    }
    out
}

fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(anyhow!("hnsw_rs panicked during {what}")),
    }
}

/// Builds the graph with hnsw_rs, dumps it into `dir` and returns the extracted flat graph.
/// `n >= 1`; the vectors are already validated (finite, `n * dim` long).
pub(crate) fn build_and_dump(
    vectors: Vec<f32>,
    dim: usize,
    metric: Metric,
    max_nb_connection: usize,
    ef_construct: usize,
    dir: &Path,
    cancel: &AtomicBool,
) -> Result<FlatGraph> {
    let n = vectors.len() / dim;
    let (dist, extra) = graph_space(metric);
    let augmented = if extra > 0 {
        Some(augment(&vectors, dim))
    } else {
        None
    };
    let stored = augmented.as_deref().unwrap_or(&vectors);
    let hnsw: Hnsw<f32, ShoalDist> = Hnsw::new(max_nb_connection, n, NB_LAYER, ef_construct, dist);
    // In chunks, so that a stopping node does not wait for the whole build (hnsw_rs inserts
    // incrementally: chunk after chunk builds the graph one call would).
    let row = dim + extra;
    for (c, rows) in stored.chunks(row * CANCEL_CHUNK).enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(super::BuildCancelled.into());
        }
        let items: Vec<(&[f32], usize)> = rows
            .chunks_exact(row)
            .enumerate()
            .map(|(i, v)| (v, c * CANCEL_CHUNK + i))
            .collect();
        guard("insert", || {
            hnsw.parallel_insert_slice(&items);
            Ok(())
        })?;
    }
    drop(augmented);
    if cancel.load(Ordering::Relaxed) {
        return Err(super::BuildCancelled.into());
    }
    ensure!(
        dir.is_dir(),
        "segment directory {} does not exist",
        dir.display()
    );
    let name = guard("dump", || hnsw.file_dump(dir, DUMP_BASENAME))
        .with_context(|| format!("hnsw_rs dump into {}", dir.display()))?;
    ensure!(
        name == DUMP_BASENAME,
        "hnsw_rs dumped under an unexpected name {name}"
    );
    let entry = read_entry_point(dir)?;
    // The flat copy takes its vectors from our buffer: the same values hnsw_rs holds.
    extract(
        &hnsw,
        metric,
        Some(vectors),
        n,
        dim,
        max_nb_connection,
        entry,
    )
}

/// Reloads a dump (already verified by checksum) and extracts the flat graph.
pub(crate) fn load(
    dir: &Path,
    metric: Metric,
    n: usize,
    dim: usize,
    max_nb_connection: usize,
) -> Result<FlatGraph> {
    let entry = read_entry_point(dir)?;
    guard("reload", || {
        let io = HnswIo::new(dir, DUMP_BASENAME);
        let hnsw: Hnsw<f32, ShoalDist> = io
            .load_hnsw_with_dist(graph_space(metric).0)
            .with_context(|| format!("hnsw_rs reload from {}", dir.display()))?;
        ensure!(
            hnsw.get_nb_point() == n,
            "dump holds {} points, expected {n}",
            hnsw.get_nb_point()
        );
        ensure!(
            hnsw.get_max_nb_connection() as usize == max_nb_connection,
            "dump has max_nb_connection {}, expected {max_nb_connection}",
            hnsw.get_max_nb_connection()
        );
        extract(&hnsw, metric, None, n, dim, max_nb_connection, entry)
    })
}

/// The entry point is `pub(crate)` in hnsw_rs; its dump writes it last in the graph file:
/// origin id (u64), layer (u8), rank in layer (i32), native endian.
fn read_entry_point(dir: &Path) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let path = dir.join(format!("{DUMP_BASENAME}.hnsw.graph"));
    let mut tail = [0u8; 13];
    std::fs::File::open(&path)
        .and_then(|mut f| {
            f.seek(SeekFrom::End(-13))?;
            f.read_exact(&mut tail)
        })
        .with_context(|| format!("reading the entry point from {}", path.display()))?;
    let mut id = [0u8; 8];
    id.copy_from_slice(&tail[..8]);
    Ok(u64::from_ne_bytes(id))
}

/// Copies hnsw_rs's graph into a [`FlatGraph`]. Data ids are our internal ids. Vectors come from
/// `vectors` when given, else from the points. Malformed input (ids out of range or repeated,
/// wrong dimensions, an entry point not on the top layer) is an error.
fn extract(
    hnsw: &Hnsw<f32, ShoalDist>,
    metric: Metric,
    vectors: Option<Vec<f32>>,
    n: usize,
    dim: usize,
    m: usize,
    entry: u64,
) -> Result<FlatGraph> {
    let pi = hnsw.get_point_indexation();
    let stored_dim = dim + graph_space(metric).1;
    ensure!(
        pi.get_nb_point() == n,
        "hnsw_rs holds {} points, expected {n}",
        pi.get_nb_point()
    );
    let have_vectors = vectors.is_some();
    let mut vecs = vectors.unwrap_or_else(|| vec![0.0; n * dim]);
    let mut levels = vec![u8::MAX; n];
    // Per node, per level: the neighbour ids hnsw_rs recorded.
    let mut lists: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    for point in pi {
        let id = point.get_origin_id();
        ensure!(id < n, "hnsw_rs point id {id} out of range (n = {n})");
        ensure!(levels[id] == u8::MAX, "hnsw_rs point id {id} appears twice");
        let level = point.get_point_id().0;
        ensure!(
            (level as usize) < NB_LAYER,
            "bad level {level} for point {id}"
        );
        levels[id] = level;
        if !have_vectors {
            let v = point.get_v();
            ensure!(
                v.len() == stored_dim,
                "point {id} has dimension {}, expected {stored_dim}",
                v.len()
            );
            vecs[id * dim..(id + 1) * dim].copy_from_slice(&v[..dim]);
        }
        let neigh = point.get_neighborhood_id();
        lists[id] = (0..=level as usize)
            .map(|l| {
                neigh
                    .get(l)
                    .map(|ns| ns.iter().map(|nb| nb.d_id as u32).collect())
                    .unwrap_or_default()
            })
            .collect();
    }
    if let Some(missing) = levels.iter().position(|&l| l == u8::MAX) {
        bail!("hnsw_rs graph lacks point {missing}");
    }
    let top_level = levels.iter().copied().max().unwrap_or(0);
    ensure!((entry as usize) < n, "entry point {entry} out of range");
    ensure!(
        levels[entry as usize] == top_level,
        "entry point {entry} is not on the top layer"
    );

    let mut g = FlatGraph::empty(dim, m);
    g.n = n;
    g.vectors = vecs;
    g.levels = levels;
    g.entry = entry as u32;
    g.top_level = top_level;
    g.layer0 = vec![0; n * (1 + g.m0)];
    g.upper_offset = vec![NO_UPPER; n];
    let mut upper_len = 0usize;
    for id in 0..n {
        let l = g.levels[id] as usize;
        if l > 0 {
            g.upper_offset[id] = u32::try_from(upper_len).context("upper layers too large")?;
            upper_len += l * (1 + g.m_up);
        }
    }
    g.upper = vec![0; upper_len];
    let mut clean = Vec::new();
    for (id, per_level) in lists.into_iter().enumerate() {
        for (l, ids) in per_level.into_iter().enumerate() {
            clean.clear();
            for nb in ids {
                let ok =
                    (nb as usize) < n && nb as usize != id && g.levels[nb as usize] as usize >= l;
                if ok && !clean.contains(&nb) {
                    clean.push(nb);
                }
            }
            g.set_neighbors(l, id as u32, &clean);
        }
    }
    Ok(g)
}
