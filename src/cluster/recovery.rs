//! Bringing back a replica that missed acknowledged writes, as Qdrant recovers a Dead replica
//! before it reads from it again: the nodes that acknowledged writes without it tell its node
//! ([`super::missed`]), which marks it behind ([`super::behind`]), pulls what it lacks from the
//! owners that acknowledged, and then serves reads from it again.
//!
//! One task per node ([`run`]) does it all, every [`TICK`]:
//! - **tell**: the ledger's entries for a peer that answers go to it (`PUT /peer/v1/missed`) and
//!   are forgotten once it took them;
//! - **ask**: after a stall of this process ([`super::behind::StallWatch`]), when a peer this
//!   node saw down answers again, and every [`ASK_EVERY`], it asks every peer what it
//!   acknowledged without this node's replicas (`GET /peer/v1/missed/<ordinal>`), marks those
//!   replicas, and lets the peer forget (`DELETE`). A stall keeps every local replica out of
//!   complete reads until a round in which no peer still writes without this node (peers see
//!   it answer again within a probe): a thawed node never answers from a replica before it
//!   knows whether it is behind, and no write skips it after that;
//! - **catch up**: every lagging replica pulls the records above the oldest version it missed
//!   from each owner that acknowledged those writes ([`super::sync::pull`]); once all of them
//!   answered, it serves reads again. A failed pull is tried again after [`RETRY`].
//!
//! A node of an older build answers the `missed` routes 404: it is neither told nor asked, and
//! its replicas catch up by sync as before.

use super::behind::TICK;
use super::coordinator::Coordinator;
use super::protocol::{MissedReport, MissedWrites};
use super::PeerError;
use futures::future::join_all;
use reqwest::Method;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a node asks its peers even when nothing suggests it missed writes.
pub const ASK_EVERY: Duration = Duration::from_secs(5);
/// How long a catch-up that could not reach every source waits before it tries again.
pub const RETRY: Duration = Duration::from_secs(1);

/// Tells, asks and catches up, forever: the catch-up in a loop of its own, so that a long pull
/// never holds up the news.
pub async fn run(node: Arc<Coordinator>) {
    tokio::join!(talk(&node), catch_up_forever(&node));
}

async fn catch_up_forever(node: &Coordinator) {
    loop {
        let wait = if catch_up(node).await { TICK } else { RETRY };
        tokio::time::sleep(wait).await;
    }
}

