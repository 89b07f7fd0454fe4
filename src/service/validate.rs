//! Every check a request passes before it reaches the coordinator, in one place so that every
//! transport gets the same: shapes that must line up, bounds on what one request may ask, and
//! what shoal does not support (a 400 that says so, never a silent no-op). What a peer may also
//! send is checked again below, where both paths meet: a vector's dimension, elements and norm
//! ([`Collection::prepare_vector`](crate::collection::Collection::prepare_vector)), a payload's
//! depth ([`check_payload`]) and key paths ([`PayloadOp::validate`]).

use super::models::*;
use crate::collection::catalog::validate_config;
use crate::collection::{Collection, CollectionConfig, NewPoint, OptimizersConfig, SearchRequest};
use crate::error::{Error, Result};
use crate::index::{HnswParams, QuantSearch, ScalarInt8};
use crate::shard::facet::{self, Direction, IndexedKey};
use crate::shard::filter::{Condition, Filter, OneOrMany};
use crate::shard::payload::{check_payload, KeyPath};
use crate::shard::payload_index::{
    datetime_micros, definitions_on, FieldSchema, FieldType, PayloadSchema,
};
use crate::shard::point::PointId;
use crate::shard::{PayloadOp, Selector};
use serde_json::Value;
use std::collections::BTreeMap;

/// Most hits one search returns, and the largest offset.
pub const MAX_LIMIT: usize = 10_000;
/// Widest search beam (`params.hnsw_ef`).
pub const MAX_EF: usize = 100_000;
/// Most searches in one batch.
pub const MAX_BATCH: usize = 1_000;
/// Largest page a scroll returns at once.
pub const MAX_SCROLL_LIMIT: usize = 100_000;

fn bad<T>(message: impl Into<String>) -> Result<T> {
    Err(Error::BadRequest(message.into()))
}

// ---------- queries ----------

/// The vector a query searches with, or the id of the point whose vector it borrows.
pub enum Target {
    Vector(Vec<f32>),
    Point(PointId),
}

/// A search or query, validated: what it searches with, what the coordinator runs, and which
/// part of each hit's payload the answer shows.
pub struct Query {
    pub target: Target,
    /// The request for the coordinator; its vector is filled in from `target`.
    pub request: SearchRequest,
    pub with_payload: Option<WithPayload>,
}

/// The vector of the default (unnamed) name, the only one shoal supports.
fn unnamed<T>(mut named: BTreeMap<String, T>, what: &str) -> Result<T> {
    match named.remove("") {
        Some(v) if named.is_empty() => Ok(v),
        _ => bad(format!(
            "named vectors are not supported; send {what} with the default (unnamed) vector"
        )),
    }
}

fn check_bounds(limit: usize, offset: usize, ef: Option<usize>) -> Result<()> {
    if limit > MAX_LIMIT || offset > MAX_LIMIT {
        return bad(format!("limit and offset must be at most {MAX_LIMIT}"));
    }
    if ef.is_some_and(|ef| ef == 0 || ef > MAX_EF) {
        return bad(format!("params.hnsw_ef must be between 1 and {MAX_EF}"));
    }
    Ok(())
}

/// A Query API request (`/points/query`, Qdrant's `Points.Query`).
pub fn query(q: QueryPoints) -> Result<Query> {
    // qdrant-client 1.12 sends `"prefetch": []` with every query: nothing to prefetch.
    let no_prefetch =
        |v: &serde_json::Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
    if q.prefetch.as_ref().is_some_and(|v| !no_prefetch(v)) {
        return bad("prefetch is not supported");
    }
    if q.lookup_from.as_ref().is_some_and(|v| !v.is_null()) {
        return bad("lookup_from is not supported");
    }
    if q.using.as_deref().is_some_and(|u| !u.is_empty()) {
        return bad("named vectors are not supported: omit `using`");
    }
    let target = match q.query {
        None => return bad("`query` is required: a vector, {\"nearest\": vector} or a point id"),
        Some(QueryInput::Vector(v))
        | Some(QueryInput::Nearest {
            nearest: NearestInput::Vector(v),
        }) => Target::Vector(v),
        Some(QueryInput::Nearest {
            nearest: NearestInput::Named(v),
        }) => Target::Vector(unnamed(v, "the query")?),
        Some(QueryInput::Id(id))
        | Some(QueryInput::Nearest {
            nearest: NearestInput::Id(id),
        }) => Target::Point(id),
        Some(QueryInput::Other(v)) => {
            return bad(format!(
                "unsupported query {v}: shoal answers nearest-vector queries"
            ))
        }
    };
    let request = SearchRequest {
        vector: Vec::new(),
        filter: q.filter,
        limit: q.limit.unwrap_or(10),
        offset: q.offset.unwrap_or(0),
        hnsw_ef: None,
        exact: false,
        quantization: Default::default(),
        score_threshold: q.score_threshold,
        with_vector: WithVector::wanted(&q.with_vector),
        with_payload: WithPayload::wanted(&q.with_payload),
    };
    within_bounds(target, request, q.params, q.with_payload)
}

