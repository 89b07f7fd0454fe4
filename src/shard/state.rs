//! The in-memory view of one shard: which points are live, where each one's vector is indexed,
//! and the small unindexed tail.
//!
//! hnsw_rs cannot delete or replace a point, so segments are immutable and liveness is tracked
//! beside them: every segment has a bitset of live internal ids. Updating a point's vector clears
//! its bit in the old segment and appends the new vector to the tail; deleting clears the bit. A
//! search skips cleared bits during traversal, so an updated or deleted point never comes back in
//! its old form. The optimizer later folds the tail into a new segment and merges segments whose
//! dead fraction grew, dropping the dead entries for good.

use super::point::{Payload, PointId};
use crate::index::Segment;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A concurrent bitset: bits are cleared under the shard's write lock while searches read them.
#[derive(Debug)]
pub struct LiveBits {
    words: Vec<AtomicU64>,
}

impl LiveBits {
    pub fn new(len: usize) -> Self {
        LiveBits {
            words: (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }
    #[inline]
    pub fn get(&self, i: u32) -> bool {
        let i = i as usize;
        self.words
            .get(i / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (i % 64)) != 0)
    }
    pub fn set(&self, i: u32, live: bool) {
        let i = i as usize;
        if let Some(w) = self.words.get(i / 64) {
            if live {
                w.fetch_or(1 << (i % 64), Ordering::Relaxed);
            } else {
                w.fetch_and(!(1 << (i % 64)), Ordering::Relaxed);
            }
        }
    }
    pub fn count(&self) -> usize {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }
}

/// An immutable HNSW segment plus what the shard knows about its entries.
pub struct IndexedSegment {
    /// Directory name under the shard's `segments/` folder.
    pub id: u64,
    pub index: Segment,
    /// `(point id, vector version)` of each internal id, as written in the segment's `ids.bin`.
    pub ids: Vec<(PointId, u64)>,
    pub live: LiveBits,
    /// The current version of each live entry's point (a payload update changes it without
    /// moving the vector), so a search hit needs no lookup in the point table.
    pub versions: Vec<AtomicU64>,
}

impl IndexedSegment {
    /// Makes entry `i` live, holding a point now at `version`.
    pub fn admit(&self, i: u32, version: u64) {
        self.set_version(i, version);
        self.live.set(i, true);
    }
    pub fn set_version(&self, i: u32, version: u64) {
        if let Some(v) = self.versions.get(i as usize) {
            v.store(version, Ordering::Relaxed);
        }
    }
    pub fn version(&self, i: u32) -> u64 {
        self.versions
            .get(i as usize)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    }
    /// Starts loading entry `i`'s id and version: a search's hits are scattered over both
    /// tables, and reading them one by one took a cache miss after another (~1 µs a search).
    pub fn prefetch_entry(&self, i: u32) {
        crate::index::prefetch(self.ids.as_ptr().wrapping_add(i as usize));
        crate::index::prefetch(self.versions.as_ptr().wrapping_add(i as usize));
    }
}

/// Where a point's current vector can be read and searched.
#[derive(Clone)]
pub enum Location {
    Segment(Arc<IndexedSegment>, u32),
    Tail(u32),
}

/// One live point in memory. Tombstones are only in sled.
#[derive(Clone)]
pub struct Entry {
    pub version: u64,
    pub vector_version: u64,
    pub payload: Arc<Payload>,
    pub location: Location,
}

/// Vectors written since the last segment build, searched by exact scan.
#[derive(Default)]
pub struct Tail {
    pub ids: Vec<(PointId, u64)>,
    pub vectors: Vec<f32>,
    pub live: Vec<bool>,
    pub live_count: usize,
}

impl Tail {
    pub fn push(&mut self, id: PointId, vector_version: u64, vector: &[f32]) -> u32 {
        let slot = self.ids.len() as u32;
        self.ids.push((id, vector_version));
        self.vectors.extend_from_slice(vector);
        self.live.push(true);
        self.live_count += 1;
        slot
    }

    pub fn kill(&mut self, slot: u32) {
        if let Some(l) = self.live.get_mut(slot as usize) {
            if *l {
                *l = false;
                self.live_count -= 1;
            }
        }
    }

