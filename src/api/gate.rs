//! What every public request passes once the router has matched its route (axum's
//! `Router::layer`, so that the route's pattern labels its metrics): the API key ([`auth`]),
//! the overload limits ([`limits`]: the node's share and the client's; not for the probes and
//! `/metrics`), the request timeout (not for the snapshot routes that write or read whole
//! snapshots: [`LONG_ROUTES`]; a 504, and the request's future is dropped, which stops the
//! reads it started), and the request metrics by route, method and status.
//!
//! Around the router, once per request ([`super::router`]): the request id, the request span and
//! access line ([`super::request_id`]), and tower-http's guard that turns a handler's panic into
//! a 500.

use super::request_id::Quiet;
use super::response::ApiError;
use super::{auth, limits, AppState};
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Routes outside the limits, logged at debug: the kubelet's probes and Prometheus' scrapes.
const UNLIMITED_ROUTES: &[&str] = &["/healthz", "/livez", "/readyz", "/metrics"];

/// Routes outside the request timeout: snapshots are taken and recovered in tasks of their own
/// that a timeout would not stop, and an upload's body is bounded piece by piece instead.
const LONG_ROUTES: &[&str] = &[
    "/collections/{name}/snapshots",
    "/collections/{name}/snapshots/upload",
    "/collections/{name}/snapshots/recover",
    "/snapshots",
];

/// The label of requests no route matches.
const UNMATCHED: &str = "unmatched";

/// What the admission shares across requests.
pub struct Gate {
    db: AppState,
    limits: limits::Limits,
    in_flight: AtomicUsize,
    routes: RwLock<HashMap<Box<str>, Arc<Route>>>,
}

impl Gate {
    pub fn new(db: AppState, limits: limits::Limits) -> Arc<Gate> {
        Arc::new(Gate {
            db,
            limits,
            in_flight: AtomicUsize::new(0),
            routes: RwLock::default(),
        })
    }

    /// What the gate knows of the route `pattern` (made the first time it is asked).
    fn route(&self, pattern: &str) -> Arc<Route> {
        if let Some(route) = self.routes.read().get(pattern) {
            return Arc::clone(route);
        }
        let mut routes = self.routes.write();
        let route = routes
            .entry(pattern.into())
            .or_insert_with(|| Arc::new(Route::new(pattern)));
        Arc::clone(route)
    }

    /// A place for one request: the client's first (so one client's flood takes none of the
    /// node's places), then the node's.
    fn place(
        &self,
        client: Option<&Arc<limits::ClientLoad>>,
    ) -> Result<(Option<limits::ClientSlot>, InFlight<'_>), ApiError> {
        let slot = match client {
            Some(c) => match c.admit(self.limits.max_per_client) {
                Some(slot) => Some(slot),
                None => return Err(self.limits.client_overloaded(c.ip)),
            },
            None => None,
        };
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let place = InFlight(&self.in_flight);
        if before >= self.limits.max_concurrent {
            return Err(self.limits.overloaded());
        }
        Ok((slot, place))
    }
}

/// One request in flight; dropping it frees its place.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One route as the gate treats it: inside the limits and the timeout or not, and its metrics.
/// The handles are registered once (the `metrics` macros look a metric up by name and labels,
/// built afresh, on every call); the request counter of each method and status as it first
/// occurs.
struct Route {
    pattern: Box<str>,
    unlimited: bool,
    long: bool,
    duration: Histogram,
    requests: RwLock<Vec<(&'static str, u16, Counter)>>,
}

impl Route {
    fn new(pattern: &str) -> Route {
        Route {
            pattern: pattern.into(),
            unlimited: UNLIMITED_ROUTES.contains(&pattern),
            long: LONG_ROUTES.contains(&pattern),
            duration: metrics::histogram!("shoal_http_request_duration_seconds", "route" => pattern.to_owned()),
            requests: RwLock::default(),
        }
    }

    /// Counts one request; a method outside HTTP's standard ones is labelled `OTHER`, so that
    /// clients cannot make up series without end.
    fn count(&self, method: &Method, status: u16) {
        let method = STANDARD_METHODS
            .iter()
            .find(|m| *m == method)
            .map_or("OTHER", Method::as_str);
        let found =
            self.requests.read().iter().find_map(|(m, s, counter)| {
                (*s == status && *m == method).then(|| counter.clone())
            });
        let counter = found.unwrap_or_else(|| {
            let counter = metrics::counter!(
                "shoal_http_requests_total",
                "route" => self.pattern.to_string(),
                "method" => method,
                "status" => status.to_string(),
            );
            self.requests
                .write()
                .push((method, status, counter.clone()));
            counter
        });
        counter.increment(1);
    }
}

/// The methods counted by name.
static STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::HEAD,
    Method::OPTIONS,
    Method::CONNECT,
    Method::TRACE,
];

/// Admits a request to its route, and counts it.
pub async fn admit(
    State(gate): State<Arc<Gate>>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = gate.route(matched.as_ref().map_or(UNMATCHED, |m| m.as_str()));
    let method = req.method().clone();
    let mut response = match auth::check(gate.db.config(), &req) {
        Err(refused) => refused.into_response(),
        Ok(()) if route.unlimited => next.run(req).await,
        Ok(()) => {
            let client = req.extensions().get::<Arc<limits::ClientLoad>>().cloned();
            match gate.place(client.as_ref()) {
                Err(refused) => refused.into_response(),
                // The places are held until the route answers.
                Ok(_held) => match gate.limits.timeout {
                    _ if route.long => next.run(req).await,
                    None => next.run(req).await,
                    Some(limit) => tokio::time::timeout(limit, next.run(req))
                        .await
                        .unwrap_or_else(|_| gate.limits.timed_out().into_response()),
                },
            }
        }
    };
    route.count(&method, response.status().as_u16());
    route.duration.record(started.elapsed().as_secs_f64());
    if route.unlimited {
        response.extensions_mut().insert(Quiet);
    }
    response
}