/// A query with its search parameters, checked against the bounds.
fn within_bounds(
    target: Target,
    mut request: SearchRequest,
    params: Option<SearchParams>,
    with_payload: Option<WithPayload>,
) -> Result<Query> {
    let params = params.unwrap_or_default();
    WithPayload::check(&with_payload).map_err(Error::BadRequest)?;
    check_bounds(request.limit, request.offset, params.hnsw_ef)?;
    check_filter(request.filter.as_ref())?;
    request.hnsw_ef = params.hnsw_ef;
    request.exact = params.exact.unwrap_or(false);
    request.quantization = quantization(&params)?;
    Ok(Query {
        target,
        request,
        with_payload,
    })
}

/// Qdrant's `params.quantization` (and `indexed_only`, which shoal cannot honour), checked.
fn quantization(params: &SearchParams) -> Result<QuantSearch> {
    if params.indexed_only == Some(true) {
        return bad(
            "params.indexed_only is not supported: shoal always searches its small unindexed tail exactly",
        );
    }
    let mut how = QuantSearch::default();
    if let Some(q) = &params.quantization {
        how.ignore = q.ignore.unwrap_or(false);
        how.rescore = q.rescore.unwrap_or(true);
        if let Some(o) = q.oversampling {
            if !(1.0..=100.0).contains(&o) {
                return bad(format!(
                    "params.quantization.oversampling must be between 1 and 100, got {o}"
                ));
            }
            how.oversampling = o as f32;
        }
    }
    Ok(how)
}

/// A search of the older API (`/points/search`, Qdrant's `Points.Search`).
pub fn search(s: SearchPoints) -> Result<Query> {
    let vector = match s.vector {
        SearchVector::Dense(v) => v,
        SearchVector::Named { name, vector } if name.is_empty() => vector,
        SearchVector::Named { name, .. } => {
            return bad(format!(
                "named vector {name:?} is not supported: send an unnamed vector"
            ))
        }
    };
    let request = SearchRequest {
        vector: Vec::new(),
        filter: s.filter,
        limit: s.limit,
        offset: s.offset.unwrap_or(0),
        hnsw_ef: None,
        exact: false,
        quantization: Default::default(),
        score_threshold: s.score_threshold,
        with_vector: WithVector::wanted(&s.with_vector),
        with_payload: WithPayload::wanted(&s.with_payload),
    };
    within_bounds(Target::Vector(vector), request, s.params, s.with_payload)
}

/// A batch of searches or queries: at most [`MAX_BATCH`], each valid.
pub fn batch<T>(items: Vec<T>, one: impl Fn(T) -> Result<Query>) -> Result<Vec<Query>> {
    if items.len() > MAX_BATCH {
        return bad(format!("a batch holds at most {MAX_BATCH} searches"));
    }
    items.into_iter().map(one).collect()
}

// ---------- points ----------

