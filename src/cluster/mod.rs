//! The cluster as one node sees it: its own ordinal, the cluster size, where its peers are, how
//! to talk to them, and the coordinator that turns a request into work on shard replicas.
//!
//! - [`coordinator`]: turns one request into work on every shard replica involved, and merges;
//! - [`replica`]: the seam between the coordinator and a replica, [`local`] (this node's own
//!   shard) or [`remote`] (a peer's, through the peer port);
//! - [`protocol`]: the messages on the peer port; [`peer_api`] serves them, [`Cluster::call`] sends them;
//! - [`admission`]: what a node accepts from its peers;
//! - [`identity`]: ordinal and StatefulSet name from the hostname;
//! - [`placement`]: which shard a point lives in and which ordinals own a shard (pure functions);
//! - [`discovery`]: peer addresses from the headless Service's DNS;
//! - [`health`]: which peers answer (probes, and every call's outcome);
//! - [`sync`]: collections and records that a node missed while it was away;
//! - [`missed`], [`behind`] and [`recovery`]: replicas that lack writes the cluster
//!   acknowledged without them (their node hung), which serve no read until they caught up;
//! - [`membership`] and [`rebalance`]: the cluster size, and moving replicas when it changes.
//!
//! In single-node mode (no `--service`) the cluster has one member, ordinal 0, that owns
//! everything, and the peer port is not opened. In cluster mode every peer request carries the
//! cluster token ([`PeerToken`]), which the node requires before it starts.

pub mod admission;
pub mod behind;
pub mod coordinator;
pub mod discovery;
pub mod health;
pub mod identity;
pub mod local;
pub mod membership;
pub mod missed;
pub mod peer_api;
pub mod placement;
pub mod protocol;
pub mod rebalance;
pub mod recovery;
pub mod remote;
pub mod replica;
pub mod snapshot;
pub mod sync;

use crate::collection::CollectionConfig;
use discovery::Discovery;
pub use health::PeerHealth;
use health::{Failure, Health, Seen, DOWN_PEER_TIMEOUT, PROBE_EVERY, PROBE_TIMEOUT};
use identity::Identity;
use protocol::{OLDEST_PROTOCOL, PROTOCOL_HEADER, PROTOCOL_VERSION, TOKEN_HEADER};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Deadline for one peer call to a peer that answers its probes.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest cluster token accepted: a guessable token is no better than none.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why an operation on a shard replica, this node's own or a peer's, or a call to a peer failed.
/// Every error but [`PeerError::Shard`] says to try another replica.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The peer could not be reached or did not answer.
    #[error("peer {ordinal} unreachable: {message}")]
    Unreachable {
        ordinal: u32,
        message: String,
        /// No answer before the deadline, rather than a failure at once.
        timed_out: bool,
    },
    /// The peer answered with an error.
    #[error("peer {ordinal} answered {status}: {message}")]
    Refused {
        ordinal: u32,
        status: u16,
        message: String,
    },
    /// The peer answered, but not with a readable answer of the kind asked for.
    #[error("peer {ordinal} gave a bad answer: {message}")]
    BadAnswer { ordinal: u32, message: String },
    /// The node holds no replica of the shard usable for this operation.
    #[error("node {ordinal} {why} shard {shard}")]
    NoReplica {
        ordinal: u32,
        shard: u32,
        /// "holds no replica of", "is still syncing".
        why: &'static str,
    },
    /// The replica refused or failed the operation itself (a bad record, a full disk).
    #[error("node {ordinal}: {error}")]
    Shard {
        ordinal: u32,
        error: crate::shard::ShardError,
    },
    /// The replica could not be opened, or its task failed.
    #[error("node {ordinal}: {message}")]
    Internal { ordinal: u32, message: String },
    /// The request's deadline passed before the replica answered: the read stopped.
    #[error("node {ordinal}: the request's deadline passed")]
    Expired { ordinal: u32 },
    /// The peer holds a newer catalog entry of the collection's name than this node: the
    /// collection was deleted there (or deleted and created again), and this node has not heard.
    #[error("node {ordinal} no longer holds this collection: it was deleted there")]
    Superseded { ordinal: u32 },
    /// The peer speaks an older protocol than the operation needs: a rolling update is under
    /// way, and the operation goes to an upgraded replica, or waits for this one's upgrade.
    #[error("node {ordinal} speaks peer protocol {speaks}, and a {what} needs {needs}: it takes part once it is upgraded")]
    TooOld {
        ordinal: u32,
        speaks: u32,
        needs: u32,
        what: &'static str,
    },
}

impl PeerError {
    /// The node the error comes from.
    pub fn ordinal(&self) -> u32 {
        match self {
            PeerError::Unreachable { ordinal, .. }
            | PeerError::Refused { ordinal, .. }
            | PeerError::BadAnswer { ordinal, .. }
            | PeerError::NoReplica { ordinal, .. }
            | PeerError::Shard { ordinal, .. }
            | PeerError::Internal { ordinal, .. }
            | PeerError::Expired { ordinal }
            | PeerError::Superseded { ordinal }
            | PeerError::TooOld { ordinal, .. } => *ordinal,
        }
    }
}

