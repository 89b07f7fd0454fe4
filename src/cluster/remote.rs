//! A peer's replica of a shard, behind the [`Replica`] seam: each operation is one call to the
//! peer port of the node holding it ([`super::protocol`]), which runs it on its own
//! [`LocalReplica`](super::local::LocalReplica).
//!
//! A peer that does not know the collection yet (it answers 404: it missed the create) is told
//! about it and asked again; one that refuses to be told holds a newer entry of the name (the
//! collection was deleted there): [`PeerError::Superseded`]. Commits larger than half the peer
//! port's body limit are cut into several calls ([`runs_within`]).

use super::protocol::{
    changes_since, shard_path, CatalogEntry, CatalogPush, RecordsPage, RecordsRequest, ShardOp,
    ShardReply, DUMP_SINCE,
};
use super::replica::{ReadContext, Replica};
use super::{Cluster, PeerError};
use crate::collection::{Collection, ReplicaState};
use crate::shard::{Change, PlanPage};
use futures::future::BoxFuture;
use reqwest::Method;
use std::path::Path;
use std::sync::Arc;

/// Replica `shard` of a collection, held by peer `node`.
pub struct RemoteReplica {
    cluster: Arc<Cluster>,
    collection: Arc<Collection>,
    shard: u32,
    node: u32,
    /// Largest commit body, in (estimated) bytes.
    commit_budget: usize,
}

impl RemoteReplica {
    pub fn new(
        cluster: Arc<Cluster>,
        collection: Arc<Collection>,
        shard: u32,
        node: u32,
        commit_budget: usize,
    ) -> RemoteReplica {
        RemoteReplica {
            cluster,
            collection,
            shard,
            node,
            commit_budget,
        }
    }

    fn path(&self, what: &str) -> String {
        shard_path(&self.collection.name, self.shard, what)
    }

    /// Refuses, without a call, what the peer's protocol version has no shape for.
    fn speaks(&self, needs: u32, what: &'static str) -> Result<(), PeerError> {
        let speaks = self.cluster.speaks_with(self.node);
        if speaks >= needs {
            return Ok(());
        }
        Err(PeerError::TooOld {
            ordinal: self.node,
            speaks,
            needs,
            what,
        })
    }

