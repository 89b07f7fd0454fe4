//! Nearest-neighbour search over one shard: every segment's HNSW graph (or an exact scan of it),
//! plus an exact scan of the tail, merged into one top-k.
//!
//! Filtered search plans per segment, the way Qdrant's query planner does, and never checks the
//! filter on the whole shard:
//! - the payload indexes of the segment (`payload_index.rs`) give the entries passing its indexed
//!   `must` conditions, as a bitset; when they leave at most `full_scan_threshold` of vector
//!   data (KB, [`FULL_SCAN_THRESHOLD`] by default, as in Qdrant), and fewer than a graph walk
//!   would cost (`exact_break_even`, `even_walk_break_even`), exactly those are scored;
//!   otherwise the graph is traversed accepting only them (and checking the filter's other
//!   conditions on the ones it visits) — [`plan`] —, only them where they are spread about
//!   evenly around the query (a filter independent of the vectors: about the cost of an
//!   unfiltered walk) or much rarer there than in the segment (a filter correlated with the
//!   vectors, the query far from its members), the whole graph where they are much denser or
//!   a large share of it (`FlatGraph::search_filtered`);
//! - with no indexed condition, a 64-entry sample estimates how many pass: few, an exact scan;
//!   otherwise graph traversal checks the filter only on the entries it visits, reading only the
//!   payload keys the filter names (`check.rs`).
//!
//! The point table (the tail and overlays: sealed entries whose payload changed after the build)
//! is small and checked in full; segments answer only for their plain entries. A filter
//! pinning ids with `has_id` goes straight to those points.

use super::check::FilterCheck;
use super::deadline::{Checkpoints, Deadline, Stopped};
use super::filter::Filter;
use super::point::PointId;
use super::sealed::SealedSegment;
use super::state::ShardState;
use super::{point, PointView, Shard};
use crate::index::{Members, QuantSearch, Traversal};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Qdrant's default `full_scan_threshold`, in KB of vectors: a filter leaving at most this much
/// vector data in a segment has its candidates scored exactly.
pub const FULL_SCAN_THRESHOLD: usize = 10_000;

/// The candidate count `full_scan_threshold_kb` means for vectors of `dim` (Qdrant counts KB of
/// vector data: 40 000 points of 64 dimensions, 3 333 of 768).
pub fn full_scan_points(full_scan_threshold_kb: usize, dim: usize) -> usize {
    full_scan_threshold_kb.saturating_mul(1024) / (4 * dim.max(1))
}

/// One search against a shard. `vector` is already prepared for the metric.
pub struct SearchSpec<'a> {
    pub vector: &'a [f32],
    /// How many nearest to return (the caller's offset + limit).
    pub k: usize,
    pub ef: usize,
    pub exact: bool,
    pub filter: Option<&'a Filter>,
    pub with_vector: bool,
    /// Without it, hits carry an empty payload (and the search never touches the payloads).
    pub with_payload: bool,
    /// How quantized segments are searched (Qdrant's `params.quantization`).
    pub quantization: QuantSearch,
}

/// A found point with its internal distance (lower is closer).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Hit {
    pub distance: f32,
    pub point: PointView,
}

impl Shard {
    pub fn search(&self, spec: &SearchSpec) -> Vec<Hit> {
        self.search_within(spec, &Deadline::default())
            .unwrap_or_default()
    }

