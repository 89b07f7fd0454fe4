//! Overload protection for the public API (applied by [`super::gate`]): at most `--max-concurrent-requests`
//! requests in flight (the next one is shed at once with a 503 rather than queued), at most
//! `--max-requests-per-client` of them from one source IP (so one client, however many
//! connections it opens, cannot take every slot), and each one answered within
//! `--request-timeout-secs` (else a 504). All answers use Qdrant's error shape. The probes and
//! `/metrics` are outside these limits, so a busy node stays Ready and observable.
//! The connection-level limits (per-client connections, header and body read timeouts) are
//! applied where connections are accepted ([`super::serve`]); the upsert batch cap
//! (`--max-batch-points`) by the upsert handler.

use super::response::ApiError;
use axum::http::StatusCode;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The limits as configured.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_concurrent: usize,
    /// Requests one source IP may have in flight (`usize::MAX`: no limit).
    pub max_per_client: usize,
    pub timeout: Option<Duration>,
}

pub use crate::config::seconds;

impl Limits {
    pub fn from_config(config: &crate::config::Config) -> Limits {
        let max_concurrent = config.max_concurrent_requests.max(1) as usize;
        let max_per_client = match config.max_requests_per_client {
            None => max_concurrent / 2,
            Some(n) => n as usize,
        };
        // A share of 0, or one as large as the node's, is no share.
        let max_per_client = match max_per_client {
            n if n == 0 || n >= max_concurrent => usize::MAX,
            n => n,
        };
        Limits {
            max_concurrent,
            max_per_client,
            timeout: seconds(config.request_timeout_secs),
        }
    }

    /// The answer to a request over the client's share: a 503, at once.
    pub fn client_overloaded(&self, ip: IpAddr) -> ApiError {
        metrics::counter!("shoal_http_rejected_total", "reason" => "client_overloaded")
            .increment(1);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Service unavailable: more than {} requests in flight from {ip} (--max-requests-per-client); retry later",
                self.max_per_client
            ),
        )
    }

    /// The answer to a request over `max_concurrent`: a 503, at once.
    pub fn overloaded(&self) -> ApiError {
        metrics::counter!("shoal_http_rejected_total", "reason" => "overloaded").increment(1);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Service unavailable: more than {} requests in flight (--max-concurrent-requests); retry later",
                self.max_concurrent
            ),
        )
    }

    /// The answer to a request that overran the timeout: a 504.
    pub fn timed_out(&self) -> ApiError {
        let secs = self.timeout.map(|t| t.as_secs_f64()).unwrap_or(0.0);
        metrics::counter!("shoal_http_rejected_total", "reason" => "timeout").increment(1);
        tracing::warn!(timeout_secs = secs, "request timed out");
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("Timeout: the request took longer than {secs}s (--request-timeout-secs)"),
        )
    }
}

/// What one client (source IP) holds: its open connections and its requests in flight.
#[derive(Debug)]
pub struct ClientLoad {
    pub ip: IpAddr,
    pub in_flight: AtomicUsize,
}

/// The clients connected to the public port, by source IP.
pub struct Clients {
    max_connections: usize,
    open: Mutex<HashMap<IpAddr, (usize, Arc<ClientLoad>)>>,
}

/// One accepted connection; dropping it releases its place in its client's count.
pub struct Connection {
    clients: Arc<Clients>,
    pub load: Arc<ClientLoad>,
}

impl Clients {
    /// `max_connections` per IP, 0 for no limit.
    pub fn new(max_connections: u32) -> Arc<Clients> {
        Arc::new(Clients {
            max_connections: match max_connections {
                0 => usize::MAX,
                n => n as usize,
            },
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `ip`; `None` when the client already holds its limit.
    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Option<Connection> {
        let mut open = self.open.lock();
        let (count, load) = open.entry(ip).or_insert_with(|| {
            let load = ClientLoad {
                ip,
                in_flight: AtomicUsize::new(0),
            };
            (0, Arc::new(load))
        });
        if *count >= self.max_connections {
            return None;
        }
        *count += 1;
        Some(Connection {
            clients: Arc::clone(self),
            load: Arc::clone(load),
        })
    }

    /// The answer written to a connection over its client's limit, before closing it.
    pub fn refusal(&self, ip: IpAddr) -> Vec<u8> {
        metrics::counter!("shoal_http_rejected_total", "reason" => "client_connections")
            .increment(1);
        tracing::debug!(%ip, limit = self.max_connections, "connection refused: too many from one client");
        let body = format!(
            "{{\"status\":{{\"error\":\"Service unavailable: more than {} connections from {ip} (--max-connections-per-client)\"}},\"time\":0.0}}",
            self.max_connections
        );
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock();
        if let Some((count, _)) = open.get_mut(&self.load.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.load.ip);
            }
        }
    }
}

/// A request in flight for one client; dropping it frees its place.
pub struct ClientSlot(Arc<ClientLoad>);

impl ClientLoad {
    /// Takes a place for a request, unless the client already has `max` in flight.
    pub fn admit(self: &Arc<Self>, max: usize) -> Option<ClientSlot> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = ClientSlot(Arc::clone(self));
        (before < max).then_some(slot)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_client_and_released() {
        let clients = Clients::new(2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let first = clients.connect(a).unwrap();
        let second = clients.connect(a).unwrap();
        assert!(clients.connect(a).is_none());
        assert!(clients.connect(b).is_some());
        drop(first);
        let third = clients.connect(a).unwrap();
        let s1 = third.load.admit(1).unwrap();
        assert!(
            second.load.admit(1).is_none(),
            "one client shares one count"
        );
        drop(s1);
        assert!(second.load.admit(1).is_some());
        drop((second, third));
        assert!(clients.open.lock().is_empty());
    }
}
