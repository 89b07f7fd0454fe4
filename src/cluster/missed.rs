//! The ledger of writes this node acknowledged without some owner's replica: the owner was
//! skipped because its calls hang ([`super::health`]) and the others were enough for the
//! collection's `write_consistency_factor`, or its commit failed. Such a replica lacks an
//! acknowledged write until it catches up, so:
//!
//! - reads this node coordinates never take it while a complete replica may answer (it is tried
//!   last, and refused in the pass that wants complete replicas, without a call);
//! - the owner is told ([`super::recovery`]): it marks its replica behind ([`super::behind`])
//!   and pulls what it lacks from the owners that acknowledged; once it has taken the news, this
//!   node forgets the entry.
//!
//! Skipping an owner is decided and recorded under the ledger's lock ([`Ledger::targets`]), and
//! an owner asking what it missed is answered under the same lock, with whether it is still
//! skipped ([`Ledger::report`]): an owner told "not skipped" has been told every write that
//! skipped it.
//!
//! One entry per (owner, collection, shard), whatever the number of writes: ~100 bytes each.

use super::behind::Lag;
use super::protocol::{MissedReport, MissedWrites};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// What one owner's replica of one shard missed; its `generation` is the ledger's sequence
/// number at the last write recorded there.
type Entries = HashMap<(u32, String, u32), Lag>;

#[derive(Default)]
pub struct Ledger {
    /// By (owner, collection, shard).
    entries: Mutex<Entries>,
    seq: AtomicU64,
    /// `entries.len()`, read without the lock on every read this node coordinates.
    count: AtomicUsize,
}

impl Ledger {
    /// The owners a write of `shard` (records of versions from `oldest` on) goes to: all of
    /// them, but those `hangs` says hang when the others are at least `required`; the owners
    /// left out are recorded as missing the write.
    pub fn targets(
        &self,
        (collection, shard): (&str, u32),
        owners: &[u32],
        required: usize,
        oldest: u64,
        hangs: impl Fn(u32) -> bool,
    ) -> Vec<u32> {
        let mut entries = self.entries.lock();
        let (up, left_out): (Vec<u32>, Vec<u32>) = owners.iter().copied().partition(|o| !hangs(*o));
        if up.len() < required || left_out.is_empty() {
            return owners.to_vec();
        }
        self.note(&mut entries, (collection, shard), &left_out, &up, oldest);
        up
    }

    /// A write of `shard` whose records have versions from `oldest` on was acknowledged by the
    /// owners `acked` and not by the owners `missing`.
    pub fn record(
        &self,
        (collection, shard): (&str, u32),
        missing: &[u32],
        acked: &[u32],
        oldest: u64,
    ) {
        let mut entries = self.entries.lock();
        self.note(&mut entries, (collection, shard), missing, acked, oldest);
    }