    /// [`Shard::search`] that stops once `deadline` passes: it looks before every segment and
    /// every [`CHECK_EVERY`](super::deadline::CHECK_EVERY) points of a scan (filter, exact
    /// search, tail), so that an overrunning search frees its thread within one segment's graph
    /// walk at most.
    pub fn search_within(
        &self,
        spec: &SearchSpec,
        deadline: &Deadline,
    ) -> Result<Vec<Hit>, Stopped> {
        if spec.k == 0 {
            return Ok(Vec::new());
        }
        let filter = spec.filter.map(|f| self.prepare_filter(f));
        let state = self.state.read();
        let config = self.config();
        let (metric, dim) = (config.metric, config.dim);
        let mut top = TopK::new(spec.k);
        let check = filter.as_deref().map(FilterCheck::new);
        let scanned = deadline.checkpoints_weighted(filter.as_ref().map_or(1, |f| f.size()));

        if let Some(ids) = spec.filter.and_then(|f| f.pinned_ids()) {
            for id in ids {
                if !scanned.tick() {
                    break;
                }
                if let Some(found) = state.find(id).filter(|f| ShardState::has_vector(*f)) {
                    if check.as_ref().is_none_or(|c| c.found(id, found)) {
                        top.push(
                            metric.distance(spec.vector, state.vector(found, dim)),
                            (*id, None),
                        );
                    }
                }
            }
        } else {
            for seg in &state.segments {
                deadline.check()?;
                let threshold = config.full_scan_threshold;
                let hits = search_segment(seg, check.as_ref(), spec, threshold, &scanned);
                scanned.result()?;
                hits.iter().for_each(|&(_, i)| seg.prefetch_entry(i));
                for (d, i) in hits {
                    // An overlaid entry's version is in the point table: leave it to the lookup.
                    let version = (!seg.overlaid.get(i)).then(|| seg.sealed_version(i));
                    top.push(d, (seg.point_id(i), version));
                }
            }
            let tail = &state.tail;
            match &check {
                // Filtered: the point table holds the tail and the overlays (sealed entries
                // whose payload changed, which the segments leave out). The segments' hits are
                // in `top` already, so most entries are too far to matter and are never checked.
                Some(c) => {
                    for (id, e) in state.points.iter().filter(|(_, e)| !e.is_vectorless()) {
                        if !scanned.tick() {
                            break;
                        }
                        let v = state.location_vector(&e.location, dim);
                        let d = metric.distance(spec.vector, v);
                        if top.admits(d) && c.json(id, e.payload.as_bytes()) {
                            top.push(d, (*id, None));
                        }
                    }
                }
                None => {
                    for (slot, (id, _)) in tail.ids.iter().enumerate() {
                        if !scanned.tick() {
                            break;
                        }
                        if tail.live[slot] {
                            let v = tail.vector(slot as u32, dim);
                            top.push(metric.distance(spec.vector, v), (*id, None));
                        }
                    }
                }
            }
        }

        scanned.result()?;

        // A plain segment hit knows its point's version; payloads and vectors need a lookup.
        let top = top.into_sorted();
        if !spec.with_payload && !spec.with_vector {
            let bare = |(distance, (id, version)): (f32, (PointId, Option<u64>))| {
                let version = match version {
                    Some(v) => v,
                    None => ShardState::version(state.find(&id)?),
                };
                let payload = point::empty_payload();
                let point = PointView {
                    id,
                    version,
                    payload,
                    vector: None,
                };
                Some(Hit { distance, point })
            };
            return Ok(top.into_iter().filter_map(bare).collect());
        }
        let found = top
            .into_iter()
            .map(|(distance, (id, _))| (distance, id))
            .collect();
        let views = self.views_of(&state, found, spec.with_vector, spec.with_payload, deadline)?;
        Ok((views.into_iter())
            .map(|(distance, point)| Hit { distance, point })
            .collect())
    }
}

