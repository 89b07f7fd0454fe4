//! Who this node is, its peers and their state, and where every shard of a collection lives.
//! Shaped like Qdrant's answers (so clients parse them), with shoal's ordinals and addresses.

use super::models::{
    ClusterStatus, CollectionClusterInfo, ConsensusThreadStatus, LocalShardInfo, PeerInfo,
    RaftInfo, RemoteShardInfo, ShardPlacement,
};
use super::{Database, Result};
use std::collections::BTreeMap;

impl Database {
    /// This node and its peers: `disabled` on a single node.
    pub fn cluster_status(&self) -> ClusterStatus {
        let cluster = &self.coordinator.cluster;
        if cluster.is_single() {
            return ClusterStatus {
                status: "disabled",
                mode: Some("single-node"),
                ..Default::default()
            };
        }
        let mut peers = BTreeMap::new();
        for ordinal in 0..cluster.size() {
            let health = cluster.health(ordinal);
            let state = if ordinal == cluster.ordinal {
                "self"
            } else {
                match &health {
                    Some(h) if h.healthy => "up",
                    Some(_) => "down",
                    None => "unknown",
                }
            };
            let info = PeerInfo {
                uri: cluster
                    .peer_address(ordinal)
                    .map(|a| format!("http://{a}/")),
                name: cluster.peer_name(ordinal),
                state,
                last_error: health.and_then(|h| h.last_error),
            };
            peers.insert(ordinal.to_string(), info);
        }
        ClusterStatus {
            status: "enabled",
            mode: None,
            peer_id: Some(cluster.ordinal),
            ordinal: Some(cluster.ordinal),
            statefulset: cluster.identity.as_ref().map(|i| i.statefulset.clone()),
            cluster_size: Some(cluster.size()),
            peers: Some(peers),
            raft_info: Some(RaftInfo::default()),
            consensus_thread_status: Some(ConsensusThreadStatus {
                consensus_thread_status: "working",
                last_update: crate::logging::now_rfc3339(),
            }),
            message_send_failures: Some(BTreeMap::new()),
        }
    }

    /// Where the shards of a collection live: this node's replicas and its peers'.
    pub fn collection_cluster_info(&self, name: &str) -> Result<CollectionClusterInfo> {
        let c = self.collection(name)?;
        let cluster = &self.coordinator.cluster;
        let mut info = CollectionClusterInfo {
            peer_id: cluster.ordinal,
            shard_count: c.config.shard_number,
            local_shards: Vec::new(),
            remote_shards: Vec::new(),
            shard_transfers: Vec::new(),
            shards: Vec::new(),
        };
        for shard in 0..c.config.shard_number {
            let owners = cluster.owners(&c.config, shard);
            for owner in &owners {
                if *owner == cluster.ordinal {
                    let points = c.local_shard(shard).map(|s| s.len()).unwrap_or(0);
                    // Qdrant's Partial: still copying, or catching up on writes it missed.
                    let behind = cluster.behind.refuses_reads(&c.name, shard);
                    info.local_shards.push(LocalShardInfo {
                        shard_id: shard,
                        points_count: points,
                        state: if c.is_syncing(shard) || behind {
                            "Partial"
                        } else {
                            "Active"
                        },
                    });
                } else {
                    // Qdrant's Dead: unreachable, or it missed writes this node acknowledged.
                    let state = if cluster.is_healthy(*owner)
                        && !cluster.deferred.lacks(&c.name, shard, *owner)
                    {
                        "Active"
                    } else {
                        "Dead"
                    };
                    info.remote_shards.push(RemoteShardInfo {
                        shard_id: shard,
                        peer_id: *owner,
                        state,
                    });
                }
            }
            info.shards.push(ShardPlacement {
                shard_id: shard,
                owners,
            });
        }
        Ok(info)
    }
}