    pub fn vector(&self, slot: u32, dim: usize) -> &[f32] {
        let start = slot as usize * dim;
        &self.vectors[start..start + dim]
    }
}

/// The live points by id: a hash map for lookups (every search hit, every filter check) and a
/// sorted set of the same ids for scroll, which pages in id order. A `BTreeMap` alone did both,
/// but looking up the ten hits of a search walked ~6 cold tree levels each: 5 % of a search
/// request's CPU on 100k points.
#[derive(Default)]
pub struct PointTable {
    by_id: HashMap<PointId, Entry>,
    order: BTreeSet<PointId>,
}

impl PointTable {
    #[inline]
    pub fn get(&self, id: &PointId) -> Option<&Entry> {
        self.by_id.get(id)
    }
    pub fn get_mut(&mut self, id: &PointId) -> Option<&mut Entry> {
        self.by_id.get_mut(id)
    }
    pub fn contains_key(&self, id: &PointId) -> bool {
        self.by_id.contains_key(id)
    }
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
    /// Adds or replaces a point; returns the entry it replaced.
    pub fn insert(&mut self, id: PointId, entry: Entry) -> Option<Entry> {
        let previous = self.by_id.insert(id, entry);
        if previous.is_none() {
            self.order.insert(id);
        }
        previous
    }
    pub fn remove(&mut self, id: &PointId) -> Option<Entry> {
        let previous = self.by_id.remove(id)?;
        self.order.remove(id);
        Some(previous)
    }
    /// Every point, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&PointId, &Entry)> {
        self.by_id.iter()
    }
    /// Points in id order, starting at `from` (inclusive) or at the smallest id.
    pub fn ordered_from(
        &self,
        from: Option<PointId>,
    ) -> impl Iterator<Item = (&PointId, &Entry)> + '_ {
        let ids = match from {
            Some(f) => self.order.range(f..),
            None => self.order.range(..),
        };
        ids.filter_map(|id| Some((id, self.by_id.get(id)?)))
    }
}

/// Everything a search needs, behind the shard's RwLock.
#[derive(Default)]
pub struct ShardState {
    pub points: PointTable,
    pub segments: Vec<Arc<IndexedSegment>>,
    pub tail: Tail,
}

impl ShardState {
    /// The stored (prepared) vector of a live point.
    pub fn vector<'a>(&'a self, entry: &'a Entry, dim: usize) -> &'a [f32] {
        match &entry.location {
            Location::Segment(seg, i) => seg.index.vector(*i),
            Location::Tail(slot) => self.tail.vector(*slot, dim),
        }
    }

    /// Forgets where a point's vector was indexed, so searches stop finding it there.
    pub fn retire(&mut self, location: &Location) {
        match location {
            Location::Segment(seg, i) => seg.live.set(*i, false),
            Location::Tail(slot) => self.tail.kill(*slot),
        }
    }

    /// Number of live points whose vectors are inside HNSW segments.
    pub fn indexed_count(&self) -> usize {
        self.segments.iter().map(|s| s.live.count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_bits() {
        let b = LiveBits::new(130);
        b.set(0, true);
        b.set(129, true);
        b.set(200, true);
        assert!(b.get(0) && b.get(129) && !b.get(1) && !b.get(200));
        assert_eq!(b.count(), 2);
        b.set(0, false);
        assert_eq!(b.count(), 1);
    }

    #[test]
    fn point_table_orders_ids_and_replaces_in_place() {
        let entry = |version| Entry {
            version,
            vector_version: version,
            payload: Arc::default(),
            location: Location::Tail(0),
        };
        let mut t = PointTable::default();
        for n in [5, 1, 3] {
            assert!(t.insert(PointId::Num(n), entry(n)).is_none());
        }
        assert_eq!(
            t.insert(PointId::Num(3), entry(9)).map(|e| e.version),
            Some(3)
        );
        assert_eq!(t.len(), 3);
        let ids = |t: &PointTable, from| {
            t.ordered_from(from)
                .map(|(id, e)| (*id, e.version))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&t, None),
            vec![
                (PointId::Num(1), 1),
                (PointId::Num(3), 9),
                (PointId::Num(5), 5)
            ]
        );
        assert_eq!(ids(&t, Some(PointId::Num(2))).len(), 2);
        assert!(t.remove(&PointId::Num(1)).is_some() && t.remove(&PointId::Num(1)).is_none());
        assert_eq!(ids(&t, None).len(), 2);
        assert_eq!(t.iter().count(), 2);
    }

    #[test]
    fn tail_kill_counts_once() {
        let mut t = Tail::default();
        let s = t.push(PointId::Num(1), 1, &[1.0, 2.0]);
        t.kill(s);
        t.kill(s);
        assert_eq!(t.live_count, 0);
        assert_eq!(t.vector(s, 2), &[1.0, 2.0]);
    }
}