/// Tells and asks, forever.
async fn talk(node: &Coordinator) {
    let mut peers_back = node.cluster.peers_back();
    let mut asked_at: Option<Instant> = None;
    loop {
        tell(node).await;
        let stall = node.cluster.behind.stall.unchecked();
        let back = peers_back.has_changed().unwrap_or(false);
        if stall.is_some() || back || asked_at.is_none_or(|t| t.elapsed() >= ASK_EVERY) {
            drop(peers_back.borrow_and_update());
            let skipped = ask(node).await;
            asked_at = Some(Instant::now());
            match stall {
                // Asked again at the next tick: the peers see this node answer within a probe.
                Some(_) if skipped => {}
                Some(seen) => {
                    node.cluster.behind.stall.checked(seen);
                    tracing::info!("every peer told this node which writes its replicas missed during the stall");
                }
                None => {}
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Sends every peer that answers the ledger's entries for it.
async fn tell(node: &Coordinator) {
    let cluster = &node.cluster;
    let owners = cluster.deferred.owners();
    let calls = owners.into_iter().map(|owner| async move {
        if owner >= cluster.size() || owner == cluster.ordinal {
            // Gone with a scale-down: its replicas moved, and their new owners copied them.
            cluster.deferred.forget(owner, u64::MAX);
            return;
        }
        if !cluster.is_healthy(owner) {
            return;
        }
        let entries = cluster.deferred.for_owner(owner);
        let Some(upto) = entries.iter().map(|m| m.seq).max() else {
            return;
        };
        let told = (cluster.call::<_, bool>(owner, Method::PUT, "/peer/v1/missed", &entries)).await;
        match told {
            Ok(_) => cluster.deferred.forget(owner, upto),
            // A node of an older build (404) catches up by sync alone; one that refuses the
            // message would refuse it again.
            Err(PeerError::Refused {
                status, message, ..
            }) => {
                if status != 404 {
                    tracing::warn!(peer = owner, status, %message, "a peer refused the news of the writes it missed");
                }
                cluster.deferred.forget(owner, upto);
            }
            // It is down now: told once it answers again.
            Err(e) => tracing::debug!(peer = owner, error = %e, "cannot tell a peer which writes it missed"),
        }
    });
    join_all(calls).await;
}

/// Asks every peer which writes it acknowledged without this node's replicas, and marks them.
/// Answers whether a peer still writes without them (it still counts this node as hanging).
/// A peer that cannot be reached or is of an older build has nothing to say.
pub async fn ask(node: &Coordinator) -> bool {
    let cluster = &node.cluster;
    let path = format!("/peer/v1/missed/{}", cluster.ordinal);
    let calls = cluster.peers().into_iter().map(|peer| {
        let path = path.as_str();
        async move {
            let answer = cluster.call::<_, MissedReport>(peer, Method::GET, path, &());
            match answer.await {
                Ok(report) => {
                    if let Some(upto) = report.writes.iter().map(|m| m.seq).max() {
                        take(node, &report.writes);
                        let forgot = cluster.call::<_, bool>(peer, Method::DELETE, path, &upto);
                        if let Err(e) = forgot.await {
                            // It tells again later: marking twice is harmless.
                            tracing::debug!(peer, error = %e, "a peer did not forget what it told");
                        }
                    }
                    report.skipping
                }
                Err(PeerError::Refused { status: 404, .. }) => false,
                Err(e) => {
                    tracing::debug!(peer, error = %e, "cannot ask a peer which writes this node missed");
                    false
                }
            }
        }
    });
    join_all(calls).await.into_iter().any(|skipping| skipping)
}

/// Marks the local replicas a peer says lack writes; answers how many. Entries about a
/// collection or replica this node does not hold, and sources outside the cluster, are ignored.
pub fn take(node: &Coordinator, entries: &[MissedWrites]) -> usize {
    let cluster = &node.cluster;
    let (me, size) = (cluster.ordinal, cluster.size());
    let mut marked = 0;
    for m in entries {
        let Ok(c) = node.catalog.get(&m.collection) else {
            continue;
        };
        if m.shard >= c.config.shard_number || c.local_shard(m.shard).is_none() {
            continue;
        }
        let from: Vec<u32> = (m.from.iter().copied())
            .filter(|o| *o < size && *o != me)
            .collect();
        if from.is_empty() {
            continue;
        }
        tracing::info!(collection = %m.collection, shard = m.shard, ?from, "this node's replica missed writes its peers acknowledged: it serves reads again once it has caught up");
        cluster.behind.mark(&m.collection, m.shard, m.since, from);
        marked += 1;
    }
    marked
}

/// Pulls what every lagging replica lacks; answers whether every one of them caught up.
async fn catch_up(node: &Coordinator) -> bool {
    let behind = &node.cluster.behind;
    let mut all = true;
    for ((name, shard), lag) in behind.lagging() {
        let held = (node.catalog.get(&name).ok())
            .and_then(|c| c.local_shard(shard).map(|replica| (c, replica)));
        let Some((c, replica)) = held else {
            // Deleted, or moved away: nothing left to catch up.
            behind.clear(&name, shard, lag.generation);
            continue;
        };
        let (mut applied, mut complete) = (0, true);
        for peer in &lag.from {
            match super::sync::pull(node, &c, shard, *peer, lag.since, &replica).await {
                Ok(n) => applied += n,
                Err(e) => {
                    complete = false;
                    tracing::debug!(collection = %name, shard, peer, error = %e, "catch-up of missed writes failed; will retry");
                }
            }
        }
        if complete && behind.clear(&name, shard, lag.generation) {
            tracing::info!(collection = %name, shard, applied, "replica caught up on the writes it missed and serves reads again");
        }
        all &= complete;
    }
    all
}
