//! Service routes (`/`, health, readiness, metrics, this API's description) and the request
//! metrics every route is counted in.
//!
//! `/livez` answers as long as the process serves HTTP; `/readyz` once every local shard is open
//! (it never waits on another pod, so pod 0 alone can become Ready under `OrderedReady`).
//! `/metrics` is rendered by the `metrics` crate's Prometheus exporter.

use super::response::{ApiError, Started};
use super::AppState;
use crate::service::models::VersionInfo;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use std::sync::OnceLock;

/// The process-wide Prometheus recorder (installed once, shared by every router built).
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// Installs the process-wide recorder (the first call), and answers its handle.
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
                spawn_upkeep(handle.clone());
                handle
            })
            .clone();
        Metrics { handle }
    }
}

/// How often histogram samples are folded into their buckets when nobody scrapes `/metrics`.
const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The exporter keeps every histogram sample until `/metrics` is rendered: without a scraper
/// that grew the node by ~25 bytes a request (measured: ~250 KB/s at 10k searches/s). A thread
/// folds them into their buckets every few seconds, as the exporter's own `install` does.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(METRICS_UPKEEP_EVERY);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms grow until scraped");
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
        "version": crate::service::QDRANT_COMPAT_VERSION,
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
pub async fn readyz(State(db): State<AppState>) -> Response {
    if db.is_ready() {
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
pub async fn metrics(State(db): State<AppState>) -> Response {
    let catalog = &db.coordinator().catalog;
    for c in catalog.all() {
        let (points, indexed, segments) = c.stats();
        let labels = [("collection", c.name.clone())];
        metrics::gauge!("shoal_collection_points", &labels).set(points as f64);
        metrics::gauge!("shoal_collection_indexed_points", &labels).set(indexed as f64);
        metrics::gauge!("shoal_collection_segments", &labels).set(segments as f64);
    }
    metrics::gauge!("shoal_collections").set(catalog.names().len() as f64);
    let (memory, sled_disk) =
        tokio::task::block_in_place(|| (memory_gauges(&db), catalog.sled_size_on_disk()));
    for (component, bytes) in memory {
        metrics::gauge!("shoal_memory_resident_bytes", "component" => component).set(bytes as f64);
    }
    metrics::gauge!("shoal_memory_limit_bytes").set(crate::memory::limit_bytes() as f64);
    // sled does not say how much its cache holds, only what it was configured with.
    metrics::gauge!("shoal_sled_cache_capacity_bytes").set(db.config().sled_cache_bytes() as f64);
    metrics::gauge!("shoal_sled_disk_bytes").set(sled_disk as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        Metrics::install().handle.render(),
    )
        .into_response()
}

/// Resident bytes by component over every collection and the process as a whole (`VmRSS`).
/// sled's cache is not among them: sled reports neither its fill nor its heap, and its bound
/// (`shoal_sled_cache_capacity_bytes`) counts pages at their size in its log, which is not what
/// they hold in memory (docs/storage.md).
fn memory_gauges(db: &AppState) -> Vec<(&'static str, u64)> {
    let catalog = &db.coordinator().catalog;
    let mut total = crate::shard::MemoryReport::default();
    for c in catalog.all() {
        total += c.memory();
    }
    vec![
        ("vectors", total.vectors as u64),
        ("quantized_codes", total.codes as u64),
        ("graph", total.graph as u64),
        ("point_table", total.point_table as u64),
        ("payloads", total.payloads as u64),
        ("payload_index", total.payload_index as u64),
        ("process", crate::memory::process_resident_bytes()),
    ]
}

/// What a request that panicked gets: a 500 in Qdrant's shape; the node keeps serving.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = crate::error::panic_text(err.as_ref());
    tracing::error!(%detail, "request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Service internal error: {detail}"),
    )
    .into_response()
}
