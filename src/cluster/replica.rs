//! The replica seam: one shard replica, wherever it lives, and which replicas an operation uses.
//!
//! A [`Replica`] runs the operations of the peer protocol ([`ShardOp`] reads and commits) on one
//! copy of one shard. [`LocalReplica`](super::local::LocalReplica) runs them on this node's
//! [`Shard`](crate::shard::Shard); [`RemoteReplica`](super::remote::RemoteReplica) sends them
//! to the peer holding the copy, whose peer port runs them on *its* local replica. The
//! coordinator holds replicas as `dyn Replica` and never asks which kind it has: it picks them
//! through [`Replicas`] (the cluster's placement and health in production, fakes in tests),
//! fails reads over from one to the next, and counts write acknowledgements.

use super::local::LocalReplica;
use super::protocol::{ShardOp, ShardReply};
use super::remote::RemoteReplica;
use super::{Cluster, PeerError};
use crate::collection::{Collection, ReplicaState};
use crate::shard::deadline::Deadline;
use crate::shard::Change;
use futures::future::BoxFuture;
use std::path::Path;
use std::sync::Arc;

/// One copy of one shard of a collection.
pub trait Replica: Send + Sync {
    /// The ordinal of the node holding it.
    fn node(&self) -> u32;

    /// Runs a read (or the read half of a read-modify-write).
    fn read<'a>(
        &'a self,
        op: &'a ShardOp,
        how: &'a ReadContext,
    ) -> BoxFuture<'a, Result<ShardReply, PeerError>>;

    /// Commits versioned changes (fsynced when `durable`); answers how many took effect.
    fn commit<'a>(
        &'a self,
        changes: &'a [Change],
        durable: bool,
    ) -> BoxFuture<'a, Result<u64, PeerError>>;

    /// Writes a point-in-time dump of the replica's live points into `dest` on this node (see
    /// [`super::snapshot`]); answers how many points it holds.
    fn dump<'a>(&'a self, dest: &'a Path) -> BoxFuture<'a, Result<u64, PeerError>> {
        let _ = dest;
        Box::pin(async move {
            Err(PeerError::Internal {
                ordinal: self.node(),
                message: "this replica cannot be dumped".into(),
            })
        })
    }
}

/// How a read is to be run.
#[derive(Debug, Clone, Default)]
pub struct ReadContext {
    /// Refuse a replica still copying its data from its peers, so that answers never miss
    /// points.
    pub complete_only: bool,
    /// When the read must stop ([`PeerError::Expired`]).
    pub deadline: Deadline,
}

/// The replicas a write of one shard goes to.
pub struct WriteSet {
    pub replicas: Vec<Arc<dyn Replica>>,
    /// Acknowledgements the write needs (the collection's `write_consistency_factor`).
    pub required: usize,
    /// How many nodes own the shard (some may be left out of `replicas`).
    pub owners: usize,
}

/// Where the coordinator finds a shard's replicas.
pub trait Replicas: Send + Sync {
    /// The replicas to read `shard` from, in the order to try them.
    fn to_read(&self, c: &Arc<Collection>, shard: u32) -> Vec<Arc<dyn Replica>>;

    /// The replicas a write of `shard` goes to, and how many must acknowledge it; the write's
    /// records have versions from `oldest` on.
    fn to_write(&self, c: &Arc<Collection>, shard: u32, oldest: u64) -> WriteSet;
}

/// The replicas the cluster's placement and health give: this node's own and its peers'.
pub struct ClusterReplicas {
    pub cluster: Arc<Cluster>,
    /// Largest commit body sent to a peer ([`super::protocol::peer_body_limit`] / 2).
    pub commit_budget: usize,
}

impl ClusterReplicas {
    fn replica(&self, c: &Arc<Collection>, shard: u32, node: u32) -> Arc<dyn Replica> {
        if node == self.cluster.ordinal {
            let owned = self.cluster.owners(&c.config, shard).contains(&node);
            let lagging = self.cluster.behind.refuses_reads(&c.name, shard);
            Arc::new(LocalReplica::new(node, Arc::clone(c), shard, owned).lagging(lagging))
        } else {
            Arc::new(RemoteReplica::new(
                Arc::clone(&self.cluster),
                Arc::clone(c),
                shard,
                node,
                self.commit_budget,
            ))
        }
    }

    /// Nodes in the order reads of a shard try them: this node if it owns the shard, then
    /// healthy owners in placement order, then the other owners, then owners known to lack
    /// acknowledged writes ([`super::missed`], [`super::behind`]), then every other node (one
    /// may still hold the replica while ownership moves after a scale event).
    pub fn read_order(&self, c: &Collection, shard: u32) -> Vec<u32> {
        let cluster = &self.cluster;
        let mut order = cluster.owners(&c.config, shard);
        let owners = order.clone();
        let me = cluster.ordinal;
        let rank = |o: u32| match o {
            _ if o == me && cluster.behind.refuses_reads(&c.name, shard) => 3,
            _ if o == me => 0,
            _ if cluster.deferred.lacks(&c.name, shard, o) => 3,
            _ if cluster.is_healthy(o) => 1,
            _ => 2,
        };
        // Stable: placement order within a rank.
        order.sort_by_key(|o| rank(*o));
        if !order.contains(&me) && c.replica_state(shard) != ReplicaState::Absent {
            order.push(me);
        }
        order.extend(
            cluster
                .peers()
                .into_iter()
                .filter(|o| !owners.contains(o) && cluster.is_healthy(*o)),
        );
        order
    }
}

impl Replicas for ClusterReplicas {
    fn to_read(&self, c: &Arc<Collection>, shard: u32) -> Vec<Arc<dyn Replica>> {
        self.read_order(c, shard)
            .into_iter()
            .map(|node| self.replica(c, shard, node))
            .collect()
    }

    /// Every owner; owners whose calls hang are left out when the others are enough (the
    /// ledger records them as it leaves them out, [`super::missed`], and they catch up once they
    /// answer again), owners that fail at once are tried, as they may be back already.
    fn to_write(&self, c: &Arc<Collection>, shard: u32, oldest: u64) -> WriteSet {
        let cluster = &self.cluster;
        let owners = cluster.owners(&c.config, shard);
        let required = (c.config.write_consistency_factor as usize).clamp(1, owners.len());
        let hangs = |o: u32| cluster.hangs(o);
        let targets = if owners.iter().any(|o| hangs(*o)) {
            let at = (c.name.as_str(), shard);
            (cluster.deferred).targets(at, &owners, required, oldest, hangs)
        } else {
            owners.clone()
        };
        if targets.len() < owners.len() {
            metrics::counter!("shoal_replica_writes_deferred_total").increment(1);
        }
        WriteSet {
            replicas: targets
                .into_iter()
                .map(|node| self.replica(c, shard, node))
                .collect(),
            required,
            owners: owners.len(),
        }
    }
}