/// Both upsert forms (`points` or columnar `batch`) as one list of points, checked as a whole:
/// one bad point refuses the batch.
pub fn upsert(req: UpsertPoints, max_points: u64) -> Result<Vec<NewPoint>> {
    if req.update_filter.is_some() {
        return bad("update_filter is not supported");
    }
    let sent = req
        .points
        .as_ref()
        .map(Vec::len)
        .or(req.batch.as_ref().map(|b| b.ids.len()))
        .unwrap_or(0) as u64;
    if sent > max_points {
        return bad(format!(
            "the upsert holds {sent} points; at most {max_points} are accepted per request (--max-batch-points): split it"
        ));
    }
    let points = match (req.points, req.batch) {
        (Some(points), None) => points
            .into_iter()
            .map(|p| {
                let vector = match p.vector {
                    VectorInput::Dense(v) => v,
                    VectorInput::Named(named) => unnamed(named, &format!("point {}", p.id))?,
                };
                Ok(NewPoint {
                    id: p.id,
                    vector,
                    payload: p.payload.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>>>()?,
        (None, Some(batch)) => columns(batch)?,
        _ => return bad("send exactly one of `points` or `batch`"),
    };
    for p in &points {
        check_payload(&p.payload).map_err(|e| Error::BadRequest(format!("point {}: {e}", p.id)))?;
    }
    Ok(points)
}

/// The columnar upsert form: ids, vectors and payloads must line up.
fn columns(batch: Batch) -> Result<Vec<NewPoint>> {
    let vectors = match batch.vectors {
        BatchVectors::Dense(v) => v,
        BatchVectors::Named(named) => unnamed(named, "the batch")?,
    };
    let n = batch.ids.len();
    if vectors.len() != n {
        return bad(format!("batch has {n} ids but {} vectors", vectors.len()));
    }
    let payloads = batch.payloads.unwrap_or_else(|| vec![None; n]);
    if payloads.len() != n {
        return bad(format!("batch has {n} ids but {} payloads", payloads.len()));
    }
    Ok(batch
        .ids
        .into_iter()
        .zip(vectors)
        .zip(payloads)
        .map(|((id, vector), payload)| NewPoint {
            id,
            vector,
            payload: payload.unwrap_or_default(),
        })
        .collect())
}

/// `{"points": …}` or `{"filter": …}`, exactly one.
pub fn selector(points: Option<Vec<PointId>>, filter: Option<Filter>) -> Result<Selector> {
    check_filter(filter.as_ref())?;
    match (points, filter) {
        (Some(ids), None) => Ok(Selector::Ids(ids)),
        (None, Some(f)) => Ok(Selector::Filter(f)),
        _ => bad("select points with exactly one of `points` (ids) or `filter`"),
    }
}

/// A payload change: its key paths parse and its payload nests within bounds.
pub fn payload_op(op: &PayloadOp) -> Result<()> {
    op.validate().map_err(Error::BadRequest)
}

/// A scroll's page size, and no ordering but by id.
pub fn scroll(req: &ScrollPoints) -> Result<usize> {
    check_filter(req.filter.as_ref())?;
    WithPayload::check(&req.with_payload).map_err(Error::BadRequest)?;
    let limit = req.limit.unwrap_or(10);
    if limit == 0 || limit > MAX_SCROLL_LIMIT {
        return bad(format!(
            "limit must be between 1 and {MAX_SCROLL_LIMIT}, got {limit}"
        ));
    }
    Ok(limit)
}

/// A filter shoal can evaluate: geo conditions are accepted by the parser (clients send them
/// as explicit `null`s) but not evaluated, so one that is set is refused.
pub fn check_filter(filter: Option<&Filter>) -> Result<()> {
    let Some(f) = filter else {
        return Ok(());
    };
    let clauses = [&f.must, &f.should, &f.must_not];
    let listed = clauses.into_iter().flatten().flat_map(|c| match c {
        OneOrMany::Many(v) => v.iter().collect::<Vec<_>>(),
        OneOrMany::One(c) => vec![c.as_ref()],
    });
    let min_should = f.min_should.iter().flat_map(|m| m.conditions.iter());
    for condition in listed.chain(min_should) {
        match condition {
            Condition::Field(field)
                if field.geo_bounding_box.is_some()
                    || field.geo_radius.is_some()
                    || field.geo_polygon.is_some() =>
            {
                return bad(format!(
                    "geo conditions are not supported (field condition on {:?})",
                    field.key
                ))
            }
            Condition::Nested { nested } => check_filter(Some(&nested.filter))?,
            Condition::Filter(inner) => check_filter(Some(inner))?,
            _ => {}
        }
    }
    Ok(())
}

// ---------- collections ----------

/// What a create request that leaves them out gets.
pub struct CollectionDefaults {
    pub shard_number: u32,
    pub replication_factor: u32,
}

/// A create request as a collection configuration, defaults filled in, within bounds.
pub fn collection_config(
    req: CreateCollection,
    defaults: CollectionDefaults,
) -> Result<CollectionConfig> {
    let params = match req.vectors {
        None => return bad(
            "`vectors` is required: {\"size\": N, \"distance\": \"Cosine|Dot|Euclid|Manhattan\"}",
        ),
        Some(VectorsConfig::Single(p)) => p,
        Some(VectorsConfig::Named(named)) => match unnamed(named, "a collection") {
            Ok(p) => p,
            Err(_) => return bad("named vectors are not supported: configure one unnamed vector"),
        },
    };
    if params
        .multivector_config
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return bad("multivectors are not supported");
    }
    if params
        .datatype
        .as_deref()
        .is_some_and(|d| !d.eq_ignore_ascii_case("float32"))
    {
        return bad("vectors.datatype: only \"float32\" is supported");
    }
    if params.on_disk == Some(false) {
        return bad(ON_DISK_VECTORS);
    }
    refuse_set(&[
        ("sparse_vectors", &req.sparse_vectors),
        ("wal_config", &req.wal_config),
        ("init_from", &req.init_from),
        ("strict_mode_config", &req.strict_mode_config),
        ("metadata", &req.metadata),
    ])?;
    if req
        .sharding_method
        .as_deref()
        .is_some_and(|m| !m.eq_ignore_ascii_case("auto"))
    {
        return bad("sharding_method: only \"auto\" is supported (shards by point id)");
    }
    let quantization = match (&params.quantization_config, &req.quantization_config) {
        (Some(v), _) if !v.is_null() => quantization_config(v)?,
        (_, Some(v)) => quantization_config(v)?,
        _ => None,
    };
    let size = usize::try_from(params.size).unwrap_or(usize::MAX);
    let mut config = CollectionConfig {
        size,
        distance: params.distance,
        hnsw: HnswParams::default(),
        shard_number: req.shard_number.unwrap_or(defaults.shard_number),
        replication_factor: req
            .replication_factor
            .unwrap_or(defaults.replication_factor),
        write_consistency_factor: req.write_consistency_factor.unwrap_or(1),
        on_disk_payload: req.on_disk_payload.unwrap_or(true),
        quantization,
        full_scan_threshold_kb: None,
        optimizers: OptimizersConfig::default(),
        payload_schema: Default::default(),
        incarnation: 0,
    };
    // The collection's hnsw_config, then the vector's over it (Qdrant's order of precedence).
    for diff in [req.hnsw_config, params.hnsw_config].into_iter().flatten() {
        apply_hnsw(diff, &mut config)?;
    }
    if let Some(diff) = req.optimizers_config {
        apply_optimizers(diff, &mut config.optimizers, size)?;
    }
    validate_config(&config)?;
    Ok(config)
}

const ON_DISK_VECTORS: &str =
    "vectors.on_disk: false is not supported: shoal keeps indexed vectors in memory-mapped files (on_disk: true)";

/// Refuses, with a 400 naming it, the first field shoal has no support for that is set (not
/// absent, `null` or `{}`).
fn refuse_set(fields: &[(&str, &Option<serde_json::Value>)]) -> Result<()> {
    let set = |v: &serde_json::Value| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty());
    match fields.iter().find(|(_, v)| v.as_ref().is_some_and(set)) {
        Some((field, _)) => bad(format!(
            "{field} is not supported by shoal (leave it unset)"
        )),
        None => Ok(()),
    }
}

/// A `PATCH /collections/{c}` onto the collection's configuration (the catalog checks the
/// result like a create's). Honoured: `optimizers_config`, `hnsw_config` (also the unnamed
/// vector's), `quantization_config` (`"Disabled"` removes it), and the `params` Qdrant lets
/// change: `replication_factor` (replicas move as on a resize), `write_consistency_factor`,
/// `on_disk_payload`. Anything else set is refused with a 400 that names it.
pub fn collection_update(req: UpdateCollection, config: &mut CollectionConfig) -> Result<()> {
    refuse_set(&[
        ("sparse_vectors", &req.sparse_vectors),
        ("strict_mode_config", &req.strict_mode_config),
        ("metadata", &req.metadata),
    ])?;
    if let Some(p) = req.params {
        if p.read_fan_out_factor.is_some() {
            return bad("params.read_fan_out_factor is not supported by shoal (leave it unset)");
        }
        if let Some(r) = p.replication_factor {
            config.replication_factor = r;
        }
        if let Some(w) = p.write_consistency_factor {
            config.write_consistency_factor = w;
        }
        if let Some(d) = p.on_disk_payload {
            config.on_disk_payload = d;
        }
    }
    if let Some(diff) = req.hnsw_config {
        apply_hnsw(diff, config)?;
    }
    if let Some(diff) = req.optimizers_config {
        apply_optimizers(diff, &mut config.optimizers, config.size)?;
    }
    let mut quantization = req.quantization_config;
    if let Some(mut vectors) = req.vectors {
        let Some(diff) = vectors.remove("") else {
            return bad(
                "named vectors are not supported: update the default (unnamed) vector, \"\"",
            );
        };
        if !vectors.is_empty() {
            return bad(
                "named vectors are not supported: update the default (unnamed) vector, \"\"",
            );
        }
        if diff.on_disk == Some(false) {
            return bad(ON_DISK_VECTORS);
        }
        if let Some(h) = diff.hnsw_config {
            apply_hnsw(h, config)?;
        }
        if diff
            .quantization_config
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            quantization = diff.quantization_config;
        }
    }
    match quantization {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(s)) if s == "Disabled" => config.quantization = None,
        Some(v) => config.quantization = quantization_config(&v)?,
    }
    Ok(())
}

