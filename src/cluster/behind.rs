//! This node's replicas that are known to lack writes the cluster acknowledged: what Qdrant
//! calls a Dead or Partial replica, which it never reads from until it has recovered.
//!
//! A peer that acknowledged a write without one of this node's replicas (it skipped the replica
//! because this node hung, or the replica's commit failed) keeps it in its
//! [ledger](super::missed); this node learns it from the peer ([`super::recovery`]) and marks the
//! replica here. A marked replica refuses every read that wants a complete replica — its own
//! coordinator's and its peers' — so that they are served by another owner, until it has pulled
//! everything above the oldest version it missed from the owners that acknowledged those writes.
//!
//! A node cannot ask its peers before it runs, and a frozen node (SIGSTOP, a stalled VM) that
//! thaws serves the requests waiting in its sockets at once. So it watches itself for a stall
//! ([`StallWatch`]): a thread ticks every [`TICK`]; a tick that comes more than [`STALL`] after
//! the previous one means the process stood still for long enough that peers may have marked it
//! down (they need two failed probes, over a second). From the moment a reader sees the
//! overdue tick until the node has asked every peer what it missed, every local replica counts
//! as behind.

use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the stall watch ticks.
pub const TICK: Duration = Duration::from_millis(100);
/// A gap between two ticks longer than this is a stall. Peers mark a node down after two probes
/// of 600 ms fail (or a call of at least 1 s), so any stall that can make them skip its replicas
/// is well over this; a busy machine that delays the thread this long costs one round of
/// questions to the peers, nothing more.
pub const STALL: Duration = Duration::from_millis(500);

/// What a replica lacks: every record above `since` from the owners `from`. The owner's mark
/// here and a peer's ledger entry ([`super::missed`]) both keep one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    pub since: u64,
    pub from: BTreeSet<u32>,
    /// Bumped by every mark: a catch-up clears only the lag it started from.
    pub generation: u64,
}

impl Lag {
    /// Nothing missed yet.
    pub fn none() -> Lag {
        Lag {
            since: u64::MAX,
            from: BTreeSet::new(),
            generation: 0,
        }
    }

    /// One more gap merged in: the records above `since` from the owners `from`, marked as
    /// `generation`.
    pub fn widen(&mut self, since: u64, from: impl IntoIterator<Item = u32>, generation: u64) {
        self.since = self.since.min(since);
        self.from.extend(from);
        self.generation = generation;
    }
}

/// This node's lagging replicas, by (collection, shard), and its stall watch.
#[derive(Default)]
pub struct Behind {
    replicas: Mutex<HashMap<(String, u32), Lag>>,
    /// `replicas.len()`, read without the lock on every read.
    count: AtomicUsize,
    generation: AtomicU64,
    pub stall: Arc<StallWatch>,
}

impl Behind {
    /// Records that this node's replica of `shard` lacks the records above `since` that the
    /// owners `from` hold; merged with what it lacked already.
    pub fn mark(
        &self,
        collection: &str,
        shard: u32,
        since: u64,
        from: impl IntoIterator<Item = u32>,
    ) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let mut replicas = self.replicas.lock();
        (replicas.entry((collection.to_string(), shard)))
            .or_insert_with(Lag::none)
            .widen(since, from, generation);
        self.count.store(replicas.len(), Ordering::Release);
    }

    /// The replica caught up with `lag` (as it was when the catch-up started): it serves reads
    /// again, unless it was marked again meanwhile. Answers whether it was cleared.
    pub fn clear(&self, collection: &str, shard: u32, generation: u64) -> bool {
        let mut replicas = self.replicas.lock();
        let key = (collection.to_string(), shard);
        let cleared = replicas
            .get(&key)
            .is_some_and(|lag| lag.generation == generation);
        if cleared {
            replicas.remove(&key);
        }
        self.count.store(replicas.len(), Ordering::Release);
        cleared
    }

    /// Every lagging replica and what it lacks.
    pub fn lagging(&self) -> Vec<((String, u32), Lag)> {
        let replicas = self.replicas.lock();
        replicas
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether this node's replica of `shard` is known, or may be, to lack acknowledged
    /// writes: it then serves only reads that accept an incomplete replica.
    pub fn refuses_reads(&self, collection: &str, shard: u32) -> bool {
        if self.stall.suspect() {
            return true;
        }
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let replicas = self.replicas.lock();
        replicas.keys().any(|(c, s)| *s == shard && c == collection)
    }
}

