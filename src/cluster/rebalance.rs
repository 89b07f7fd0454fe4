//! Scaling: when the StatefulSet's size changes, shard replicas move to their new owners without
//! losing a point and without a wrong answer in between.
//!
//! Every node runs the same loop ([`run`]): read the cluster size ([`super::membership`]), then
//! for every collection
//! - open an empty **syncing** replica of each shard it now owns but does not hold, and fill it
//!   from every peer that holds a replica; a syncing replica takes writes but serves reads only when
//!   no complete replica answers, and becomes **active** once filled;
//! - for each replica it holds but no longer owns, push all its records to the shard's owners,
//!   and drop it once every owner reports an active replica.
//!
//! After a restart a node's replicas start syncing too: they may have missed writes while it was
//! down, so they serve reads only after catching up ([`super::sync`] then keeps them current).
//!
//! Scale-down: Kubernetes sets `spec.replicas` to N−1 and then stops pod N−1, whose `preStop`
//! hook runs `shoal handoff` ([`handoff`]): the leaving pod pushes every replica it holds to its
//! owners under N−1 before it exits, while the others already route by N−1. A restart that is not
//! a scale-down (a rolling update, a crash) finds its ordinal below `spec.replicas` and hands
//! nothing off.

use super::coordinator::Coordinator;
use super::membership::SizeSource;
use super::protocol::HandoffReport;
use super::remote::RemoteReplica;
use super::replica::Replica;
use super::PeerError;
use crate::collection::{Collection, ReplicaState};
use crate::shard::Change;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Records per page when a replica is pushed to a new owner.
const PAGE: usize = 2000;

/// Follows the cluster size and moves replicas, forever.
pub async fn run(node: Arc<Coordinator>, source: Arc<SizeSource>) {
    loop {
        refresh_size(&node, &source).await;
        if !node.cluster.is_single() {
            rebalance_once(&node).await;
        }
        tokio::time::sleep(super::membership::POLL).await;
    }
}

async fn refresh_size(node: &Coordinator, source: &SizeSource) -> u32 {
    match source.current().await {
        Ok(n) if n != node.cluster.size() => {
            tracing::info!(from = node.cluster.size(), to = n, "cluster size changed");
            node.cluster.set_size(n);
            n
        }
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the cluster size; keeping {}", node.cluster.size());
            node.cluster.size()
        }
    }
}

/// One pass over every collection: fill what this node now owns, hand over what it no longer does.
pub async fn rebalance_once(node: &Arc<Coordinator>) {
    for c in node.catalog.all() {
        let owned: BTreeSet<u32> = node.cluster.local_shards(&c.config).into_iter().collect();
        for shard in &owned {
            if c.replica_state(*shard) == ReplicaState::Absent {
                if let Err(e) = c.open_syncing(*shard) {
                    tracing::error!(collection = %c.name, shard, error = %e, "cannot open a new replica");
                }
            }
        }
        for (shard, _) in c.local_shards() {
            let result = if c.is_syncing(shard) {
                fill(node, &c, shard).await.map(|done| {
                    if done {
                        let _ = c.finish_sync(shard);
                        tracing::info!(collection = %c.name, shard, "replica is complete and serves reads");
                    }
                })
            } else if !owned.contains(&shard) {
                hand_over(node, &c, shard).await.and_then(|done| {
                    if done {
                        c.drop_shard(shard).map_err(|e| PeerError::Internal {
                            ordinal: node.cluster.ordinal,
                            message: format!("cannot drop replica {shard}: {e:#}"),
                        })?;
                        tracing::info!(collection = %c.name, shard, "replica moved away and dropped");
                    }
                    Ok(())
                })
            } else {
                Ok(())
            };
            if let Err(e) = result {
                tracing::debug!(collection = %c.name, shard, error = %e, "rebalance step will be retried");
            }
        }
    }
}

/// A peer's replica of a shard.
fn remote(node: &Coordinator, c: &Arc<Collection>, shard: u32, peer: u32) -> RemoteReplica {
    RemoteReplica::new(
        Arc::clone(&node.cluster),
        Arc::clone(c),
        shard,
        peer,
        node.peer_body_limit / 2,
    )
}