/// Qdrant's `quantization_config`: scalar int8 is supported; product and binary are refused
/// rather than silently ignored.
fn quantization_config(v: &serde_json::Value) -> Result<Option<ScalarInt8>> {
    if v.is_null() {
        return Ok(None);
    }
    let Some(obj) = v.as_object() else {
        return bad("quantization_config must be an object");
    };
    if let Some(kind) = obj.keys().find(|k| *k != "scalar") {
        return bad(format!(
            "quantization_config.{kind} is not supported: shoal supports scalar int8 quantization"
        ));
    }
    let Some(scalar) = obj.get("scalar").and_then(|s| s.as_object()) else {
        return bad("quantization_config.scalar must be an object");
    };
    if let Some(key) = scalar
        .keys()
        .find(|k| !["type", "quantile", "always_ram"].contains(&k.as_str()))
    {
        return bad(format!("unknown field quantization_config.scalar.{key}"));
    }
    match scalar.get("type").and_then(|t| t.as_str()) {
        Some("int8") => {}
        other => {
            return bad(format!(
                "quantization_config.scalar.type must be \"int8\", got {}",
                other.map_or("nothing".to_string(), |t| format!("{t:?}"))
            ))
        }
    }
    let quantile = match scalar.get("quantile") {
        None | Some(serde_json::Value::Null) => 0.99,
        Some(q) => match q.as_f64().filter(|q| (0.5..=1.0).contains(q)) {
            Some(q) => q as f32,
            None => {
                return bad(format!(
                    "quantization_config.scalar.quantile must be between 0.5 and 1, got {q}"
                ))
            }
        },
    };
    let always_ram = match scalar.get("always_ram") {
        None | Some(serde_json::Value::Null) => false,
        Some(b) => match b.as_bool() {
            Some(b) => b,
            None => return bad("quantization_config.scalar.always_ram must be a boolean"),
        },
    };
    Ok(Some(ScalarInt8 {
        quantile,
        always_ram,
    }))
}

