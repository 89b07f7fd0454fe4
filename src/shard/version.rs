//! Record versions: a hybrid logical clock.
//!
//! Every change to a point carries a version, and a replica applies a change only if its version is
//! higher than the one it holds, so replicas converge whatever order changes reach them in. Versions
//! come from wall-clock microseconds shifted left by 8 bits, never going backwards on one node
//! (`max(last + 1, now)`), and every version a node sees from elsewhere pushes its clock forward,
//! so a later write through any node wins over an earlier one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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
            let candidate = now.max(last + 1);
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
    }
}
