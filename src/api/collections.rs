//! Collection routes: create, inspect, list, check, update and delete, and aliases, adapters over
//! [`Database::create_collection`](crate::service::Database::create_collection) and its
//! siblings.

use super::response::Path;
use super::response::{Answer, ApiResult, Body, Params, Started};
use super::AppState;
use crate::service::models::{
    ChangeAliases, CollectionExists, CollectionInfo, CollectionsAliases, CollectionsList,
    CreateCollection, UpdateCollection, WaitParams,
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
    Ok(Answer(t, db.collection_info(&name).await?))
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
    patch,
    path = "/collections/{name}",
    tag = "collections",
    summary = "Update a collection's configuration",
    params(("name" = String, Path, description = "Collection name or alias")),
    request_body = UpdateCollection,
    responses((status = 200, description = "Success", body = super::response::Envelope<bool>), super::openapi::ApiErrors)
)]
pub async fn update(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Body(req): Body<UpdateCollection>,
) -> ApiResult<bool> {
    Ok(Answer(t, db.update_collection(&name, req).await?))
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

#[utoipa::path(
    post,
    path = "/collections/aliases",
    tag = "aliases",
    summary = "Create, delete and rename aliases, all or none",
    request_body = ChangeAliases,
    responses((status = 200, description = "Success", body = super::response::Envelope<bool>), super::openapi::ApiErrors)
)]
pub async fn update_aliases(
    State(db): State<AppState>,
    t: Started,
    Body(req): Body<ChangeAliases>,
) -> ApiResult<bool> {
    Ok(Answer(t, db.update_aliases(req).await?))
}

#[utoipa::path(
    get,
    path = "/aliases",
    tag = "aliases",
    summary = "List every alias",
    responses((status = 200, description = "Success", body = super::response::Envelope<CollectionsAliases>), super::openapi::ApiErrors)
)]
pub async fn aliases(State(db): State<AppState>, t: Started) -> ApiResult<CollectionsAliases> {
    Ok(Answer(t, db.list_aliases(None)?))
}

#[utoipa::path(
    get,
    path = "/collections/{name}/aliases",
    tag = "aliases",
    summary = "List a collection's aliases",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "Success", body = super::response::Envelope<CollectionsAliases>), super::openapi::ApiErrors)
)]
pub async fn collection_aliases(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
) -> ApiResult<CollectionsAliases> {
    Ok(Answer(t, db.list_aliases(Some(&name))?))
}
