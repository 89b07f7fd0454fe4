//! Overload protection for the public API, as tower layers: at most `--max-concurrent-requests`
//! requests in flight (the next one is shed at once with a 503 rather than queued), and each one
//! answered within `--request-timeout-secs` (else a 504). Both answers use Qdrant's error shape.
//! The probes and `/metrics` are outside these limits, so a busy node stays Ready and observable.
//! The upsert batch cap (`--max-batch-points`) is checked by the upsert handler.

use super::response::ApiError;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;
use tower::timeout::error::Elapsed;
use tower::BoxError;

/// The limits as configured.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_concurrent: usize,
    pub timeout: Option<Duration>,
}

impl Limits {
    pub fn from_config(config: &crate::config::Config) -> Limits {
        let secs = config.request_timeout_secs;
        let timeout =
            (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
        Limits {
            max_concurrent: config.max_concurrent_requests.max(1) as usize,
            timeout,
        }
    }

    /// Applies the limits to every route of `router`. One semaphore is shared by all routes.
    pub fn apply<S: Clone + Send + Sync + 'static>(
        self,
        router: axum::Router<S>,
    ) -> axum::Router<S> {
        let (max, timeout) = (self.max_concurrent, self.timeout);
        let layers = tower::ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                overload_response(e, max, timeout)
            }))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::new(max))
            // No timeout is a deadline ~30 years away (tokio clamps far deadlines safely).
            .timeout(timeout.unwrap_or(Duration::from_secs(1 << 30)));
        router.layer(layers)
    }
}

fn overload_response(e: BoxError, max: usize, timeout: Option<Duration>) -> Response {
    let secs = timeout.map(|t| t.as_secs_f64()).unwrap_or(0.0);
    let err = if e.is::<Overloaded>() {
        metrics::counter!("shoal_http_rejected_total", "reason" => "overloaded").increment(1);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Service unavailable: more than {max} requests in flight (--max-concurrent-requests); retry later"),
        )
    } else if e.is::<Elapsed>() {
        metrics::counter!("shoal_http_rejected_total", "reason" => "timeout").increment(1);
        tracing::warn!(timeout_secs = secs, "request timed out");
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("Timeout: the request took longer than {secs}s (--request-timeout-secs)"),
        )
    } else {
        tracing::error!(error = %e, "request failed in a middleware layer");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Service internal error: {e}"),
        )
    };
    err.into_response()
}