    fn note(
        &self,
        entries: &mut Entries,
        (collection, shard): (&str, u32),
        missing: &[u32],
        from: &[u32],
        oldest: u64,
    ) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        for owner in missing {
            // Records above `since` are pulled: the oldest missed one included.
            (entries.entry((*owner, collection.to_string(), shard)))
                .or_insert_with(Lag::none)
                .widen(oldest.saturating_sub(1), from.iter().copied(), seq);
        }
        self.counted(entries);
    }

    fn counted(&self, entries: &Entries) {
        self.count.store(entries.len(), Ordering::Release);
        metrics::gauge!("shoal_missed_replica_writes").set(entries.len() as f64);
    }

    /// Whether `owner`'s replica of `shard` lacks writes this node acknowledged.
    pub fn lacks(&self, collection: &str, shard: u32, owner: u32) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let entries = self.entries.lock();
        entries
            .keys()
            .any(|(o, c, s)| *o == owner && *s == shard && c == collection)
    }

    /// Owners with an entry.
    pub fn owners(&self) -> BTreeSet<u32> {
        if self.count.load(Ordering::Acquire) == 0 {
            return BTreeSet::new();
        }
        self.entries.lock().keys().map(|(o, _, _)| *o).collect()
    }

    /// What `owner`'s replicas lack, as the peer message says it.
    pub fn for_owner(&self, owner: u32) -> Vec<MissedWrites> {
        if self.count.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        Self::listed(&self.entries.lock(), owner)
    }

    fn listed(entries: &Entries, owner: u32) -> Vec<MissedWrites> {
        let mut out: Vec<MissedWrites> = entries
            .iter()
            .filter(|((o, _, _), _)| *o == owner)
            .map(|((_, collection, shard), e)| MissedWrites {
                collection: collection.clone(),
                shard: *shard,
                since: e.since,
                from: e.from.iter().copied().collect(),
                seq: e.generation,
            })
            .collect();
        out.sort_by(|a, b| (&a.collection, a.shard).cmp(&(&b.collection, b.shard)));
        out
    }

    /// What `owner` asks: what its replicas lack, and whether writes still leave it out
    /// (`skipping`, read under the lock that [`Ledger::targets`] decides under).
    pub fn report(&self, owner: u32, skipping: impl FnOnce() -> bool) -> MissedReport {
        let entries = self.entries.lock();
        MissedReport {
            skipping: skipping(),
            writes: Self::listed(&entries, owner),
        }
    }

    /// `owner` took the news of its entries up to sequence number `upto`: they go (a write
    /// recorded since stays).
    pub fn forget(&self, owner: u32, upto: u64) {
        let mut entries = self.entries.lock();
        entries.retain(|(o, _, _), e| *o != owner || e.generation > upto);
        self.counted(&entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_merge_per_replica_and_are_forgotten_up_to_what_the_owner_took() {
        let ledger = Ledger::default();
        assert!(!ledger.lacks("c", 0, 2) && ledger.for_owner(2).is_empty());
        ledger.record(("c", 0), &[2], &[0], 1000);
        ledger.record(("c", 0), &[2], &[1], 700);
        ledger.record(("c", 3), &[2, 1], &[0], 900);
        assert!(ledger.lacks("c", 0, 2) && ledger.lacks("c", 3, 1));
        assert!(!ledger.lacks("c", 0, 1) && !ledger.lacks("d", 0, 2));
        assert_eq!(ledger.owners().into_iter().collect::<Vec<_>>(), [1, 2]);
        let told = ledger.for_owner(2);
        assert_eq!(told.len(), 2);
        assert_eq!(
            (told[0].shard, told[0].since, told[0].from.clone()),
            (0, 699, vec![0, 1])
        );
        assert_eq!(
            (told[1].shard, told[1].since, told[1].from.clone()),
            (3, 899, vec![0])
        );
        let upto = told.iter().map(|m| m.seq).max().unwrap();
        // A write missed after the owner was told stays in the ledger.
        ledger.record(("c", 3), &[2], &[0], 950);
        ledger.forget(2, upto);
        let left = ledger.for_owner(2);
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].shard, left[0].since), (3, 899));
        assert!(ledger.lacks("c", 3, 1), "another owner's entries stay");
    }

    #[test]
    fn owners_left_out_of_a_write_are_recorded_as_it_is_decided() {
        let ledger = Ledger::default();
        let hangs = |o: u32| o == 2;
        assert_eq!(ledger.targets(("c", 0), &[0, 1], 1, 50, hangs), [0, 1]);
        assert!(ledger.owners().is_empty(), "nobody left out");
        // Too few owners without the hanging one: the write waits for it, nothing recorded.
        assert_eq!(ledger.targets(("c", 0), &[1, 2], 2, 50, hangs), [1, 2]);
        assert!(ledger.owners().is_empty());
        assert_eq!(ledger.targets(("c", 0), &[1, 2], 1, 50, hangs), [1]);
        let report = ledger.report(2, || true);
        assert!(report.skipping);
        assert_eq!(report.writes.len(), 1);
        assert_eq!(
            (report.writes[0].since, report.writes[0].from.clone()),
            (49, vec![1])
        );
        assert!(ledger.report(1, || false).writes.is_empty());
    }
}
