//! Nearest-neighbour search over one shard: every segment's HNSW graph (or an exact scan of it),
//! plus an exact scan of the tail, merged into one top-k.
//!
//! Filters are applied during traversal, as Qdrant does: a segment's entries are first checked
//! against the filter (payloads are in memory), which also counts how many pass. When few pass — at
//! most the shard's `full_scan_threshold` ([`FULL_SCAN_THRESHOLD`] by default) or under a tenth of the segment — an exact scan of just those is
//! both cheaper and complete; otherwise the graph is traversed with the filter deciding only which
//! nodes may enter the result. A filter pinning ids with `has_id` goes straight to those points.

use super::deadline::{Checkpoints, Deadline, Expired};
use super::filter::Filter;
use super::sealed::SealedSegment;
use super::state::{Found, ShardState};
use super::{matches_found, point, PointView, Shard};
use crate::index::QuantSearch;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// Filtered candidate counts at or below this are searched exactly, unless a shard says otherwise.
pub const FULL_SCAN_THRESHOLD: usize = 10_000;

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
    ) -> Result<Vec<Hit>, Expired> {
        if spec.k == 0 {
            return Ok(Vec::new());
        }
        let state = self.state.read();
        let metric = self.config.metric;
        let mut top = TopK::new(spec.k);
        let scanned = deadline.checkpoints();

        if let Some(ids) = spec.filter.and_then(|f| f.pinned_ids()) {
            for id in ids {
                if !scanned.tick() {
                    break;
                }
                if let Some(found) = state.find(id) {
                    if spec.filter.is_none_or(|f| matches_found(f, id, found)) {
                        top.push(
                            metric.distance(spec.vector, state.vector(found, self.config.dim)),
                            (*id, None),
                        );
                    }
                }
            }
        } else {
            for seg in &state.segments {
                deadline.check()?;
                let allowed = spec.filter.map(|f| allowed_in(&state, seg, f, &scanned));
                scanned.result()?;
                let threshold = self.config.full_scan_threshold;
                let hits = search_segment(seg, allowed.as_deref(), spec, threshold, &scanned);
                scanned.result()?;
                hits.iter().for_each(|&(_, i)| seg.prefetch_entry(i));
                for (d, i) in hits {
                    // An overlaid entry's version is in the point table: leave it to the lookup.
                    let version = (!seg.overlaid.get(i)).then(|| seg.sealed_version(i));
                    top.push(d, (seg.point_id(i), version));
                }
            }
            let tail = &state.tail;
            for (slot, (id, _)) in tail.ids.iter().enumerate() {
                if !tail.live[slot] {
                    continue;
                }
                if !scanned.tick() {
                    break;
                }
                if let Some(f) = spec.filter {
                    match state.points.get(id) {
                        Some(e) if f.matches(id, &e.parsed_payload()) => {}
                        _ => continue,
                    }
                }
                top.push(
                    metric.distance(spec.vector, tail.vector(slot as u32, self.config.dim)),
                    (*id, None),
                );
            }
        }

        scanned.result()?;

        // A plain segment hit knows its point's version; payloads and vectors need a lookup.
        let bare = !spec.with_payload && !spec.with_vector;
        let hits = top
            .into_sorted()
            .into_iter()
            .filter_map(|(distance, (id, version))| {
                let point = match version {
                    Some(version) if bare => PointView {
                        id,
                        version,
                        payload: point::empty_payload(),
                        vector: None,
                    },
                    _ => {
                        let found = state.find(&id)?;
                        self.view(&state, &id, found, spec.with_vector, spec.with_payload)
                    }
                };
                Some(Hit { distance, point })
            })
            .collect();
        Ok(hits)
    }
}

/// Which entries of a segment are live and pass the filter (payloads of plain entries are read
/// from the segment's file, overlaid ones from the point table). Once `scanned` says the
/// deadline passed, the rest is left out (the caller then stops).
fn allowed_in(
    state: &ShardState,
    seg: &Arc<SealedSegment>,
    filter: &Filter,
    scanned: &Checkpoints,
) -> Vec<bool> {
    (0..seg.len() as u32)
        .map(|i| {
            if !seg.live.get(i) || !scanned.tick() {
                return false;
            }
            let id = seg.point_id(i);
            let found = match state.points.get(&id) {
                Some(e) if seg.overlaid.get(i) => Found::Table(e),
                _ => Found::Sealed(seg, i),
            };
            matches_found(filter, &id, found)
        })
        .collect()
}

/// Searches one segment: by graph, or exactly when the filter leaves few candidates. An exact
/// scan counts its points in `scanned` and skips the rest once the deadline passed.
fn search_segment(
    seg: &SealedSegment,
    allowed: Option<&[bool]>,
    spec: &SearchSpec,
    full_scan_threshold: usize,
    scanned: &Checkpoints,
) -> Vec<(f32, u32)> {
    let index = &seg.index;
    let Some(allowed) = allowed else {
        let live = |i: u32| seg.live.get(i);
        return if spec.exact {
            index.exact(spec.vector, spec.k, |i| scanned.tick() && live(i))
        } else {
            index.search_quantized(spec.vector, spec.k, spec.ef, spec.quantization, live)
        };
    };
    let count = allowed.iter().filter(|a| **a).count();
    if count == 0 {
        return Vec::new();
    }
    let accept = |i: u32| allowed[i as usize];
    if spec.exact || count <= full_scan_threshold || count * 10 < allowed.len() {
        index.exact(spec.vector, spec.k, |i| scanned.tick() && accept(i))
    } else {
        index.search_quantized(spec.vector, spec.k, spec.ef, spec.quantization, accept)
    }
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
        let mut z = TopK::new(0);
        z.push(1.0, 1);
        assert!(z.into_sorted().is_empty());
    }
}
