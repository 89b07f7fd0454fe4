//! Accepting HTTP/1.1 connections, the same way for both listeners (the public API and the peer
//! port): the read timeouts, each connection's ends in every request, and the graceful stop.
//!
//! - **Header read timeout.** hyper closes a connection that has not sent a whole request head
//!   within `--header-read-timeout-secs` (this also ends idle keep-alive connections).
//!   `axum::serve` sets no timer, so hyper's own timeout never ran and slow-header sockets
//!   stayed open.
//! - **Body read timeout.** A request body not received within `--body-read-timeout-secs` of
//!   its head fails to read with [`BodyTimedOut`] (the public API answers 408), so a client
//!   trickling a body holds no handler for long.
//! - **Per connection.** The caller decides on each new connection from its two ends
//!   ([`ConnectionInfo`], also put in every request's extensions): it serves it with a service,
//!   or refuses it with a few bytes written before the connection is closed (the public API's
//!   per-client connection limit).
//! - **Stop.** On shutdown the listener closes, idle connections close at once and busy ones
//!   after their answer; those still open after [`DRAIN_LIMIT`] are dropped, so that a node
//!   stops well within Kubernetes' 30 s grace period.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{Service, ServiceExt};

/// The longest a stop waits for open connections to finish their requests.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// How long a client may take to send a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timeouts {
    /// The whole request head (and idle time between requests on a connection).
    pub header: Option<Duration>,
    /// The whole body, from the end of the head.
    pub body: Option<Duration>,
}

impl Timeouts {
    pub fn from_config(config: &crate::config::Config) -> Timeouts {
        Timeouts {
            header: crate::config::seconds(config.header_read_timeout_secs),
            body: crate::config::seconds(config.body_read_timeout_secs),
        }
    }
}

/// Both ends of an accepted connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    pub remote: SocketAddr,
    pub local: Option<SocketAddr>,
}

impl ConnectionInfo {
    /// The client's address; IPv4 clients reaching a dual-stack listener count as IPv4.
    pub fn client_ip(&self) -> IpAddr {
        match self.remote.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        }
    }

    /// A connection from this host: loopback, or from the very address it reached.
    pub fn is_local(&self) -> bool {
        self.remote.ip().is_loopback() || self.local.is_some_and(|l| l.ip() == self.remote.ip())
    }
}

/// Serves `listener` until `shutdown` resolves, then drains (at most [`DRAIN_LIMIT`]). `serve`
/// gives the service of each new connection, or the bytes that refuse it.
pub async fn serve<S>(
    listener: TcpListener,
    timeouts: Timeouts,
    mut serve: impl FnMut(&ConnectionInfo) -> Result<S, Vec<u8>>,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
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
        let info = ConnectionInfo {
            remote,
            local: tcp.local_addr().ok(),
        };
        let service = match serve(&info) {
            Ok(service) => service,
            Err(refusal) => {
                tokio::spawn(refuse(tcp, refusal));
                continue;
            }
        };
        let body_timeout = timeouts.body;
        let service = service.map_request(move |req: hyper::Request<Incoming>| {
            // A snapshot upload may take far longer than a request: its handler bounds the wait
            // for each piece instead (src/api/snapshots.rs).
            let limit = if is_snapshot_upload(req.uri().path()) {
                None
            } else {
                body_timeout
            };
            let mut req = req.map(|body| Body::new(Deadlined::new(body, limit)));
            req.extensions_mut().insert(info);
            req
        });
        let conn = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
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

/// Answers a refused connection and closes it, reading (and discarding) what the client sends
/// meanwhile so that the close does not reset the answer away; a second at most.
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

/// `POST /collections/{c}/snapshots/upload`.
pub fn is_snapshot_upload(path: &str) -> bool {
    path.starts_with("/collections/") && path.ends_with("/snapshots/upload")
}

/// What reading a body that was not received in time fails with.
#[derive(Debug, thiserror::Error)]
#[error("the body was not received within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// Whether an error (anywhere in its chain of sources) is a body that was not received in time.
pub fn timed_out_body<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a BodyTimedOut> {
    let mut at = Some(error);
    while let Some(e) = at {
        if let Some(t) = e.downcast_ref::<BodyTimedOut>() {
            return Some(t);
        }
        at = e.source();
    }
    None
}

/// A request body that fails with [`BodyTimedOut`] once it has taken longer than its limit. A
/// body received whole when it is read starts no timer.
struct Deadlined {
    inner: Incoming,
    limit: Option<(Instant, Duration)>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Deadlined {
    fn new(inner: Incoming, limit: Option<Duration>) -> Deadlined {
        Deadlined {
            inner,
            limit: limit.map(|l| (Instant::now() + l, l)),
            timer: None,
        }
    }
}

impl HttpBody for Deadlined {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let Some((at, limit)) = this.limit else {
                    return Poll::Pending;
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut(limit).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
