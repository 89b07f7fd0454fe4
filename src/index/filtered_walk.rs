//! The walks of a filter whose members a payload index gives (a bitset, about `count` of them):
//! per query, the whole-graph walk of [`FlatGraph::walk_whole`] or a walk over the members only
//! (ACORN-1 with seeds and descents), chosen by how common the members are around the query.
//! Kept apart from `flat.rs` (the graph's layout and the unfiltered walk) because it is the
//! part of the search that only filtered queries take, and the larger one.

use super::flat::{offer, take_k, FlatGraph, Scorer, WIDE_DESCENT};
use super::prefetch;
use super::scratch::{pack, unpack, with_scratch};

impl FlatGraph {
    /// Approximate k-NN among the `member` nodes (a payload index's candidates: a bitset test,
    /// about `count` of them) that `accept` takes (the rest of a filter), walking layer 0 the
    /// way `traversal` says. [`Traversal::Auto`] looks at the members around the entry point
    /// the descent found ([`FlatGraph::members_near`]): where they are much rarer than in the
    /// whole graph (a filter correlated with the vectors, the query far from its members) the
    /// whole-graph walk would first cross everything closer to the query than the members, so
    /// the members-only walk goes straight to them ([`FlatGraph::walk_members`]) with a beam
    /// [`members_beam`] times as wide; where they are about as common (a filter independent of
    /// the vectors) the members-only walk with a beam [`EVEN_MEMBERS_BEAM`] times `ef` serves
    /// them while they are under [`MEMBERS_WALK_BELOW_PCT`] % of the graph
    /// ([`members_walk_pays`]), the whole-graph walk (~1/selectivity times an unfiltered walk)
    /// above; where they are much denser (the query among the members of a filter correlated
    /// with the vectors) the whole-graph walk fills its beam at once. A members-only walk that
    /// finds fewer than `k` accepted members (islands it cannot reach, or a filter the members
    /// only partly answer) is followed by the whole-graph walk. [`Traversal::Even`] walks the
    /// members only where they are spread about evenly around the query and returns nothing
    /// elsewhere, or when that walk found fewer than `k`: the caller scores them exactly.
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
        let around = || {
            let (near, seen) = self.members_near(start.0, &member);
            (
                members_are_rare_near(near, seen, count, self.n),
                members_are_dense_near(near, seen, count, self.n),
            )
        };
        let (members_only, even) = match traversal {
            Traversal::Whole => (false, false),
            Traversal::Even => {
                let (rare, dense) = around();
                if rare || dense {
                    return Vec::new();
                }
                (true, true)
            }
            Traversal::Members => {
                let (rare, dense) = around();
                (true, !rare && !dense)
            }
            Traversal::Auto => {
                let (rare, dense) = around();
                let even = !rare && !dense;
                (rare || (even && members_walk_pays(count, self.n)), even)
            }
        };
        if members_only {
            let wider = if even {
                EVEN_MEMBERS_BEAM
            } else {
                members_beam(self.n)
            };
            let beam = ef * wider;
            let found = self.walk_members(sc, k, beam, start, count, even, &member, &accept);
            if let Some(found) = found.filter(|f| f.len() >= k) {
                return found;
            }
            if traversal == Traversal::Even {
                return Vec::new();
            }
        }
        self.walk_whole(sc, k, ef, start, |i| member(i) && accept(i))
    }

    /// The members among the layer-0 neighbours of `ep` and their neighbours (one row read per
    /// neighbour, no distance): `(members, nodes looked at)`, ~2 300 nodes with m0 = 48.
    pub(crate) fn members_near(&self, ep: u32, member: impl Fn(u32) -> bool) -> (usize, usize) {
        let nbs = self.neighbors(0, ep);
        nbs.iter().for_each(|&nb| self.prefetch_links(nb));
        let (mut near, mut seen) = (0, 0);
        for &nb in nbs {
            let row = self.neighbors(0, nb);
            seen += 1 + row.len();
            near += member(nb) as usize + row.iter().filter(|&&x| member(x)).count();
        }
        (near, seen)
    }

    /// Approximate k-NN among the `member` nodes that `accept` takes with a beam `ef` wide,
    /// scoring (almost) only members on layer 0 — ACORN-1's walk, what Qdrant's `acorn` search
    /// parameter does, made to find members far from the query:
    /// - members spread over the segment are scored first ([`FlatGraph::seeds`]: [`SEEDS`]
    ///   where the members are spread `even`ly, [`RARE_SEEDS`] where they are rare around the
    ///   query), and from the nearest of them ([`DESCENTS`], [`RARE_DESCENTS`]) a greedy
    ///   descent over member neighbours runs down to a local minimum: a filter correlated with
    ///   the vectors keeps its members in a few regions, and a random member of the region
    ///   nearest the query is much farther from it than that region's nearest members, so
    ///   without the descents a beam full of one region's members would never expand the
    ///   seeds of another that holds true neighbours; and a region without a seed is entered
    ///   only through the few links between regions, which a large segment has fewer of per
    ///   point;
    /// - where the members are spread `even`ly, the nearest nodes of layer 1 that a descent
    ///   with a beam [`WIDE_DESCENT`] wide found ([`FlatGraph::descend_wide`]) are entries too:
    ///   the greedy descent can stop in another cluster than the query's, and this walk's
    ///   two-hop lists do not leave a cluster;
    /// - a node's member neighbours are scored; when it has fewer than `m0 / 2`, the members
    ///   among its non-member neighbours' neighbours are too (two hops: non-members bridge the
    ///   members without links of their own): where the members are spread `even`ly, the
    ///   first `m0 / 2` members within two hops, visited or not, as ACORN truncates the list —
    ///   a walk whose members near the query are mostly visited then reads a few bridges'
    ///   rows per expansion instead of all of them (20 a node on a 10 % filter at 100k, 4 ×
    ///   the time of the walk's distances: docs/filtered-search.md); where they are rare
    ///   around the query, up to `m0 / 2` new members, as far as the bridges reach (the
    ///   members nearest a far query are poorly linked to each other: recall 0.93–0.94
    ///   against ≥ 0.96 on the unit test's correlated members at 20 % with the shorter list);
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
        even: bool,
        member: impl Fn(u32) -> bool,
        accept: impl Fn(u32) -> bool,
    ) -> Option<Vec<(f32, u32)>> {
        let want = (self.m0 / 2).clamp(1, MAX_EXPAND);
        let (n_seeds, descents) = if even {
            (SEEDS, DESCENTS)
        } else {
            (RARE_SEEDS, RARE_DESCENTS)
        };
        let mut seeds = [0u32; RARE_SEEDS];
        let seeded = self.seeds(count, &member, &mut seeds[..n_seeds]);
        let seeds = &seeds[..seeded];
        let mut entries = [0u64; WIDE_DESCENT];
        let entered = if even {
            self.descend_wide(sc, &mut entries)
        } else {
            0
        };
        let entries = &entries[..entered];
        with_scratch(|s| {
            s.reset(self.n);
            s.visit(ep);
            offer(s, ef, pack(d, ep), || member(ep) && accept(ep));
            for &key in entries {
                let id = unpack(key).1;
                if s.visit(id) {
                    offer(s, ef, key, || member(id) && accept(id));
                }
            }
            seeds.iter().for_each(|&id| sc.prefetch(id));
            let mut scored = [0u64; RARE_SEEDS];
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
            for &seed in scored.iter().take(descents) {
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
                    bridges()
                        .take(BRIDGE_ROWS_AHEAD)
                        .for_each(|via| self.prefetch_links(via));
                    // Members spread evenly: the first `want` within two hops (ACORN's list);
                    // rare ones: up to `want` new ones, as far as the bridges reach.
                    let mut listed = if even { members } else { got };
                    'bridges: for via in bridges() {
                        for &nb in self.neighbors(0, via) {
                            if listed >= want {
                                break 'bridges;
                            }
                            if member(nb) {
                                let new = s.visit(nb);
                                if new {
                                    found[got] = nb;
                                    got += 1;
                                }
                                listed += (even || new) as usize;
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

    /// Fills `out` with up to `out.len()` members spread evenly over the graph's nodes, of
    /// which about `count` are members, found by probing about twice as many evenly spread
    /// nodes as that needs; returns how many. A filter correlated with the vectors keeps its
    /// members in a few regions: a seed in each region large enough to matter lets a
    /// members-only walk enter the one nearest the query.
    fn seeds(&self, count: usize, member: impl Fn(u32) -> bool, out: &mut [u32]) -> usize {
        if count == 0 || self.n == 0 || out.is_empty() {
            return 0;
        }
        let probes = (2 * out.len() * self.n / count).clamp(1, self.n);
        let stride = self.n / probes;
        let mut found = 0;
        for j in 0..probes {
            let id = (j * stride + (j * 7919) % stride.max(1)) as u32;
            if member(id) {
                out[found] = id;
                found += 1;
                if found == out.len() {
                    break;
                }
            }
        }
        found
    }
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
    /// The members only where they are spread about evenly around the query; nothing
    /// elsewhere, nor where that walk found fewer than `k` (for a plan whose other choice is
    /// to score the members exactly).
    Even,
}

/// Whether members are rare enough around the query for the members-only walk: `near` of the
/// `seen` nodes around the descent's entry point are members, against `count` of all `n`. The
/// whole-graph walk looks at ~seen/near nodes per member it finds there, and stays the cheaper
/// walk while that is within twice what the members' share of the graph makes it (measured on
/// filters independent of the vectors: `docs/filtered-search.md`).
pub fn members_are_rare_near(near: usize, seen: usize, count: usize, n: usize) -> bool {
    2 * near * n < seen * count
}

/// Whether members are much denser around the query than in the graph (over twice their
/// share among the `seen` nodes around the descent's entry point): the query is among the
/// members of a filter correlated with the vectors, where a members-only walk with a beam of
/// `ef` misses more than the whole-graph walk (recall@10 0.93 against ≥ 0.98 on the unit
/// test's correlated members at 20 %).
pub fn members_are_dense_near(near: usize, seen: usize, count: usize, n: usize) -> bool {
    near.saturating_mul(n) > 2usize.saturating_mul(seen).saturating_mul(count)
}

/// Whether the members-only walk (beam `ef`) is the cheaper walk for `count` members of
/// `n` nodes spread about evenly around the query: it costs about the same whatever their
/// share (1.3 / 1.5 / 2.1 × an unfiltered walk at 20 / 30 / 50 % of 241k × 128), the
/// whole-graph walk ~1/share times an unfiltered one (2.5–2.9 × there; 8.4–9.0 × at 5 %,
/// 3.8–4.1 × at 10 % of 100k × 64), the two about even at 50 % (docs/filtered-search.md).
pub fn members_walk_pays(count: usize, n: usize) -> bool {
    count.saturating_mul(100) < MEMBERS_WALK_BELOW_PCT.saturating_mul(n)
}

/// Up to what share of the graph (%) the members-only walk serves members spread about
/// evenly ([`members_walk_pays`]).
pub const MEMBERS_WALK_BELOW_PCT: usize = 40;

/// How much wider than `ef` the members-only walk's beam is where the members are rare
/// around the query, in a graph of `n` nodes: 3 up to 100 000 nodes, growing as √n above, up
/// to 6. The nearest members of a far region are scattered over it (they share only their
/// offset towards the query), so the beam must hold more of a larger region to reach them:
/// on filters correlated with the vectors at 100k × 64, recall@10 0.955–0.971 at 2,
/// 0.971–0.985 at 3; in a segment of 313k × 64, 0.95–0.97 at 3 or 4 and 0.97–0.98 at 5
/// (docs/filtered-search.md). Members spread evenly need less ([`EVEN_MEMBERS_BEAM`]).
pub(crate) fn members_beam(n: usize) -> usize {
    let wider = 3.0 * (n as f64 / 100_000.0).sqrt();
    (wider.round() as usize).clamp(3, 6)
}

/// How much wider than `ef` the members-only walk's beam is where the members are about as
/// common around the query as in the graph. Its misses were queries whose greedy descent
/// ended in another cluster (a wider beam did not help: recall@10 0.957 at 1 ×, 2 × or 3 ×
/// on a 5 % filter at 100k × 128); entered from the wide descent's nodes as well, 1 × holds
/// 0.987–1.000 at 5–20 % of 100k and 241k × 128 and 60k × 768 at 0.7–1.4 × the time of an
/// unfiltered walk (docs/filtered-search.md).
const EVEN_MEMBERS_BEAM: usize = 1;

/// From how many of the nearest seeds a members-only walk on evenly spread members descends
/// greedily before its beam search.
const DESCENTS: usize = 8;

/// How many members spread over the graph a members-only walk on evenly spread members starts
/// from besides the descent's entry point: 64 distances, ~2 % of an unfiltered walk at ef 100.
const SEEDS: usize = 64;

/// [`SEEDS`] where the members are rare around the query (a filter correlated with the
/// vectors): the true neighbours are in the few member regions nearest the query, and a
/// region without a seed is seldom entered. With 64 seeds, 50 member regions of a 313k × 64
/// segment left about a quarter of them unseeded (recall@10 0.876 at `c` < 50); with 256,
/// 0.96. 512 also start the descents nearer the query: at 50 % of 241k × 128, 0.953 → 0.969,
/// elsewhere the same within 0.003, in the same time (the descents from nearer seeds are
/// shorter). 512 distances, ~15 % of an unfiltered walk's.
const RARE_SEEDS: usize = 512;

/// [`DESCENTS`] where the members are rare around the query: from 16 of the nearest seeds
/// (recall@10 +0.01 against 8 at 313k × 64, ~10 % more distances; a descent into a region
/// already walked stops at once on visited nodes).
const RARE_DESCENTS: usize = 16;

/// How many bridges' rows a members-only walk asks for before reading the first (it usually
/// needs a few: a node with few member neighbours reaches `m0 / 2` members through ~5-10).
const BRIDGE_ROWS_AHEAD: usize = 8;

/// The most nodes one expansion of [`FlatGraph::walk_members`] scores (a layer-0 row holds at
/// most 2 · 128 links).
const MAX_EXPAND: usize = 256;
