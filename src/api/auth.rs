//! API keys, as Qdrant has them: with `--api-key`, every route but the probes needs the key in
//! the `api-key` header or as `Authorization: Bearer <key>`; with `--read-only-api-key`, that key
//! may read (GET, and the POST routes that only read) and gets 403 on writes. Keys are compared
//! in constant time and never logged.

use super::response::ApiError;
use crate::config::Config;
use crate::secret::same_secret;
use axum::extract::Request;
use axum::http::{Method, StatusCode};

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
        .and_then(bearer_token)
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 9110 §11.1), so `bearer` and `BEARER` are accepted as Qdrant accepts them.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Whether the request may pass: the key it presents, for what it asks.
pub fn check(config: &Config, req: &Request) -> Result<(), ApiError> {
    let (full, read_only) = (
        config.api_key.as_deref(),
        config.read_only_api_key.as_deref(),
    );
    if (full.is_none() && read_only.is_none()) || OPEN_PATHS.contains(&req.uri().path()) {
        return Ok(());
    }
    let Some(key) = presented_key(req) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: an API key is required (api-key header or Authorization: Bearer)",
        ));
    };
    if full.is_some_and(|k| same_secret(k, key)) {
        return Ok(());
    }
    if read_only.is_some_and(|k| same_secret(k, key)) {
        if is_read(req.method(), req.uri().path()) {
            return Ok(());
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden: the read-only API key cannot write",
        ));
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "Unauthorized: invalid API key",
    ))
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

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer k", "bearer k", "BEARER k", "bEaReR  k"] {
            assert_eq!(bearer_token(value), Some("k"), "{value}");
        }
        for value in ["Basic k", "Bearerk", "Bearer", "Token k"] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }
}
