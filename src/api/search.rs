//! Search routes: the Query API (`/points/query`, `/points/query/batch`) and the older search API
//! (`/points/search`, `/points/search/batch`), adapters over
//! [`Database::search`](crate::service::Database::search) and its siblings.

use super::fast_paths::hits::HitsAnswer;
use super::response::Path;
use super::response::{Answer, ApiError, ApiResult, Body, SearchBody, Started};
use super::AppState;
use crate::error::Error;
use crate::service::budget::Reserved;
use crate::service::models::*;
use axum::extract::State;

#[utoipa::path(
    post,
    path = "/collections/{name}/points/query",
    tag = "search",
    summary = "Query points (nearest vector)",
    params(("name" = String, Path, description = "Collection name")),
    request_body = QueryPoints,
    responses((status = 200, description = "Success", body = super::response::Envelope<QueryResponse>), super::openapi::ApiErrors)
)]
pub async fn query(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    SearchBody(q): SearchBody<QueryPoints>,
) -> Result<HitsAnswer<QueryResponse>, ApiError> {
    Ok(HitsAnswer(t, db.query(&name, q).await?))
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/query/batch",
    tag = "search",
    summary = "Batch of queries",
    params(("name" = String, Path, description = "Collection name")),
    request_body = QueryBatch,
    responses((status = 200, description = "Success", body = super::response::Envelope<Vec<QueryResponse>>), super::openapi::ApiErrors)
)]
pub async fn query_batch(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    SearchBody(b): SearchBody<QueryBatch>,
) -> Result<HitsAnswer<Vec<QueryResponse>>, ApiError> {
    Ok(HitsAnswer(t, db.query_batch(&name, b).await?))
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/search",
    tag = "search",
    summary = "Search points (older API)",
    params(("name" = String, Path, description = "Collection name")),
    request_body = SearchPoints,
    responses((status = 200, description = "Success", body = super::response::Envelope<Vec<ScoredPointOut>>), super::openapi::ApiErrors)
)]
pub async fn search(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    SearchBody(s): SearchBody<Option<SearchPoints>>,
) -> Result<HitsAnswer<Vec<ScoredPointOut>>, ApiError> {
    let s = s.ok_or_else(|| {
        Error::BadRequest("a search body with `vector` and `limit` is required".into())
    })?;
    Ok(HitsAnswer(t, db.search(&name, s).await?))
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/search/batch",
    tag = "search",
    summary = "Batch of searches (older API)",
    params(("name" = String, Path, description = "Collection name")),
    request_body = SearchBatch,
    responses((status = 200, description = "Success", body = super::response::Envelope<Vec<Vec<ScoredPointOut>>>), super::openapi::ApiErrors)
)]
pub async fn search_batch(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    SearchBody(b): SearchBody<SearchBatch>,
) -> Result<HitsAnswer<Vec<Vec<ScoredPointOut>>>, ApiError> {
    Ok(HitsAnswer(t, db.search_batch(&name, b).await?))
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/search/groups",
    tag = "search",
    summary = "Search points, grouped by a payload value",
    params(("name" = String, Path, description = "Collection name")),
    request_body = SearchGroups,
    responses((status = 200, description = "Success", body = super::response::Envelope<GroupsResult>), super::openapi::ApiErrors)
)]
pub async fn search_groups(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Body(req): Body<Option<SearchGroups>>,
) -> ApiResult<Reserved<GroupsResult>> {
    let req = req.ok_or_else(|| {
        Error::BadRequest(
            "a group search body with `vector`, `group_by`, `group_size` and `limit` is required"
                .into(),
        )
    })?;
    Ok(Answer(t, db.search_groups(&name, req).await?))
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/query/groups",
    tag = "search",
    summary = "Query points, grouped by a payload value",
    params(("name" = String, Path, description = "Collection name")),
    request_body = QueryGroups,
    responses((status = 200, description = "Success", body = super::response::Envelope<GroupsResult>), super::openapi::ApiErrors)
)]
pub async fn query_groups(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Body(req): Body<Option<QueryGroups>>,
) -> ApiResult<Reserved<GroupsResult>> {
    let req = req.ok_or_else(|| {
        Error::BadRequest("a group query body with `query` and `group_by` is required".into())
    })?;
    Ok(Answer(t, db.query_groups(&name, req).await?))
}
