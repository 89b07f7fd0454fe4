//! The public REST API on port 6333: Qdrant's routes, shapes and status codes, an adapter over
//! the service layer. Each handler reads its path, query and body into a typed request, calls
//! the one [`Database`](crate::service::Database) method of its route, and wraps the result (or
//! the error, in Qdrant's error shape) in Qdrant's envelope; validation happens in the service
//! layer, the same for every transport.

pub mod auth;
pub mod cluster;
pub mod collections;
pub mod fast_json;
pub mod gate;
pub mod hot;
pub mod limits;
pub mod openapi;
pub mod points;
pub mod request_id;
pub mod response;
pub mod scored;
pub mod search;
pub mod serve;
pub mod service_routes;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use response::ApiError;
use std::sync::Arc;
use tower::Layer;

use crate::service::Database;

/// What every handler can reach: the service layer.
pub type AppState = Arc<Database>;

/// The public router and the OpenAPI document describing it. Every route is registered through
/// `routes!`, which takes its path and method from the handler's `#[utoipa::path]`: a route cannot
/// be served without being described.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    let (routes, mut doc) = OpenApiRouter::<AppState>::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(service_routes::healthz))
        .routes(routes!(service_routes::livez))
        .routes(routes!(service_routes::readyz))
        .routes(routes!(service_routes::metrics))
        .routes(routes!(service_routes::root))
        .routes(routes!(service_routes::openapi_json))
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

pub fn router(db: AppState) -> Public {
    let config = db.config();
    let body_limit = config.max_request_bytes;
    let limits = limits::Limits::from_config(config);
    response::set_body_read_timeout(limits::seconds(config.body_read_timeout_secs));
    let (routes, doc) = api();
    let table = service_routes::RouteTable::install(doc.paths.paths.keys().map(String::as_str));
    service_routes::publish_openapi(|| openapi::render(&doc));
    let router = routes.fallback(not_found).with_state(db.clone());
    let hot = hot::HotRoutes::new(db.clone(), router);
    let gate = gate::GateLayer::new(db, limits, table);
    gate.layer(DefaultBodyLimit::max(body_limit).layer(hot))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("Not found: no route for {}", uri.path()),
    )
}
