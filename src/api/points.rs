//! Point routes: upsert, retrieve, delete, payload changes, scroll and count.

use super::budget;
use super::models::*;
use super::response::Path;
use super::response::{Answer, ApiResult, Body, Params, Started};
use super::AppState;
use crate::collection::NewPoint;
use crate::error::Error;
use crate::shard::filter::Filter;
use crate::shard::payload::check_payload;
use crate::shard::point::PointId;
use crate::shard::{PayloadOp, Selector};
use axum::extract::State;
use serde_json::Value;

/// Largest page a scroll returns at once.
const MAX_SCROLL_LIMIT: usize = 100_000;

fn dense(v: VectorInput, id: &PointId) -> Result<Vec<f32>, Error> {
    match v {
        VectorInput::Dense(v) => Ok(v),
        VectorInput::Named(mut named) => match named.remove("") {
            Some(v) if named.is_empty() => Ok(v),
            _ => Err(Error::BadRequest(format!(
                "point {id}: named vectors are not supported; send an unnamed vector"
            ))),
        },
    }
}

/// Turns either upsert form into a list of points, checking the shapes line up.
fn new_points(req: UpsertPoints) -> Result<Vec<NewPoint>, Error> {
    if req.update_filter.is_some() {
        return Err(Error::BadRequest("update_filter is not supported".into()));
    }
    match (req.points, req.batch) {
        (Some(points), None) => points
            .into_iter()
            .map(|p| {
                let vector = dense(p.vector, &p.id)?;
                Ok(NewPoint {
                    id: p.id,
                    vector,
                    payload: p.payload.unwrap_or_default(),
                })
            })
            .collect(),
        (None, Some(batch)) => {
            let vectors = match batch.vectors {
                BatchVectors::Dense(v) => v,
                BatchVectors::Named(mut named) => match named.remove("") {
                    Some(v) if named.is_empty() => v,
                    _ => {
                        return Err(Error::BadRequest(
                            "named vectors are not supported; send unnamed vectors".into(),
                        ))
                    }
                },
            };
            let n = batch.ids.len();
            if vectors.len() != n {
                return Err(Error::BadRequest(format!(
                    "batch has {n} ids but {} vectors",
                    vectors.len()
                )));
            }
            let payloads = batch.payloads.unwrap_or_else(|| vec![None; n]);
            if payloads.len() != n {
                return Err(Error::BadRequest(format!(
                    "batch has {n} ids but {} payloads",
                    payloads.len()
                )));
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
        _ => Err(Error::BadRequest(
            "send exactly one of `points` or `batch`".into(),
        )),
    }
}

/// `{"points": …}` or `{"filter": …}`, exactly one.
fn selector(points: Option<Vec<PointId>>, filter: Option<Filter>) -> Result<Selector, Error> {
    match (points, filter) {
        (Some(ids), None) => Ok(Selector::Ids(ids)),
        (None, Some(f)) => Ok(Selector::Filter(f)),
        _ => Err(Error::BadRequest(
            "select points with exactly one of `points` (ids) or `filter`".into(),
        )),
    }
}

#[utoipa::path(
    put,
    path = "/collections/{name}/points",
    tag = "points",
    summary = "Upsert points",
    params(("name" = String, Path, description = "Collection name"), WaitParams),
    request_body = UpsertPoints,
    responses((status = 200, description = "Success", body = super::response::Envelope<UpdateResult>), super::openapi::ApiErrors)
)]
pub async fn upsert(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<UpsertPoints>,
) -> ApiResult<UpdateResult> {
    let c = node.catalog.get(&name)?;
    let max = node.config.max_batch_points;
    let sent = req
        .points
        .as_ref()
        .map(Vec::len)
        .or(req.batch.as_ref().map(|b| b.ids.len()))
        .unwrap_or(0) as u64;
    if sent > max {
        return Err(Error::BadRequest(format!(
            "the upsert holds {sent} points; at most {max} are accepted per request (--max-batch-points): split it"
        ))
        .into());
    }
    let points = new_points(req)?;
    for p in &points {
        check_payload(&p.payload).map_err(|e| Error::BadRequest(format!("point {}: {e}", p.id)))?;
    }
    let wait = p.wait.unwrap_or(false);
    let op = node.upsert(&c, points, wait).await?;
    Ok(Answer(t, UpdateResult::new(op, wait)))
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/delete",
    tag = "points",
    summary = "Delete points by ids or filter",
    params(("name" = String, Path, description = "Collection name"), WaitParams),
    request_body = PointsSelector,
    responses((status = 200, description = "Success", body = super::response::Envelope<UpdateResult>), super::openapi::ApiErrors)
)]
pub async fn delete(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<PointsSelector>,
) -> ApiResult<UpdateResult> {
    let c = node.catalog.get(&name)?;
    let sel = selector(req.points, req.filter)?;
    let wait = p.wait.unwrap_or(false);
    let op = node.delete_points(&c, sel, wait).await?;
    Ok(Answer(t, UpdateResult::new(op, wait)))
}

