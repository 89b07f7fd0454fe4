//! Anti-entropy: what a node missed while it was away, it fetches from its peers.
//!
//! - **Catalog**: every node periodically reads each peer's collections and tombstones and applies
//!   whatever is newer than its own (last writer wins on versions).
//! - **Aliases**: likewise, after the catalog, each peer's aliases (deleted ones included). A
//!   peer of an older build has no alias route; its 404 is skipped.
//! - **Records**: for every local shard replica, the node asks another owner for the records
//!   (tombstones included) with a version above what it has, and commits them; versions make this
//!   idempotent and order-independent. What a peer sends is checked as a commit from it would
//!   be ([`super::admission`]). The first pass after start looks back from the highest
//!   version the replica holds, minus [`CLOCK_SKEW_MARGIN`] for writes coordinated by a node whose
//!   clock was behind; later passes look back from the previous pass.

use super::coordinator::Coordinator;
use super::protocol::{AliasEntry, CatalogEntry, RecordsRequest};
use super::remote::RemoteReplica;
use super::PeerError;
use crate::collection::catalog::check_entry;
use crate::collection::Collection;
use crate::shard::version::{version_span, MAX_SKEW};
use reqwest::Method;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How far back (in wall-clock time) a catch-up looks before the replica's own newest record:
/// twice the clock skew peers' versions may have.
const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(2 * MAX_SKEW.as_secs());
/// Records per catch-up page.
const PAGE: usize = 2000;

/// Where the last catch-up of (collection, shard) from a peer started, by collection version.
#[derive(Default)]
pub struct SyncState {
    watermarks: HashMap<(String, u64, u32, u32), u64>,
}

/// What each reachable peer answers to `GET path` (a peer that does not answer is skipped:
/// the next pass asks again).
async fn from_each_peer<T: serde::de::DeserializeOwned>(
    node: &Coordinator,
    path: &str,
) -> Vec<(u32, T)> {
    let mut answers = Vec::new();
    for peer in node.cluster.peers() {
        if let Ok(answer) = node.cluster.call(peer, Method::GET, path, &()).await {
            answers.push((peer, answer));
        }
    }
    answers
}

/// Applies every newer catalog entry a peer has.
pub async fn sync_catalog(node: &Arc<Coordinator>) {
    for (peer, entries) in from_each_peer::<Vec<CatalogEntry>>(node, "/peer/v1/catalog").await {
        for entry in entries {
            if let Err(e) = check_entry(&entry) {
                tracing::warn!(peer, error = %e, "refusing a peer's catalog entry");
                continue;
            }
            let local = entry
                .config
                .as_ref()
                .map(|c| node.cluster.local_shards(c))
                .unwrap_or_default();
            let n = Arc::clone(node);
            let name = entry.name.clone();
            match tokio::task::spawn_blocking(move || n.catalog.apply(&entry, &local, false)).await
            {
                Ok(Ok(true)) => {
                    tracing::info!(collection = %name, peer, "learned a collection change from a peer")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(collection = %name, error = %e, "cannot apply a peer's catalog entry")
                }
                Err(e) => tracing::warn!(error = %e, "catalog sync task failed"),
            }
        }
    }
}

/// Applies every newer alias entry a peer has.
pub async fn sync_aliases(node: &Arc<Coordinator>) {
    for (peer, entries) in from_each_peer::<Vec<AliasEntry>>(node, "/peer/v1/aliases").await {
        let n = Arc::clone(node);
        match tokio::task::spawn_blocking(move || n.catalog.apply_aliases(&entries)).await {
            Ok(Ok(true)) => tracing::info!(peer, "learned alias changes from a peer"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(peer, error = %e, "refusing a peer's aliases"),
            Err(e) => tracing::warn!(error = %e, "alias sync task failed"),
        }
    }
}

/// Pulls what every local replica missed from one other live owner of its shard.
pub async fn catch_up(node: &Arc<Coordinator>, state: &mut SyncState) {
    for c in node.catalog.all() {
        for shard in node.cluster.local_shards(&c.config) {
            // Syncing replicas are filled by the rebalancer.
            let Some(replica) = c.local_shard(shard).filter(|_| !c.is_syncing(shard)) else {
                continue;
            };
            let peers: Vec<u32> = node
                .cluster
                .owners(&c.config, shard)
                .into_iter()
                .filter(|o| *o != node.cluster.ordinal)
                .collect();
            for peer in peers {
                let key = (c.name.clone(), c.version, shard, peer);
                let started_at = c.clock().next();
                let since = match state.watermarks.get(&key) {
                    Some(w) => *w,
                    None => {
                        let r = Arc::clone(&replica);
                        look_back(
                            tokio::task::spawn_blocking(move || r.max_version())
                                .await
                                .unwrap_or(0),
                        )
                    }
                };
                match pull(node, &c, shard, peer, since, &replica).await {
                    Ok(applied) => {
                        if applied > 0 {
                            tracing::info!(collection = %c.name, shard, peer, applied, "caught up from a peer");
                        }
                        state.watermarks.insert(
                            key,
                            started_at.saturating_sub(version_span(Duration::from_secs(30))),
                        );
                    }
                    Err(e) => {
                        tracing::debug!(collection = %c.name, shard, peer, error = %e, "catch-up failed")
                    }
                }
            }
        }
    }
}

/// Where a catch-up starts for a replica whose newest record has version `max`.
pub fn look_back(max: u64) -> u64 {
    max.saturating_sub(version_span(CLOCK_SKEW_MARGIN))
}

/// Copies a peer's records with a version above `since` into a local replica; answers how
/// many took effect. A peer holding no replica of the shard has nothing to give.
pub async fn pull(
    node: &Coordinator,
    c: &Arc<Collection>,
    shard: u32,
    peer: u32,
    since: u64,
    replica: &Arc<crate::shard::Shard>,
) -> Result<usize, PeerError> {
    let remote = RemoteReplica::new(
        Arc::clone(&node.cluster),
        Arc::clone(c),
        shard,
        peer,
        node.peer_body_limit / 2,
    );
    let mut after = None;
    let mut applied = 0;
    loop {
        let req = RecordsRequest {
            since,
            after,
            limit: PAGE,
        };
        let Some(page) = remote.records(&req).await? else {
            return Ok(applied);
        };
        let changes = page.changes;
        super::admission::check_changes(c, &changes).map_err(|e| PeerError::BadAnswer {
            ordinal: peer,
            message: format!("sent a record this node refuses: {e}"),
        })?;
        if !changes.is_empty() {
            let r = Arc::clone(replica);
            let me = node.cluster.ordinal;
            applied += tokio::task::spawn_blocking(move || r.commit(changes, true))
                .await
                .map_err(|e| PeerError::Internal {
                    ordinal: me,
                    message: format!("catch-up task failed: {e}"),
                })?
                .map_err(|error| PeerError::Shard { ordinal: me, error })?;
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(applied),
        }
    }
}

/// Runs catalog sync and catch-up forever.
pub async fn run(node: Arc<Coordinator>, every: Duration) {
    let mut state = SyncState::default();
    loop {
        if !node.cluster.is_single() {
            sync_catalog(&node).await;
            sync_aliases(&node).await;
            catch_up(&node, &mut state).await;
        }
        tokio::time::sleep(every).await;
    }
}
