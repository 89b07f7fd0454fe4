//! `GET /cluster` and `GET /collections/{c}/cluster`, adapters over
//! [`Database::cluster_status`](crate::service::Database::cluster_status) and
//! [`Database::collection_cluster_info`](crate::service::Database::collection_cluster_info).

use super::response::Path;
use super::response::{Answer, ApiResult, Started};
use super::AppState;
use crate::service::models::{ClusterStatus, CollectionClusterInfo};
use axum::extract::State;

#[utoipa::path(
    get,
    path = "/cluster",
    tag = "cluster",
    summary = "This node and its peers",
    responses((status = 200, description = "Success", body = super::response::Envelope<ClusterStatus>), super::openapi::ApiErrors)
)]
pub async fn status(State(db): State<AppState>, t: Started) -> ApiResult<ClusterStatus> {
    Ok(Answer(t, db.cluster_status()))
}

#[utoipa::path(
    get,
    path = "/collections/{name}/cluster",
    tag = "cluster",
    summary = "Where the shards of a collection live",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "Success", body = super::response::Envelope<CollectionClusterInfo>), super::openapi::ApiErrors)
)]
pub async fn collection(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
) -> ApiResult<CollectionClusterInfo> {
    Ok(Answer(t, db.collection_cluster_info(&name)?))
}