/// The cluster token: sent with every peer call and required on every peer request. One more
/// token may be accepted (not sent) while the token is being rotated.
#[derive(Clone)]
pub struct PeerToken {
    token: String,
    also_accepted: Option<String>,
}

impl PeerToken {
    /// Checks the configured token (`--cluster-token`) and the one also accepted
    /// (`--cluster-token-accept`), if any.
    pub fn new(token: Option<&str>, also_accepted: Option<&str>) -> Result<PeerToken, String> {
        let token = token.unwrap_or("").trim();
        if token.is_empty() {
            return Err("--service is set but --cluster-token (SHOAL_CLUSTER_TOKEN) is not: every node of a cluster needs the same secret to guard its peer port, e.g. `openssl rand -hex 32` in a Kubernetes Secret".into());
        }
        let also_accepted = also_accepted.map(str::trim).filter(|t| !t.is_empty());
        for (flag, t) in [
            ("--cluster-token", Some(token)),
            ("--cluster-token-accept", also_accepted),
        ] {
            if let Some(t) = t.filter(|t| t.len() < MIN_TOKEN_LEN) {
                return Err(format!(
                    "{flag} is too short ({} characters): use at least {MIN_TOKEN_LEN}, e.g. `openssl rand -hex 32`",
                    t.len()
                ));
            }
        }
        Ok(PeerToken {
            token: token.to_string(),
            also_accepted: also_accepted.map(str::to_string),
        })
    }

    /// What this node sends.
    pub fn sent(&self) -> &str {
        &self.token
    }

    /// Whether a request may pass, compared in constant time.
    pub fn admits(&self, presented: &str) -> bool {
        let current = crate::secret::same_secret(&self.token, presented);
        let other = self
            .also_accepted
            .as_deref()
            .is_some_and(|t| crate::secret::same_secret(t, presented));
        current | other
    }
}

