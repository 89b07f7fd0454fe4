//! Collections: create, inspect, list, check and delete (Qdrant's `Collections` service).

use super::models::{
    CollectionDescription, CollectionExists, CollectionInfo, CollectionsList, CreateCollection,
    PayloadIndexInfo,
};
use super::validate::{self, CollectionDefaults};
use super::{Database, Result};
use crate::collection::Collection;
use serde_json::json;

impl Database {
    pub fn list_collections(&self) -> CollectionsList {
        let collections = self
            .coordinator
            .catalog
            .names()
            .into_iter()
            .map(|name| CollectionDescription { name })
            .collect();
        CollectionsList { collections }
    }

    pub fn collection_exists(&self, name: &str) -> CollectionExists {
        CollectionExists {
            exists: self.collection(name).is_ok(),
        }
    }

    pub fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let c = self.collection(name)?;
        Ok(info_json(&c, self.config.indexing_threshold))
    }

    /// Creates a collection on every node of the cluster.
    pub async fn create_collection(&self, name: &str, req: CreateCollection) -> Result<bool> {
        let cluster = &self.coordinator.cluster;
        // Default: one shard on a single node; in a cluster two per node, so that a scale-up has
        // shards to give the new pods (shard_number is fixed at creation).
        let spread = if cluster.is_single() {
            1
        } else {
            2 * cluster.size()
        };
        let defaults = CollectionDefaults {
            shard_number: self.config.default_shard_number.unwrap_or(spread),
            replication_factor: self.config.default_replication_factor,
        };
        let config = validate::collection_config(req, defaults)?;
        self.coordinator.create_collection(name, config).await?;
        Ok(true)
    }

    /// Deletes a collection on every node of the cluster; false when there was none.
    pub async fn delete_collection(&self, name: &str) -> Result<bool> {
        self.coordinator.delete_collection(name).await
    }
}

/// A collection in the shape of Qdrant's `CollectionInfo`: `status` is `yellow` while a local
/// shard is building or has a build due, `green` once none has; `optimizer_status` carries the
/// last build error, if the last build failed.
fn info_json(c: &Collection, indexing_threshold: usize) -> CollectionInfo {
    let (points, indexed, segments) = c.stats();
    let cfg = &c.config;
    let optimizer = cfg.optimizer();
    let (optimizing, error) = c.optimizer_state(indexing_threshold);
    let dim_bytes = 4 * cfg.size.max(1);
    let threshold_points = optimizer.indexing_threshold.unwrap_or(indexing_threshold);
    let quantization = cfg.quantization.map(|q| {
        // Kept as f32: its shortest decimal form is what the client sent (0.99, not 0.99000001).
        let quantile: f64 = q.quantile.to_string().parse().unwrap_or(q.quantile as f64);
        json!({"scalar": {"type": "int8", "quantile": quantile, "always_ram": q.always_ram}})
    });
    CollectionInfo {
        status: if optimizing { "yellow" } else { "green" }.into(),
        optimizer_status: match error {
            None => json!("ok"),
            Some(e) => json!({ "error": e }),
        },
        indexed_vectors_count: indexed as u64,
        points_count: points as u64,
        segments_count: segments as u64,
        config: json!({
            "params": {
                "vectors": { "size": cfg.size, "distance": cfg.distance },
                "shard_number": cfg.shard_number,
                "replication_factor": cfg.replication_factor,
                "write_consistency_factor": cfg.write_consistency_factor,
                "on_disk_payload": cfg.on_disk_payload,
            },
            "hnsw_config": {
                "m": cfg.hnsw.m,
                "ef_construct": cfg.hnsw.ef_construct,
                "full_scan_threshold": crate::shard::search::FULL_SCAN_THRESHOLD,
                "max_indexing_threads": 0,
                "on_disk": true,
            },
            "optimizer_config": {
                "deleted_threshold": optimizer.deleted_threshold,
                "vacuum_min_vector_number": optimizer.vacuum_min_vector_number,
                "default_segment_number": 0,
                "max_segment_size": optimizer.max_segment_points * dim_bytes / 1024,
                "memmap_threshold": 0,
                "indexing_threshold": threshold_points * dim_bytes / 1024,
                "flush_interval_sec": 0,
                "max_optimization_threads": 1,
            },
            "wal_config": { "wal_capacity_mb": 32, "wal_segments_ahead": 0 },
            "quantization_config": quantization,
        }),
        payload_schema: payload_schema(c),
    }
}

/// `payload_schema` of collection info: each indexed field's type, params as sent, and the
/// points of this node's replicas holding a value for it.
fn payload_schema(c: &Collection) -> serde_json::Value {
    let fields: std::collections::BTreeMap<String, PayloadIndexInfo> = c
        .payload_index_info()
        .into_iter()
        .map(|(key, (schema, points))| {
            let info = PayloadIndexInfo {
                data_type: schema.data_type,
                params: schema.params,
                points: points as u64,
            };
            (key, info)
        })
        .collect();
    serde_json::to_value(fields).unwrap_or_else(|_| json!({}))
}
