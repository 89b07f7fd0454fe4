//! Overload protection for the public API (applied by [`super::gate`]): at most `--max-concurrent-requests`
//! requests in flight (the next one is shed at once with a 503 rather than queued), and each one
//! answered within `--request-timeout-secs` (else a 504). Both answers use Qdrant's error shape.
//! The probes and `/metrics` are outside these limits, so a busy node stays Ready and observable.
//! The upsert batch cap (`--max-batch-points`) is checked by the upsert handler.

use super::response::ApiError;
use axum::http::StatusCode;
use std::time::Duration;

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

    /// The answer to a request over `max_concurrent`: a 503, at once.
    pub fn overloaded(&self) -> ApiError {
        metrics::counter!("shoal_http_rejected_total", "reason" => "overloaded").increment(1);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Service unavailable: more than {} requests in flight (--max-concurrent-requests); retry later",
                self.max_concurrent
            ),
        )
    }

    /// The answer to a request that overran the timeout: a 504.
    pub fn timed_out(&self) -> ApiError {
        let secs = self.timeout.map(|t| t.as_secs_f64()).unwrap_or(0.0);
        metrics::counter!("shoal_http_rejected_total", "reason" => "timeout").increment(1);
        tracing::warn!(timeout_secs = secs, "request timed out");
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("Timeout: the request took longer than {secs}s (--request-timeout-secs)"),
        )
    }
}
