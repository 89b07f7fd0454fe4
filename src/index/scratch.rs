//! Per-thread search scratch: the visited set and the two heaps a search needs.
//!
//! A search must not allocate per visited node, and many threads search the same `Segment`
//! through an `Arc`, so each thread keeps its own scratch in a thread-local and reuses it.
//! The visited set is an array of `u16` tags with a generation counter: a node is visited when
//! its tag equals the current generation, so clearing it is one increment (and a real clear
//! once every 65 535 searches). The heaps hold packed `(distance, id)` keys (see [`pack`]) so
//! they compare as plain integers.

use std::cell::Cell;
use std::collections::BinaryHeap;

/// Reusable state of one search. Obtain it with [`with_scratch`].
#[derive(Default)]
pub(crate) struct Scratch {
    tags: Vec<u16>,
    generation: u16,
    /// Nodes still to expand; a max-heap of `!key`, i.e. nearest first.
    pub candidates: BinaryHeap<u64>,
    /// The best accepted nodes so far; a max-heap of keys, i.e. farthest on top.
    pub results: BinaryHeap<u64>,
}

impl Scratch {
    /// Starts a new search over a graph of `n` nodes: empties the heaps and the visited set.
    pub fn reset(&mut self, n: usize) {
        self.candidates.clear();
        self.results.clear();
        if self.tags.len() < n {
            self.tags.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.tags.iter_mut().for_each(|t| *t = 0);
            self.generation = 1;
        }
    }

    /// Marks `id` visited; returns whether it was unvisited before.
    #[inline(always)]
    pub fn visit(&mut self, id: u32) -> bool {
        let tag = &mut self.tags[id as usize];
        if *tag == self.generation {
            false
        } else {
            *tag = self.generation;
            true
        }
    }

    /// Pointer to `id`'s tag, for prefetching.
    #[inline(always)]
    pub fn tag_ptr(&self, id: u32) -> *const u16 {
        self.tags.as_ptr().wrapping_add(id as usize)
    }
}

thread_local! {
    static SCRATCH: Cell<Option<Box<Scratch>>> = const { Cell::new(None) };
}

/// Runs `f` with this thread's scratch. Re-entrant: a nested call (e.g. an `accept` callback
/// that itself searches) gets a fresh scratch instead of a borrow panic.
#[inline(always)]
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut s = SCRATCH.with(|c| c.take()).unwrap_or_default();
    let r = f(&mut s);
    SCRATCH.with(|c| c.set(Some(s)));
    r
}

/// Maps an `f32` to a `u32` with the same order (negative numbers and -0.0 included).
#[inline(always)]
fn order_bits(d: f32) -> u32 {
    let b = d.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

#[inline(always)]
fn from_order_bits(o: u32) -> f32 {
    if o & 0x8000_0000 != 0 {
        f32::from_bits(o & 0x7fff_ffff)
    } else {
        f32::from_bits(!o)
    }
}

/// Packs `(distance, id)` into one key ordered by distance, then id.
#[inline(always)]
pub(crate) fn pack(d: f32, id: u32) -> u64 {
    ((order_bits(d) as u64) << 32) | id as u64
}

/// Inverse of [`pack`].
#[inline(always)]
pub(crate) fn unpack(k: u64) -> (f32, u32) {
    (from_order_bits((k >> 32) as u32), k as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_preserves_order() {
        let ds = [-1e9f32, -3.5, -1.0, -0.0, 0.0, 1e-30, 0.5, 1.0, 7.0, 1e9];
        for w in ds.windows(2) {
            assert!(pack(w[0], 5) <= pack(w[1], 1), "{} {}", w[0], w[1]);
        }
        for &d in &ds {
            let (d2, id) = unpack(pack(d, 77));
            assert_eq!(d2.to_bits(), d.to_bits());
            assert_eq!(id, 77);
        }
    }

    #[test]
    fn visited_generations() {
        let mut s = Scratch::default();
        for _ in 0..70_000u32 {
            s.reset(10);
            assert!(s.visit(3));
            assert!(!s.visit(3));
        }
    }
}
