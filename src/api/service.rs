//! Service routes (`/`, health, readiness, metrics) and the middleware that counts every request.
//!
//! `/livez` answers as long as the process serves HTTP; `/readyz` once every local shard is open
//! (it never waits on another pod, so pod 0 alone can become Ready under `OrderedReady`).
//! `/metrics` is rendered by the `metrics` crate's Prometheus exporter.

use super::models::VersionInfo;
use super::response::{ApiError, Started};
use super::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

/// The process-wide Prometheus recorder (installed once, shared by every router built).
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    pub fn install() -> Metrics {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        let handle = HANDLE
            .get_or_init(|| {
                let recorder = PrometheusBuilder::new()
                    .set_buckets(&[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ])
                    .map(|b| b.build_recorder())
                    .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
                let handle = recorder.handle();
                if metrics::set_global_recorder(recorder).is_err() {
                    tracing::warn!("a metrics recorder was already installed");
                }
                handle
            })
            .clone();
        Metrics { handle }
    }
}

#[utoipa::path(
    get,
    path = "/",
    tag = "service",
    summary = "Version information",
    responses((status = 200, description = "Version", body = VersionInfo), super::openapi::ApiErrors)
)]
pub async fn root(started: Started) -> impl IntoResponse {
    let body = json!({
        "title": "shoal - Qdrant-compatible vector search",
        "version": crate::api::QDRANT_COMPAT_VERSION,
        "shoal_version": env!("CARGO_PKG_VERSION"),
        "time": started.0.elapsed().as_secs_f64(),
    });
    axum::Json(body)
}

/// The rendered OpenAPI document (see [`super::openapi`]): the same for every router a process
/// builds, so rendered once.
static OPENAPI_DOC: std::sync::OnceLock<axum::body::Bytes> = std::sync::OnceLock::new();

pub fn publish_openapi(render: impl FnOnce() -> axum::body::Bytes) {
    OPENAPI_DOC.get_or_init(render);
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    summary = "This API's OpenAPI 3.1 description",
    responses((status = 200, description = "The OpenAPI document", body = Object), super::openapi::ApiErrors)
)]
pub async fn openapi_json() -> Response {
    let doc = OPENAPI_DOC.get().cloned().unwrap_or_default();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    summary = "Health probe",
    responses((status = 200, description = "Healthy", body = String, content_type = "text/plain"), super::openapi::ApiErrors)
)]
pub async fn healthz() -> &'static str {
    "healthz check passed"
}

#[utoipa::path(
    get,
    path = "/livez",
    tag = "service",
    summary = "Liveness probe",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain"), super::openapi::ApiErrors)
)]
pub async fn livez() -> &'static str {
    "healthz check passed"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    summary = "Readiness probe",
    responses((status = 200, description = "Every local shard is open", body = String, content_type = "text/plain"), (status = 503, description = "Not ready", body = String, content_type = "text/plain"), super::openapi::ApiErrors)
)]
pub async fn readyz(State(node): State<AppState>) -> Response {
    if node.ready.load(Ordering::Acquire) {
        "all shards are ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "some shards are not ready").into_response()
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"), super::openapi::ApiErrors)
)]
pub async fn metrics(State(node): State<AppState>) -> Response {
    for c in node.catalog.all() {
        let (points, indexed, segments) = c.stats();
        let labels = [("collection", c.name.clone())];
        metrics::gauge!("shoal_collection_points", &labels).set(points as f64);
        metrics::gauge!("shoal_collection_indexed_points", &labels).set(indexed as f64);
        metrics::gauge!("shoal_collection_segments", &labels).set(segments as f64);
    }
    metrics::gauge!("shoal_collections").set(node.catalog.names().len() as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        node.metrics.handle.render(),
    )
        .into_response()
}

/// The route pattern a request matched (`/collections/{name}/points/query`), for metrics.
pub fn route_of(req: &Request) -> Option<MatchedPath> {
    req.extensions().get::<MatchedPath>().cloned()
}

/// One (route, method, status) series: its request counter and the route's latency histogram.
struct Series {
    method: axum::http::Method,
    status: u16,
    requests: metrics::Counter,
    seconds: metrics::Histogram,
}

thread_local! {
    /// Handles by route, resolved once per thread: `counter!` with dynamic labels builds and
    /// hashes a key and looks it up in the registry on every call (~1 µs a request).
    static SERIES: std::cell::RefCell<std::collections::HashMap<String, Vec<Series>>> =
        Default::default();
}

/// Counts a finished request by route, method and status, and records how long it took
/// (called by [`super::gate`], the one middleware every request passes).
pub fn record_request(
    route: Option<&MatchedPath>,
    method: &axum::http::Method,
    status: u16,
    seconds: f64,
) {
    let route = route.map_or("unmatched", |r| r.as_str());
    SERIES.with_borrow_mut(|by_route| {
        let series = match by_route.get_mut(route) {
            Some(s) => s,
            None => by_route.entry(route.to_owned()).or_default(),
        };
        let i = match series.iter().position(|s| s.status == status && s.method == method) {
            Some(i) => i,
            None => {
                series.push(Series {
                    method: method.clone(),
                    status,
                    requests: metrics::counter!("shoal_http_requests_total", "route" => route.to_owned(), "method" => method.as_str().to_owned(), "status" => status.to_string()),
                    seconds: metrics::histogram!("shoal_http_request_duration_seconds", "route" => route.to_owned()),
                });
                series.len() - 1
            }
        };
        series[i].requests.increment(1);
        series[i].seconds.record(seconds);
    });
}

/// What a request that panicked gets: a 500 in Qdrant's shape; the node keeps serving.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(%detail, "request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Service internal error: {detail}"),
    )
    .into_response()
}
