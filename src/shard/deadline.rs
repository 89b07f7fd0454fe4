//! When a read must stop: the request's deadline, and a flag set when the request is dropped
//! (it timed out, or its client went away). A search checks it between segments and every
//! [`CHECK_EVERY`] points of a scan, so that a search that overran stops within a fraction of a
//! millisecond of scanning (or one segment's graph walk) instead of running to its end on a
//! thread nobody waits for.
//!
//! A read also stops before it makes an answer larger than its request may hold: the payloads
//! one shard's answer carries are bounded ([`Deadline::with_payload_limit`]), checked on their
//! stored sizes before any of them is read ([`Stopped::TooLarge`]).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Points scanned between two looks at the clock (a look costs ~25 ns; a point ~50 ns to µs).
pub const CHECK_EVERY: u32 = 4096;

/// When a read must stop; the default never stops.
#[derive(Debug, Clone, Default)]
pub struct Deadline {
    at: Option<Instant>,
    cancelled: Option<Arc<AtomicBool>>,
    /// The most payload bytes (as stored: JSON text) one shard's answer may carry.
    payload_limit: Option<usize>,
}

/// What a read that had to stop answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request's deadline passed")]
pub struct Expired;

/// Why a read stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error("the request's deadline passed")]
    Expired,
    /// Its answer would carry more payload than the request may hold (a client's 400).
    #[error("{0}")]
    TooLarge(String),
}

impl From<Expired> for Stopped {
    fn from(_: Expired) -> Stopped {
        Stopped::Expired
    }
}

impl Deadline {
    /// A deadline `after` from now; `None` never expires.
    pub fn after(after: Option<Duration>) -> Deadline {
        Deadline {
            at: after.and_then(|d| Instant::now().checked_add(d)),
            cancelled: None,
            payload_limit: None,
        }
    }

    /// This deadline, also stopping once `flag` is set.
    pub fn or_cancelled(mut self, flag: Arc<AtomicBool>) -> Deadline {
        self.cancelled = Some(flag);
        self
    }

    /// This deadline, also refusing to answer more than `bytes` of stored payload from one
    /// shard (`None`: no bound).
    pub fn with_payload_limit(mut self, bytes: Option<usize>) -> Deadline {
        self.payload_limit = bytes;
        self
    }

    pub fn payload_limit(&self) -> Option<usize> {
        self.payload_limit
    }

    /// `Err(TooLarge)` when an answer carrying `bytes` of stored payload is over the limit.
    pub fn admit_payloads(&self, bytes: usize) -> Result<(), Stopped> {
        match self.over_limit(bytes) {
            Some(limit) => Err(Stopped::TooLarge(format!(
                "the payloads of this answer take {:.1} MB; one shard may answer at most {:.1} MB of them (--request-memory-budget-bytes): lower limit or offset, ask for fewer payload fields or none",
                bytes as f64 / 1e6,
                limit as f64 / 1e6
            ))),
            None => Ok(()),
        }
    }

    /// The limit, when an answer holding `bytes` is over it (the same share of the request's
    /// memory bounds a facet's distinct values).
    pub fn over_limit(&self, bytes: usize) -> Option<usize> {
        self.payload_limit.filter(|limit| bytes > *limit)
    }

    pub fn expired(&self) -> bool {
        self.cancelled
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
            || self.at.is_some_and(|at| Instant::now() >= at)
    }

    /// `Err(Expired)` once expired.
    pub fn check(&self) -> Result<(), Expired> {
        if self.expired() {
            Err(Expired)
        } else {
            Ok(())
        }
    }

    /// Time left (zero once passed); `None` for a read without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// A counter that looks at this deadline every [`CHECK_EVERY`] ticks.
    pub fn checkpoints(&self) -> Checkpoints<'_> {
        self.checkpoints_weighted(1)
    }

    /// A counter for ticks that each cost `weight` light ones (a filter of many conditions
    /// checked on a point): it looks at the deadline every [`CHECK_EVERY`] / `weight` ticks.
    pub fn checkpoints_weighted(&self, weight: usize) -> Checkpoints<'_> {
        let weight = u32::try_from(weight)
            .unwrap_or(u32::MAX)
            .clamp(1, CHECK_EVERY);
        Checkpoints {
            deadline: self,
            every: CHECK_EVERY / weight,
            ticks: Cell::new(0),
            expired: Cell::new(false),
        }
    }
}

/// Looks at a deadline every so many ticks of a scan; once it passed, every tick says so.
pub struct Checkpoints<'a> {
    deadline: &'a Deadline,
    every: u32,
    ticks: Cell<u32>,
    expired: Cell<bool>,
}

impl Checkpoints<'_> {
    /// One more point scanned; false once the deadline passed.
    #[inline]
    pub fn tick(&self) -> bool {
        let n = self.ticks.get().wrapping_add(1);
        self.ticks.set(n);
        if n.is_multiple_of(self.every) && !self.expired.get() && self.deadline.expired() {
            self.expired.set(true);
        }
        !self.expired.get()
    }

    /// Whether the scan had to stop.
    pub fn result(&self) -> Result<(), Expired> {
        if self.expired.get() {
            Err(Expired)
        } else {
            Ok(())
        }
    }
}

/// Sets its flag when dropped: a request's future holds it, so a request dropped before its
/// answer (timed out, or its client gone) stops the reads it started.
#[derive(Debug, Default)]
pub struct CancelOnDrop(Arc<AtomicBool>);

impl CancelOnDrop {
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_expires_and_a_dropped_request_cancels() {
        assert!(!Deadline::default().expired());
        assert!(Deadline::after(Some(Duration::ZERO)).expired());
        assert!(!Deadline::after(Some(Duration::from_secs(60))).expired());
        let guard = CancelOnDrop::default();
        let d = Deadline::after(None).or_cancelled(guard.flag());
        assert!(d.check().is_ok());
        drop(guard);
        assert_eq!(d.check(), Err(Expired));
    }

    #[test]
    fn payloads_over_the_limit_are_refused() {
        assert!(Deadline::default().admit_payloads(usize::MAX).is_ok());
        let d = Deadline::default().with_payload_limit(Some(1000));
        assert!(d.admit_payloads(1000).is_ok());
        assert!(matches!(d.admit_payloads(1001), Err(Stopped::TooLarge(_))));
    }

    #[test]
    fn checkpoints_look_every_so_often_and_stay_expired() {
        let passed = Deadline::after(Some(Duration::ZERO));
        let points = passed.checkpoints();
        for _ in 1..CHECK_EVERY {
            assert!(points.tick(), "no look before CHECK_EVERY ticks");
        }
        assert!(!points.tick());
        assert!(!points.tick());
        assert_eq!(points.result(), Err(Expired));
        let heavy = passed.checkpoints_weighted(1000);
        assert!((0..CHECK_EVERY / 1000 - 1).all(|_| heavy.tick()));
        assert!(!heavy.tick(), "a heavy tick looks sooner");
        let open = Deadline::default();
        let points = open.checkpoints();
        assert!((0..3 * CHECK_EVERY).all(|_| points.tick()));
        assert!(points.result().is_ok());
    }
}
