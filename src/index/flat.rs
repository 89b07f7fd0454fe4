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
//! vectors), a members-only walk takes its place ([`FlatGraph::search_filtered`]).

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
    fn descend<S: Scorer>(&self, sc: &S) -> (u32, f32) {
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

    /// Approximate k-NN among the `member` nodes (a payload index's candidates: a bitset test,
    /// about `count` of them) that `accept` takes (the rest of a filter), walking layer 0 the
    /// way `traversal` says. [`Traversal::Auto`] looks at the members around the entry point
    /// the descent found ([`FlatGraph::members_near`]): where they are about as common as in
    /// the whole graph (a filter independent of the vectors, or the query among the members)
    /// the whole-graph walk finds them at the cost of ~1/selectivity times an unfiltered walk;
    /// where they are much rarer (a filter correlated with the vectors, the query far from its
    /// members) that walk would first cross everything closer to the query than the members,
    /// so the members-only walk goes straight to them ([`FlatGraph::walk_members`]). A
    /// members-only walk that finds fewer than `k` accepted members (islands it cannot reach,
    /// or a filter the members only partly answer) is followed by the whole-graph walk.
    #[allow(clippy::too_many_arguments)]
    pub fn search_filtered<S: Scorer>(
        &self,
        sc: &S,
        k: usize,
        ef: usize,
        count: usize,
        member: impl Fn(u32) -> bool,
        accept: impl Fn(u32) -> bool,
        traversal: Traversal,
    ) -> Vec<(f32, u32)> {
        if self.n == 0 || k == 0 {
            return Vec::new();
        }
        let ef = ef.max(k);
        let start = self.descend(sc);
        let members_only = match traversal {
            Traversal::Whole => false,
            Traversal::Members => true,
            Traversal::Auto => {
                let (near, seen) = self.members_near(start.0, &member);
                members_are_rare_near(near, seen, count, self.n)
            }
        };
        if members_only {
            let found = self.walk_members(sc, k, ef, start, count, &member, &accept);
            if let Some(found) = found.filter(|f| f.len() >= k) {
                return found;
            }
        }
        self.walk_whole(sc, k, ef, start, |i| member(i) && accept(i))
    }

    /// The members among the layer-0 neighbours of `ep` and their neighbours (one row read per
    /// neighbour, no distance): `(members, nodes looked at)`, ~2 300 nodes with m0 = 48.
    pub(crate) fn members_near(&self, ep: u32, member: impl Fn(u32) -> bool) -> (usize, usize) {
        let nbs = self.neighbors(0, ep);
        let row_bytes = (1 + self.m0) * 4;
        let rows = self.layer0.as_slice().as_ptr() as *const u8;
        nbs.iter().for_each(|&nb| prefetch_row(rows, nb, row_bytes));
        let (mut near, mut seen) = (0, 0);
        for &nb in nbs {
            let row = self.neighbors(0, nb);
            seen += 1 + row.len();
            near += member(nb) as usize + row.iter().filter(|&&x| member(x)).count();
        }
        (near, seen)
    }

    /// The layer-0 neighbours of the next node a beam search of width `ef` expands (their
    /// visited tags asked for), or None once its nearest candidate is farther than its beam's
    /// worst.
    #[inline(always)]
    fn next_expansion(&self, s: &mut Scratch, ef: usize) -> Option<&[u32]> {
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
    fn walk_whole<S: Scorer, F: Fn(u32) -> bool>(
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

    /// Approximate k-NN among the `member` nodes that `accept` takes, scoring (almost) only
    /// members on layer 0 — ACORN-1's walk, what Qdrant's `acorn` search parameter does, made
    /// to find members far from the query:
    /// - [`SEEDS`] members spread over the segment are scored first ([`FlatGraph::seeds`]), and
    ///   from the [`DESCENTS`] nearest of them a greedy descent over member neighbours runs
    ///   down to a local minimum: a filter correlated with the vectors keeps its members in a
    ///   few regions, and a random member of the region nearest the query is much farther
    ///   from it than that region's nearest members, so without the descents a beam full of
    ///   one region's members would never expand the seeds of another that holds true
    ///   neighbours;
    /// - the beam is [`MEMBERS_BEAM`] × `ef` wide: the members nearest a query far from them
    ///   sit on the edge of their region, poorly linked to each other;
    /// - a node's member neighbours are scored; when it has fewer than `m0 / 2`, the members
    ///   among its non-member neighbours' neighbours are too (two hops: non-members bridge the
    ///   members without links of their own), up to `m0 / 2`;
    /// - a node with no new member within two hops while the beam holds fewer than `k`
    ///   accepted members scores its non-member neighbours instead and walks on through them.
    ///
    /// Returns fewer than `k` when the walk found fewer accepted members, and None when it ran
    /// out of members to expand before its beam was full and had scored fewer than `count`:
    /// the members are split into pieces two hops do not join (near-duplicate vectors, whose
    /// links go to each other, do that), and what it found may not be the nearest.
    #[allow(clippy::too_many_arguments)]
    fn walk_members<S: Scorer>(
        &self,
        sc: &S,
        k: usize,
        ef: usize,
        (ep, d): (u32, f32),
        count: usize,
        member: impl Fn(u32) -> bool,
        accept: impl Fn(u32) -> bool,
    ) -> Option<Vec<(f32, u32)>> {
        let ef = ef * MEMBERS_BEAM;
        let want = (self.m0 / 2).clamp(1, MAX_EXPAND);
        let mut seeds = [0u32; SEEDS];
        let seeded = self.seeds(count, &member, &mut seeds);
        let seeds = &seeds[..seeded];
        with_scratch(|s| {
            s.reset(self.n);
            s.visit(ep);
            offer(s, ef, pack(d, ep), || member(ep) && accept(ep));
            seeds.iter().for_each(|&id| sc.prefetch(id));
            let mut scored = [0u64; SEEDS];
            let mut n_scored = 0;
            for &id in seeds {
                if s.visit(id) {
                    let key = pack(sc.dist(id), id);
                    scored[n_scored] = key;
                    n_scored += 1;
                    offer(s, ef, key, || accept(id));
                }
            }
            // Members scored, to tell a walk that ran out of reachable members.
            let mut members_scored = n_scored;
            let scored = &mut scored[..n_scored];
            scored.sort_unstable();
            for &seed in scored.iter().take(DESCENTS) {
                let mut at = seed;
                loop {
                    let mut best = at;
                    let nbs = self.neighbors(0, unpack(at).1);
                    nbs.iter().for_each(|&nb| prefetch(s.tag_ptr(nb)));
                    for &nb in nbs {
                        if member(nb) && s.visit(nb) {
                            let key = pack(sc.dist(nb), nb);
                            offer(s, ef, key, || accept(nb));
                            members_scored += 1;
                            best = best.min(key);
                        }
                    }
                    if best == at {
                        break;
                    }
                    at = best;
                }
            }
            let mut found = [0u32; MAX_EXPAND];
            while let Some(nbs) = self.next_expansion(s, ef) {
                let (mut got, mut members) = (0, 0);
                for &nb in nbs {
                    if member(nb) {
                        members += 1;
                        if got < MAX_EXPAND && s.visit(nb) {
                            found[got] = nb;
                            got += 1;
                        }
                    }
                }
                if members < want {
                    let bridges = || nbs.iter().copied().filter(|&via| !member(via));
                    let row_bytes = (1 + self.m0) * 4;
                    let rows = self.layer0.as_slice().as_ptr() as *const u8;
                    bridges()
                        .take(BRIDGE_ROWS_AHEAD)
                        .for_each(|via| prefetch_row(rows, via, row_bytes));
                    'bridges: for via in bridges() {
                        for &nb in self.neighbors(0, via) {
                            if got >= want {
                                break 'bridges;
                            }
                            if member(nb) && s.visit(nb) {
                                found[got] = nb;
                                got += 1;
                            }
                        }
                    }
                }
                let navigating = got == 0 && s.results.len() < k;
                if navigating {
                    for &via in nbs {
                        if got < MAX_EXPAND && s.visit(via) {
                            found[got] = via;
                            got += 1;
                        }
                    }
                }
                if !navigating {
                    members_scored += got;
                }
                found[..got].iter().for_each(|&nb| sc.prefetch(nb));
                for &nb in &found[..got] {
                    let key = pack(sc.dist(nb), nb);
                    // Navigating, `found` holds non-members only: they never enter the beam.
                    offer(s, ef, key, || !navigating && accept(nb));
                }
            }
            let ran_out = s.candidates.is_empty() && s.results.len() < ef;
            (!ran_out || members_scored >= count).then(|| take_k(s, k))
        })
    }

    /// Fills `out` with up to [`SEEDS`] members spread evenly over the graph's nodes, of which
    /// about `count` are members, found by probing about twice as many evenly spread nodes as
    /// that needs; returns how many. A filter correlated with the vectors keeps its members in
    /// a few regions: a seed in each region large enough to matter lets a members-only walk
    /// enter the one nearest the query.
    fn seeds(&self, count: usize, member: impl Fn(u32) -> bool, out: &mut [u32; SEEDS]) -> usize {
        if count == 0 || self.n == 0 {
            return 0;
        }
        let probes = (2 * SEEDS * self.n / count).clamp(1, self.n);
        let stride = self.n / probes;
        let mut found = 0;
        for j in 0..probes {
            let id = (j * stride + (j * 7919) % stride.max(1)) as u32;
            if member(id) {
                out[found] = id;
                found += 1;
                if found == SEEDS {
                    break;
                }
            }
        }
        found
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
fn take_k(s: &mut Scratch, k: usize) -> Vec<(f32, u32)> {
    let mut out: Vec<u64> = s.results.drain().collect();
    out.sort_unstable();
    out.truncate(k);
    out.into_iter().map(unpack).collect()
}

/// How a filtered walk crosses layer 0 (see [`FlatGraph::search_filtered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traversal {
    /// The whole graph, or the members only where they are rare around the query.
    Auto,
    /// The whole graph: every node met is scored, the accepted members kept.
    Whole,
    /// The members only (ACORN-1 with seeds and descents).
    Members,
}

/// Whether members are rare enough around the query for the members-only walk: `near` of the
/// `seen` nodes around the descent's entry point are members, against `count` of all `n`. The
/// whole-graph walk looks at ~seen/near nodes per member it finds there, and stays the cheaper
/// walk while that is within twice what the members' share of the graph makes it (measured on
/// filters independent of the vectors: `docs/filtered-search.md`).
pub fn members_are_rare_near(near: usize, seen: usize, count: usize, n: usize) -> bool {
    2 * near * n < seen * count
}

/// How much wider than `ef` the members-only walk's beam is: on filters correlated with the
/// vectors at 100k × 64, recall@10 0.955–0.971 at 2, 0.971–0.985 at 3 (docs/filtered-search.md).
const MEMBERS_BEAM: usize = 3;

/// From how many of the nearest seeds a members-only walk descends greedily before its beam
/// search.
const DESCENTS: usize = 8;

/// Offers a scored node to a beam search of width `ef`: it becomes a candidate to expand when
/// the beam is not full or it is closer than the beam's worst, and enters the beam too when
/// `accepted()` (asked only then).
#[inline(always)]
fn offer(s: &mut Scratch, ef: usize, key: u64, accepted: impl FnOnce() -> bool) {
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

/// How many members spread over the graph a members-only walk starts from besides the
/// descent's entry point: 64 distances, ~2 % of an unfiltered walk at ef 100.
const SEEDS: usize = 64;

/// How many bridges' rows a members-only walk asks for before reading the first (it usually
/// needs a few: a node with few member neighbours reaches `m0 / 2` members through ~5-10).
const BRIDGE_ROWS_AHEAD: usize = 8;

/// The most nodes one expansion of [`FlatGraph::walk_members`] scores (a layer-0 row holds at
/// most 2 · 128 links).
const MAX_EXPAND: usize = 256;

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
