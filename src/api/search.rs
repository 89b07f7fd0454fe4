//! Search routes: the Query API (`/points/query`, `/points/query/batch`) and the older search API
//! (`/points/search`, `/points/search/batch`), adapters over [`Database::search`] and its
//! siblings.

use super::response::Path;
use super::response::{read_search_body, ApiError, RawAnswer, SearchBody, Started};
use super::scored::{self, Shape};
use super::AppState;
use crate::error::Error;
use crate::service::models::*;
use crate::service::Database;
use axum::extract::{Request, State};

/// What the search routes answer: their `result` is written by [`scored`].
type HitsResult = Result<RawAnswer, ApiError>;

fn answer(t: Started, result: serde_json::Result<Vec<u8>>) -> HitsResult {
    result
        .map(|json| RawAnswer(t, json))
        .map_err(|e| Error::Internal(e.to_string()).into())
}

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
) -> HitsResult {
    run_query(&db, t, &name, q).await
}

async fn run_query(db: &Database, t: Started, name: &str, q: QueryPoints) -> HitsResult {
    let found = db.query(name, q).await?;
    answer(t, scored::single(&found.points, Shape::Points))
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
) -> HitsResult {
    let found = db.query_batch(&name, b).await?;
    let lists: Vec<&[ScoredPointOut]> = found.iter().map(|q| q.points.as_slice()).collect();
    answer(t, scored::batch(&lists, Shape::Points))
}

/// An empty body, where a search needs one.
fn required(s: Option<SearchPoints>) -> Result<SearchPoints, Error> {
    s.ok_or_else(|| Error::BadRequest("a search body with `vector` and `limit` is required".into()))
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
) -> HitsResult {
    run_search(&db, t, &name, required(s)?).await
}

async fn run_search(db: &Database, t: Started, name: &str, s: SearchPoints) -> HitsResult {
    let found = db.search(name, s).await?;
    answer(t, scored::single(&found, Shape::Hits))
}

/// The single-query routes [`super::hot`] serves without the router.
#[derive(Debug, Clone, Copy)]
pub enum HotRoute {
    /// `POST /collections/{name}/points/search`: [`search`].
    Search,
    /// `POST /collections/{name}/points/query`: [`query`].
    Query,
}

/// Serves a hot route exactly as its handler does, from the request as it left the body limit.
pub async fn hot(db: AppState, route: HotRoute, name: String, req: Request) -> HitsResult {
    let t = Started::now();
    match route {
        HotRoute::Search => {
            let s = required(read_search_body(req).await?)?;
            run_search(&db, t, &name, s).await
        }
        HotRoute::Query => run_query(&db, t, &name, read_search_body(req).await?).await,
    }
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
) -> HitsResult {
    let found = db.search_batch(&name, b).await?;
    let lists: Vec<&[ScoredPointOut]> = found.iter().map(Vec::as_slice).collect();
    answer(t, scored::batch(&lists, Shape::Hits))
}
