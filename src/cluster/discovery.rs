//! Finding peers: pod `i` is `<statefulset>-<i>.<service>` in the headless Service's DNS zone,
//! resolved with hickory-resolver and answered on the peer port.
//!
//! Addresses are cached and re-resolved every [`REFRESH`], and immediately after a failed call
//! to that peer, so a pod that comes back with a new IP is found again within seconds. The
//! resolver's own cache is capped at [`MAX_TTL`] for the same reason: pod IPs are not stable.

use super::identity::Identity;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a resolved address is trusted before it is looked up again.
pub const REFRESH: Duration = Duration::from_secs(5);
/// Upper bound on any DNS answer's lifetime in the resolver's cache.
const MAX_TTL: Duration = Duration::from_secs(2);

pub struct Discovery {
    identity: Identity,
    service: String,
    peer_port: u16,
    resolver: TokioResolver,
    cache: RwLock<HashMap<u32, (SocketAddr, Instant)>>,
}

impl Discovery {
    /// A resolver on the system configuration, or on `dns_server` when given (tests).
    pub fn new(
        identity: Identity,
        service: String,
        peer_port: u16,
        dns_server: Option<SocketAddr>,
    ) -> anyhow::Result<Self> {
        let mut opts = ResolverOpts::default();
        opts.positive_max_ttl = Some(MAX_TTL);
        opts.negative_max_ttl = Some(Duration::from_millis(500));
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        opts.ndots = 0;
        let builder = match dns_server {
            Some(addr) => {
                let mut config = ResolverConfig::new();
                config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            }
            None => TokioResolver::builder_tokio()?,
        };
        let resolver = builder.with_options(opts).build();
        Ok(Discovery {
            identity,
            service,
            peer_port,
            resolver,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// The DNS name of an ordinal's pod.
    pub fn host_name(&self, ordinal: u32) -> String {
        format!(
            "{}.{}.",
            self.identity.pod_name(ordinal),
            self.service.trim_end_matches('.')
        )
    }

    /// The peer address of an ordinal, from the cache while fresh, else from DNS.
    pub async fn resolve(&self, ordinal: u32) -> Result<SocketAddr, String> {
        if let Some((addr, at)) = self.cache.read().get(&ordinal) {
            if at.elapsed() < REFRESH {
                return Ok(*addr);
            }
        }
        let name = self.host_name(ordinal);
        let lookup = self
            .resolver
            .lookup_ip(name.as_str())
            .await
            .map_err(|e| format!("cannot resolve {name}: {e}"))?;
        let ip = lookup
            .iter()
            .next()
            .ok_or_else(|| format!("{name} has no address"))?;
        let addr = SocketAddr::new(ip, self.peer_port);
        let previous = self.cache.write().insert(ordinal, (addr, Instant::now()));
        if previous.is_some_and(|(old, _)| old != addr) {
            tracing::info!(ordinal, %addr, "peer moved to a new address");
        }
        Ok(addr)
    }

    /// The last address seen for an ordinal, without asking DNS.
    pub fn cached(&self, ordinal: u32) -> Option<SocketAddr> {
        self.cache.read().get(&ordinal).map(|(a, _)| *a)
    }

    /// Forgets an ordinal's address after a failed call, so the next call resolves it afresh.
    pub fn invalidate(&self, ordinal: u32) {
        if let Some(entry) = self.cache.write().get_mut(&ordinal) {
            entry.1 = Instant::now() - REFRESH;
        }
        self.resolver.clear_cache();
    }
}
