//! The one middleware every public request passes. In order: a request id and the `request` span
//! ([`request_id`]), the API key ([`auth`]), the overload limits ([`limits`]: the node's and the
//! client's share of it; not for the probes and `/metrics`), and a guard that turns a handler's panic into a 500; on the way out, the
//! request metrics, the access line and the `x-request-id` header.
//!
//! One hand-written layer instead of a stack of `from_fn` middlewares and tower layers, and it
//! wraps the whole router once rather than every route: `Router::layer` wraps each route in the
//! layer, and every layer a route carries costs each request a cloned, boxed service and a boxed
//! future. Replacing the stack with this layer took ~14k instructions off each search request
//! (callgrind, against a 10-point collection); moving it in front of the router another ~2k and
//! ~8 allocations. In front of the router it has no `MatchedPath`, so it looks the route's
//! pattern up for the metrics in the [`RouteTable`].

use super::response::ApiError;
use super::service_routes::{self as service, RouteTable};
use super::{auth, limits, request_id, AppState};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tracing::Instrument;

/// Routes outside the limits, logged at debug: the kubelet's probes and Prometheus' scrapes.
const UNLIMITED_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/metrics"];

/// What the gate shares across connections: the node (for its keys), the limits, the requests in
/// flight, the route patterns.
struct Shared {
    db: AppState,
    limits: limits::Limits,
    in_flight: AtomicUsize,
    routes: &'static RouteTable,
}

/// Puts a [`Gate`] in front of the router.
#[derive(Clone)]
pub struct GateLayer {
    shared: Arc<Shared>,
}

impl GateLayer {
    pub fn new(db: AppState, limits: limits::Limits, routes: &'static RouteTable) -> Self {
        GateLayer {
            shared: Arc::new(Shared {
                db,
                limits,
                in_flight: AtomicUsize::new(0),
                routes,
            }),
        }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;
    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            shared: Arc::clone(&self.shared),
            client: None,
        }
    }
}

#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The client of the connection this gate serves (set per connection by [`super::serve`]).
    client: Option<Arc<limits::ClientLoad>>,
}

impl<S: Clone> Gate<S> {
    /// This gate for one connection of `client`: its requests count against the client's share.
    pub fn for_client(&self, client: Arc<limits::ClientLoad>) -> Gate<S> {
        Gate {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            client: Some(client),
        }
    }
}

impl<S> Service<Request> for Gate<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The service that was polled ready serves this request; a clone waits for the next.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let client = self.client.clone();
        Box::pin(Arc::clone(&self.shared).pass(inner, req, client).map(Ok))
    }
}

/// One request in flight; dropping it frees its place.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    /// The request's way through the gate, in its span. One future, with the route's boxed
    /// future inside it: each `async fn` level in between would carry its own copy of the
    /// request (~240 bytes) and be built and moved as the request goes down.
    fn pass<S>(
        self: Arc<Self>,
        inner: S,
        req: Request,
        client: Option<Arc<limits::ClientLoad>>,
    ) -> impl Future<Output = Response> + Send
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        let id = request_id::of(&req);
        let span = request_id::span(&id, &req);
        let unlimited = UNLIMITED_PATHS.contains(&req.uri().path());
        let (route, method) = (self.routes.of(req.uri().path()), req.method().clone());
        async move {
            let started = Instant::now();
            // Past the key check, a limited route sheds the request at once when too many are
            // in flight, and answers 504 when it overruns.
            let limit = self.limits.timeout.filter(|_| !unlimited);
            let mut response = match auth::check(self.db.config(), &req) {
                Err(refused) => refused.into_response(),
                // Held until the route answers; the probes and scrapes take no place.
                Ok(()) => match (!unlimited).then(|| self.admit(client.as_ref())) {
                    Some(Err(refused)) => refused.into_response(),
                    _in_flight => match limit {
                        None => guarded(inner, req).await,
                        Some(limit) => tokio::time::timeout(limit, guarded(inner, req))
                            .await
                            .unwrap_or_else(|_| self.limits.timed_out().into_response()),
                    },
                },
            };
            let seconds = started.elapsed().as_secs_f64();
            let status = response.status().as_u16();
            service::record_request(self.routes, route, &method, status, seconds);
            request_id::finished(status, seconds, unlimited);
            response
                .headers_mut()
                .insert(request_id::X_REQUEST_ID.clone(), id);
            response
        }
        .instrument(span)
    }

    /// A place for one request: the client's first (so one client's flood takes none of the
    /// node's places), then the node's.
    fn admit(
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

/// Runs the route; a panic in it becomes a 500 in Qdrant's shape and the node keeps serving.
fn guarded<S>(inner: S, req: Request) -> impl Future<Output = Response>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    AssertUnwindSafe(inner.oneshot(req))
        .catch_unwind()
        .map(|outcome| match outcome {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(panic) => service::panic_response(panic),
        })
}