/// Qdrant's `hnsw_config` diff onto a configuration (a create's defaults or a collection's
/// current one): the fields set replace, the others stay; see [`HnswConfigDiff`].
pub fn apply_hnsw(diff: HnswConfigDiff, config: &mut CollectionConfig) -> Result<()> {
    if diff.payload_m.is_some() {
        return bad("hnsw_config.payload_m is not supported by shoal (leave it unset)");
    }
    if diff.on_disk == Some(false) {
        return bad("hnsw_config.on_disk: false is not supported: shoal keeps HNSW graphs in memory-mapped files (on_disk: true)");
    }
    if diff.max_indexing_threads.is_some_and(|t| t != 0) {
        return bad("hnsw_config.max_indexing_threads is not supported: shoal builds one segment at a time with every core (leave it unset or 0)");
    }
    if let Some(m) = diff.m {
        config.hnsw.m = m;
    }
    if let Some(ef) = diff.ef_construct {
        config.hnsw.ef_construct = ef;
    }
    if let Some(kb) = diff.full_scan_threshold {
        config.full_scan_threshold_kb = Some(kb);
    }
    Ok(())
}

/// Qdrant's `optimizers_config` diff onto what a collection sets (see [`OptimizersConfigDiff`]
/// for the fields shoal honours; the others get a 400 unless null).
pub fn apply_optimizers(
    o: OptimizersConfigDiff,
    into: &mut OptimizersConfig,
    dim: usize,
) -> Result<()> {
    let refuse = |field: &str| {
        bad(format!(
            "optimizers_config.{field} is not supported by shoal (leave it unset)"
        ))
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
            return bad(format!(
                "optimizers_config.deleted_threshold must be between 0 and 1, got {t}"
            ));
        }
        into.deleted_threshold = Some(t);
    }
    if o.max_segment_size.is_some_and(|kb| kb == 0) {
        return bad("optimizers_config.max_segment_size must be positive (KB)");
    }
    if let Some(kb) = o.max_segment_size {
        into.max_segment_size_kb = Some(kb);
    }
    if let Some(kb) = o.indexing_threshold {
        // 0 disables indexing, as in Qdrant; any other size is at least one point.
        let points = match kb {
            0 => 0,
            kb => (kb.saturating_mul(1024) / (4 * dim.max(1))).max(1),
        };
        into.indexing_threshold = Some(points);
        into.indexing_threshold_kb = Some(kb);
    }
    if let Some(v) = o.vacuum_min_vector_number {
        into.vacuum_min_vector_number = Some(v);
    }
    Ok(())
}

// ---------- vector updates and batches of writes ----------

/// A write, validated: what the coordinator applies. Every write route becomes one, and a batch
/// a list of them.
pub enum Write {
    Upsert(Vec<NewPoint>),
    Delete(Selector),
    Payload(Selector, PayloadOp),
    /// New vectors of existing points, as sent (the coordinator prepares them).
    Vectors(Vec<(PointId, Vec<f32>)>),
    /// Removes the (only, unnamed) vector of the selected points; their payloads stay.
    DeleteVectors(Selector),
}

/// A vector name shoal knows: the default (unnamed) one only. Any other is refused as Qdrant
/// refuses a name its collection does not have.
fn known_vector_name(name: &str) -> Result<()> {
    if name.is_empty() {
        Ok(())
    } else {
        bad(format!(
            "Wrong input: Not existing vector name error: {name}"
        ))
    }
}

