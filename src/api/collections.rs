//! Collection routes: create, inspect, list, check and delete, adapters over
//! [`Database::create_collection`](crate::service::Database::create_collection) and its
//! siblings.

use super::response::Path;
use super::response::{Answer, ApiResult, Body, Params, Started};
use super::AppState;
use crate::service::models::{
    CollectionExists, CollectionInfo, CollectionsList, CreateCollection, WaitParams,
};
use axum::extract::State;

#[utoipa::path(
    get,
    path = "/collections",
    tag = "collections",
    summary = "List collections",
    responses((status = 200, description = "Success", body = super::response::Envelope<CollectionsList>), super::openapi::ApiErrors)
)]
pub async fn list(State(db): State<AppState>, t: Started) -> ApiResult<CollectionsList> {
    Ok(Answer(t, db.list_collections()))
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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
) -> ApiResult<CollectionExists> {
    Ok(Answer(t, db.collection_exists(&name)))
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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
) -> ApiResult<CollectionInfo> {
    Ok(Answer(t, db.collection_info(&name)?))
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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(_wait): Params<WaitParams>,
    Body(req): Body<CreateCollection>,
) -> ApiResult<bool> {
    Ok(Answer(t, db.create_collection(&name, req).await?))
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
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
) -> ApiResult<bool> {
    Ok(Answer(t, db.delete_collection(&name).await?))
}
