//! `GET /cluster` and `GET /collections/{c}/cluster`: who this node is, its peers and their state,
//! and where every shard of a collection lives. Shaped like Qdrant's answers (so clients parse
//! them), with shoal's ordinals and addresses added.

use super::models::{ClusterStatus, CollectionClusterInfo};
use super::response::Path;
use super::response::{Answer, ApiResult, Started};
use super::AppState;
use axum::extract::State;
use serde_json::{json, Value};

#[utoipa::path(
    get,
    path = "/cluster",
    tag = "cluster",
    summary = "This node and its peers",
    responses((status = 200, description = "Success", body = super::response::Envelope<ClusterStatus>), super::openapi::ApiErrors)
)]
pub async fn status(State(node): State<AppState>, t: Started) -> ApiResult<Value> {
    let cluster = &node.cluster;
    if cluster.is_single() {
        return Ok(Answer(
            t,
            json!({ "status": "disabled", "mode": "single-node" }),
        ));
    }
    let mut peers = serde_json::Map::new();
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
        peers.insert(
            ordinal.to_string(),
            json!({
                "uri": cluster.peer_address(ordinal).map(|a| format!("http://{a}/")),
                "name": cluster.peer_name(ordinal),
                "state": state,
                "last_error": health.and_then(|h| h.last_error),
            }),
        );
    }
    Ok(Answer(
        t,
        json!({
            "status": "enabled",
            "peer_id": cluster.ordinal,
            "ordinal": cluster.ordinal,
            "statefulset": cluster.identity.as_ref().map(|i| i.statefulset.clone()),
            "cluster_size": cluster.size(),
            "peers": peers,
            "raft_info": { "term": 0, "commit": 0, "pending_operations": 0, "leader": null, "role": null, "is_voter": true },
            "consensus_thread_status": { "consensus_thread_status": "working", "last_update": now_rfc3339() },
            "message_send_failures": {},
        }),
    ))
}

/// The current UTC time in RFC 3339, to the second.
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut text = String::with_capacity(20);
    // Writing to a String cannot fail.
    let _ = crate::logging::write_utc_seconds(&mut text, secs);
    text.push('Z');
    text
}

#[utoipa::path(
    get,
    path = "/collections/{name}/cluster",
    tag = "cluster",
    summary = "Where the shards of a collection live",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "Success", body = super::response::Envelope<CollectionClusterInfo>), super::openapi::ApiErrors)
)]
pub async fn collection(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    let c = node.catalog.get(&name)?;
    let cluster = &node.cluster;
    let mut local = Vec::new();
    let mut remote = Vec::new();
    let mut shards = Vec::new();
    for shard in 0..c.config.shard_number {
        let owners = cluster.owners(&c.config, shard);
        for owner in &owners {
            if *owner == cluster.ordinal {
                let points = c.local_shard(shard).map(|s| s.len()).unwrap_or(0);
                local.push(json!({ "shard_id": shard, "points_count": points, "state": "Active" }));
            } else {
                let state = if cluster.is_healthy(*owner) {
                    "Active"
                } else {
                    "Dead"
                };
                remote.push(json!({ "shard_id": shard, "peer_id": owner, "state": state }));
            }
        }
        shards.push(json!({ "shard_id": shard, "owners": owners }));
    }
    Ok(Answer(
        t,
        json!({
            "peer_id": cluster.ordinal,
            "shard_count": c.config.shard_number,
            "local_shards": local,
            "remote_shards": remote,
            "shard_transfers": [],
            "shards": shards,
        }),
    ))
}
