//! Payload index and facet routes: `PUT /collections/{name}/index`,
//! `DELETE /collections/{name}/index/{field_name}` and `POST /collections/{name}/facet`,
//! adapters over [`Database::create_payload_index`](crate::service::Database::create_payload_index)
//! and its siblings. (Scroll's `order_by` rides on the scroll route.)

use super::response::Path;
use super::response::{Answer, ApiResult, Body, Params, Started};
use super::AppState;
use crate::service::budget::Reserved;
use crate::service::models::{
    CreateFieldIndex, FacetRequest, FacetResponse, OrderingParams, UpdateResult, WaitParams,
};
use axum::extract::State;

#[utoipa::path(
    put,
    path = "/collections/{name}/index",
    tag = "collections",
    summary = "Create a payload index",
    description = "Indexes a payload field on every replica (built before the answer). A field has one index: creating one on a field that has one replaces it.",
    params(("name" = String, Path, description = "Collection name"), WaitParams, OrderingParams),
    request_body = CreateFieldIndex,
    responses((status = 200, description = "Success", body = super::response::Envelope<UpdateResult>), super::openapi::ApiErrors)
)]
pub async fn create(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Params(_ordering): Params<OrderingParams>,
    Body(req): Body<CreateFieldIndex>,
) -> ApiResult<UpdateResult> {
    Ok(Answer(
        t,
        db.create_payload_index(&name, req, p.wait()).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/collections/{name}/index/{field_name}",
    tag = "collections",
    summary = "Delete a payload index",
    params(
        ("name" = String, Path, description = "Collection name"),
        ("field_name" = String, Path, description = "The indexed field (a key path)"),
        WaitParams,
        OrderingParams
    ),
    responses((status = 200, description = "Success", body = super::response::Envelope<UpdateResult>), super::openapi::ApiErrors)
)]
pub async fn delete(
    State(db): State<AppState>,
    t: Started,
    Path((name, field)): Path<(String, String)>,
    Params(p): Params<WaitParams>,
    Params(_ordering): Params<OrderingParams>,
) -> ApiResult<UpdateResult> {
    Ok(Answer(
        t,
        db.delete_payload_index(&name, &field, p.wait()).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/collections/{name}/facet",
    tag = "points",
    summary = "Count points by value of a field",
    description = "The most frequent values of a field with a keyword, integer (lookup), bool or uuid index among the points passing the filter, with exact counts.",
    params(("name" = String, Path, description = "Collection name")),
    request_body = FacetRequest,
    responses((status = 200, description = "Success", body = super::response::Envelope<FacetResponse>), super::openapi::ApiErrors)
)]
pub async fn facet(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Body(req): Body<FacetRequest>,
) -> ApiResult<Reserved<FacetResponse>> {
    Ok(Answer(t, db.facet(&name, req).await?))
}
