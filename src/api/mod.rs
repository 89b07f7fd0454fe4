//! The public REST API on port 6333: Qdrant's routes, shapes and status codes.
//!
//! Handlers parse and validate, hand the work to the coordinator (which runs it on local shard
//! replicas on the blocking pool, or on peers), and wrap the answer in Qdrant's envelope.

pub mod auth;
pub mod cluster;
pub mod collections;
pub mod models;
pub mod points;
pub mod response;
pub mod search;
pub mod service;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use response::ApiError;
use std::sync::Arc;

pub use crate::node::Node;

/// The Qdrant version whose REST API shoal answers like; `GET /` reports it so that clients'
/// version checks pass.
pub const QDRANT_COMPAT_VERSION: &str = "1.20.0";

/// What every handler can reach.
pub type AppState = Arc<Node>;

pub fn router(node: AppState) -> Router {
    let body_limit = node.config.max_request_bytes;
    Router::new()
        .route("/", get(service::root))
        .route("/healthz", get(service::healthz))
        .route("/livez", get(service::livez))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(service::metrics))
        .route("/cluster", get(cluster::status))
        .route("/collections/{name}/cluster", get(cluster::collection))
        .route("/collections", get(collections::list))
        .route(
            "/collections/{name}",
            get(collections::info).put(collections::create).delete(collections::delete),
        )
        .route("/collections/{name}/exists", get(collections::exists))
        .route("/collections/{name}/points", post(points::retrieve).put(points::upsert))
        .route("/collections/{name}/points/{id}", get(points::get_one))
        .route("/collections/{name}/points/delete", post(points::delete))
        .route("/collections/{name}/points/payload", post(points::set_payload).put(points::overwrite_payload))
        .route("/collections/{name}/points/payload/delete", post(points::delete_payload))
        .route("/collections/{name}/points/payload/clear", post(points::clear_payload))
        .route("/collections/{name}/points/scroll", post(points::scroll))
        .route("/collections/{name}/points/count", post(points::count))
        .route("/collections/{name}/points/query", post(search::query))
        .route("/collections/{name}/points/query/batch", post(search::query_batch))
        .route("/collections/{name}/points/search", post(search::search))
        .route("/collections/{name}/points/search/batch", post(search::search_batch))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(node.clone(), auth::require_key))
        .layer(axum::middleware::from_fn_with_state(node.clone(), service::track))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(service::panic_response))
        .with_state(node)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("Not found: no route for {}", uri.path()))
}
