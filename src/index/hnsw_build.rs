//! Everything that touches hnsw_rs: building the graph (parallel insert) and extracting a
//! [`FlatGraph`] from the in-memory `Hnsw`. hnsw_rs's own dump format is not used: the flat
//! graph is written into shoal's segment file (`file.rs`).
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
//! hnsw_rs panics on some inputs; the build runs under `catch_unwind` so a panic is an error.
//!
//! **Memory.** hnsw_rs keeps its own copy of every vector and, per node and layer, a list of
//! `Arc`s to neighbour records behind a `RwLock`: measured (docs/storage.md) at several KB per
//! point while building, many times the vectors themselves. That is why the shard bounds the
//! size of the segments it builds (`max_segment_size`) and builds one at a time per node.

use super::distance::Metric;
use super::flat::{FlatGraph, NO_UPPER};
use anyhow::{anyhow, bail, ensure, Context, Result};
use hnsw_rs::prelude::{Distance, Hnsw};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

/// Points inserted between two looks at the cancellation flag: well under a second of a build
/// on one core at 128 dimensions.
pub(crate) const CANCEL_CHUNK: usize = 2048;

/// hnsw_rs's layer count.
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

/// Builds the graph with hnsw_rs and returns the extracted flat graph (holding `vectors`).
/// `n >= 1`; the vectors are already validated (finite, `n * dim` long).
pub(crate) fn build(
    vectors: Vec<f32>,
    dim: usize,
    metric: Metric,
    max_nb_connection: usize,
    ef_construct: usize,
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
    extract(&hnsw, vectors, n, dim, max_nb_connection)
}

/// Copies hnsw_rs's graph into a [`FlatGraph`] holding `vectors`. Data ids are our internal ids.
/// The entry point is the lowest id on the top layer (hnsw_rs keeps its own private; any node of
/// the top layer serves, since that layer's graph connects them). Malformed input (ids out of
/// range or repeated) is an error.
fn extract(
    hnsw: &Hnsw<f32, ShoalDist>,
    vectors: Vec<f32>,
    n: usize,
    dim: usize,
    m: usize,
) -> Result<FlatGraph> {
    let pi = hnsw.get_point_indexation();
    ensure!(
        pi.get_nb_point() == n,
        "hnsw_rs holds {} points, expected {n}",
        pi.get_nb_point()
    );
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
    let entry = levels
        .iter()
        .position(|&l| l == top_level)
        .context("empty graph")?;

    let mut g = FlatGraph::empty(dim, m);
    ensure!(vectors.len() == n * dim, "vectors do not match the graph");
    g.n = n;
    g.vectors = vectors.into();
    g.entry = entry as u32;
    g.top_level = top_level;
    g.layer0 = vec![0; n * (1 + g.m0)].into();
    let mut upper_offset = vec![NO_UPPER; n];
    let mut upper_len = 0usize;
    for id in 0..n {
        let l = levels[id] as usize;
        if l > 0 {
            upper_offset[id] = u32::try_from(upper_len).context("upper layers too large")?;
            upper_len += l * (1 + g.m_up);
        }
    }
    g.levels = levels.into();
    g.upper_offset = upper_offset.into();
    g.upper = vec![0; upper_len].into();
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
