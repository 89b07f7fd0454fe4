//! The in-memory view of one shard: which points are live, where each one's vector is indexed,
//! and the small unindexed tail.
//!
//! hnsw_rs cannot delete or replace a point, so segments are immutable and liveness is tracked
//! beside them: every segment has a bitset of live internal ids. Updating a point's vector clears
//! its bit in the old segment and appends the new vector to the tail; deleting clears the bit. A
//! search skips cleared bits during traversal, so an updated or deleted point never comes back in
//! its old form. The optimizer later folds the tail into a new segment and merges segments whose
//! dead fraction grew, dropping the dead entries for good.
//!
//! A sealed point costs RAM only for its two bits: its id, versions, payload and vector are in
//! the segment's mapped file. The [`PointTable`] holds just the points whose state is not all
//! there — the tail, and overlays (payload changes of sealed points) — so it is as small as the
//! tail. Every live point is exactly one of: a table entry, or a live, non-overlaid segment
//! entry; [`ShardState::find`] looks in that order.

use super::point::{Payload, PointId};
use super::sealed::SealedSegment;
use std::collections::{BTreeSet, HashMap, HashSet};
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

/// Where a point's current vector can be read and searched.
#[derive(Clone)]
pub enum Location {
    Segment(Arc<SealedSegment>, u32),
    Tail(u32),
    /// Nowhere: the point's vector was deleted (`/points/vectors/delete`). It keeps its payload
    /// in the point table and is counted, scrolled and filtered, but no search finds it, until
    /// a new vector puts it in the tail again.
    Vectorless,
}

/// A point whose current state is not all in a sealed segment's file: a tail point, or a sealed
/// one whose payload changed since (an overlay). Tombstones are only in sled.
#[derive(Clone)]
pub struct Entry {
    pub version: u64,
    pub vector_version: u64,
    /// The payload as JSON text: a parsed map of even two small fields costs ~700 bytes (a
    /// B-tree leaf sized for eleven entries), the text a tenth of that. Parsed when read.
    pub payload: Box<str>,
    pub location: Location,
}

impl Entry {
    pub fn is_vectorless(&self) -> bool {
        matches!(self.location, Location::Vectorless)
    }

    pub fn parsed_payload(&self) -> Payload {
        super::point::read_held_payload(self.payload.as_bytes())
    }
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

