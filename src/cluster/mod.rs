//! The cluster as one node sees it: its own ordinal, the cluster size, where its peers are, and
//! how to talk to them.
//!
//! - [`identity`]: ordinal and StatefulSet name from the hostname;
//! - [`placement`]: which shard a point lives in and which ordinals own a shard (pure functions);
//! - [`discovery`]: peer addresses from the headless Service's DNS;
//! - [`protocol`]: the messages on the peer port; [`peer_api`] serves them, [`Cluster::call`] sends them;
//! - [`coordinator`]: turns one client request into work on every shard replica involved;
//! - [`sync`]: collections and records that a node missed while it was away;
//! - [`membership`] and [`rebalance`]: the cluster size, and moving replicas when it changes.
//!
//! In single-node mode (no `--service`) the cluster has one member, ordinal 0, that owns everything.

pub mod coordinator;
pub mod discovery;
pub mod identity;
pub mod membership;
pub mod peer_api;
pub mod placement;
pub mod protocol;
pub mod rebalance;
pub mod sync;

use crate::collection::CollectionConfig;
use discovery::Discovery;
use identity::Identity;
use parking_lot::RwLock;
use protocol::{PROTOCOL_HEADER, PROTOCOL_VERSION, TOKEN_HEADER};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Deadline for one peer call.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the last call to a peer showed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerHealth {
    pub healthy: bool,
    pub last_error: Option<String>,
    #[serde(skip)]
    pub since: Option<Instant>,
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The peer could not be reached or did not answer: try another replica.
    #[error("peer {ordinal} unreachable: {message}")]
    Unreachable { ordinal: u32, message: String },
    /// The peer answered with an error.
    #[error("peer {ordinal} answered {status}: {message}")]
    Refused {
        ordinal: u32,
        status: u16,
        message: String,
    },
}

pub struct Cluster {
    pub identity: Option<Identity>,
    pub ordinal: u32,
    size: AtomicU32,
    discovery: Option<Discovery>,
    http: reqwest::Client,
    health: RwLock<HashMap<u32, PeerHealth>>,
    /// Sent with, and required on, every peer request when set.
    pub token: Option<String>,
}

impl Cluster {
    /// A cluster of one: this node owns every shard.
    pub fn single() -> Cluster {
        Cluster {
            identity: None,
            ordinal: 0,
            size: AtomicU32::new(1),
            discovery: None,
            http: reqwest::Client::new(),
            health: RwLock::new(HashMap::new()),
            token: None,
        }
    }

    pub fn new(
        identity: Identity,
        discovery: Discovery,
        size: u32,
        token: Option<String>,
    ) -> anyhow::Result<Cluster> {
        let http = reqwest::Client::builder()
            .timeout(PEER_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Cluster {
            ordinal: identity.ordinal,
            identity: Some(identity),
            size: AtomicU32::new(size.max(1)),
            discovery: Some(discovery),
            http,
            health: RwLock::new(HashMap::new()),
            token,
        })
    }

    pub fn size(&self) -> u32 {
        self.size.load(Ordering::Acquire)
    }

    pub fn set_size(&self, n: u32) {
        self.size.store(n.max(1), Ordering::Release);
    }

    pub fn is_single(&self) -> bool {
        self.discovery.is_none()
    }

    /// Ordinals holding `shard` of a collection, preferred first.
    pub fn owners(&self, config: &CollectionConfig, shard: u32) -> Vec<u32> {
        placement::owners(shard, config.replication_factor, self.size())
    }

    /// The shards of a collection this node holds a replica of.
    pub fn local_shards(&self, config: &CollectionConfig) -> Vec<u32> {
        (0..config.shard_number)
            .filter(|s| self.owners(config, *s).contains(&self.ordinal))
            .collect()
    }

    /// Every other ordinal of the cluster.
    pub fn peers(&self) -> Vec<u32> {
        (0..self.size()).filter(|o| *o != self.ordinal).collect()
    }

    pub fn health(&self, ordinal: u32) -> Option<PeerHealth> {
        self.health.read().get(&ordinal).cloned()
    }

    pub fn is_healthy(&self, ordinal: u32) -> bool {
        ordinal == self.ordinal || self.health(ordinal).is_none_or(|h| h.healthy)
    }

    pub fn peer_address(&self, ordinal: u32) -> Option<SocketAddr> {
        self.discovery.as_ref().and_then(|d| d.cached(ordinal))
    }

    pub fn peer_name(&self, ordinal: u32) -> Option<String> {
        self.discovery.as_ref().map(|d| d.host_name(ordinal))
    }

    fn record(&self, ordinal: u32, result: Result<(), String>) {
        let mut health = self.health.write();
        let entry = health.entry(ordinal).or_insert(PeerHealth {
            healthy: true,
            last_error: None,
            since: None,
        });
        let healthy = result.is_ok();
        if entry.healthy != healthy || entry.since.is_none() {
            entry.since = Some(Instant::now());
            if healthy {
                tracing::info!(ordinal, "peer is reachable");
            } else {
                tracing::warn!(ordinal, error = ?result.as_ref().err(), "peer is unreachable");
            }
        }
        entry.healthy = healthy;
        entry.last_error = result.err();
        metrics::gauge!("shoal_peer_up", "ordinal" => ordinal.to_string()).set(if healthy {
            1.0
        } else {
            0.0
        });
    }

    /// Sends a bincode request to a peer and decodes its bincode answer. A peer that cannot be
    /// reached is re-resolved in DNS and tried once more before the call fails.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        ordinal: u32,
        method: reqwest::Method,
        path: &str,
        body: &Req,
    ) -> Result<Resp, PeerError> {
        let Some(discovery) = self.discovery.as_ref() else {
            return Err(PeerError::Unreachable {
                ordinal,
                message: "single-node mode has no peers".into(),
            });
        };
        let body = protocol::encode(body);
        let mut last = String::new();
        for attempt in 0..2 {
            let addr = match discovery.resolve(ordinal).await {
                Ok(a) => a,
                Err(e) => {
                    last = e;
                    discovery.invalidate(ordinal);
                    continue;
                }
            };
            let mut request = self
                .http
                .request(method.clone(), format!("http://{addr}{path}"));
            if let Some(token) = &self.token {
                request = request.header(TOKEN_HEADER, token.as_str());
            }
            let sent = request
                .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    let status = resp.status();
                    let bytes = resp.bytes().await.map_err(|e| PeerError::Unreachable {
                        ordinal,
                        message: e.to_string(),
                    })?;
                    self.record(ordinal, Ok(()));
                    if !status.is_success() {
                        let message = String::from_utf8_lossy(&bytes).into_owned();
                        return Err(PeerError::Refused {
                            ordinal,
                            status: status.as_u16(),
                            message,
                        });
                    }
                    return protocol::decode(&bytes).map_err(|message| PeerError::Refused {
                        ordinal,
                        status: 500,
                        message,
                    });
                }
                Err(e) => {
                    last = format!("{addr}: {e}");
                    discovery.invalidate(ordinal);
                    if attempt == 0 && !e.is_timeout() {
                        continue;
                    }
                    break;
                }
            }
        }
        self.record(ordinal, Err(last.clone()));
        Err(PeerError::Unreachable {
            ordinal,
            message: last,
        })
    }
}