/// `PUT /points/vectors`: one vector per point, plain or under the default name.
pub fn update_vectors(req: UpdateVectors, max_points: u64) -> Result<Write> {
    if req.update_filter.is_some() {
        return bad("update_filter is not supported");
    }
    let n = req.points.len() as u64;
    if n == 0 {
        return bad("Validation error in JSON body: [points: must have at least 1 item]");
    }
    if n > max_points {
        return bad(format!(
            "the update holds {n} points; at most {max_points} are accepted per request (--max-batch-points): split it"
        ));
    }
    let points = req
        .points
        .into_iter()
        .map(|p| {
            let vector = match p.vector {
                VectorInput::Dense(v) => v,
                VectorInput::Named(named) => {
                    named.keys().try_for_each(|name| known_vector_name(name))?;
                    match named.into_values().next() {
                        Some(v) => v,
                        None => return bad(format!("point {}: no vector given", p.id)),
                    }
                }
            };
            Ok((p.id, vector))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Write::Vectors(points))
}

/// `POST /points/vectors/delete`: the points, and the names of the vectors to remove.
pub fn delete_vectors(req: DeleteVectors) -> Result<Write> {
    let selected = selector(req.points, req.filter)?;
    if req.vector.is_empty() {
        return bad("Validation error in JSON body: [vector: must have at least 1 item]");
    }
    req.vector.iter().try_for_each(|n| known_vector_name(n))?;
    Ok(Write::DeleteVectors(selected))
}

/// A selection and a payload change, both checked.
fn payload_write(
    points: Option<Vec<PointId>>,
    filter: Option<Filter>,
    op: PayloadOp,
) -> Result<Write> {
    let selected = selector(points, filter)?;
    payload_op(&op)?;
    Ok(Write::Payload(selected, op))
}

/// One operation of a batch, checked as its own route checks it.
fn write(op: UpdateOperation, max_points: u64) -> Result<Write> {
    match op {
        UpdateOperation::Upsert(req) => upsert(req, max_points).map(Write::Upsert),
        UpdateOperation::Delete(s) => selector(s.points, s.filter).map(Write::Delete),
        UpdateOperation::SetPayload(req) => payload_write(
            req.points,
            req.filter,
            PayloadOp::Set {
                payload: req.payload,
                key: req.key,
            },
        ),
        UpdateOperation::OverwritePayload(req) => {
            payload_write(req.points, req.filter, PayloadOp::Overwrite(req.payload))
        }
        UpdateOperation::DeletePayload(req) => {
            payload_write(req.points, req.filter, PayloadOp::DeleteKeys(req.keys))
        }
        UpdateOperation::ClearPayload(s) => payload_write(s.points, s.filter, PayloadOp::Clear),
        UpdateOperation::UpdateVectors(req) => update_vectors(req, max_points),
        UpdateOperation::DeleteVectors(req) => delete_vectors(req),
    }
}

/// Whether a write's vectors fit the collection (dimension, finite elements, norm).
pub fn fits(c: &Collection, w: &Write) -> Result<()> {
    let check = |id: &PointId, v: &[f32]| {
        c.check_vector(v).map_err(|e| match e {
            Error::BadRequest(m) => Error::BadRequest(format!("point {id}: {m}")),
            other => other,
        })
    };
    match w {
        Write::Upsert(points) => points.iter().try_for_each(|p| check(&p.id, &p.vector)),
        Write::Vectors(points) => points.iter().try_for_each(|(id, v)| check(id, v)),
        Write::Delete(_) | Write::Payload(..) | Write::DeleteVectors(_) => Ok(()),
    }
}

/// `POST /points/batch`: every operation checked, vectors against the collection included,
/// before the first is applied; an error names the operation by its position.
pub fn batch_update(req: UpdateOperations, c: &Collection, max_points: u64) -> Result<Vec<Write>> {
    if req.operations.len() > MAX_BATCH {
        return bad(format!("a batch holds at most {MAX_BATCH} operations"));
    }
    req.operations
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            let checked = write(op, max_points).and_then(|w| fits(c, &w).map(|()| w));
            checked.map_err(|e| match e {
                Error::BadRequest(m) => Error::BadRequest(format!("operation {i}: {m}")),
                other => other,
            })
        })
        .collect()
}

// ---------- group searches ----------

/// Where the points named by group ids are looked up, and what of them is returned.
pub struct Lookup {
    pub collection: String,
    pub with_payload: Option<WithPayload>,
    pub with_vector: bool,
}

/// A group search, validated: the payload key hits are grouped by, how many groups of how
/// many hits, and the lookup.
pub struct Grouping {
    pub key: crate::shard::payload::KeyPath,
    /// The key as sent: conditions on it are built from this text.
    pub key_text: String,
    pub group_size: usize,
    pub limit: usize,
    pub lookup: Option<Lookup>,
    /// `must_not: is_empty` on the key: points without a value are never grouped.
    pub has_value: Condition,
}