    /// Room for `n` more points of dimension `dim` (a reopen knows how many it will replay:
    /// growing by doubling would copy the vectors several times over).
    pub fn reserve(&mut self, n: usize, dim: usize) {
        self.ids.reserve(n);
        self.vectors.reserve(n * dim);
        self.live.reserve(n);
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
    /// How many entries are [`Location::Vectorless`] (they are live points outside the tail and
    /// the segments, counted apart).
    vectorless: usize,
    /// Bytes of payload text held by the entries in the tail (what the tail holds besides its
    /// vectors: see [`ShardState::tail_bytes`]).
    tail_payload_bytes: usize,
    /// The most entries `by_id` held since it last shrank: its buckets were sized for these
    /// (its `capacity()` is no measure of them: removals leave tombstones that lower it).
    peak: usize,
}

/// The payload bytes an entry adds to the tail's: its text when its vector is in the tail.
fn tail_payload_of(entry: &Entry) -> usize {
    match entry.location {
        Location::Tail(_) => entry.payload.len(),
        _ => 0,
    }
}

impl PointTable {
    #[inline]
    pub fn get(&self, id: &PointId) -> Option<&Entry> {
        self.by_id.get(id)
    }
    /// Moves a point's vector to `location` (a build took it out of the tail, a compaction
    /// gave it another slot).
    pub fn relocate(&mut self, id: &PointId, location: Location) {
        if let Some(e) = self.by_id.get_mut(id) {
            self.tail_payload_bytes -= tail_payload_of(e);
            e.location = location;
            self.tail_payload_bytes += tail_payload_of(e);
        }
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
    /// Room for `n` more points.
    pub fn reserve(&mut self, n: usize) {
        self.by_id.reserve(n);
    }
    /// Hands back the hash map's room once most of its entries left (a build moved them into
    /// a segment). A hash map never shrinks on removal: after each build the table kept the
    /// buckets of the largest tail it had held (72 B a bucket, 131 072 buckets for a 60 349
    /// point tail: 10 MiB of anonymous memory after an upload, none after a restart). Shrinks
    /// to twice the entries left when they are under a quarter of the most it held, so that a
    /// tail refilling regrows it a few times per build at most.
    pub fn shrink_if_sparse(&mut self) {
        const MIN_CAPACITY: usize = 1024;
        let len = self.by_id.len();
        if self.peak > MIN_CAPACITY.max(4 * len) {
            self.by_id.shrink_to(MIN_CAPACITY.max(2 * len));
            self.peak = len;
        }
    }
    /// Adds or replaces a point; returns the entry it replaced.
    pub fn insert(&mut self, id: PointId, entry: Entry) -> Option<Entry> {
        self.vectorless += usize::from(entry.is_vectorless());
        self.tail_payload_bytes += tail_payload_of(&entry);
        let previous = self.by_id.insert(id, entry);
        self.peak = self.peak.max(self.by_id.len());
        match &previous {
            None => {
                self.order.insert(id);
            }
            Some(p) => {
                self.vectorless -= usize::from(p.is_vectorless());
                self.tail_payload_bytes -= tail_payload_of(p);
            }
        }
        previous
    }
    pub fn remove(&mut self, id: &PointId) -> Option<Entry> {
        let previous = self.by_id.remove(id)?;
        self.order.remove(id);
        self.vectorless -= usize::from(previous.is_vectorless());
        self.tail_payload_bytes -= tail_payload_of(&previous);
        Some(previous)
    }
    /// Live points without a vector.
    pub fn vectorless(&self) -> usize {
        self.vectorless
    }
    /// Bytes of payload text of the points whose vector is in the tail.
    pub fn tail_payload_bytes(&self) -> usize {
        self.tail_payload_bytes
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
    /// Oldest first.
    pub segments: Vec<Arc<SealedSegment>>,
    pub tail: Tail,
    /// Deleted points still marked dirty because some segment holds a copy of them: their mark
    /// can go once no segment does (see the shard's module doc).
    pub deleted_dirty: HashSet<PointId>,
    /// The highest record version this shard holds, tombstones included.
    pub max_version: u64,
}

/// A live point, found.
#[derive(Clone, Copy)]
pub enum Found<'a> {
    Table(&'a Entry),
    Sealed(&'a Arc<SealedSegment>, u32),
}

impl ShardState {
    /// The current state of a live point.
    pub fn find(&self, id: &PointId) -> Option<Found<'_>> {
        if let Some(e) = self.points.get(id) {
            return Some(Found::Table(e));
        }
        self.segments.iter().rev().find_map(|seg| {
            let i = seg.find(id)?;
            seg.plain(i).then_some(Found::Sealed(seg, i))
        })
    }

    /// Where a found point's vector is.
    pub fn location(found: Found<'_>) -> Location {
        match found {
            Found::Table(e) => e.location.clone(),
            Found::Sealed(seg, i) => Location::Segment(Arc::clone(seg), i),
        }
    }

    pub fn version(found: Found<'_>) -> u64 {
        match found {
            Found::Table(e) => e.version,
            Found::Sealed(seg, i) => seg.sealed_version(i),
        }
    }

    pub fn vector_version(found: Found<'_>) -> u64 {
        match found {
            Found::Table(e) => e.vector_version,
            Found::Sealed(seg, i) => seg.vector_version(i),
        }
    }

    /// The stored size (JSON text) of a live point's payload: what reading it costs, known
    /// before reading it.
    pub fn payload_len(found: Found<'_>) -> usize {
        match found {
            Found::Table(e) => e.payload.len(),
            Found::Sealed(seg, i) => seg.payload_json(i).len(),
        }
    }

    pub fn payload(found: Found<'_>) -> Arc<Payload> {
        match found {
            Found::Table(e) => Arc::new(e.parsed_payload()),
            Found::Sealed(seg, i) => Arc::new(seg.payload(i)),
        }
    }

    /// The stored (prepared) vector of a live point.
    pub fn vector<'a>(&'a self, found: Found<'a>, dim: usize) -> &'a [f32] {
        match found {
            Found::Table(e) => self.location_vector(&e.location, dim),
            Found::Sealed(seg, i) => seg.index.vector(i),
        }
    }

    /// The vector at a location; empty for a point without one.
    pub fn location_vector<'a>(&'a self, location: &'a Location, dim: usize) -> &'a [f32] {
        match location {
            Location::Segment(seg, i) => seg.index.vector(*i),
            Location::Tail(slot) => self.tail.vector(*slot, dim),
            Location::Vectorless => &[],
        }
    }

    /// Where a point with a new vector goes: the tail, or nowhere for an empty one (its vector
    /// was deleted).
    pub fn place(&mut self, id: PointId, vector_version: u64, vector: &[f32]) -> Location {
        if vector.is_empty() {
            Location::Vectorless
        } else {
            Location::Tail(self.tail.push(id, vector_version, vector))
        }
    }

    /// Whether a found point has a vector (a search can score it).
    pub fn has_vector(found: Found<'_>) -> bool {
        !matches!(found, Found::Table(e) if e.is_vectorless())
    }

    /// Forgets where a point's vector was indexed, so searches stop finding it there.
    pub fn retire(&mut self, location: &Location) {
        match location {
            Location::Segment(seg, i) => {
                seg.live.set(*i, false);
                seg.overlaid.set(*i, false);
            }
            Location::Tail(slot) => self.tail.kill(*slot),
            Location::Vectorless => {}
        }
    }

    /// What the tail holds in RAM and a build would take out of it: its live vectors (`dim`
    /// floats each) and their points' payload text. The tail is bounded by these bytes as well
    /// as by its points (see [`super::optimizer`]): a few points with large payloads hold as
    /// much as many with small ones.
    pub fn tail_bytes(&self, dim: usize) -> usize {
        self.tail.live_count * 4 * dim + self.points.tail_payload_bytes()
    }

    /// Number of live points whose vectors are inside HNSW segments.
    pub fn indexed_count(&self) -> usize {
        self.segments.iter().map(|s| s.live.count()).sum()
    }

    /// Number of live points.
    pub fn live_count(&self) -> usize {
        self.indexed_count() + self.tail.live_count + self.points.vectorless()
    }

    /// Every live point, in no particular order.
    pub fn iter_live(&self) -> impl Iterator<Item = (PointId, Found<'_>)> + '_ {
        let table = self.points.iter().map(|(id, e)| (*id, Found::Table(e)));
        let sealed = self.segments.iter().flat_map(|seg| {
            (0..seg.len() as u32)
                .filter(|&i| seg.plain(i))
                .map(move |i| (seg.point_id(i), Found::Sealed(seg, i)))
        });
        table.chain(sealed)
    }

    /// Live points in id order from `from` (inclusive): the point table's ids and every
    /// segment's (each already sorted), merged.
    pub fn ordered_from(
        &self,
        from: Option<PointId>,
    ) -> impl Iterator<Item = (PointId, Found<'_>)> + '_ {
        let mut heads: Vec<Box<dyn Iterator<Item = (PointId, Found<'_>)> + '_>> = Vec::new();
        heads.push(Box::new(
            self.points
                .ordered_from(from)
                .map(|(id, e)| (*id, Found::Table(e))),
        ));
        for seg in &self.segments {
            let start = from.map_or(0, |f| seg.lower_bound(&f));
            heads.push(Box::new(
                (start..seg.len() as u32)
                    .filter(|&i| seg.plain(i))
                    .map(move |i| (seg.point_id(i), Found::Sealed(seg, i))),
            ));
        }
        let mut peeked: Vec<Option<(PointId, Found<'_>)>> =
            heads.iter_mut().map(|h| h.next()).collect();
        std::iter::from_fn(move || {
            let (at, _) = peeked
                .iter()
                .enumerate()
                .filter_map(|(k, p)| p.as_ref().map(|(id, _)| (k, *id)))
                .min_by_key(|(_, id)| *id)?;
            let item = peeked[at].take();
            peeked[at] = heads[at].next();
            item
        })
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
            payload: "{}".into(),
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
    fn point_table_hands_back_its_room_once_emptied() {
        let entry = |location| Entry {
            version: 1,
            vector_version: 1,
            payload: "{}".into(),
            location,
        };
        let mut table = PointTable::default();
        for i in 0..50_000u64 {
            table.insert(PointId::Num(i), entry(Location::Tail(i as u32)));
        }
        // A build took all but a few into a segment.
        for i in 10..50_000u64 {
            table.remove(&PointId::Num(i));
        }
        table.shrink_if_sparse();
        assert!(
            table.by_id.capacity() <= 2048,
            "{} buckets left",
            table.by_id.capacity()
        );
        assert_eq!(table.len(), 10);
        assert!(table.get(&PointId::Num(9)).is_some());
        // A table still well filled keeps its room.
        for i in 10..1_500u64 {
            table.insert(PointId::Num(i), entry(Location::Tail(i as u32)));
        }
        let kept = table.by_id.capacity();
        table.shrink_if_sparse();
        assert_eq!(table.by_id.capacity(), kept);
    }

    #[test]
    fn point_table_counts_the_payload_bytes_of_tail_entries() {
        let entry = |payload: &str, location| Entry {
            version: 1,
            vector_version: 1,
            payload: payload.into(),
            location,
        };
        let mut t = PointTable::default();
        t.insert(PointId::Num(1), entry("{\"a\":1}", Location::Tail(0)));
        t.insert(PointId::Num(2), entry("{}", Location::Vectorless));
        assert_eq!(t.tail_payload_bytes(), 7);
        // Replaced by a larger payload, still in the tail.
        t.insert(PointId::Num(1), entry("{\"a\":1000}", Location::Tail(1)));
        assert_eq!(t.tail_payload_bytes(), 10);
        t.insert(PointId::Num(3), entry("{\"b\":2}", Location::Tail(2)));
        assert_eq!(t.tail_payload_bytes(), 17);
        t.relocate(&PointId::Num(3), Location::Vectorless);
        assert_eq!(t.tail_payload_bytes(), 10);
        t.relocate(&PointId::Num(2), Location::Tail(3));
        assert_eq!(t.tail_payload_bytes(), 12);
        t.remove(&PointId::Num(1));
        t.remove(&PointId::Num(2));
        assert_eq!(t.tail_payload_bytes(), 0);
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
