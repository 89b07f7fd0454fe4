//! The peer port's server: what other nodes ask of this one. Never mounted on the public port,
//! and not opened at all in single-node mode.
//!
//! Bodies are bincode ([`super::protocol`]); errors are plain text with a 4xx/5xx status. Every
//! request — unknown routes included — must carry the cluster token ([`super::PeerToken`], else
//! 401, before its body is read) and a protocol version this node understands. Bodies are
//! bounded by [`protocol::peer_body_limit`] (413 beyond), and what they carry is checked like a
//! client's request ([`super::admission`], [`crate::collection::catalog::check_entry`]): a
//! refused request changes nothing. The hand-off route answers only connections from this
//! pod itself (its `preStop` hook).

use super::admission;
use super::protocol::{
    self, CatalogPush, PeerStatus, RecordsPage, RecordsRequest, ShardOp, WireChange, WireOp,
    WireReply,
};
use super::protocol::{PROTOCOL_HEADER, PROTOCOL_VERSION, TOKEN_HEADER};
use crate::collection::catalog::check_entry;
use crate::collection::{Collection, ReplicaState};
use crate::node::Node;
use crate::shard::Change;
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::Router;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;

type PeerState = Arc<Node>;

pub fn router(node: PeerState) -> Router {
    let body_limit = protocol::peer_body_limit(node.config.max_request_bytes);
    Router::new()
        .route("/peer/v1/status", get(status))
        .route("/peer/v1/catalog", get(catalog).put(apply_catalog))
        .route("/peer/v1/shards/{collection}/{shard}/op", post(shard_op))
        .route("/peer/v1/shards/{collection}/{shard}/commit", post(commit))
        .route(
            "/peer/v1/shards/{collection}/{shard}/records",
            post(records),
        )
        .route("/peer/v1/shards/{collection}/{shard}/state", get(state))
        .route("/peer/v1/handoff", post(handoff))
        // Before the layers, so that unknown routes want the token too.
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such peer route") })
        .layer(axum::middleware::from_fn(check_protocol))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            check_token,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(node)
}

/// Both ends of a peer connection: the hand-off route serves only this pod itself.
#[derive(Clone, Copy, Debug)]
pub struct PeerConnection {
    pub remote: SocketAddr,
    pub local: Option<SocketAddr>,
}

impl PeerConnection {
    /// A connection from this host: loopback, or from the very address it reached.
    fn is_local(&self) -> bool {
        self.remote.ip().is_loopback() || self.local.is_some_and(|l| l.ip() == self.remote.ip())
    }
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for PeerConnection {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        PeerConnection {
            remote: *stream.remote_addr(),
            local: stream.io().local_addr().ok(),
        }
    }
}

/// Refuses every request without the cluster token (all of them when none is configured).
async fn check_token(State(node): State<PeerState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let admitted = node
        .cluster
        .token
        .as_ref()
        .is_some_and(|t| t.admits(presented));
    if !admitted {
        metrics::counter!("shoal_peer_refused_total", "reason" => "token").increment(1);
        return (
            StatusCode::UNAUTHORIZED,
            format!("missing or wrong {TOKEN_HEADER}"),
        )
            .into_response();
    }
    next.run(req).await
}

/// Refuses requests without a protocol version, or from a newer protocol than this node speaks.
async fn check_protocol(req: Request, next: Next) -> Response {
    let version = req
        .headers()
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    match version {
        None => (StatusCode::BAD_REQUEST, format!("missing or invalid {PROTOCOL_HEADER} header")).into_response(),
        Some(v) if v > PROTOCOL_VERSION => (
            StatusCode::BAD_REQUEST,
            format!("peer protocol version {v} is newer than this node's ({PROTOCOL_VERSION}): upgrade this node"),
        )
            .into_response(),
        Some(_) => next.run(req).await,
    }
}

fn reply<T: Serialize>(value: &T) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        protocol::encode(value),
    )
        .into_response()
}

/// A refused peer request: its status and why, answered as plain text. Small, so that the
/// `Result`s carrying it stay small (a `Response` is 128 bytes).
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// What a peer route answers: the encoded reply, or why it refused.
type Answer = Result<Response, Refusal>;

