//! The flat, immutable copy of an HNSW graph and the search over it.
//!
//! hnsw_rs builds and persists the graph, but its in-memory form (an `Arc<Point>` per node, lists
//! behind `RwLock`s, a `HashMap` as visited set) and its search (one greedy hop per upper layer)
//! cost both speed and recall (see the module doc of [`crate::index`]). This file owns the layout
//! searched at query time:
//!
//! - `vectors`: every vector in one contiguous slab, row `id` at `id * dim`;
//!   every array is a [`Slab`]: on the heap while the graph is built and repaired, then inside the
//!   memory-mapped segment file once it is served;
//! - `layer0`: fixed-stride adjacency for layer 0, `1 + m0` `u32`s per node (count, then ids);
//! - `upper`: the upper layers, compact: only nodes with level ≥ 1 have rows there, `level` blocks
//!   of `1 + m_up` `u32`s each (levels 1..=level), starting at `upper_offset[id]`;
//! - `entry` / `top_level`: where every search starts.
//!
//! The search is textbook HNSW (Malkov & Yashunin, alg. 2 and 5): on each upper layer move
//! greedily until no neighbour is closer, then a beam search of width `ef` on layer 0. A filter
//! applies during the beam search the way hnswlib and Qdrant do it: rejected nodes are expanded
//! like any other (so the graph stays navigable) but never enter the result set, and the search
//! only stops early once the result set holds `ef` accepted nodes. Where the accepted nodes are
//! a payload index's candidates and rare around the query (a filter correlated with the
//! vectors), a members-only walk takes its place (`filtered_walk.rs`).
//!
//! The search is generic over a [`Scorer`], the distance from the query to a node: the float
//! vectors ([`FloatScorer`]) or the int8 codes of a quantized segment (see `quantized.rs`).

use super::distance::{kernels::DistFn, Metric};
use super::prefetch;
use super::scratch::{pack, unpack, with_scratch, Scratch};
use super::slab::Slab;
use std::collections::BinaryHeap;

/// Marks a node without upper-layer rows in `upper_offset`.
pub(crate) const NO_UPPER: u32 = u32::MAX;

/// The graph and vectors of one segment, laid out for search.
#[derive(Debug, PartialEq)]
pub(crate) struct FlatGraph {
    pub n: usize,
    pub dim: usize,
    pub vectors: Slab<f32>,
    /// Maximum degree on layer 0 (2·M) and above (M).
    pub m0: usize,
    pub m_up: usize,
    pub layer0: Slab<u32>,
    pub levels: Slab<u8>,
    pub upper_offset: Slab<u32>,
    pub upper: Slab<u32>,
    pub entry: u32,
    pub top_level: u8,
}

/// The distance from one query to graph nodes, and a hint to start loading a node's data.
pub(crate) trait Scorer {
    fn dist(&self, id: u32) -> f32;
    fn prefetch(&self, id: u32);
}

/// Distances on the float vectors.
pub(crate) struct FloatScorer<'a> {
    pub dist: DistFn,
    pub q: &'a [f32],
    pub vectors: &'a [f32],
    pub dim: usize,
}

impl Scorer for FloatScorer<'_> {
    #[inline(always)]
    fn dist(&self, id: u32) -> f32 {
        let o = id as usize * self.dim;
        self.dist.eval(self.q, &self.vectors[o..o + self.dim])
    }
    #[inline(always)]
    fn prefetch(&self, id: u32) {
        prefetch_row(self.vectors.as_ptr() as *const u8, id, self.dim * 4);
    }
}

/// Prefetches up to four cache lines of row `id` of a table of `row_bytes`-byte rows.
#[inline(always)]
pub(crate) fn prefetch_row(base: *const u8, id: u32, row_bytes: usize) {
    let p = base.wrapping_add(id as usize * row_bytes);
    let lines = row_bytes.div_ceil(64).min(4);
    for l in 0..lines {
        prefetch(p.wrapping_add(l * 64));
    }
}