/// `POST /points/search/groups`: `limit` groups of `group_size` hits.
pub fn search_groups(req: SearchGroups) -> Result<(Query, Grouping)> {
    let limit = req.search.limit;
    if req.search.offset.is_some_and(|o| o > 0) {
        return bad("offset is not supported by group searches");
    }
    let q = search(req.search)?;
    grouping(q, req.group_by, req.group_size, limit, req.with_lookup)
}

/// `POST /points/query/groups`: `limit` (10) groups of `group_size` (3) hits.
pub fn query_groups(req: QueryGroups) -> Result<(Query, Grouping)> {
    let limit = req.query.limit.unwrap_or(10);
    if req.query.offset.is_some_and(|o| o > 0) {
        return bad("offset is not supported by group queries");
    }
    let q = query(req.query)?;
    let size = req.group_size.unwrap_or(3);
    grouping(q, req.group_by, size, limit, req.with_lookup)
}

fn grouping(
    q: Query,
    group_by: String,
    group_size: usize,
    limit: usize,
    lookup: Option<WithLookup>,
) -> Result<(Query, Grouping)> {
    if group_size == 0 || limit == 0 {
        return bad("group_size and limit must be at least 1");
    }
    if group_size.saturating_mul(limit) > MAX_LIMIT {
        return bad(format!(
            "limit × group_size must be at most {MAX_LIMIT}, got {limit} × {group_size}"
        ));
    }
    let key = crate::shard::payload::KeyPath::parse(&group_by)
        .map_err(|e| Error::BadRequest(format!("group_by: {e}")))?;
    let has_value: Condition =
        serde_json::from_value(serde_json::json!({"is_empty": {"key": group_by}}))
            .map_err(|e| Error::BadRequest(format!("group_by: {e}")))?;
    let lookup = lookup.map(|l| match l {
        WithLookup::Collection(collection) => Lookup {
            collection,
            with_payload: None,
            with_vector: false,
        },
        WithLookup::Options {
            collection,
            with_payload,
            with_vectors,
        } => Lookup {
            collection,
            with_payload,
            with_vector: WithVector::wanted(&with_vectors),
        },
    });
    let grouping = Grouping {
        key,
        key_text: group_by,
        group_size,
        limit,
        lookup,
        has_value,
    };
    Ok((q, grouping))
}

// ---------- payload indexes, facets, order_by ----------

/// Scroll's `order_by`, read: a key, or `{key, direction, start_from}` (a number, or a
/// datetime string for a datetime field, as µs since the epoch). `None` when absent.
pub struct OrderBy {
    pub key: String,
    pub direction: Direction,
    pub start_from: Option<f64>,
}

pub fn order_by(req: &ScrollPoints) -> Result<Option<OrderBy>> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Input {
        Key(String),
        Struct {
            key: String,
            direction: Option<Direction>,
            start_from: Option<Value>,
        },
    }
    let Some(v) = req.order_by.as_ref().filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let input: Input = serde_json::from_value(v.clone()).map_err(|_| {
        Error::BadRequest(format!(
            "order_by: expected a key, or an object with a key, direction and/or start_from, got {v}"
        ))
    })?;
    let (key, direction, start_from) = match input {
        Input::Key(key) => (key, None, None),
        Input::Struct {
            key,
            direction,
            start_from,
        } => (key, direction, start_from),
    };
    let start_from = match start_from {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => match datetime_micros(&s) {
            Some(t) => Some(t),
            None => return bad(format!("order_by.start_from: {s:?} is not a datetime")),
        },
        Some(other) => {
            return bad(format!(
                "order_by.start_from: expected a number or a datetime, got {other}"
            ))
        }
    };
    if req.offset.is_some() {
        return bad("Cannot use an `offset` when using `order_by`. The alternative for paging is to use `order_by.start_from` and a filter to exclude the IDs that you've already seen for the `order_by.start_from` value");
    }
    Ok(Some(OrderBy {
        key,
        direction: direction.unwrap_or_default(),
        start_from,
    }))
}

/// The collection's index on `key` that serves a facet (keyword, uuid, bool, integer with
/// `lookup`), as the field the shards read; else Qdrant's 400.
pub fn facet_key(schema: &PayloadSchema, key: &str) -> Result<IndexedKey> {
    let kinds = [
        FieldType::Keyword,
        FieldType::Integer,
        FieldType::Bool,
        FieldType::Uuid,
    ];
    indexed_key(schema, key, &kinds, facet::serves_facet).ok_or_else(|| Error::BadRequest(format!(
        "No appropriate index for faceting: `{key}`. Please create one to facet on this field. Check https://qdrant.tech/documentation/concepts/indexing/#payload-index to see which payload schemas support Match conditions"
    )))?
}

