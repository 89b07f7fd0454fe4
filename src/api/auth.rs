//! API keys, as Qdrant has them: with `--api-key`, every route but the probes needs the key in
//! the `api-key` header or as `Authorization: Bearer <key>`; with `--read-only-api-key`, that key
//! may read (GET, and the POST routes that only read) and gets 403 on writes. Keys are compared
//! in constant time and never logged.

use super::response::ApiError;
use super::AppState;
use crate::secret::same_secret;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Routes the kubelet probes without credentials.
const OPEN_PATHS: &[&str] = &["/healthz", "/livez", "/readyz"];

/// POST routes that only read.
const READ_SUFFIXES: &[&str] = &[
    "/points",
    "/points/scroll",
    "/points/count",
    "/points/query",
    "/points/query/batch",
    "/points/search",
    "/points/search/batch",
];

fn is_read(method: &Method, path: &str) -> bool {
    method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && READ_SUFFIXES.iter().any(|s| path.ends_with(s)))
}

fn presented_key(req: &Request) -> Option<&str> {
    let headers = req.headers();
    if let Some(k) = headers.get("api-key").and_then(|v| v.to_str().ok()) {
        return Some(k);
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

pub async fn require_key(State(node): State<AppState>, req: Request, next: Next) -> Response {
    let (full, read_only) = (
        node.config.api_key.as_deref(),
        node.config.read_only_api_key.as_deref(),
    );
    if (full.is_none() && read_only.is_none()) || OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let Some(key) = presented_key(&req) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: an API key is required (api-key header or Authorization: Bearer)",
        )
        .into_response();
    };
    if full.is_some_and(|k| same_secret(k, key)) {
        return next.run(req).await;
    }
    if read_only.is_some_and(|k| same_secret(k, key)) {
        if is_read(req.method(), req.uri().path()) {
            return next.run(req).await;
        }
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden: the read-only API key cannot write",
        )
        .into_response();
    }
    ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized: invalid API key").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_read_routes() {
        assert!(is_read(&Method::POST, "/collections/c/points/query"));
        assert!(is_read(&Method::POST, "/collections/c/points"));
        assert!(!is_read(&Method::PUT, "/collections/c/points"));
        assert!(!is_read(&Method::POST, "/collections/c/points/delete"));
        assert!(!is_read(&Method::POST, "/collections/c/points/payload"));
        assert!(!is_read(&Method::DELETE, "/collections/c"));
    }
}