/// What every payload route does once it has parsed its body.
async fn change_payload(
    node: AppState,
    t: Started,
    name: String,
    p: WaitParams,
    selected: Result<Selector, Error>,
    op: PayloadOp,
) -> ApiResult<UpdateResult> {
    let (sel, wait) = (selected?, p.wait.unwrap_or(false));
    op.validate().map_err(Error::BadRequest)?;
    let c = node.catalog.get(&name)?;
    let op = node.modify_payload(&c, sel, op, wait).await?;
    Ok(Answer(t, UpdateResult::new(op, wait)))
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/payload",
    tag = "points",
    summary = "Set payload keys",
    params(("name" = String, Path, description = "Collection name"), WaitParams),
    request_body = SetPayload,
    responses((status = 200, description = "Success", body = super::response::Envelope<UpdateResult>), super::openapi::ApiErrors)
)]
pub async fn set_payload(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<SetPayload>,
) -> ApiResult<UpdateResult> {
    change_payload(
        node,
        t,
        name,
        p,
        selector(req.points, req.filter),
        PayloadOp::Set {
            payload: req.payload,
            key: req.key,
        },
    )
    .await
}

#[utoipa::path(
    put,
    path = "/collections/{name}/points/payload",
    tag = "points",
    summary = "Overwrite payload",
    params(("name" = String, Path, description = "Collection name"), WaitParams),
    request_body = SetPayload,
    responses((status = 200, description = "Success", body = super::response::Envelope<UpdateResult>), super::openapi::ApiErrors)
)]
pub async fn overwrite_payload(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<SetPayload>,
) -> ApiResult<UpdateResult> {
    change_payload(
        node,
        t,
        name,
        p,
        selector(req.points, req.filter),
        PayloadOp::Overwrite(req.payload),
    )
    .await
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/payload/delete",
    tag = "points",
    summary = "Delete payload keys",
    params(("name" = String, Path, description = "Collection name"), WaitParams),
    request_body = DeletePayload,
    responses((status = 200, description = "Success", body = super::response::Envelope<UpdateResult>), super::openapi::ApiErrors)
)]
pub async fn delete_payload(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<DeletePayload>,
) -> ApiResult<UpdateResult> {
    change_payload(
        node,
        t,
        name,
        p,
        selector(req.points, req.filter),
        PayloadOp::DeleteKeys(req.keys),
    )
    .await
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/payload/clear",
    tag = "points",
    summary = "Clear payload",
    params(("name" = String, Path, description = "Collection name"), WaitParams),
    request_body = PointsSelector,
    responses((status = 200, description = "Success", body = super::response::Envelope<UpdateResult>), super::openapi::ApiErrors)
)]
pub async fn clear_payload(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<PointsSelector>,
) -> ApiResult<UpdateResult> {
    change_payload(
        node,
        t,
        name,
        p,
        selector(req.points, req.filter),
        PayloadOp::Clear,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points",
    tag = "points",
    summary = "Retrieve points by ids",
    params(("name" = String, Path, description = "Collection name")),
    request_body = RetrievePoints,
    responses((status = 200, description = "Success", body = super::response::Envelope<Vec<RecordOut>>), super::openapi::ApiErrors)
)]
pub async fn retrieve(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Body(req): Body<RetrievePoints>,
) -> ApiResult<Vec<RecordOut>> {
    let c = node.catalog.get(&name)?;
    let with_vector = WithVector::wanted(&req.with_vector);
    let with_payload = !matches!(req.with_payload, Some(WithPayload::All(false)));
    let bytes = budget::points_bytes(req.ids.len(), c.config.size, with_vector, with_payload);
    let _memory = node.memory.reserve(bytes, "this retrieve")?;
    let views = node.retrieve(&c, &req.ids, with_vector).await?;
    Ok(Answer(
        t,
        views
            .into_iter()
            .map(|v| RecordOut::from_view(v, &req.with_payload, true))
            .collect(),
    ))
}

