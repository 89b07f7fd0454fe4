//! The public REST API on port 6333: Qdrant's routes, shapes and status codes.
//!
//! Handlers parse and validate, hand the work to the coordinator (which runs it on local shard
//! replicas on the blocking pool, or on peers), and wrap the answer in Qdrant's envelope.

pub mod auth;
pub mod budget;
pub mod cluster;
pub mod collections;
pub mod fast_json;
pub mod gate;
pub mod hot;
pub mod limits;
pub mod models;
pub mod openapi;
pub mod points;
pub mod request_id;
pub mod response;
pub mod scored;
pub mod search;
pub mod serve;
pub mod service;
mod vector_de;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use response::ApiError;
use std::sync::Arc;
use tower::Layer;

pub use crate::node::Node;

/// The Qdrant version whose REST API shoal answers like; `GET /` reports it so that clients'
/// version checks pass.
pub const QDRANT_COMPAT_VERSION: &str = "1.20.0";

/// What every handler can reach.
pub type AppState = Arc<Node>;

/// The public router and the OpenAPI document describing it. Every route is registered through
/// `routes!`, which takes its path and method from the handler's `#[utoipa::path]`: a route cannot
/// be served without being described.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    let (routes, mut doc) = OpenApiRouter::<AppState>::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(service::healthz))
        .routes(routes!(service::livez))
        .routes(routes!(service::readyz))
        .routes(routes!(service::metrics))
        .routes(routes!(service::root))
        .routes(routes!(service::openapi_json))
        .routes(routes!(cluster::status))
        .routes(routes!(cluster::collection))
        .routes(routes!(collections::list))
        .routes(routes!(
            collections::info,
            collections::create,
            collections::delete
        ))
        .routes(routes!(collections::exists))
        .routes(routes!(points::retrieve, points::upsert))
        .routes(routes!(points::get_one))
        .routes(routes!(points::delete))
        .routes(routes!(points::set_payload, points::overwrite_payload))
        .routes(routes!(points::delete_payload))
        .routes(routes!(points::clear_payload))
        .routes(routes!(points::scroll))
        .routes(routes!(points::count))
        .routes(routes!(search::query))
        .routes(routes!(search::query_batch))
        .routes(routes!(search::search))
        .routes(routes!(search::search_batch))
        .split_for_parts();
    doc.components
        .get_or_insert_with(Default::default)
        .schemas
        .extend([
            (
                <response::ErrorResponse as utoipa::ToSchema>::name().into_owned(),
                <response::ErrorResponse as utoipa::PartialSchema>::schema(),
            ),
            (
                <response::ErrorStatus as utoipa::ToSchema>::name().into_owned(),
                <response::ErrorStatus as utoipa::PartialSchema>::schema(),
            ),
        ]);
    (routes, doc)
}

/// The public API as served: the [`gate`], then the body limit, then the [`hot`] routes in front
/// of the router, each wrapping the whole router once (see the gate's doc for why not per route).
pub type Public = gate::Gate<<DefaultBodyLimit as Layer<hot::HotRoutes<Router>>>::Service>;

pub fn router(node: AppState) -> Public {
    let body_limit = node.config.max_request_bytes;
    let limits = limits::Limits::from_config(&node.config);
    response::set_body_read_timeout(limits::seconds(node.config.body_read_timeout_secs));
    let (routes, doc) = api();
    let table = service::RouteTable::install(doc.paths.paths.keys().map(String::as_str));
    service::publish_openapi(|| openapi::render(&doc));
    let router = routes.fallback(not_found).with_state(node.clone());
    let hot = hot::HotRoutes::new(node.clone(), router);
    let gate = gate::GateLayer::new(node, limits, table);
    gate.layer(DefaultBodyLimit::max(body_limit).layer(hot))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("Not found: no route for {}", uri.path()),
    )
}