/// Copies into a syncing replica everything its peers hold. Done once a complete replica was
/// copied, or when every node answered and none holds a complete one (a new or empty shard).
async fn fill(node: &Arc<Coordinator>, c: &Arc<Collection>, shard: u32) -> Result<bool, PeerError> {
    let Some(replica) = c.local_shard(shard) else {
        return Ok(false);
    };
    let since = if c.is_new_copy(shard) {
        0
    } else {
        let r = Arc::clone(&replica);
        let max = tokio::task::spawn_blocking(move || r.max_version())
            .await
            .map_err(|e| task_failed(node, e))?;
        super::sync::look_back(max)
    };
    let mut copied_complete = false;
    let mut all_answered = true;
    for peer in node.cluster.peers() {
        match remote(node, c, shard, peer).state().await {
            Ok(ReplicaState::Absent) => {}
            Ok(state) => match super::sync::pull(node, c, shard, peer, since, &replica).await {
                Ok(_) => copied_complete |= state == ReplicaState::Active,
                Err(_) => all_answered = false,
            },
            Err(_) => all_answered = false,
        }
    }
    Ok(copied_complete || all_answered)
}

/// Pushes every record of a replica this node no longer owns to the shard's owners. Done once
/// every owner took them and holds an active replica.
async fn hand_over(
    node: &Arc<Coordinator>,
    c: &Arc<Collection>,
    shard: u32,
) -> Result<bool, PeerError> {
    let Some(replica) = c.local_shard(shard) else {
        return Ok(true);
    };
    let owners: Vec<u32> = node
        .cluster
        .owners(&c.config, shard)
        .into_iter()
        .filter(|o| *o != node.cluster.ordinal)
        .collect();
    let mut after = None;
    loop {
        let r = Arc::clone(&replica);
        let me = node.cluster.ordinal;
        let (page, next) = tokio::task::spawn_blocking(move || r.records_since(0, after, PAGE))
            .await
            .map_err(|e| task_failed(node, e))?
            .map_err(|error| PeerError::Shard { ordinal: me, error })?;
        let changes: Vec<Change> = page
            .into_iter()
            .map(|(id, record)| Change::replicated(id, record))
            .collect();
        if !changes.is_empty() {
            for owner in &owners {
                remote(node, c, shard, *owner)
                    .commit(&changes, true)
                    .await?;
            }
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    for owner in &owners {
        if remote(node, c, shard, *owner).state().await? != ReplicaState::Active {
            return Ok(false);
        }
    }
    Ok(true)
}

fn task_failed(node: &Coordinator, e: tokio::task::JoinError) -> PeerError {
    PeerError::Internal {
        ordinal: node.cluster.ordinal,
        message: format!("rebalance task failed: {e}"),
    }
}

/// The `preStop` hand-off: if this pod's ordinal is beyond `spec.replicas` (a scale-down), push
/// every replica it holds to its new owners and report; otherwise (a restart) do nothing.
pub async fn handoff(node: &Arc<Coordinator>) -> anyhow::Result<HandoffReport> {
    let n = match node.size_source() {
        Some(source) => refresh_size(node, &source).await,
        None => node.cluster.size(),
    };
    let leaving = node.cluster.ordinal >= n && !node.cluster.is_single();
    let mut handed = 0;
    if leaving {
        tracing::info!(
            ordinal = node.cluster.ordinal,
            cluster_size = n,
            "scale-down: handing off every replica"
        );
        for c in node.catalog.all() {
            for (shard, _) in c.local_shards() {
                // Push until the owners have it; the pod's termination grace period bounds this.
                loop {
                    match hand_over(node, &c, shard).await {
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(collection = %c.name, shard, error = %e, "hand-off retrying")
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                handed += 1;
            }
        }
        tracing::info!(replicas = handed, "hand-off complete");
    }
    Ok(HandoffReport {
        leaving,
        cluster_size: n,
        replicas_handed_off: handed,
    })
}