/// The collection's index on `key` that serves `order_by` (integer with `range`, float,
/// datetime); else Qdrant's 400.
pub fn order_by_key(schema: &PayloadSchema, key: &str) -> Result<IndexedKey> {
    let kinds = [FieldType::Integer, FieldType::Float, FieldType::Datetime];
    indexed_key(schema, key, &kinds, facet::serves_order_by).ok_or_else(|| Error::BadRequest(format!(
        "No range index for `order_by` key: `{key}`. Please create one to use `order_by`. Check https://qdrant.tech/documentation/concepts/indexing/#payload-index to see which payload schemas support Range conditions"
    )))?
}

/// `None` when no index of `kinds` on `key`'s path serves; an error when `key` is no key path.
fn indexed_key(
    schema: &PayloadSchema,
    key: &str,
    kinds: &[FieldType],
    serves: fn(&FieldSchema) -> bool,
) -> Option<Result<IndexedKey>> {
    let path = match KeyPath::parse(key) {
        Ok(p) => p,
        Err(e) => return Some(bad(format!("invalid key {key:?}: {e}"))),
    };
    let (_, field) =
        definitions_on(schema, &path).find(|(_, f)| kinds.contains(&f.data_type) && serves(f))?;
    Some(IndexedKey::new(key, field.data_type).map_err(Error::BadRequest))
}

/// A facet's limit: 1 or more (default 10), at most [`MAX_SCROLL_LIMIT`].
pub fn facet(req: &FacetRequest) -> Result<usize> {
    check_filter(req.filter.as_ref())?;
    if req.shard_key.as_ref().is_some_and(|k| !k.is_null()) {
        return bad("shard_key is not supported: shoal places points by id");
    }
    let limit = req.limit.unwrap_or(10);
    if limit == 0 || limit > MAX_SCROLL_LIMIT {
        return bad(format!(
            "limit must be between 1 and {MAX_SCROLL_LIMIT}, got {limit}"
        ));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(json: &str) -> Filter {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn set_geo_conditions_are_refused_anywhere_in_a_filter() {
        let geo = r#"{"key": "at", "geo_radius": {"center": {"lon": 1, "lat": 2}, "radius": 5}}"#;
        for f in [
            format!(r#"{{"must": [{geo}]}}"#),
            format!(r#"{{"should": {geo}}}"#),
            format!(r#"{{"must_not": [{{"must": [{geo}]}}]}}"#),
            format!(r#"{{"must": [{{"nested": {{"key": "a", "filter": {{"must": [{geo}]}}}}}}]}}"#),
            format!(r#"{{"min_should": {{"conditions": [{geo}], "min_count": 1}}}}"#),
        ] {
            assert!(check_filter(Some(&filter(&f))).is_err(), "{f}");
        }
        let nulls = r#"{"must": [{"key": "a", "match": {"value": 1}, "geo_radius": null}]}"#;
        assert!(check_filter(Some(&filter(nulls))).is_ok());
    }

    #[test]
    fn bounds_and_unsupported_features_are_refused() {
        let q = |json: &str| query(serde_json::from_str(json).unwrap());
        assert!(q(r#"{"query": [1, 2]}"#).is_ok());
        assert!(q(r#"{"query": [1, 2], "prefetch": []}"#).is_ok());
        for bad in [
            r#"{"query": [1, 2], "limit": 10001}"#,
            r#"{"query": [1, 2], "params": {"hnsw_ef": 0}}"#,
            r#"{"query": [1, 2], "params": {"hnsw_ef": 100001}}"#,
            r#"{"query": [1, 2], "prefetch": {"query": [1, 2]}}"#,
            r#"{"query": [1, 2], "prefetch": [{"query": [1, 2]}]}"#,
            r#"{"query": [1, 2], "using": "image"}"#,
            r#"{"query": {"recommend": {"positive": [1]}}}"#,
            r#"{"limit": 3}"#,
        ] {
            assert!(q(bad).is_err(), "{bad}");
        }
        let upsert_of = |json: &str, max| upsert(serde_json::from_str(json).unwrap(), max);
        assert!(upsert_of(r#"{"points": [{"id": 1, "vector": [1]}]}"#, 1).is_ok());
        assert!(upsert_of(
            r#"{"points": [{"id": 1, "vector": [1]}, {"id": 2, "vector": [1]}]}"#,
            1
        )
        .is_err());
        assert!(upsert_of(r#"{"batch": {"ids": [1, 2], "vectors": [[1]]}}"#, 9).is_err());
        assert!(upsert_of(r#"{"points": [{"id": 1, "vector": {"image": [1]}}]}"#, 9).is_err());
        assert!(upsert_of(r#"{}"#, 9).is_err());
        assert!(selector(None, None).is_err());
        assert!(selector(Some(vec![]), Some(Filter::default())).is_err());
    }
}