fn fail(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

fn decode<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Refusal> {
    protocol::decode(body).map_err(|e| fail(StatusCode::BAD_REQUEST, e))
}

async fn status(State(node): State<PeerState>) -> Response {
    reply(&PeerStatus {
        ordinal: node.cluster.ordinal,
        protocol: PROTOCOL_VERSION,
        ready: node.is_ready(),
        cluster_size: node.cluster.size(),
    })
}

async fn catalog(State(node): State<PeerState>) -> Response {
    reply(&node.catalog.entries())
}

async fn apply_catalog(State(node): State<PeerState>, body: Bytes) -> Answer {
    let push: CatalogPush = decode(&body)?;
    check_entry(&push.entry).map_err(|e| fail(StatusCode::BAD_REQUEST, e.to_string()))?;
    let local = push
        .entry
        .config
        .as_ref()
        .map(|c| node.cluster.local_shards(c))
        .unwrap_or_default();
    let applied =
        tokio::task::spawn_blocking(move || node.catalog.apply(&push.entry, &local, push.fresh))
            .await;
    let changed = applied
        .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| fail(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(reply(&changed))
}

/// How a request wants the local replica.
#[derive(Clone, Copy, PartialEq)]
enum Want {
    /// Serve reads: only a replica holding everything (or any, when `complete_only` is off).
    Read { complete_only: bool },
    /// Take writes: an owner opens a replica it does not hold yet, to be filled by syncing.
    Write,
}

/// The local replica a peer addresses, and its collection. 404 means this node does not know
/// the collection (the caller pushes it and retries); 409 means it holds no usable replica of
/// that shard.
fn replica(
    node: &Node,
    collection: &str,
    shard: u32,
    want: Want,
) -> Result<(Arc<Collection>, Arc<crate::shard::Shard>), Refusal> {
    let c = node
        .catalog
        .get(collection)
        .map_err(|e| fail(StatusCode::NOT_FOUND, e.to_string()))?;
    if shard >= c.config.shard_number {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            format!("collection {collection} has no shard {shard}"),
        ));
    }
    let missing = |why: &str| {
        fail(
            StatusCode::CONFLICT,
            format!(
                "node {} {why} shard {shard} of {collection}",
                node.cluster.ordinal
            ),
        )
    };
    let opened = match (c.replica_state(shard), want) {
        (
            ReplicaState::Syncing,
            Want::Read {
                complete_only: true,
            },
        ) => return Err(missing("is still syncing")),
        (ReplicaState::Absent, Want::Write)
            if node
                .cluster
                .owners(&c.config, shard)
                .contains(&node.cluster.ordinal) =>
        {
            c.open_syncing(shard)
        }
        (ReplicaState::Absent, _) => return Err(missing("holds no replica of")),
        _ => c.open_shard(shard),
    };
    let replica = opened.map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    Ok((c, replica))
}

/// The common shape of every shard route: decode the body (`parse`), find the replica, check
/// the request against the collection (`check`), run `work` — on the blocking pool unless
/// `quick` says it is short enough for the async worker (see [`ShardOp::is_quick`]) — and
/// encode its answer.
async fn on_replica<Req, Resp, E>(
    node: &Node,
    (collection, shard): (String, u32),
    want: Want,
    parse: impl FnOnce() -> Result<Req, Refusal>,
    check: impl FnOnce(&Collection, &Req) -> Result<(), String>,
    quick: impl FnOnce(&Req) -> bool,
    work: impl FnOnce(Arc<crate::shard::Shard>, Req) -> Result<Resp, E> + Send + 'static,
) -> Answer
where
    Req: Send + 'static,
    Resp: Serialize + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let request = parse()?;
    let (c, replica) = replica(node, &collection, shard, want)?;
    check(&c, &request).map_err(|e| {
        metrics::counter!("shoal_peer_refused_total", "reason" => "invalid").increment(1);
        fail(StatusCode::BAD_REQUEST, e)
    })?;
    let worked = if quick(&request) {
        work(replica, request)
    } else {
        tokio::task::spawn_blocking(move || work(replica, request))
            .await
            .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    worked
        .map(|answer| reply(&answer))
        .map_err(|e| fail(StatusCode::BAD_REQUEST, e.to_string()))
}

