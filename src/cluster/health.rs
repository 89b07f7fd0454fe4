//! Which peers answer. Learned from every call a node makes, and from a probe of every peer's
//! status route every [`PROBE_EVERY`] with a [`PROBE_TIMEOUT`] deadline: a peer that stops
//! answering — crashed, partitioned, or frozen (SIGSTOP, a stalled VM), which keeps its
//! connections open so that calls to it just hang — is marked down after
//! [`FAILURES_TO_DOWN`] failed probes, within about 1.6 s.
//!
//! What being down changes:
//! - writes skip an owner that is down because it stopped answering (its calls time out, rather
//!   than fail at once as they do for a pod that is gone or restarting) when the other owners
//!   are enough for the collection's `write_consistency_factor`; it catches up through
//!   anti-entropy once it answers again;
//! - reads try down owners last;
//! - a call still waiting on a peer when it goes down gives up at once ([`Health::went_down`]),
//!   so a frozen peer holds a request up for the detection time, not the call's 10 s deadline;
//! - calls to a peer already down get a short deadline ([`DOWN_PEER_TIMEOUT`]);
//! - when it answers again ([`Health::came_back`]), the writes acknowledged without it are sorted
//!   out ([`super::recovery`]): its replicas that missed some serve no read until they caught up.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Time between two probes of a peer (after the previous one answered or timed out).
pub const PROBE_EVERY: Duration = Duration::from_millis(200);
/// How long a probe waits for a peer's status.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(600);
/// Consecutive failed probes that mark a peer down. A failed call marks it down at once.
pub const FAILURES_TO_DOWN: u32 = 2;
/// Deadline of a call to a peer that is down (its probes keep failing).
pub const DOWN_PEER_TIMEOUT: Duration = Duration::from_secs(1);

/// What the last calls and probes to a peer showed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerHealth {
    pub healthy: bool,
    pub last_error: Option<String>,
    #[serde(skip)]
    pub since: Option<Instant>,
    /// Failures in a row since the last answer.
    #[serde(skip)]
    failures: u32,
    /// The last failure was a timeout: calls to this peer hang rather than fail.
    #[serde(skip)]
    hangs: bool,
}

/// A call or probe that got no answer.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: String,
    /// It timed out (the peer is frozen, or its host vanished) rather than failed at once.
    pub timed_out: bool,
}

/// Where a report on a peer comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Seen {
    Probe,
    Call,
}

#[derive(Default)]
pub struct Health {
    peers: RwLock<HashMap<u32, PeerHealth>>,
    /// Counts the transitions of any peer to down: calls in flight watch it.
    downs: watch::Sender<u64>,
    /// Counts the transitions of any peer from down to up ([`super::recovery`] watches it).
    ups: watch::Sender<u64>,
}

impl Health {
    pub fn get(&self, ordinal: u32) -> Option<PeerHealth> {
        self.peers.read().get(&ordinal).cloned()
    }

    /// A peer never heard of counts as up.
    pub fn is_up(&self, ordinal: u32) -> bool {
        self.peers.read().get(&ordinal).is_none_or(|h| h.healthy)
    }

    /// Down, and hanging: calls to it would wait for their deadline.
    pub fn hangs(&self, ordinal: u32) -> bool {
        self.peers
            .read()
            .get(&ordinal)
            .is_some_and(|h| !h.healthy && h.hangs)
    }

    /// Records the outcome of a call or probe.
    pub fn record(&self, ordinal: u32, seen: Seen, result: Result<(), Failure>) {
        let mut peers = self.peers.write();
        let entry = peers.entry(ordinal).or_insert(PeerHealth {
            healthy: true,
            last_error: None,
            since: None,
            failures: 0,
            hangs: false,
        });
        let healthy = match &result {
            Ok(()) => {
                (entry.failures, entry.hangs) = (0, false);
                true
            }
            Err(failure) => {
                entry.hangs = failure.timed_out;
                entry.failures += match seen {
                    Seen::Probe => 1,
                    Seen::Call => FAILURES_TO_DOWN,
                };
                entry.failures < FAILURES_TO_DOWN
            }
        };
        let first = entry.since.is_none();
        if entry.healthy != healthy || first {
            entry.since = Some(Instant::now());
            match (&result, healthy) {
                (Err(failure), false) => {
                    tracing::warn!(ordinal, error = %failure.error, "peer is unreachable")
                }
                (_, true) if !first => tracing::info!(ordinal, "peer is reachable"),
                _ => {}
            }
        }
        let went_down = entry.healthy && !healthy;
        let came_back = !entry.healthy && healthy;
        entry.healthy = healthy;
        entry.last_error = result.err().map(|f| f.error);
        drop(peers);
        if went_down {
            self.downs.send_modify(|n| *n += 1);
        }
        if came_back {
            self.ups.send_modify(|n| *n += 1);
        }
        metrics::gauge!("shoal_peer_up", "ordinal" => ordinal.to_string()).set(if healthy {
            1.0
        } else {
            0.0
        });
    }

    /// Changes each time a peer that was down answers again.
    pub fn came_back(&self) -> watch::Receiver<u64> {
        self.ups.subscribe()
    }

    /// Resolves when `ordinal` goes down after this call (not if it is down already).
    pub fn went_down(&self, ordinal: u32) -> impl std::future::Future<Output = ()> + '_ {
        let mut downs = self.downs.subscribe();
        async move {
            loop {
                if downs.changed().await.is_err() {
                    return std::future::pending().await;
                }
                if !self.is_up(ordinal) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> Result<(), Failure> {
        Err(Failure {
            error: "timed out".into(),
            timed_out: true,
        })
    }

    fn refused() -> Result<(), Failure> {
        Err(Failure {
            error: "connection refused".into(),
            timed_out: false,
        })
    }

    #[tokio::test]
    async fn probes_mark_down_after_failures_in_a_row_and_wake_waiters() {
        let health = Health::default();
        assert!(health.is_up(1));
        let waiter = health.went_down(1);
        health.record(1, Seen::Probe, timeout());
        assert!(health.is_up(1), "one failed probe is not enough");
        health.record(1, Seen::Probe, Ok(()));
        health.record(1, Seen::Probe, timeout());
        assert!(health.is_up(1), "failures must be in a row");
        health.record(1, Seen::Probe, timeout());
        assert!(!health.is_up(1) && health.hangs(1));
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("a call waiting on the peer is told");
        let back = health.came_back();
        health.record(1, Seen::Probe, Ok(()));
        assert!(health.is_up(1) && !health.hangs(1));
        assert!(
            back.has_changed().unwrap(),
            "a peer that answers again is announced"
        );
        health.record(2, Seen::Call, refused());
        assert!(!health.is_up(2), "a failed call marks down at once");
        assert!(!health.hangs(2), "a refused connection fails at once");
    }

    #[tokio::test]
    async fn another_peer_going_down_does_not_wake_a_call() {
        let health = Health::default();
        let waiter = health.went_down(1);
        health.record(2, Seen::Call, refused());
        assert!(tokio::time::timeout(Duration::from_millis(100), waiter)
            .await
            .is_err());
    }
}