pub struct Cluster {
    pub identity: Option<Identity>,
    pub ordinal: u32,
    size: AtomicU32,
    discovery: Option<Discovery>,
    http: reqwest::Client,
    health: Health,
    /// The protocol version each peer speaks, from its status: calls to it use the older of its
    /// version and this node's (a peer not heard from yet gets this node's).
    protocols: parking_lot::RwLock<std::collections::HashMap<u32, u32>>,
    /// Sent with, and required on, every peer request; `None` only in single-node mode.
    pub token: Option<PeerToken>,
    /// Writes this node acknowledged without some owners' replicas.
    pub deferred: missed::Ledger,
    /// This node's replicas known to lack acknowledged writes, and its stall watch.
    pub behind: behind::Behind,
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
            health: Health::default(),
            protocols: Default::default(),
            token: None,
            deferred: Default::default(),
            behind: Default::default(),
        }
    }

    pub fn new(
        identity: Identity,
        discovery: Discovery,
        size: u32,
        token: PeerToken,
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
            health: Health::default(),
            protocols: Default::default(),
            token: Some(token),
            deferred: Default::default(),
            behind: Default::default(),
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
        self.health.get(ordinal)
    }

    /// This node, or a peer that answers its probes and calls.
    pub fn is_healthy(&self, ordinal: u32) -> bool {
        ordinal == self.ordinal || self.health.is_up(ordinal)
    }

    /// Changes each time a peer that was down answers again.
    pub fn peers_back(&self) -> tokio::sync::watch::Receiver<u64> {
        self.health.came_back()
    }

    /// A peer that is down and whose calls hang (frozen, or its host gone) rather than fail at
    /// once: not worth waiting for.
    pub fn hangs(&self, ordinal: u32) -> bool {
        ordinal != self.ordinal && self.health.hangs(ordinal)
    }

    pub fn peer_address(&self, ordinal: u32) -> Option<SocketAddr> {
        self.discovery.as_ref().and_then(|d| d.cached(ordinal))
    }

    pub fn peer_name(&self, ordinal: u32) -> Option<String> {
        self.discovery.as_ref().map(|d| d.host_name(ordinal))
    }

    /// The protocol version to talk to a peer in: the older of its and this node's.
    pub fn speaks_with(&self, ordinal: u32) -> u32 {
        let theirs = self.protocols.read().get(&ordinal).copied();
        theirs.map_or(PROTOCOL_VERSION, |v| {
            v.clamp(OLDEST_PROTOCOL, PROTOCOL_VERSION)
        })
    }

    /// Sends a bincode request to a peer and decodes its bincode answer, both in the shapes of
    /// the protocol version they share. A peer that cannot be reached is re-resolved in DNS and
    /// tried once more before the call fails; a peer that goes down while the call waits (see
    /// [`health`]) fails it at once; a peer of an older release that refuses this node's version
    /// before its status said so is asked again one version older, down to the oldest.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        ordinal: u32,
        method: reqwest::Method,
        path: &str,
        body: &Req,
    ) -> Result<Resp, PeerError> {
        let mut version = self.speaks_with(ordinal);
        loop {
            let answer = self
                .call_as(version, ordinal, method.clone(), path, body)
                .await;
            match answer {
                Err(PeerError::Refused {
                    status: 400,
                    message,
                    ..
                }) if version > OLDEST_PROTOCOL
                    && message.contains("is newer than this node's") =>
                {
                    version -= 1;
                    self.protocols.write().insert(ordinal, version);
                }
                other => return other,
            }
        }
    }

    async fn call_as<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        version: u32,
        ordinal: u32,
        method: reqwest::Method,
        path: &str,
        body: &Req,
    ) -> Result<Resp, PeerError> {
        let body = protocol::encode_as(version, body);
        let exchange = |timeout| self.exchange(ordinal, method, path, body, version, timeout);
        let result = if self.health.is_up(ordinal) {
            tokio::select! {
                r = exchange(PEER_TIMEOUT) => {
                    self.health.record(ordinal, Seen::Call, failure(&r));
                    r
                }
                // Not recorded: whatever marked the peer down said why.
                () = self.health.went_down(ordinal) => Err(PeerError::Unreachable {
                    ordinal,
                    message: "went down while this call waited".into(),
                    timed_out: true,
                }),
            }
        } else {
            let r = exchange(DOWN_PEER_TIMEOUT).await;
            self.health.record(ordinal, Seen::Call, failure(&r));
            r
        };
        protocol::decode_as(version, &result?)
            .map_err(|message| PeerError::BadAnswer { ordinal, message })
    }

    /// Probes every peer's status, forever: how a peer that stops answering is noticed within
    /// about a second and a half even when no request is waiting on it.
    pub async fn watch_peers(&self) {
        loop {
            let probes = self.peers().into_iter().map(|ordinal| async move {
                let status = self.exchange(
                    ordinal,
                    reqwest::Method::GET,
                    "/peer/v1/status",
                    protocol::encode_as(OLDEST_PROTOCOL, &()),
                    // Every version reads and answers a status alike: sent in the oldest, any
                    // peer answers it, and says which version it speaks.
                    OLDEST_PROTOCOL,
                    PROBE_TIMEOUT,
                );
                // The deadline covers the DNS lookup too.
                let answered = tokio::time::timeout(PROBE_TIMEOUT, status)
                    .await
                    .unwrap_or_else(|_| {
                        Err(PeerError::Unreachable {
                            ordinal,
                            message: format!("no status within {PROBE_TIMEOUT:?}"),
                            timed_out: true,
                        })
                    });
                // A peer that refuses its status (the token, above all) is of no use either.
                let seen = match answered {
                    Err(PeerError::Refused {
                        status, message, ..
                    }) => Err(Failure {
                        error: match status {
                            401 => "refuses this node's cluster token".into(),
                            _ => format!("status answered {status}: {message}"),
                        },
                        timed_out: false,
                    }),
                    Ok(bytes) => {
                        let status =
                            protocol::decode_as::<protocol::PeerStatus>(OLDEST_PROTOCOL, &bytes);
                        if let Ok(status) = status {
                            self.protocols.write().insert(ordinal, status.protocol);
                        }
                        Ok(())
                    }
                    other => failure(&other),
                };
                self.health.record(ordinal, Seen::Probe, seen);
            });
            futures::future::join_all(probes).await;
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// One request and its answer's body; a non-2xx answer is a [`PeerError::Refused`].
    async fn exchange(
        &self,
        ordinal: u32,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
        version: u32,
        timeout: Duration,
    ) -> Result<axum::body::Bytes, PeerError> {
        let Some(discovery) = self.discovery.as_ref() else {
            return Err(PeerError::Unreachable {
                ordinal,
                message: "single-node mode has no peers".into(),
                timed_out: false,
            });
        };
        let (mut last, mut timed_out) = (String::new(), false);
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
                .request(method.clone(), format!("http://{addr}{path}"))
                .timeout(timeout);
            if let Some(token) = &self.token {
                request = request.header(TOKEN_HEADER, token.sent());
            }
            let sent = request
                .header(PROTOCOL_HEADER, version.to_string())
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
                        timed_out: e.is_timeout(),
                    })?;
                    if !status.is_success() {
                        let message = String::from_utf8_lossy(&bytes).into_owned();
                        return Err(PeerError::Refused {
                            ordinal,
                            status: status.as_u16(),
                            message,
                        });
                    }
                    return Ok(bytes);
                }
                Err(e) => {
                    last = format!("{addr}: {e}");
                    timed_out = e.is_timeout();
                    discovery.invalidate(ordinal);
                    if attempt == 0 && !timed_out {
                        continue;
                    }
                    break;
                }
            }
        }
        Err(PeerError::Unreachable {
            ordinal,
            message: last,
            timed_out,
        })
    }
}

/// What a call's result says about the peer's health: only a peer that could not be reached
/// failed (one that answered with an error is up).
fn failure<T>(result: &Result<T, PeerError>) -> Result<(), Failure> {
    match result {
        Err(PeerError::Unreachable {
            message, timed_out, ..
        }) => Err(Failure {
            error: message.clone(),
            timed_out: *timed_out,
        }),
        _ => Ok(()),
    }
}
