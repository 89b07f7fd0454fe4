//! Qdrant's response envelope and error shape, and extractors that turn every malformed request
//! into one of those errors instead of axum's plain-text rejections.
//!
//! Success: `{"result": …, "status": "ok", "time": seconds}`.
//! Failure: `{"status": {"error": "…"}, "time": seconds}` with a 4xx/5xx status.

use super::fast_paths::search_body::FastBody;
use crate::error::Error;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Instant;

/// When the handler started, for the envelope's `time`.
#[derive(Clone, Copy)]
pub struct Started(pub Instant);

impl Started {
    pub fn now() -> Started {
        Started(Instant::now())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Started {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Started::now())
    }
}

/// A successful answer in Qdrant's envelope.
pub struct Answer<T>(pub Started, pub T);

/// Qdrant's success envelope (also the schema `/openapi.json` gives every successful answer).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Envelope<T> {
    pub result: T,
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
    /// Seconds the request took.
    pub time: f64,
}

/// Qdrant's error shape.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    pub status: ErrorStatus,
    pub time: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorStatus {
    /// What was wrong.
    pub error: String,
}

impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        let Answer(started, result) = self;
        enveloped(started, |out| serde_json::to_writer(out, &result))
    }
}

/// Qdrant's success envelope around a `result` that `write` appends as JSON: the bytes serde
/// writes for an [`Envelope`] (its fields in order, no whitespace).
pub fn enveloped(
    Started(started): Started,
    write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
) -> Response {
    // Room for a typical answer (ten hits without payloads are ~1 KB) from the start.
    let mut body = Vec::with_capacity(1024);
    body.extend_from_slice(b"{\"result\":");
    let written = write(&mut body).and_then(|()| {
        body.extend_from_slice(b",\"status\":\"ok\",\"time\":");
        serde_json::to_writer(&mut body, &started.elapsed().as_secs_f64())
    });
    match written {
        Ok(()) => {
            body.push(b'}');
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Err(e) => ApiError::from(Error::Internal(e.to_string())).into_response(),
    }
}

/// An error in Qdrant's shape.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match status {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
                tracing::warn!(error = %e, "request failed")
            }
            s if s.is_server_error() => tracing::error!(error = %e, "request failed"),
            _ => {}
        }
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            status: ErrorStatus {
                error: self.message,
            },
            time: 0.0,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<Answer<T>, ApiError>;

/// A JSON body parsed with serde_json; an empty body parses as `T::default()` where the route
/// allows it (scroll, count), and every failure is a 400 naming the problem.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req).await?;
        parse_json(&bytes).map(Body)
    }
}

/// A search or query body: read by the [fast path](super::fast_paths::search_body) when it has
/// a shape that one knows, else exactly as [`Body`] reads it.
pub struct SearchBody<T>(pub T);

impl<S: Send + Sync, T: FastBody + DeserializeOwned + Default> FromRequest<S> for SearchBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req).await?;
        match T::read(&bytes) {
            Some(fast) => Ok(SearchBody(fast)),
            None => parse_json(&bytes).map(SearchBody),
        }
    }
}

/// The whole body (within the body limit and the body read timeout, see [`crate::listener`]); a
/// body that could not be read (too large, too slow, or the connection failed) is an error in
/// Qdrant's shape.
async fn body_bytes(req: Request) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, &()).await.map_err(|e| {
        if let Some(late) = crate::listener::timed_out_body(&e) {
            metrics::counter!("shoal_http_rejected_total", "reason" => "body_timeout")
                .increment(1);
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "Request timeout: the body was not received within {}s (--body-read-timeout-secs)",
                    late.0.as_secs_f64()
                ),
            );
        }
        ApiError::new(
            e.status(),
            format!("could not read the request body: {}", e.body_text()),
        )
    })
}

fn parse_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Format error in JSON body: {e}"),
        )
    })
}

/// Query-string parameters, with Qdrant's error shape on failure.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("Format error in query string: {e}"),
                )
            })
    }
}

/// Path parameters, with Qdrant's error shape on failure: a path segment that does not decode
/// to UTF-8 (`/collections/%FF`) is a 400 in JSON, like every other bad request.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::new(
                match rejection.status() {
                    s if s.is_client_error() => s,
                    _ => StatusCode::BAD_REQUEST,
                },
                format!("Bad request: invalid path: {}", rejection.body_text()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_the_one_serde_writes() {
        let started = Started::now();
        let result = serde_json::json!({"points": [{"id": 1, "score": 0.5}], "é": "\u{7}"});
        let response = enveloped(started, |out| serde_json::to_writer(out, &result));
        let bytes =
            futures::executor::block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
                .unwrap();
        let read: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let time = read["time"].as_f64().unwrap();
        let expected = Envelope {
            result,
            status: "ok",
            time,
        };
        assert_eq!(bytes.as_ref(), serde_json::to_vec(&expected).unwrap());
    }
}
