//! Serving the public API on the shared accept path ([`crate::listener`]), with one more guard
//! rail per connection: connections are counted by source IP, and one over
//! `--max-connections-per-client` is answered a 503 in Qdrant's shape and closed. Each
//! connection's requests count against its client's share of the in-flight limit
//! ([`super::gate`]), so a client trickling hundreds of slow connections holds at most its
//! share, and the others (and the kubelet's probes, which take no place) keep being served.

use super::limits::Clients;
use crate::config::Config;
use crate::listener::{self, Timeouts};
use axum::extract::Request;
use axum::response::Response;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tower::{Service, ServiceExt};

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve<S>(
    listener: tokio::net::TcpListener,
    app: S,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let clients = Clients::new(config.max_connections_per_client);
    let per_connection = |connection: &listener::ConnectionInfo| {
        let ip = connection.client_ip();
        let Some(held) = clients.connect(ip) else {
            return Err(clients.refusal(ip));
        };
        // Held by the connection's service: released when the connection ends.
        let held = Arc::new(held);
        Ok(app.clone().map_request(move |mut req: Request| {
            req.extensions_mut().insert(Arc::clone(&held.load));
            req
        }))
    };
    listener::serve(
        listener,
        Timeouts::from_config(config),
        per_connection,
        shutdown,
    )
    .await
}
