//! A request id for every request, and the request's span and access line: one middleware,
//! [`traced`], around the router ([`super::router`]).
//!
//! The id is the client's `x-request-id` when it is a sane token (at most 128 visible ASCII
//! characters), else a fresh UUID. The whole request runs inside a `request` span carrying the
//! id, method and path, so every log line it produces (text or JSON) names it; the id is
//! returned in the response's `x-request-id` header. Each request ends with one `request
//! finished` line (status, milliseconds from the request to its response's head) at info, at
//! debug for the probes and `/metrics`, at warn for a server error. Headers are never logged,
//! so API keys cannot leak into logs; the query string is not logged either.
//!
//! This was tower-http's request-id and trace layers (three layers, the trace layer entering
//! the span again for every piece of the body); one `from_fn` does the same job in fewer
//! instructions a request (`docs/benchmarks.md`).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::time::{Duration, Instant};
use tracing::Instrument;

pub const X_REQUEST_ID: &str = "x-request-id";

/// Runs a request inside its span, then logs its access line and answers with its id.
pub async fn traced(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .filter(|v| acceptable(v))
        .cloned()
        .or_else(fresh_id);
    let span = tracing::info_span!(
        "request",
        request_id = %id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or_default(),
        method = %req.method(),
        path = %req.uri().path(),
    );
    async move {
        let started = Instant::now();
        let mut response = next.run(req).await;
        finished(&response, started.elapsed());
        if let Some(id) = id {
            response.headers_mut().insert(X_REQUEST_ID, id);
        }
        response
    }
    .instrument(span)
    .await
}

/// The request id a client may choose.
fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
}

/// A fresh request id: a random (v4) UUID.
fn fresh_id() -> Option<HeaderValue> {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(id).ok()
}

/// Marks a response whose request is logged at debug (the probes and scrapes).
#[derive(Clone, Copy)]
pub struct Quiet;

/// The access line: at info (as Qdrant logs requests), at debug for the probes and scrapes, at
/// warn for a server error.
fn finished(response: &Response, latency: Duration) {
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
    use crate::logging::text::capture::Capture;
    use crate::logging::text::{Fields, PlainLine};
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use tower::ServiceExt;
    use tracing_subscriber::layer::SubscriberExt;

    /// A router with a route of each kind, behind [`traced`].
    fn app() -> axum::Router {
        async fn quiet() -> Response {
            let mut r = "ok".into_response();
            r.extensions_mut().insert(Quiet);
            r
        }
        axum::Router::new()
            .route(
                "/collections/{name}/points/search",
                axum::routing::post(|| async {
                    tracing::info!("searching");
                    "hits"
                }),
            )
            .route(
                "/fails",
                get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route("/healthz", get(quiet))
            .layer(axum::middleware::from_fn(traced))
    }

    /// Sends each request through [`app`]; the answers' `x-request-id`s and the log, in text
    /// (as the node writes it without a terminal) or JSON.
    fn run(json: bool, requests: Vec<axum::http::Request<Body>>) -> (Vec<String>, String) {
        let out = Capture::default();
        let base = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(out.clone());
        let debug = tracing_subscriber::filter::LevelFilter::DEBUG;
        let send = || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut ids = Vec::new();
                for req in requests {
                    let r = app().oneshot(req).await.unwrap();
                    ids.push(r.headers()[X_REQUEST_ID].to_str().unwrap().to_string());
                }
                ids
            })
        };
        let ids = if json {
            let layer = base.json().with_current_span(true).with_span_list(false);
            let sub = tracing_subscriber::registry().with(layer).with(debug);
            tracing::subscriber::with_default(sub, send)
        } else {
            let layer = base.fmt_fields(Fields).event_format(PlainLine::new());
            let sub = tracing_subscriber::registry().with(layer).with(debug);
            tracing::subscriber::with_default(sub, send)
        };
        (ids, out.text())
    }

    fn request(method: &str, uri: &str, id: Option<&[u8]>) -> axum::http::Request<Body> {
        let mut req = axum::http::Request::builder().method(method).uri(uri);
        if let Some(id) = id {
            req = req.header(X_REQUEST_ID, HeaderValue::from_bytes(id).unwrap());
        }
        req.body(Body::empty()).unwrap()
    }

    fn uuid(id: &str) -> bool {
        uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4)
    }

    #[test]
    fn the_access_line_names_the_request_and_its_outcome() {
        let (ids, log) = run(
            false,
            vec![
                request(
                    "POST",
                    "/collections/c1/points/search?timeout=3",
                    Some(b"abc-123"),
                ),
                request("GET", "/fails", None),
                request("GET", "/healthz", Some(b"has space")),
            ],
        );
        assert_eq!(ids[0], "abc-123");
        assert!(uuid(&ids[1]) && uuid(&ids[2]), "{ids:?}");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 4, "{log}");
        // What operators rely on: level, request id, method, path (no query), status, latency;
        // and the lines a request writes carry its span.
        let span = "request{request_id=abc-123 method=POST path=/collections/c1/points/search}:";
        assert!(
            lines[0].contains(&format!(
                "  INFO {span} shoal::api::request_id::tests: searching"
            )),
            "{log}"
        );
        let access =
            format!("  INFO {span} shoal::api::request_id: request finished status=200 ms=");
        let (head, ms) = lines[1]
            .split_once(&access)
            .unwrap_or_else(|| panic!("{log}"));
        assert!(ms.parse::<f64>().is_ok_and(|ms| ms >= 0.0), "{ms}");
        assert!(
            head.ends_with('Z') && head.len() == 27,
            "a UTC time first: {head}"
        );
        let failed = format!("  WARN request{{request_id={} method=GET path=/fails}}: shoal::api::request_id: request finished status=500 ms=", ids[1]);
        assert!(lines[2].contains(&failed), "{log}");
        let probe = format!(" DEBUG request{{request_id={} method=GET path=/healthz}}: shoal::api::request_id: request finished status=200 ms=", ids[2]);
        assert!(lines[3].contains(&probe), "{log}");
    }

    #[test]
    fn json_access_lines_are_json_with_the_same_fields() {
        let too_long = vec![b'x'; 129];
        let (ids, log) = run(
            true,
            vec![request(
                "POST",
                "/collections/c1/points/search",
                Some(&too_long),
            )],
        );
        assert!(uuid(&ids[0]), "{ids:?}");
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{log}");
        let access = &lines[1];
        assert_eq!(access["level"], "INFO");
        assert_eq!(access["fields"]["message"], "request finished");
        assert_eq!(access["fields"]["status"], 200);
        assert!(
            access["fields"]["ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{access}"
        );
        assert_eq!(access["span"]["name"], "request");
        assert_eq!(access["span"]["request_id"], ids[0].as_str());
        assert_eq!(access["span"]["method"], "POST");
        assert_eq!(access["span"]["path"], "/collections/c1/points/search");
    }
}
