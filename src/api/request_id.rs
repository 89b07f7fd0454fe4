//! A request id for every request: the client's `x-request-id` when it is a sane token (at most
//! 128 visible ASCII characters), else a fresh UUID. The whole request runs inside a `request`
//! span carrying the id, method and path, so every log line it produces (text or JSON) names it;
//! the id is returned in the response's `x-request-id` header. Each request ends with one
//! `request finished` line (status, milliseconds) at info, at debug for the probes and
//! `/metrics`. Headers are never logged, so API keys cannot leak into logs; the query string is
//! not logged either.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id a client may choose.
fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
}

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

/// The request's id: the client's if acceptable, else a fresh one. Only the span, the access
/// line and the response header carry it, so the request itself is left as it came.
pub fn of(req: &Request) -> HeaderValue {
    match req.headers().get(&X_REQUEST_ID) {
        Some(v) if acceptable(v) => v.clone(),
        _ => HeaderValue::try_from(fresh_id()).unwrap_or(HeaderValue::from_static("unknown")),
    }
}

/// The span the whole request runs in.
pub fn span(id: &HeaderValue, req: &Request) -> tracing::Span {
    tracing::info_span!(
        "request",
        request_id = %id.to_str().unwrap_or_default(),
        method = %req.method(),
        path = %req.uri().path(),
    )
}

/// The access line: at info (as Qdrant logs requests), at debug for the probes and scrapes, at
/// warn for a server error.
pub fn finished(status: u16, seconds: f64, quiet: bool) {
    let ms = Millis((seconds * 1e6).round() as u64);
    if status >= 500 {
        tracing::warn!(status, ms = %ms, "request finished");
    } else if quiet {
        tracing::debug!(status, ms = %ms, "request finished");
    } else {
        tracing::info!(status, ms = %ms, "request finished");
    }
}

/// Milliseconds to the microsecond, `0.105`: not f64's `0.10513700000000001`, and without the
/// float formatting `{:.3}` would cost every request.
struct Millis(u64);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, micros) = (self.0 / 1000, self.0 % 1000);
        let fraction = [
            b'.',
            b'0' + (micros / 100) as u8,
            b'0' + (micros / 10 % 10) as u8,
            b'0' + (micros % 10) as u8,
        ];
        f.write_str(itoa::Buffer::new().format(whole))?;
        // ASCII digits and a dot: always UTF-8.
        f.write_str(std::str::from_utf8(&fraction).map_err(|_| std::fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::Millis;

    #[test]
    fn millis_read_like_three_decimals() {
        for (micros, text) in [
            (0, "0.000"),
            (105, "0.105"),
            (1_000, "1.000"),
            (12_345_678, "12345.678"),
        ] {
            assert_eq!(Millis(micros).to_string(), text);
            assert_eq!(format!("{:.3}", micros as f64 / 1000.0), text);
        }
    }
}
