//! A request id for every request: the client's `x-request-id` when it is a sane token (at most
//! 128 visible ASCII characters), else a fresh UUID. The whole request runs inside a `request`
//! span carrying the id, method and path, so every log line it produces (text or JSON) names it;
//! the id is returned in the response's `x-request-id` header. Each request ends with one
//! `request finished` line (status, milliseconds) at info, at debug for the probes and `/metrics`. Headers are never logged, so API
//! keys cannot leak into logs; the query string is not logged either.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;

/// Polled every few seconds by the kubelet and Prometheus: logged at debug only.
const QUIET_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/metrics"];

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id a client may choose.
fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
}

/// The id of this request, set by [`request_id`] in the request's extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

/// A random (v4) UUID from the thread's seeded generator: `Uuid::new_v4` asks the kernel for
/// every one, a syscall per request.
fn fresh_id() -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(&X_REQUEST_ID) {
        Some(v) if acceptable(v) => v.clone(),
        _ => HeaderValue::try_from(fresh_id()).unwrap_or(HeaderValue::from_static("unknown")),
    };
    req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id.to_str().unwrap_or_default(),
        method = %req.method(),
        path = %req.uri().path(),
    );
    let quiet = QUIET_PATHS.contains(&req.uri().path());
    let (route, method) = (super::service::route_of(&req), req.method().clone());
    async move {
        let started = Instant::now();
        let mut response = next.run(req).await;
        let status = response.status().as_u16();
        let seconds = started.elapsed().as_secs_f64();
        super::service::record_request(route.as_ref(), &method, status, seconds);
        // Milliseconds to the microsecond: `ms=0.105`, not f64's `0.10513700000000001`.
        let ms = format_args!("{:.3}", seconds * 1000.0);
        // One access line per request at info (as Qdrant logs them); probes and scrapes at debug.
        if response.status().is_server_error() {
            tracing::warn!(status, ms = %ms, "request finished");
        } else if quiet {
            tracing::debug!(status, ms = %ms, "request finished");
        } else {
            tracing::info!(status, ms = %ms, "request finished");
        }
        response.headers_mut().insert(X_REQUEST_ID.clone(), id);
        response
    }
    .instrument(span)
    .await
}
