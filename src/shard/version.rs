//! Record versions: a hybrid logical clock.
//!
//! Every change to a point carries a version, and a replica applies a change only if its version is
//! higher than the one it holds, so replicas converge whatever order changes reach them in. Versions
//! come from wall-clock microseconds shifted left by 8 bits, never going backwards on one node
//! (`max(last + 1, now)`), and every version a node sees from elsewhere pushes its clock forward,
//! so a later write through any node wins over an earlier one.
//!
//! A version from elsewhere (a peer's record or catalog entry) is accepted only up to
//! [`MAX_SKEW`] ahead of this node's wall clock ([`VersionClock::check_from_peer`]): a version far
//! in the future would win over every later write, turning them into silent no-ops, and would
//! drag every clock of the cluster along with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far ahead of this node's wall clock a version from a peer may be: clocks of a cluster
/// are NTP-synchronised to well within this.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// The span of versions that `d` of wall-clock time covers.
pub fn version_span(d: Duration) -> u64 {
    (d.as_micros() as u64) << 8
}

/// The `operation_id` a client is told for a write of `version`: versions (≈ 4.6e17) are beyond
/// the 2^53 a JavaScript number holds exactly, so the id is the version's microsecond (≈ 1.8e15,
/// within 2^53 until the year 2255), kept unique and increasing on this node — so per collection,
/// as Qdrant's operation sequence is — by taking the next free one when two writes share a
/// microsecond. The wall clock moves on across a restart, so ids keep increasing after one.
pub fn operation_id(version: u64) -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let micros = version >> 8;
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let id = micros.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(last, id, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return id,
            Err(seen) => last = seen,
        }
    }
}

#[derive(Debug, Default)]
pub struct VersionClock {
    last: AtomicU64,
}

impl VersionClock {
    fn now() -> u64 {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        micros << 8
    }

    /// A version higher than every one this clock has issued or observed.
    pub fn next(&self) -> u64 {
        let now = Self::now();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = now.max(last.saturating_add(1));
            match self.last.compare_exchange_weak(
                last,
                candidate,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return candidate,
                Err(seen) => last = seen,
            }
        }
    }

    /// Moves the clock past a version seen in storage or from a peer.
    pub fn observe(&self, version: u64) {
        self.last.fetch_max(version, Ordering::AcqRel);
    }

    /// Refuses a version from a peer that lies more than [`MAX_SKEW`] ahead of this node's
    /// wall clock.
    pub fn check_from_peer(version: u64) -> Result<(), String> {
        let bound = Self::now().saturating_add(version_span(MAX_SKEW));
        if version > bound {
            let ahead = Duration::from_micros((version - Self::now()) >> 8);
            return Err(format!(
                "version {version} is {}s ahead of this node's clock (at most {}s are accepted): check the nodes' clocks",
                ahead.as_secs(),
                MAX_SKEW.as_secs()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_past_observed() {
        let c = VersionClock::default();
        let a = c.next();
        let b = c.next();
        assert!(b > a);
        c.observe(u64::MAX / 2);
        assert!(c.next() > u64::MAX / 2);
        c.observe(u64::MAX);
        assert_eq!(
            c.next(),
            u64::MAX,
            "saturates instead of wrapping to the past"
        );
    }

    #[test]
    fn operation_ids_fit_javascript_numbers_and_increase() {
        let c = VersionClock::default();
        let mut last = 0;
        for _ in 0..10_000 {
            let id = operation_id(c.next());
            assert!(id > last && id < 1 << 53, "{id} after {last}");
            last = id;
        }
    }

    #[test]
    fn peer_versions_are_bounded_by_the_skew() {
        let c = VersionClock::default();
        assert!(VersionClock::check_from_peer(c.next()).is_ok());
        let near = VersionClock::now() + version_span(MAX_SKEW / 2);
        assert!(VersionClock::check_from_peer(near).is_ok());
        let far = VersionClock::now() + version_span(MAX_SKEW * 2);
        let e = VersionClock::check_from_peer(far).unwrap_err();
        assert!(e.contains("ahead of this node's clock"), "{e}");
        assert!(VersionClock::check_from_peer(u64::MAX).is_err());
    }
}