    /// Sends shard traffic to the peer; a peer that does not know the collection yet (404) is
    /// told about it and asked again.
    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &Req,
    ) -> Result<Resp, PeerError> {
        let cluster = &self.cluster;
        let mut result = cluster.call(self.node, method.clone(), path, body).await;
        if matches!(result, Err(PeerError::Refused { status: 404, .. })) {
            let push = CatalogPush {
                entry: CatalogEntry::of(&self.collection),
                fresh: false,
            };
            let learned = cluster
                .call::<_, bool>(self.node, Method::PUT, "/peer/v1/catalog", &push)
                .await?;
            result = cluster.call(self.node, method, path, body).await;
            // A peer that refused the entry holds a newer one of that name: unless it learned
            // the same entry a moment ago (the retry then succeeds), the collection was deleted
            // there and this node has not heard yet.
            if !learned && matches!(result, Err(PeerError::Refused { status: 404, .. })) {
                result = Err(PeerError::Superseded { ordinal: self.node });
            }
        }
        result
    }

    /// A page of the peer's records changed since `req.since`; `None` when the peer holds no
    /// replica of the shard (or does not know the collection): it has nothing to give.
    pub async fn records(&self, req: &RecordsRequest) -> Result<Option<RecordsPage>, PeerError> {
        let path = self.path("records");
        match self.cluster.call(self.node, Method::POST, &path, req).await {
            Ok(page) => Ok(Some(page)),
            Err(PeerError::Refused {
                status: 404 | 409, ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What the peer holds of the shard (`Absent` when it does not know the collection).
    pub async fn state(&self) -> Result<ReplicaState, PeerError> {
        let path = self.path("state");
        match self.cluster.call(self.node, Method::GET, &path, &()).await {
            Err(PeerError::Refused { status: 404, .. }) => Ok(ReplicaState::Absent),
            other => other,
        }
    }
}

impl Replica for RemoteReplica {
    fn node(&self) -> u32 {
        self.node
    }

    fn read<'a>(
        &'a self,
        op: &'a ShardOp,
        how: &'a ReadContext,
    ) -> BoxFuture<'a, Result<ShardReply, PeerError>> {
        let mut path = format!("{}?complete_only={}", self.path("op"), how.complete_only);
        match op {
            ShardOp::Search {
                with_payload: false,
                ..
            } => path.push_str("&with_payload=false"),
            ShardOp::Plan { page, .. } if *page != PlanPage::WHOLE => {
                path.push_str(&format!("&plan_bytes={}", page.max_bytes));
                if let Some(after) = page.after {
                    path.push_str(&format!("&plan_after={after}"));
                }
            }
            _ => {}
        }
        if let Some(left) = how.deadline.remaining() {
            path.push_str(&format!("&budget_ms={}", left.as_millis()));
        }
        if let Some(bytes) = how.deadline.payload_limit() {
            path.push_str(&format!("&payload_limit={bytes}"));
        }
        Box::pin(async move {
            self.speaks(op.since(), op.kind())?;
            // A replica known to lack writes this node acknowledged is no complete one, whatever
            // it may think: not asked until it has caught up ([`super::missed`]).
            if how.complete_only
                && (self.cluster.deferred).lacks(&self.collection.name, self.shard, self.node)
            {
                return Err(PeerError::NoReplica {
                    ordinal: self.node,
                    shard: self.shard,
                    why: "lacks writes this node acknowledged in",
                });
            }
            match self.call(Method::POST, &path, op).await {
                // The peer stopped the read at the deadline it was given.
                Err(PeerError::Refused { status: 504, .. }) => {
                    Err(PeerError::Expired { ordinal: self.node })
                }
                other => other,
            }
        })
    }

    fn commit<'a>(
        &'a self,
        changes: &'a [Change],
        durable: bool,
    ) -> BoxFuture<'a, Result<u64, PeerError>> {
        Box::pin(async move {
            self.speaks(changes_since(changes), "write without a vector")?;
            let path = format!("{}?durable={durable}", self.path("commit"));
            let mut applied = 0;
            for run in runs_within(changes, self.commit_budget) {
                applied += self.call::<_, u64>(Method::POST, &path, &run).await?;
            }
            Ok(applied)
        })
    }

    fn dump<'a>(&'a self, dest: &'a Path) -> BoxFuture<'a, Result<u64, PeerError>> {
        Box::pin(async move {
            self.speaks(DUMP_SINCE, "shard dump")?;
            let path = self.path("dump");
            super::snapshot::download(&self.cluster, self.node, &path, dest).await
        })
    }
}

/// Cuts changes into runs whose encoded size stays within `budget` bytes (a change larger than
/// that goes alone), so that no commit body outgrows the peer port's limit.
fn runs_within(changes: &[Change], budget: usize) -> Vec<&[Change]> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, c) in changes.iter().enumerate() {
        let n = c.weight();
        if i > start && bytes + n > budget {
            runs.push(&changes[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < changes.len() {
        runs.push(&changes[start..]);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::point::PointId;

    #[test]
    fn commits_are_cut_within_the_budget() {
        let change = |i| Change::upsert(PointId::Num(i), 1, vec![0.0; 25], Default::default());
        let changes: Vec<Change> = (0..10).map(change).collect();
        // Each change weighs 64 + 100 + 2 = 166 bytes.
        let runs = runs_within(&changes, 500);
        assert_eq!(
            runs.iter().map(|r| r.len()).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        assert_eq!(
            runs_within(&changes, 10).len(),
            10,
            "a change larger than the budget goes alone"
        );
        assert!(runs_within(&[], 10).is_empty());
    }
}