/// Searches one segment's plain entries (live, not overlaid: overlays are searched with the
/// point table). Unfiltered, or filtered the way Qdrant's planner does:
/// - when the payload indexes answer part of the filter, they give the candidates; few of them
///   are scored exactly, more are found by a graph walk ([`plan`]) — and the rest of the filter
///   is checked on those it visits, unless the indexes answered all of it;
/// - otherwise the filter is checked only on the entries the search visits, after a small
///   sample estimated how many pass (few: an exact scan is complete and cheaper).
///
/// An exact scan counts its points in `scanned` and skips the rest once the deadline passed.
fn search_segment(
    seg: &SealedSegment,
    check: Option<&FilterCheck>,
    spec: &SearchSpec,
    full_scan_threshold: usize,
    scanned: &Checkpoints,
) -> Vec<(f32, u32)> {
    let index = &seg.index;
    let Some(check) = check else {
        let live = |i: u32| seg.live.get(i);
        return if spec.exact {
            index.exact(spec.vector, spec.k, |i| scanned.tick() && live(i))
        } else {
            index.search_quantized(spec.vector, spec.k, spec.ef, spec.quantization, live)
        };
    };
    // Every check is a tick: a graph walk that rejects most of what it visits (a selective
    // filter) checks many entries, and stops checking once the deadline passed.
    let passes = |i: u32| scanned.tick() && check.json(&seg.point_id(i), seg.payload_json(i));
    if let Some(c) = seg.payload_index().candidates(check.filter, seg) {
        let ids = &c.ids;
        let member = |i: u32| ids.contains(i) && seg.plain(i);
        let rest = |i: u32| c.exact || passes(i);
        let chosen = if spec.exact {
            Plan::Exact
        } else {
            plan(ids.len(), seg.len(), spec.ef, full_scan_threshold)
        };
        let exact = || {
            let among = ids
                .iter()
                .filter(|&i| scanned.tick() && member(i) && rest(i));
            index.exact_among(spec.vector, spec.k, among)
        };
        let traversal = match chosen {
            Plan::Exact => return exact(),
            Plan::EvenWalk => Traversal::Even,
            Plan::Walk => Traversal::Auto,
            Plan::Graph => Traversal::Whole,
            Plan::Members => Traversal::Members,
        };
        let only = Members {
            count: ids.len(),
            member,
            accept: rest,
            traversal,
        };
        let found = index.search_filtered(spec.vector, spec.k, spec.ef, spec.quantization, &only);
        // The even walk declined (members not spread evenly around the query) or fell short.
        if chosen == Plan::EvenWalk && found.len() < spec.k {
            return exact();
        }
        return found;
    }
    let accept = |i: u32| seg.plain(i) && passes(i);
    if spec.exact || few_pass(seg.len(), &accept, full_scan_threshold) {
        index.exact(spec.vector, spec.k, |i| scanned.tick() && accept(i))
    } else {
        index.search_quantized(spec.vector, spec.k, spec.ef, spec.quantization, accept)
    }
}

/// How one segment answers a filter whose indexed conditions leave some of its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Score every candidate (exact).
    Exact,
    /// Walk the candidates only where they are spread about evenly around the query (a filter
    /// independent of the vectors), which costs about an unfiltered walk; score them exactly
    /// elsewhere, or where that walk found fewer than k.
    EvenWalk,
    /// Walk the graph: the whole graph where the candidates are about as common around the
    /// query as in the segment, the candidates only where they are much rarer there (a filter
    /// correlated with the vectors), as `FlatGraph::search_filtered` decides per query.
    Walk,
    /// Walk the whole graph, keeping the candidates it meets (forced, for benchmarks).
    Graph,
    /// Walk the candidates only (forced, for benchmarks).
    Members,
}

/// The plan for `candidates` of a segment's `n` entries at beam width `ef`: above
/// `full_scan_threshold` or the break-even against the whole-graph walk
/// ([`exact_break_even`]) the graph walk; below, exact scoring up to what the members-only
/// walk on evenly spread members costs ([`even_walk_break_even`]), that walk above where the
/// query finds them spread evenly (exact scoring where it does not).
pub fn plan(candidates: usize, n: usize, ef: usize, full_scan_threshold: usize) -> Plan {
    if let Some(forced) = forced_plan() {
        return forced;
    }
    if candidates > full_scan_threshold.min(exact_break_even(n, ef)) {
        Plan::Walk
    } else if candidates > even_walk_break_even(ef) {
        Plan::EvenWalk
    } else {
        Plan::Exact
    }
}

/// A plan every segment takes whatever its candidates, in searches this thread makes, for
/// benchmarks and tests comparing the plans on the same data (`examples/filtered_bench`);
/// `None` (the default) lets [`plan`] choose.
#[doc(hidden)]
pub fn force_plan(plan: Option<Plan>) {
    FORCED_PLAN.with(|f| f.set(plan));
}

thread_local! {
    static FORCED_PLAN: std::cell::Cell<Option<Plan>> = const { std::cell::Cell::new(None) };
}

fn forced_plan() -> Option<Plan> {
    FORCED_PLAN.with(|f| f.get())
}

/// Distances an unfiltered graph walk computes per unit of `ef`, roughly (layer-0 neighbours of
/// the ~ef nodes it expands that it had not seen yet).
const WALK_DISTANCES_PER_EF: usize = 32;

