//! The walks of a filter whose members a payload index gives (a bitset, about `count` of them):
//! per query, the whole-graph walk of [`FlatGraph::walk_whole`] or a walk over the members only
//! (ACORN-1 with seeds and descents), chosen by how common the members are around the query.
//! Kept apart from `flat.rs` (the graph's layout and the unfiltered walk) because it is the
//! part of the search that only filtered queries take, and the larger one.

use super::flat::{offer, take_k, FlatGraph, Scorer};
use super::prefetch;
use super::scratch::{pack, unpack, with_scratch};

impl FlatGraph {
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
        nbs.iter().for_each(|&nb| self.prefetch_links(nb));
        let (mut near, mut seen) = (0, 0);
        for &nb in nbs {
            let row = self.neighbors(0, nb);
            seen += 1 + row.len();
            near += member(nb) as usize + row.iter().filter(|&&x| member(x)).count();
        }
        (near, seen)
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
                    bridges()
                        .take(BRIDGE_ROWS_AHEAD)
                        .for_each(|via| self.prefetch_links(via));
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

/// How many members spread over the graph a members-only walk starts from besides the
/// descent's entry point: 64 distances, ~2 % of an unfiltered walk at ef 100.
const SEEDS: usize = 64;

/// How many bridges' rows a members-only walk asks for before reading the first (it usually
/// needs a few: a node with few member neighbours reaches `m0 / 2` members through ~5-10).
const BRIDGE_ROWS_AHEAD: usize = 8;

/// The most nodes one expansion of [`FlatGraph::walk_members`] scores (a layer-0 row holds at
/// most 2 · 128 links).
const MAX_EXPAND: usize = 256;
