//! Collections: create, inspect, list, check, update and delete, and aliases (Qdrant's
//! `Collections` service).

use super::models::{
    AliasAction, AliasDescription, ChangeAliases, CollectionDescription, CollectionExists,
    CollectionInfo, CollectionsAliases, CollectionsList, CreateCollection, PayloadIndexInfo,
    UpdateCollection,
};
use super::validate::{self, CollectionDefaults};
use super::{Database, Result};
use crate::cluster::protocol::ShardStats;
use crate::collection::aliases::AliasChange;
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

    /// The collection's configuration as in force, and what it holds over every shard of the
    /// cluster (one replica of each), with its status: `yellow` while any replica read or any of
    /// this node's builds or has a build due. Where a shard cannot be read, the counts are those
    /// of this node's replicas (logged), rather than no answer: clients read info to learn a
    /// collection's dimension.
    pub async fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let c = self.collection(name)?;
        let (deadline, _dropped) = self.read_deadline(None);
        let threshold = self.config.indexing_threshold;
        let local = || {
            (c.local_shards().iter())
                .map(|(_, s)| ShardStats::of(s, threshold))
                .fold(ShardStats::default(), ShardStats::plus)
        };
        let stats = match self.coordinator.stats(&c, threshold, &deadline).await {
            Ok(mut stats) => {
                let (optimizing, error) = c.optimizer_state(threshold);
                stats.optimizing |= optimizing;
                stats.optimizer_error = stats.optimizer_error.or(error);
                stats
            }
            Err(e) => {
                tracing::warn!(collection = %c.name, error = %e, "collection info counts this node's replicas only");
                local()
            }
        };
        Ok(info_json(&c, threshold, &stats))
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

    /// Qdrant's `update_collection`: a newer configuration on every node, applied in place
    /// (see [`validate::collection_update`]); a name may be an alias.
    pub async fn update_collection(&self, name: &str, req: UpdateCollection) -> Result<bool> {
        let c = self.collection(name)?;
        self.coordinator
            .update_config(&c.name, |config| validate::collection_update(req, config))
            .await?;
        Ok(true)
    }

    /// Qdrant's `update_aliases`: the actions in order, all or none, on every node.
    pub async fn update_aliases(&self, req: ChangeAliases) -> Result<bool> {
        let changes: Vec<AliasChange> = req
            .actions
            .into_iter()
            .map(|a| match a {
                AliasAction::CreateAlias {
                    collection_name,
                    alias_name,
                } => AliasChange::Create {
                    alias: alias_name,
                    collection: collection_name,
                },
                AliasAction::DeleteAlias { alias_name } => {
                    AliasChange::Delete { alias: alias_name }
                }
                AliasAction::RenameAlias {
                    old_alias_name,
                    new_alias_name,
                } => AliasChange::Rename {
                    from: old_alias_name,
                    to: new_alias_name,
                },
            })
            .collect();
        self.coordinator.update_aliases(&changes).await?;
        Ok(true)
    }

    /// Every alias; with `collection`, only that collection's (which must exist).
    pub fn list_aliases(&self, collection: Option<&str>) -> Result<CollectionsAliases> {
        let only = match collection {
            Some(name) => Some(self.collection(name)?.name.clone()),
            None => None,
        };
        let aliases = self
            .coordinator
            .catalog
            .aliases()
            .into_iter()
            .filter(|(_, c)| only.as_ref().is_none_or(|o| o == c))
            .map(|(alias_name, collection_name)| AliasDescription {
                alias_name,
                collection_name,
            })
            .collect();
        Ok(CollectionsAliases { aliases })
    }

    /// Deletes a collection on every node of the cluster; false when there was none.
    pub async fn delete_collection(&self, name: &str) -> Result<bool> {
        self.coordinator.delete_collection(name).await
    }
}

/// A collection in the shape of Qdrant's `CollectionInfo`: `status` is `yellow` while a shard
/// is building or has a build due, `green` once none has; `optimizer_status` carries the last
/// build error, if the last build failed.
fn info_json(c: &Collection, indexing_threshold: usize, stats: &ShardStats) -> CollectionInfo {
    let cfg = &c.config;
    let optimizer = cfg.optimizer();
    let (optimizing, error) = (stats.optimizing, stats.optimizer_error.clone());
    let dim_bytes = 4 * cfg.size.max(1);
    // The threshold as the client set it (KB), else the node's (points) in KB.
    let indexing_threshold_kb = cfg.optimizers.indexing_threshold_kb.unwrap_or_else(|| {
        optimizer.indexing_threshold.unwrap_or(indexing_threshold) * dim_bytes / 1024
    });
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
        indexed_vectors_count: stats.indexed,
        points_count: stats.points,
        segments_count: stats.segments,
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
                "full_scan_threshold": cfg.full_scan_threshold_kb(),
                "max_indexing_threads": 0,
                "on_disk": true,
            },
            "optimizer_config": {
                "deleted_threshold": optimizer.deleted_threshold,
                "vacuum_min_vector_number": optimizer.vacuum_min_vector_number,
                "default_segment_number": 0,
                "max_segment_size": optimizer.max_segment_points * dim_bytes / 1024,
                "memmap_threshold": 0,
                "indexing_threshold": indexing_threshold_kb,
                "flush_interval_sec": 0,
                "max_optimization_threads": 1,
            },
            "wal_config": { "wal_capacity_mb": 32, "wal_segments_ahead": 0 },
            "quantization_config": quantization,
        }),
        payload_schema: payload_schema(c, stats),
    }
}

/// `payload_schema` of collection info: each indexed field's type, params as sent, and the
/// points holding a value for it.
fn payload_schema(c: &Collection, stats: &ShardStats) -> serde_json::Value {
    let points = |key: &str| {
        (stats.fields.iter())
            .find(|(k, _)| k == key)
            .map_or(0, |f| f.1)
    };
    let fields: std::collections::BTreeMap<String, PayloadIndexInfo> = (c.config.payload_schema)
        .iter()
        .map(|(key, schema)| {
            let info = PayloadIndexInfo {
                data_type: schema.data_type,
                params: schema.params.clone(),
                points: points(key),
            };
            (key.clone(), info)
        })
        .collect();
    serde_json::to_value(fields).unwrap_or_else(|_| json!({}))
}
