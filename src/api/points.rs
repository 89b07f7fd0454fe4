//! Point routes: upsert, retrieve, delete, payload changes, scroll and count, adapters over
//! [`Database::upsert`](crate::service::Database::upsert) and its siblings.

use super::response::Path;
use super::response::{Answer, ApiResult, Body, Params, Started};
use super::AppState;
use crate::error::Error;
use crate::service::budget::Reserved;
use crate::service::models::*;
use crate::shard::point::PointId;
use axum::extract::State;

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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<UpsertPoints>,
) -> ApiResult<UpdateResult> {
    Ok(Answer(t, db.upsert(&name, req, p.wait()).await?))
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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<PointsSelector>,
) -> ApiResult<UpdateResult> {
    Ok(Answer(t, db.delete_points(&name, req, p.wait()).await?))
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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<SetPayload>,
) -> ApiResult<UpdateResult> {
    Ok(Answer(t, db.set_payload(&name, req, p.wait()).await?))
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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<SetPayload>,
) -> ApiResult<UpdateResult> {
    Ok(Answer(t, db.overwrite_payload(&name, req, p.wait()).await?))
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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<DeletePayload>,
) -> ApiResult<UpdateResult> {
    Ok(Answer(t, db.delete_payload(&name, req, p.wait()).await?))
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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<PointsSelector>,
) -> ApiResult<UpdateResult> {
    Ok(Answer(t, db.clear_payload(&name, req, p.wait()).await?))
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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Body(req): Body<RetrievePoints>,
) -> ApiResult<Reserved<Vec<RecordOut>>> {
    Ok(Answer(t, db.retrieve(&name, req).await?))
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
    State(db): State<AppState>,
    t: Started,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<RecordOut> {
    // A path segment is text: an integer id is read as one, anything else as a UUID.
    let id = PointId::parse_text(&id)
        .map_err(|e| Error::BadRequest(format!("invalid point id {id:?}: {e}")))?;
    Ok(Answer(t, db.get_point(&name, id).await?))
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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Body(req): Body<ScrollPoints>,
) -> ApiResult<Reserved<ScrollResponse>> {
    Ok(Answer(t, db.scroll(&name, req).await?))
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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Body(req): Body<CountPoints>,
) -> ApiResult<CountResult> {
    Ok(Answer(t, db.count(&name, req).await?))
}

#[utoipa::path(
    put,
    path = "/collections/{name}/points/vectors",
    tag = "points",
    summary = "Update vectors of existing points",
    params(("name" = String, Path, description = "Collection name"), WaitParams),
    request_body = UpdateVectors,
    responses((status = 200, description = "Success", body = super::response::Envelope<UpdateResult>), super::openapi::ApiErrors)
)]
pub async fn update_vectors(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<UpdateVectors>,
) -> ApiResult<UpdateResult> {
    Ok(Answer(t, db.update_vectors(&name, req, p.wait()).await?))
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/vectors/delete",
    tag = "points",
    summary = "Delete vectors of points",
    params(("name" = String, Path, description = "Collection name"), WaitParams),
    request_body = DeleteVectors,
    responses((status = 200, description = "Success", body = super::response::Envelope<UpdateResult>), super::openapi::ApiErrors)
)]
pub async fn delete_vectors(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<DeleteVectors>,
) -> ApiResult<UpdateResult> {
    Ok(Answer(t, db.delete_vectors(&name, req, p.wait()).await?))
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/batch",
    tag = "points",
    summary = "Apply a batch of point operations in order",
    params(("name" = String, Path, description = "Collection name"), WaitParams),
    request_body = UpdateOperations,
    responses((status = 200, description = "Success", body = super::response::Envelope<Vec<UpdateResult>>), super::openapi::ApiErrors)
)]
pub async fn batch(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<UpdateOperations>,
) -> ApiResult<Vec<UpdateResult>> {
    Ok(Answer(t, db.batch_update(&name, req, p.wait()).await?))
}
