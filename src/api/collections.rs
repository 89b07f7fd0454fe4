//! Collection routes: create, inspect, list, check and delete.

use super::models::{
    CollectionDescription, CollectionExists, CollectionInfo, CollectionsList, CreateCollection,
    VectorsConfig, WaitParams,
};
use super::response::Path;
use super::response::{Answer, ApiResult, Body, Params, Started};
use super::AppState;
use crate::collection::catalog::validate_config;
use crate::collection::{Collection, CollectionConfig};
use crate::error::Error;
use crate::index::HnswParams;
use axum::extract::State;
use serde_json::json;

#[utoipa::path(
    get,
    path = "/collections",
    tag = "collections",
    summary = "List collections",
    responses((status = 200, description = "Success", body = super::response::Envelope<CollectionsList>), super::openapi::ApiErrors)
)]
pub async fn list(State(node): State<AppState>, t: Started) -> ApiResult<CollectionsList> {
    let collections = node
        .catalog
        .names()
        .into_iter()
        .map(|name| CollectionDescription { name })
        .collect();
    Ok(Answer(t, CollectionsList { collections }))
}

#[utoipa::path(
    get,
    path = "/collections/{name}/exists",
    tag = "collections",
    summary = "Does a collection exist",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "Success", body = super::response::Envelope<CollectionExists>), super::openapi::ApiErrors)
)]
pub async fn exists(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
) -> ApiResult<CollectionExists> {
    Ok(Answer(
        t,
        CollectionExists {
            exists: node.catalog.get(&name).is_ok(),
        },
    ))
}

#[utoipa::path(
    get,
    path = "/collections/{name}",
    tag = "collections",
    summary = "Collection info",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "Success", body = super::response::Envelope<CollectionInfo>), super::openapi::ApiErrors)
)]
pub async fn info(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
) -> ApiResult<CollectionInfo> {
    let c = node.catalog.get(&name)?;
    Ok(Answer(t, info_json(&c, node.config.indexing_threshold)))
}

#[utoipa::path(
    put,
    path = "/collections/{name}",
    tag = "collections",
    summary = "Create a collection",
    params(("name" = String, Path, description = "Collection name"), WaitParams),
    request_body = CreateCollection,
    responses((status = 200, description = "Success", body = super::response::Envelope<bool>), super::openapi::ApiErrors)
)]
pub async fn create(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(_wait): Params<WaitParams>,
    Body(req): Body<CreateCollection>,
) -> ApiResult<bool> {
    let config = collection_config(req, &node)?;
    node.create_collection(&name, config).await?;
    Ok(Answer(t, true))
}

#[utoipa::path(
    delete,
    path = "/collections/{name}",
    tag = "collections",
    summary = "Delete a collection",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "Success", body = super::response::Envelope<bool>), super::openapi::ApiErrors)
)]
pub async fn delete(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
) -> ApiResult<bool> {
    Ok(Answer(t, node.delete_collection(&name).await?))
}

/// Validates a create request and fills in defaults.
fn collection_config(req: CreateCollection, node: &AppState) -> Result<CollectionConfig, Error> {
    let bad = |m: String| Error::BadRequest(m);
    let params = match req.vectors {
        None => return Err(bad(
            "`vectors` is required: {\"size\": N, \"distance\": \"Cosine|Dot|Euclid|Manhattan\"}"
                .into(),
        )),
        Some(VectorsConfig::Single(p)) => p,
        Some(VectorsConfig::Named(mut named)) => match named.remove("") {
            Some(p) if named.is_empty() => p,
            _ => {
                return Err(bad(
                    "named vectors are not supported: configure one unnamed vector".into(),
                ))
            }
        },
    };
    if params
        .multivector_config
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return Err(bad("multivectors are not supported".into()));
    }
    if req
        .sparse_vectors
        .as_ref()
        .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    {
        return Err(bad("sparse vectors are not supported".into()));
    }
    let defaults = HnswParams::default();
    let diff = params.hnsw_config.or(req.hnsw_config).unwrap_or_default();
    let hnsw = HnswParams {
        m: diff.m.unwrap_or(defaults.m),
        ef_construct: diff.ef_construct.unwrap_or(defaults.ef_construct),
    };
    // Default: one shard on a single node; in a cluster two per node, so that a scale-up has
    // shards to give the new pods (shard_number is fixed at creation).
    let default_shards = if node.cluster.is_single() {
        1
    } else {
        2 * node.cluster.size()
    };
    let shard_number = req
        .shard_number
        .or(node.config.default_shard_number)
        .unwrap_or(default_shards);
    let replication_factor = req
        .replication_factor
        .unwrap_or(node.config.default_replication_factor);
    let config = CollectionConfig {
        size: usize::try_from(params.size).unwrap_or(usize::MAX),
        distance: params.distance,
        hnsw,
        shard_number,
        replication_factor,
        write_consistency_factor: req.write_consistency_factor.unwrap_or(1),
        on_disk_payload: req.on_disk_payload.unwrap_or(true),
    };
    validate_config(&config)?;
    Ok(config)
}

/// `GET /collections/{name}` in the shape of Qdrant's `CollectionInfo`.
fn info_json(c: &Collection, indexing_threshold: usize) -> CollectionInfo {
    let (points, indexed, segments) = c.stats();
    let cfg = &c.config;
    CollectionInfo {
        status: "green".into(),
        optimizer_status: "ok".into(),
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
                "on_disk": false,
            },
            "optimizer_config": {
                "deleted_threshold": 0.25,
                "vacuum_min_vector_number": 1000,
                "default_segment_number": 0,
                "max_segment_size": null,
                "memmap_threshold": null,
                "indexing_threshold": indexing_threshold,
                "flush_interval_sec": 1,
                "max_optimization_threads": null,
            },
            "wal_config": { "wal_capacity_mb": 32, "wal_segments_ahead": 0 },
            "quantization_config": null,
        }),
        payload_schema: json!({}),
    }
}
