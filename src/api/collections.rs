//! Collection routes: create, inspect, list, check and delete.

use super::models::OptimizersConfigDiff;
use super::models::{
    CollectionDescription, CollectionExists, CollectionInfo, CollectionsList, CreateCollection,
    VectorsConfig, WaitParams,
};
use super::response::Path;
use super::response::{Answer, ApiResult, Body, Params, Started};
use super::AppState;
use crate::collection::catalog::validate_config;
use crate::collection::{Collection, CollectionConfig, OptimizersConfig};
use crate::error::Error;
use crate::index::{HnswParams, ScalarInt8};
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
    let quantization = match (&params.quantization_config, &req.quantization_config) {
        (Some(v), _) if !v.is_null() => quantization_config(v)?,
        (_, Some(v)) => quantization_config(v)?,
        _ => None,
    };
    let size = usize::try_from(params.size).unwrap_or(usize::MAX);
    let optimizers = optimizers_config(req.optimizers_config.unwrap_or_default(), size)?;
    let config = CollectionConfig {
        size,
        distance: params.distance,
        hnsw,
        shard_number,
        replication_factor,
        write_consistency_factor: req.write_consistency_factor.unwrap_or(1),
        on_disk_payload: req.on_disk_payload.unwrap_or(true),
        quantization,
        optimizers,
    };
    validate_config(&config)?;
    Ok(config)
}

/// Qdrant's `quantization_config`: scalar int8 is supported; product and binary are refused
/// rather than silently ignored.
fn quantization_config(v: &serde_json::Value) -> Result<Option<ScalarInt8>, Error> {
    let bad = |m: String| Error::BadRequest(m);
    if v.is_null() {
        return Ok(None);
    }
    let obj = v
        .as_object()
        .ok_or_else(|| bad("quantization_config must be an object".into()))?;
    if let Some(kind) = obj.keys().find(|k| *k != "scalar") {
        return Err(bad(format!(
            "quantization_config.{kind} is not supported: shoal supports scalar int8 quantization"
        )));
    }
    let Some(scalar) = obj.get("scalar").and_then(|s| s.as_object()) else {
        return Err(bad("quantization_config.scalar must be an object".into()));
    };
    for key in scalar.keys() {
        if !["type", "quantile", "always_ram"].contains(&key.as_str()) {
            return Err(bad(format!(
                "unknown field quantization_config.scalar.{key}"
            )));
        }
    }
    match scalar.get("type").and_then(|t| t.as_str()) {
        Some("int8") => {}
        other => {
            return Err(bad(format!(
                "quantization_config.scalar.type must be \"int8\", got {}",
                other.map_or("nothing".to_string(), |t| format!("{t:?}"))
            )))
        }
    }
    let quantile = match scalar.get("quantile") {
        None | Some(serde_json::Value::Null) => 0.99,
        Some(q) => q
            .as_f64()
            .filter(|q| (0.5..=1.0).contains(q))
            .ok_or_else(|| {
                bad(format!(
                    "quantization_config.scalar.quantile must be between 0.5 and 1, got {q}"
                ))
            })? as f32,
    };
    let always_ram = match scalar.get("always_ram") {
        None | Some(serde_json::Value::Null) => false,
        Some(b) => b
            .as_bool()
            .ok_or_else(|| bad("quantization_config.scalar.always_ram must be a boolean".into()))?,
    };
    Ok(Some(ScalarInt8 {
        quantile,
        always_ram,
    }))
}

/// The `optimizers_config` fields shoal honours (see [`OptimizersConfigDiff`]).
fn optimizers_config(o: OptimizersConfigDiff, dim: usize) -> Result<OptimizersConfig, Error> {
    let refuse = |field: &str| {
        Err(Error::BadRequest(format!(
            "optimizers_config.{field} is not supported by shoal (leave it unset)"
        )))
    };
    if o.default_segment_number.is_some() {
        return refuse("default_segment_number");
    }
    if o.flush_interval_sec.is_some() {
        return refuse("flush_interval_sec");
    }
    if o.max_optimization_threads
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return refuse("max_optimization_threads");
    }
    if let Some(t) = o.deleted_threshold {
        if !(0.0..=1.0).contains(&t) {
            return Err(Error::BadRequest(format!(
                "optimizers_config.deleted_threshold must be between 0 and 1, got {t}"
            )));
        }
    }
    if o.max_segment_size.is_some_and(|kb| kb == 0) {
        return Err(Error::BadRequest(
            "optimizers_config.max_segment_size must be positive (KB)".into(),
        ));
    }
    let kb_to_points = |kb: usize| (kb.saturating_mul(1024) / (4 * dim.max(1))).max(1);
    Ok(OptimizersConfig {
        max_segment_size_kb: o.max_segment_size,
        indexing_threshold: o.indexing_threshold.map(kb_to_points),
        deleted_threshold: o.deleted_threshold,
        vacuum_min_vector_number: o.vacuum_min_vector_number,
    })
}

/// `GET /collections/{name}` in the shape of Qdrant's `CollectionInfo`: `status` is `yellow`
/// while a local shard is building or has a build due, `green` once none has; `optimizer_status`
/// carries the last build error, if the last build failed.
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
        payload_schema: json!({}),
    }
}