#[derive(serde::Deserialize)]
struct OpParams {
    #[serde(default)]
    complete_only: bool,
}

async fn shard_op(
    State(node): State<PeerState>,
    Path(at): Path<(String, u32)>,
    Query(p): Query<OpParams>,
    body: Bytes,
) -> Answer {
    let parse = || {
        decode::<WireOp>(&body)
            .and_then(|w| ShardOp::try_from(w).map_err(|e| fail(StatusCode::BAD_REQUEST, e)))
    };
    let quick = |op: &ShardOp| op.is_quick();
    on_replica(
        &node,
        at,
        Want::Read {
            complete_only: p.complete_only,
        },
        parse,
        admission::check_op,
        quick,
        |replica, op| Ok::<_, String>(WireReply::from(protocol::execute(&replica, &op))),
    )
    .await
}

#[derive(serde::Deserialize)]
struct CommitParams {
    #[serde(default)]
    durable: bool,
}

async fn commit(
    State(node): State<PeerState>,
    Path(at): Path<(String, u32)>,
    Query(p): Query<CommitParams>,
    body: Bytes,
) -> Answer {
    let parse = || {
        decode::<Vec<WireChange>>(&body)
            .map(|changes| changes.into_iter().map(Change::from).collect::<Vec<_>>())
    };
    on_replica(
        &node,
        at,
        Want::Write,
        parse,
        |c, changes: &Vec<Change>| admission::check_changes(c, changes),
        |_| false,
        move |replica, changes| replica.commit(changes, p.durable).map(|n| n as u64),
    )
    .await
}

async fn records(
    State(node): State<PeerState>,
    Path(at): Path<(String, u32)>,
    body: Bytes,
) -> Answer {
    on_replica(
        &node,
        at,
        Want::Read {
            complete_only: false,
        },
        || decode(&body),
        |_, _| Ok(()),
        |_| false,
        |replica, req: RecordsRequest| {
            let (changes, next) =
                replica.records_since(req.since, req.after, req.limit.clamp(1, 10_000))?;
            let changes = changes
                .into_iter()
                .map(|(id, record)| WireChange { id, record })
                .collect();
            Ok::<_, crate::shard::ShardError>(RecordsPage { changes, next })
        },
    )
    .await
}

async fn state(
    State(node): State<PeerState>,
    Path((collection, shard)): Path<(String, u32)>,
) -> Answer {
    let c =
        (node.catalog.get(&collection)).map_err(|e| fail(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok(reply(&c.replica_state(shard)))
}

/// One hand-off at a time: a second request waits for the first and then finds nothing left.
static HANDOFF: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The scale-down hand-off, asked for by this pod's own `preStop` hook (`shoal handoff`): other
/// hosts get a 403 even with the token.
async fn handoff(State(node): State<PeerState>, req: Request) -> Answer {
    let connection = req.extensions().get::<ConnectInfo<PeerConnection>>();
    if !connection.is_some_and(|c| c.0.is_local()) {
        return Err(fail(
            StatusCode::FORBIDDEN,
            "the hand-off is asked for by the pod itself (its preStop hook), not by a peer",
        ));
    }
    let _one_at_a_time = HANDOFF.lock().await;
    let report = (super::rebalance::handoff(&node).await)
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(reply(&report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_host_is_local() {
        let at = |remote: &str, local: Option<&str>| PeerConnection {
            remote: remote.parse().unwrap(),
            local: local.map(|l| l.parse().unwrap()),
        };
        assert!(at("127.0.0.1:5000", None).is_local());
        assert!(at("[::1]:5000", None).is_local());
        assert!(at("10.1.2.3:5000", Some("10.1.2.3:6335")).is_local());
        assert!(!at("10.1.2.4:5000", Some("10.1.2.3:6335")).is_local());
        assert!(!at("10.1.2.4:5000", None).is_local());
    }
}