#[utoipa::path(
    get,
    path = "/collections/{name}/points/{id}",
    tag = "points",
    summary = "Get one point",
    params(("name" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Point id: an unsigned integer or a UUID")),
    responses((status = 200, description = "Success", body = super::response::Envelope<RecordOut>), super::openapi::ApiErrors)
)]
pub async fn get_one(
    State(node): State<AppState>,
    t: Started,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<RecordOut> {
    let c = node.catalog.get(&name)?;
    let id: PointId = serde_json::from_value(
        id.parse::<u64>()
            .map(Value::from)
            .unwrap_or(Value::String(id.clone())),
    )
    .map_err(|e| Error::BadRequest(format!("invalid point id {id:?}: {e}")))?;
    let view = node
        .retrieve(&c, &[id], true)
        .await?
        .pop()
        .ok_or_else(|| Error::NotFound(format!("No point with id {id} found")))?;
    Ok(Answer(t, RecordOut::from_view(view, &None, true)))
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/scroll",
    tag = "points",
    summary = "Scroll points in id order",
    params(("name" = String, Path, description = "Collection name")),
    request_body = ScrollPoints,
    responses((status = 200, description = "Success", body = super::response::Envelope<ScrollResponse>), super::openapi::ApiErrors)
)]
pub async fn scroll(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Body(req): Body<ScrollPoints>,
) -> ApiResult<ScrollResponse> {
    let c = node.catalog.get(&name)?;
    if req.order_by.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(Error::BadRequest(
            "order_by is not supported; scroll returns points in id order".into(),
        )
        .into());
    }
    let limit = req.limit.unwrap_or(10);
    if limit == 0 || limit > MAX_SCROLL_LIMIT {
        return Err(Error::BadRequest(format!(
            "limit must be between 1 and {MAX_SCROLL_LIMIT}, got {limit}"
        ))
        .into());
    }
    let with_vector = WithVector::wanted(&req.with_vector);
    let with_payload = !matches!(req.with_payload, Some(WithPayload::All(false)));
    // Every shard returns a page, merged here.
    let held = (limit + 1).saturating_mul(c.config.shard_number.max(1) as usize);
    let bytes = budget::points_bytes(held, c.config.size, with_vector, with_payload);
    let _memory = node.memory.reserve(bytes, "this scroll")?;
    let (filter, offset) = (req.filter, req.offset);
    let (views, next) = node.scroll(&c, offset, limit, filter, with_vector).await?;
    let points = views
        .into_iter()
        .map(|v| RecordOut::from_view(v, &req.with_payload, true))
        .collect();
    Ok(Answer(
        t,
        ScrollResponse {
            points,
            next_page_offset: next,
        },
    ))
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/count",
    tag = "points",
    summary = "Count points",
    params(("name" = String, Path, description = "Collection name")),
    request_body = CountPoints,
    responses((status = 200, description = "Success", body = super::response::Envelope<CountResult>), super::openapi::ApiErrors)
)]
pub async fn count(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Body(req): Body<CountPoints>,
) -> ApiResult<CountResult> {
    let c = node.catalog.get(&name)?;
    let filter = req.filter;
    let n = node.count(&c, filter).await?;
    Ok(Answer(t, CountResult { count: n as u64 }))
}