/// Notices that this process stood still (see the module doc).
pub struct StallWatch {
    origin: Instant,
    /// Milliseconds since `origin` at the last tick.
    last_tick: AtomicU64,
    /// Stalls seen by the ticking thread, and how many of them the node has asked its peers
    /// about since.
    seen: AtomicU64,
    checked: AtomicU64,
    /// Only a node whose thread ticks can tell; the others never suspect a stall.
    watching: AtomicBool,
}

impl Default for StallWatch {
    fn default() -> Self {
        StallWatch {
            origin: Instant::now(),
            last_tick: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            checked: AtomicU64::new(0),
            watching: AtomicBool::new(false),
        }
    }
}

impl StallWatch {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Starts the ticking thread; it ends with the last other holder of the watch.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        if self.watching.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.last_tick.store(self.now(), Ordering::SeqCst);
        let watch = Arc::clone(self);
        std::thread::Builder::new()
            .name("shoal-stall-watch".into())
            .spawn(move || {
                while Arc::strong_count(&watch) > 1 {
                    std::thread::sleep(TICK);
                    watch.tick();
                }
            })
            .map(|_| ())
    }

    /// One tick: a gap over [`STALL`] since the previous one is a stall. The stall is counted
    /// before the tick's time is stored, so that a reader who sees the new time sees the stall.
    pub fn tick(&self) {
        let now = self.now();
        let gap = now.saturating_sub(self.last_tick.load(Ordering::SeqCst));
        if gap > STALL.as_millis() as u64 {
            self.seen.fetch_add(1, Ordering::SeqCst);
            metrics::counter!("shoal_stalls_total").increment(1);
            tracing::warn!(
                stalled_ms = gap,
                "this process stood still (stopped, or starved of CPU): its replicas serve reads again once it has asked its peers which writes they acknowledged without it"
            );
        }
        self.last_tick.store(now, Ordering::SeqCst);
    }

    /// Whether this node may have stood still without having asked its peers since.
    pub fn suspect(&self) -> bool {
        if !self.watching.load(Ordering::Relaxed) {
            return false;
        }
        let last = self.last_tick.load(Ordering::SeqCst);
        let overdue = self.now().saturating_sub(last) > STALL.as_millis() as u64;
        overdue || self.seen.load(Ordering::SeqCst) > self.checked.load(Ordering::SeqCst)
    }

    /// Stalls seen and not yet asked about: `Some(seen)` to pass to [`StallWatch::checked`]
    /// once the peers have been asked.
    pub fn unchecked(&self) -> Option<u64> {
        let seen = self.seen.load(Ordering::SeqCst);
        (seen > self.checked.load(Ordering::SeqCst)).then_some(seen)
    }

    /// The peers were asked after the first `seen` stalls.
    pub fn checked(&self, seen: u64) {
        self.checked.fetch_max(seen, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_merge_and_a_catch_up_clears_only_what_it_started_from() {
        let behind = Behind::default();
        assert!(!behind.refuses_reads("c", 1));
        behind.mark("c", 1, 500, [2]);
        behind.mark("c", 1, 300, [0]);
        assert!(behind.refuses_reads("c", 1));
        assert!(!behind.refuses_reads("c", 2) && !behind.refuses_reads("d", 1));
        let [(key, lag)] = <[_; 1]>::try_from(behind.lagging()).unwrap();
        assert_eq!(key, ("c".to_string(), 1));
        assert_eq!(
            (lag.since, lag.from.iter().copied().collect::<Vec<_>>()),
            (300, vec![0, 2])
        );
        // Marked again while the catch-up ran: the newer lag stays.
        behind.mark("c", 1, 900, [2]);
        assert!(!behind.clear("c", 1, lag.generation));
        assert!(behind.refuses_reads("c", 1));
        let now = behind.lagging().remove(0).1;
        assert!(behind.clear("c", 1, now.generation));
        assert!(!behind.refuses_reads("c", 1));
    }

    #[test]
    fn a_late_tick_is_a_stall_until_the_peers_were_asked() {
        let watch = StallWatch::default();
        assert!(
            !watch.suspect(),
            "a watch that does not tick never suspects"
        );
        watch.watching.store(true, Ordering::SeqCst);
        watch.last_tick.store(watch.now(), Ordering::SeqCst);
        watch.tick();
        assert!(!watch.suspect() && watch.unchecked().is_none());
        // The thread stood still: before its next tick a reader sees the tick overdue...
        watch.last_tick.store(0, Ordering::SeqCst);
        std::thread::sleep(STALL + Duration::from_millis(20));
        assert!(watch.suspect());
        // ...and after it, the stall, until the peers were asked.
        watch.tick();
        let seen = watch.unchecked().expect("a stall");
        assert!(watch.suspect());
        watch.checked(seen);
        assert!(!watch.suspect() && watch.unchecked().is_none());
    }
}