impl FlatGraph {
    /// The empty graph (n = 0).
    pub fn empty(dim: usize, m: usize) -> FlatGraph {
        FlatGraph {
            n: 0,
            dim,
            vectors: Slab::default(),
            m0: 2 * m,
            m_up: m,
            layer0: Slab::default(),
            levels: Slab::default(),
            upper_offset: Slab::default(),
            upper: Slab::default(),
            entry: 0,
            top_level: 0,
        }
    }

    #[inline(always)]
    pub fn vector(&self, id: u32) -> &[f32] {
        let o = id as usize * self.dim;
        &self.vectors[o..o + self.dim]
    }

    /// The float scorer of query `q`.
    #[inline(always)]
    pub fn float_scorer<'a>(&'a self, metric: Metric, q: &'a [f32]) -> FloatScorer<'a> {
        FloatScorer {
            dist: metric.distance_fn(),
            q,
            vectors: self.vectors.as_slice(),
            dim: self.dim,
        }
    }

    /// Start of the row of `id` at `level` (layer-0 or upper storage), or None if the node is
    /// not on that level.
    #[inline(always)]
    fn row_start(&self, level: usize, id: u32) -> Option<usize> {
        if level == 0 {
            Some(id as usize * (1 + self.m0))
        } else {
            let off = self.upper_offset[id as usize];
            if off == NO_UPPER || level > self.levels[id as usize] as usize {
                None
            } else {
                Some(off as usize + (level - 1) * (1 + self.m_up))
            }
        }
    }

    /// Starts loading node `id`'s layer-0 row (its links), ahead of reading it.
    #[inline(always)]
    pub(super) fn prefetch_links(&self, id: u32) {
        let rows = self.layer0.as_slice().as_ptr() as *const u8;
        prefetch_row(rows, id, (1 + self.m0) * 4);
    }

    /// The neighbours of `id` on `level` (empty if the node is not on that level).
    #[inline(always)]
    pub fn neighbors(&self, level: usize, id: u32) -> &[u32] {
        match self.row_start(level, id) {
            None => &[],
            Some(s) => {
                let store = if level == 0 {
                    self.layer0.as_slice()
                } else {
                    self.upper.as_slice()
                };
                let cnt = (store[s] as usize).min(if level == 0 { self.m0 } else { self.m_up });
                &store[s + 1..s + 1 + cnt]
            }
        }
    }

    /// Mutable row (count slot first) of `id` on `level`, for the graph repair passes (heap
    /// graphs only: a mapped graph is immutable).
    pub fn row_mut(&mut self, level: usize, id: u32) -> Option<&mut [u32]> {
        let s = self.row_start(level, id)?;
        if level == 0 {
            let w = 1 + self.m0;
            self.layer0.heap_mut().map(|l| &mut l[s..s + w])
        } else {
            let w = 1 + self.m_up;
            self.upper.heap_mut().map(|u| &mut u[s..s + w])
        }
    }

    /// Replaces the neighbour list of `id` on `level` (truncated to the row's capacity).
    pub fn set_neighbors(&mut self, level: usize, id: u32, ids: &[u32]) {
        if let Some(row) = self.row_mut(level, id) {
            let cap = row.len() - 1;
            let cnt = ids.len().min(cap);
            row[0] = cnt as u32;
            row[1..1 + cnt].copy_from_slice(&ids[..cnt]);
        }
    }

