//! Accepting the public API's connections (HTTP/1.1, as `axum::serve` did before): the
//! connection-level guard rails, and the graceful stop.
//!
//! - **Per client.** Connections are counted by source IP: one over `--max-connections-per-client`
//!   is answered a 503 in Qdrant's shape and closed, and each connection's requests count
//!   against its client's share of the in-flight limit ([`super::gate`]). A client trickling
//!   hundreds of slow connections thus holds at most its share, and the others (and the kubelet's
//!   probes, which take no place) keep being served.
//! - **Header read timeout.** hyper closes a connection that has not sent a whole request head
//!   within `--header-read-timeout-secs` (this also ends idle keep-alive connections); axum's
//!   `serve` set no timer, so hyper's own timeout never ran and slow-header sockets stayed open.
//! - **Body read timeout.** Reading a body is bounded where handlers read it
//!   ([`super::response`]): a 408 after `--body-read-timeout-secs`.
//! - **Stop.** On shutdown the listener closes, idle connections close at once and busy ones
//!   after their answer; those still open after [`DRAIN_LIMIT`] are dropped, so that a node
//!   stops well within Kubernetes' 30 s grace period.

use super::limits::{self, Clients};
use super::Public;
use crate::config::Config;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// The longest a stop waits for open connections to finish their requests.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// Serves `app` on `listener` until `shutdown` resolves, then drains (at most [`DRAIN_LIMIT`]).
pub async fn serve(
    listener: TcpListener,
    app: Public,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) {
    let clients = Clients::new(config.max_connections_per_client);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits::seconds(config.header_read_timeout_secs));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was accepted: wait a
                // moment rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // No Nagle delay on answers: a response hyper writes in more than one piece (a large or
        // streamed body) must not wait for the client's ACK of the first.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let ip = canonical(remote.ip());
        let Some(connection) = clients.connect(ip) else {
            tokio::spawn(refuse(tcp, clients.refusal(ip)));
            continue;
        };
        let service = app
            .for_client(Arc::clone(&connection.load))
            .map_request(|req: axum::http::Request<Incoming>| req.map(axum::body::Body::new));
        let conn = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(connection);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_LIMIT) => {
            tracing::warn!(seconds = DRAIN_LIMIT.as_secs(), "connections still busy after the drain limit are dropped");
        }
    }
}

/// IPv4 clients reaching a dual-stack listener count as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Answers a connection over its client's limit and closes it, reading (and discarding) what
/// the client sends meanwhile so that the close does not reset the answer away; a second at most.
async fn refuse(mut tcp: TcpStream, answer: Vec<u8>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(&answer).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}