/// The most candidates worth scoring exactly in a segment of `n` entries, whatever
/// `full_scan_threshold` allows: scoring a fraction s of the segment costs s·n distances, a
/// graph walk accepting that fraction at most ~(32·ef)/s (it looks at 1/s times the nodes of an
/// unfiltered walk), so exact scoring pays only below √(32·ef·n) candidates — 13 900 of a 60 000
/// segment at ef 100. Without this bound a segment smaller than the threshold scored half of
/// itself for a 50 %-selective filter: at 1M points in segments of 60 000 that was 25 × the
/// time of unfiltered search (docs/filtered-search.md).
pub fn exact_break_even(n: usize, ef: usize) -> usize {
    ((n as f64) * (WALK_DISTANCES_PER_EF * ef.max(1)) as f64).sqrt() as usize
}

/// Candidates scored exactly per unit of `ef` that cost about what the members-only walk on
/// evenly spread members costs (beam `ef`: 0.7–1.4 × an unfiltered walk). Measured in one
/// segment at ef 100 (docs/filtered-search.md): exact scoring cost 0.7 × an unfiltered walk
/// for 3 000 candidates of 768 dimensions, 0.85 × for 5 000 of 128, 1.3–1.6 × for 10 000 of
/// 64 and 128, and 5–9 × once the candidates' rows no longer stay in the cache between
/// queries (24 000 of 128 dimensions, 6 000 of 768, 31 000 of 64). So the walk takes over
/// from 6 000 at ef 100, whatever the dimension (`full_scan_threshold` caps the bytes).
const EXACT_ROWS_PER_EF: usize = 60;

/// The most candidates worth scoring exactly rather than walking them alone where they are
/// spread evenly: [`EXACT_ROWS_PER_EF`] · `ef`, 6 000 at ef 100.
pub fn even_walk_break_even(ef: usize) -> usize {
    EXACT_ROWS_PER_EF.saturating_mul(ef.max(1))
}

/// Entries sampled to estimate how many pass a filter no index answers.
const SAMPLES: usize = 64;

/// Whether an exact scan beats graph traversal for a filter no index answers: both cost a check
/// per entry they look at, and a graph walk looks at ~1/selectivity times the nodes of an
/// unfiltered one, so the scan wins only when at most `threshold` entries and under ~3 % of
/// them pass (at most one hit in 64 samples). Estimated from an evenly spread sample.
fn few_pass(n: usize, accept: &impl Fn(u32) -> bool, threshold: usize) -> bool {
    if n <= threshold {
        return true;
    }
    let samples = SAMPLES.min(n);
    let stride = n / samples;
    let hits = (0..samples)
        .filter(|&j| accept((j * stride + (j * 7919) % stride.max(1)) as u32))
        .count();
    hits * n / samples <= threshold && hits * 32 < samples
}

/// The k smallest (distance, id) pairs seen, kept in a bounded max-heap.
pub struct TopK<T> {
    k: usize,
    heap: BinaryHeap<Candidate<T>>,
}

struct Candidate<T>(f32, T);

impl<T> PartialEq for Candidate<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0) == Ordering::Equal
    }
}
impl<T> Eq for Candidate<T> {}
impl<T> PartialOrd for Candidate<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Candidate<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl<T> TopK<T> {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    pub fn push(&mut self, distance: f32, item: T) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Candidate(distance, item));
        } else if self.heap.peek().is_some_and(|worst| distance < worst.0) {
            self.heap.pop();
            self.heap.push(Candidate(distance, item));
        }
    }

    /// Whether a pair at this distance would be kept now.
    pub fn admits(&self, distance: f32) -> bool {
        self.k > 0
            && (self.heap.len() < self.k
                || self.heap.peek().is_some_and(|worst| distance < worst.0))
    }

    /// The kept pairs, closest first.
    pub fn into_sorted(self) -> Vec<(f32, T)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Candidate(d, t)| (d, t))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_smallest_sorted() {
        let mut t = TopK::new(3);
        for (d, i) in [(5.0, 5), (1.0, 1), (4.0, 4), (2.0, 2), (3.0, 3)] {
            t.push(d, i);
        }
        assert_eq!(t.into_sorted(), vec![(1.0, 1), (2.0, 2), (3.0, 3)]);
        let mut t = TopK::new(2);
        assert!(t.admits(9.0));
        t.push(1.0, 1);
        t.push(3.0, 3);
        assert!(t.admits(2.0) && !t.admits(3.0) && !t.admits(4.0));
        let mut z = TopK::new(0);
        assert!(!z.admits(0.0));
        z.push(1.0, 1);
        assert!(z.into_sorted().is_empty());
    }
}