    /// Greedy descent through the upper layers: returns the layer-0 entry and its distance.
    pub(super) fn descend<S: Scorer>(&self, sc: &S) -> (u32, f32) {
        let mut cur = self.entry;
        let mut d = sc.dist(cur);
        for level in (1..=self.top_level as usize).rev() {
            loop {
                let mut moved = false;
                let nbs = self.neighbors(level, cur);
                for (j, &nb) in nbs.iter().enumerate() {
                    if let Some(&next) = nbs.get(j + 1) {
                        sc.prefetch(next);
                    }
                    let dn = sc.dist(nb);
                    if dn < d {
                        d = dn;
                        cur = nb;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        (cur, d)
    }

    /// The descent through the upper layers with a beam [`WIDE_DESCENT`] nodes wide on each
    /// instead of one: the nearest nodes it found on layer 1 (the entry alone on a one-layer
    /// graph), as packed keys nearest first in `out`; returns how many. On clustered vectors
    /// the greedy descent stops in another cluster than the query's for some queries (10 % of
    /// them at 100k × 128, 100 clusters), which a beam on layer 0 that scores every node it
    /// meets walks out of, but a walk over a filter's members does not: their two-hop lists
    /// stay within a cluster. A few nodes per layer are ~100–300 distances.
    pub(super) fn descend_wide<S: Scorer>(&self, sc: &S, out: &mut [u64; WIDE_DESCENT]) -> usize {
        out[0] = pack(sc.dist(self.entry), self.entry);
        let mut kept = 1;
        with_scratch(|s| {
            for level in (1..=self.top_level as usize).rev() {
                s.reset(self.n);
                for &key in &out[..kept] {
                    s.visit(unpack(key).1);
                    s.candidates.push(!key);
                    s.results.push(key);
                }
                while let Some(c) = s.candidates.pop().map(|c| !c) {
                    let full = s.results.len() >= WIDE_DESCENT;
                    if full && s.results.peek().is_some_and(|&worst| c > worst) {
                        break;
                    }
                    let nbs = self.neighbors(level, unpack(c).1);
                    nbs.iter().for_each(|&nb| sc.prefetch(nb));
                    for &nb in nbs {
                        if s.visit(nb) {
                            offer(s, WIDE_DESCENT, pack(sc.dist(nb), nb), || true);
                        }
                    }
                }
                kept = s.results.len();
                for slot in out[..kept].iter_mut().rev() {
                    *slot = s.results.pop().unwrap_or(u64::MAX);
                }
            }
        });
        kept
    }

    /// Approximate k-NN among accepted ids; see `Segment::search`.
    pub fn search<F: Fn(u32) -> bool>(
        &self,
        metric: Metric,
        q: &[f32],
        k: usize,
        ef: usize,
        accept: F,
    ) -> Vec<(f32, u32)> {
        self.search_with(&self.float_scorer(metric, q), k, ef, accept)
    }

    /// Approximate k-NN among accepted ids with distances from `sc`: the whole-graph walk.
    pub fn search_with<S: Scorer, F: Fn(u32) -> bool>(
        &self,
        sc: &S,
        k: usize,
        ef: usize,
        accept: F,
    ) -> Vec<(f32, u32)> {
        if self.n == 0 || k == 0 {
            return Vec::new();
        }
        let (ep, d) = self.descend(sc);
        self.walk_whole(sc, k, ef.max(k), (ep, d), accept)
    }

    /// The layer-0 neighbours of the next node a beam search of width `ef` expands (their
    /// visited tags asked for), or None once its nearest candidate is farther than its beam's
    /// worst.
    #[inline(always)]
    pub(super) fn next_expansion(&self, s: &mut Scratch, ef: usize) -> Option<&[u32]> {
        let c = !s.candidates.pop()?;
        if s.results.len() >= ef && s.results.peek().is_some_and(|&w| c > w) {
            return None;
        }
        let nbs = self.neighbors(0, unpack(c).1);
        for &nb in nbs {
            prefetch(s.tag_ptr(nb));
        }
        Some(nbs)
    }

    /// The beam search of width `ef` on layer 0 from `start` that scores every node it meets
    /// and keeps the accepted ones (textbook HNSW with a filter, as hnswlib does it).
    pub(super) fn walk_whole<S: Scorer, F: Fn(u32) -> bool>(
        &self,
        sc: &S,
        k: usize,
        ef: usize,
        (ep, d): (u32, f32),
        accept: F,
    ) -> Vec<(f32, u32)> {
        with_scratch(|s| {
            s.reset(self.n);
            s.visit(ep);
            s.candidates.push(!pack(d, ep));
            if accept(ep) {
                s.results.push(pack(d, ep));
            }
            while let Some(nbs) = self.next_expansion(s, ef) {
                for (j, &nb) in nbs.iter().enumerate() {
                    if let Some(&next) = nbs.get(j + 1) {
                        sc.prefetch(next);
                    }
                    if !s.visit(nb) {
                        continue;
                    }
                    offer(s, ef, pack(sc.dist(nb), nb), || accept(nb));
                }
            }
            take_k(s, k)
        })
    }

    /// Exact k-NN among accepted ids by a full scan.
    pub fn exact<F: Fn(u32) -> bool>(
        &self,
        metric: Metric,
        q: &[f32],
        k: usize,
        accept: F,
    ) -> Vec<(f32, u32)> {
        exact_scan(&self.float_scorer(metric, q), self.n, k, accept)
    }
}

/// Exact k-NN among accepted ids `0..n` by a full scan with distances from `sc`.
pub(crate) fn exact_scan<S: Scorer, F: Fn(u32) -> bool>(
    sc: &S,
    n: usize,
    k: usize,
    accept: F,
) -> Vec<(f32, u32)> {
    exact_among(sc, (0..n as u32).filter(|&id| accept(id)), k)
}

/// The `k` nearest of a walk's beam, nearest first.
pub(super) fn take_k(s: &mut Scratch, k: usize) -> Vec<(f32, u32)> {
    let mut out: Vec<u64> = s.results.drain().collect();
    out.sort_unstable();
    out.truncate(k);
    out.into_iter().map(unpack).collect()
}

/// Offers a scored node to a beam search of width `ef`: it becomes a candidate to expand when
/// the beam is not full or it is closer than the beam's worst, and enters the beam too when
/// `accepted()` (asked only then).
#[inline(always)]
pub(super) fn offer(s: &mut Scratch, ef: usize, key: u64, accepted: impl FnOnce() -> bool) {
    let full = s.results.len() >= ef;
    if !full || s.results.peek().is_some_and(|&w| key < w) {
        s.candidates.push(!key);
        if accepted() {
            s.results.push(key);
            if s.results.len() > ef {
                s.results.pop();
            }
        }
    }
}

/// How many nodes per upper layer [`FlatGraph::descend_wide`] keeps: on the clustered vectors
/// of `examples/filtered_bench` (100k × 128, one segment), the members-only walk's recall@10
/// on a 5 % filter independent of the vectors was 0.957 from the greedy descent, 0.972 / 0.977
/// / 0.992 from 2 / 4 / 8 nodes (docs/filtered-search.md).
pub(super) const WIDE_DESCENT: usize = 8;

/// How many ids ahead of the one it scores an exact scan prefetches.
const AHEAD: usize = 8;

/// Exact k-NN among `ids` with distances from `sc`.
pub(crate) fn exact_among<S: Scorer>(
    sc: &S,
    ids: impl IntoIterator<Item = u32>,
    k: usize,
) -> Vec<(f32, u32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<u64> = BinaryHeap::with_capacity(k + 1);
    let mut score = |id: u32| {
        let key = pack(sc.dist(id), id);
        if heap.len() < k {
            heap.push(key);
        } else if heap.peek().is_some_and(|&w| key < w) {
            heap.pop();
            heap.push(key);
        }
    };
    // The ids are scattered over the segment (a filter's candidates: 10 % of a million-point
    // shard is 25 MB of 64-dimension rows), so each row is asked for `AHEAD` ids before it is
    // scored: its cache misses overlap with the distances computed meanwhile.
    let mut ring = [0u32; AHEAD];
    let mut queued = 0usize;
    for id in ids {
        sc.prefetch(id);
        let slot = &mut ring[queued % AHEAD];
        if queued >= AHEAD {
            score(*slot);
        }
        *slot = id;
        queued += 1;
    }
    for j in queued.saturating_sub(AHEAD)..queued {
        score(ring[j % AHEAD]);
    }
    let mut out = heap.into_vec();
    out.sort_unstable();
    out.into_iter().map(unpack).collect()
}
