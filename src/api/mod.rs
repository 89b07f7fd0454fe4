//! The public REST API on port 6333: Qdrant's routes, shapes and status codes, an adapter over
//! the service layer. Each handler reads its path, query and body into a typed request, calls
//! the one [`Database`](crate::service::Database) method of its route, and wraps the result (or
//! the error, in Qdrant's error shape) in Qdrant's envelope; validation happens in the service
//! layer, the same for every transport.

pub mod auth;
pub mod cluster;
pub mod collections;
pub mod fast_paths;
pub mod gate;
pub mod indexes;
pub mod limits;
pub mod openapi;
pub mod points;
pub mod request_id;
pub mod response;
pub mod search;
pub mod serve;
pub mod service_routes;
pub mod snapshots;

use crate::service::Database;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use response::ApiError;
use std::convert::Infallible;
use std::sync::Arc;
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;

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
            collections::update,
            collections::delete
        ))
        .routes(routes!(collections::exists))
        .routes(routes!(collections::update_aliases))
        .routes(routes!(collections::aliases))
        .routes(routes!(collections::collection_aliases))
        .routes(routes!(indexes::create))
        .routes(routes!(indexes::delete))
        .routes(routes!(indexes::facet))
        .routes(routes!(points::retrieve, points::upsert))
        .routes(routes!(points::get_one))
        .routes(routes!(points::delete))
        .routes(routes!(points::set_payload, points::overwrite_payload))
        .routes(routes!(points::delete_payload))
        .routes(routes!(points::clear_payload))
        .routes(routes!(points::update_vectors))
        .routes(routes!(points::delete_vectors))
        .routes(routes!(points::batch))
        .routes(routes!(points::scroll))
        .routes(routes!(points::count))
        .routes(routes!(search::query))
        .routes(routes!(search::query_batch))
        .routes(routes!(search::search))
        .routes(routes!(search::search_batch))
        .routes(routes!(search::search_groups))
        .routes(routes!(search::query_groups))
        .routes(routes!(snapshots::create, snapshots::list))
        .routes(routes!(snapshots::get, snapshots::delete))
        .routes(routes!(snapshots::recover))
        .routes(routes!(snapshots::upload))
        .routes(routes!(snapshots::create_full, snapshots::list_full))
        .routes(routes!(snapshots::get_full, snapshots::delete_full))
        .split_for_parts();
    let schemas = &mut doc.components.get_or_insert_with(Default::default).schemas;
    schemas.extend(openapi::shared_schemas());
    (routes, doc)
}

/// The public API as served. Around the router, once per request: the request id, the request
/// span and access line ([`request_id::traced`]), the panic guard, the body limit. Inside it, per route:
/// the [`gate`] (API key, overload limits, timeout, metrics).
pub fn router(
    db: AppState,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone + Send + 'static
{
    let config = db.config();
    let body_limit = config.max_request_bytes;
    let gate = gate::Gate::new(db.clone(), limits::Limits::from_config(config));
    let (routes, doc) = api();
    service_routes::publish_openapi(|| openapi::render(&doc));
    let router = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(gate, gate::admit))
        .with_state(db);
    ServiceBuilder::new()
        .layer(axum::middleware::from_fn(request_id::traced))
        .layer(CatchPanicLayer::custom(service_routes::panic_response))
        .layer(DefaultBodyLimit::max(body_limit))
        .service(router)
}

/// A known path asked with a method it does not serve: Qdrant's error shape, never an empty body
/// (axum's own 405 has none; it still sets `Allow`).
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "Method not allowed: {method} is not served on {}",
            uri.path()
        ),
    )
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("Not found: no route for {}", uri.path()),
    )
}
