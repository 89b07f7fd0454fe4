//! A request id for every request, and the request's span and access line, through tower-http's
//! request-id and trace layers ([`super::router`]).
//!
//! The id is the client's `x-request-id` when it is a sane token (at most 128 visible ASCII
//! characters), else a fresh UUID. The whole request runs inside a `request` span carrying the
//! id, method and path, so every log line it produces (text or JSON) names it; the id is
//! returned in the response's `x-request-id` header. Each request ends with one `request
//! finished` line (status, milliseconds) at info, at debug for the probes and `/metrics`, at
//! warn for a server error. Headers are never logged, so API keys cannot leak into logs; the
//! query string is not logged either.

use axum::extract::Request;
use axum::http::{HeaderValue, Response};
use std::time::Duration;
use tower_http::request_id::{MakeRequestId, RequestId};

pub const X_REQUEST_ID: &str = "x-request-id";

/// The request id a client may choose.
fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
}

/// Drops a client's request id that is not a sane token, so that a fresh one replaces it.
pub fn sanitize(mut req: Request) -> Request {
    if req
        .headers()
        .get(X_REQUEST_ID)
        .is_some_and(|v| !acceptable(v))
    {
        req.headers_mut().remove(X_REQUEST_ID);
    }
    req
}

/// Fresh request ids: random (v4) UUIDs.
#[derive(Clone, Copy, Default)]
pub struct FreshId;

impl MakeRequestId for FreshId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}

/// The span the whole request runs in.
pub fn span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    )
}

/// Marks a response whose request is logged at debug (the probes and scrapes).
#[derive(Clone, Copy)]
pub struct Quiet;

/// The access line: at info (as Qdrant logs requests), at debug for the probes and scrapes, at
/// warn for a server error.
pub fn finished<B>(response: &Response<B>, latency: Duration, _: &tracing::Span) {
    let status = response.status().as_u16();
    let ms = latency.as_micros() as f64 / 1000.0;
    if status >= 500 {
        tracing::warn!(status, ms, "request finished");
    } else if response.extensions().get::<Quiet>().is_some() {
        tracing::debug!(status, ms, "request finished");
    } else {
        tracing::info!(status, ms, "request finished");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_ids_are_kept() {
        let with = |id: &[u8]| {
            let mut req = Request::new(axum::body::Body::empty());
            req.headers_mut()
                .insert(X_REQUEST_ID, HeaderValue::from_bytes(id).unwrap());
            sanitize(req).headers().get(X_REQUEST_ID).cloned()
        };
        assert!(with(b"abc-123").is_some());
        assert!(with(b"has space").is_none());
        assert!(with(&[b'a'; 129]).is_none());
        let fresh = FreshId.make_request_id(&Request::new(())).unwrap();
        assert!(uuid::Uuid::parse_str(fresh.header_value().to_str().unwrap()).is_ok());
    }
}
