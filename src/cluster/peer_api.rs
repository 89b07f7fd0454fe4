//! The peer port's server: what other nodes ask of this one. Never mounted on the public port,
//! and not opened at all in single-node mode.
//!
//! Bodies are bincode ([`super::protocol`]); errors are plain text with a 4xx/5xx status. Every
//! request — unknown routes included — must carry the cluster token ([`super::PeerToken`], else
//! 401, before its body is read) and a protocol version this node understands; its body is read
//! and its answer written in that version's shapes ([`Speaks`]). Bodies are
//! bounded by [`protocol::peer_body_limit`] (413 beyond), and what they carry is checked like a
//! client's request ([`super::admission`], [`crate::collection::catalog::check_entry`]): a
//! refused request changes nothing. The hand-off route answers only connections from this
//! pod itself (its `preStop` hook).

use super::admission;
use super::coordinator::Coordinator;
use super::local::LocalReplica;
use super::protocol::{self, CatalogPush, MissedWrites, PeerStatus, RecordsRequest, ShardOp};
use super::protocol::{OLDEST_PROTOCOL, PROTOCOL_HEADER, PROTOCOL_VERSION, TOKEN_HEADER};
use super::replica::{ReadContext, Replica};
use super::PeerError;
use crate::collection::aliases::AliasEntry;
use crate::collection::catalog::check_entry;
use crate::collection::{Collection, ReplicaState};
use crate::listener::ConnectionInfo;
use crate::shard::deadline::{CancelOnDrop, Deadline};
use crate::shard::point::PointId;
use crate::shard::{Change, PlanPage, ShardError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::Serialize;
use std::sync::Arc;

type PeerState = Arc<Coordinator>;

pub fn router(node: PeerState) -> Router {
    let body_limit = node.peer_body_limit;
    Router::new()
        .route("/peer/v1/status", get(status))
        .route("/peer/v1/catalog", get(catalog).put(apply_catalog))
        .route("/peer/v1/aliases", get(aliases).put(apply_aliases))
        .route("/peer/v1/shards/{collection}/{shard}/op", post(shard_op))
        .route("/peer/v1/shards/{collection}/{shard}/commit", post(commit))
        .route(
            "/peer/v1/shards/{collection}/{shard}/records",
            post(records),
        )
        .route("/peer/v1/shards/{collection}/{shard}/state", get(state))
        .route("/peer/v1/shards/{collection}/{shard}/dump", get(dump))
        .route("/peer/v1/handoff", post(handoff))
        .route("/peer/v1/missed", put(take_missed))
        .route(
            "/peer/v1/missed/{ordinal}",
            get(missed).delete(forget_missed),
        )
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

/// The protocol version of a request ([`PROTOCOL_HEADER`]): its body is read, and its answer
/// written, in that version's shapes.
#[derive(Debug, Clone, Copy)]
struct Speaks(u32);

impl Speaks {
    fn of(headers: &axum::http::HeaderMap) -> Option<Speaks> {
        let v = headers.get(PROTOCOL_HEADER)?.to_str().ok()?.parse().ok()?;
        Some(Speaks(v))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Speaks {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        // check_protocol has refused requests without a version this node speaks.
        Ok(Speaks::of(&parts.headers).unwrap_or(Speaks(PROTOCOL_VERSION)))
    }
}

/// Refuses requests without a protocol version, or of a version this node does not speak.
async fn check_protocol(req: Request, next: Next) -> Response {
    match Speaks::of(req.headers()) {
        None => (StatusCode::BAD_REQUEST, format!("missing or invalid {PROTOCOL_HEADER} header")).into_response(),
        Some(Speaks(v)) if v > PROTOCOL_VERSION => (
            StatusCode::BAD_REQUEST,
            format!("peer protocol version {v} is newer than this node's ({PROTOCOL_VERSION}): upgrade this node"),
        )
            .into_response(),
        Some(Speaks(v)) if v < OLDEST_PROTOCOL => (
            StatusCode::BAD_REQUEST,
            format!("peer protocol version {v} is older than this node reads ({OLDEST_PROTOCOL} to {PROTOCOL_VERSION}): upgrade the sender"),
        )
            .into_response(),
        Some(_) => next.run(req).await,
    }
}

fn reply<T: Serialize>(Speaks(version): Speaks, value: &T) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        protocol::encode_as(version, value),
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

fn decode<T: serde::de::DeserializeOwned>(Speaks(v): Speaks, body: &Bytes) -> Result<T, Refusal> {
    protocol::decode_as(v, body).map_err(|e| fail(StatusCode::BAD_REQUEST, e))
}

async fn status(State(node): State<PeerState>, v: Speaks) -> Response {
    reply(
        v,
        &PeerStatus {
            ordinal: node.cluster.ordinal,
            protocol: PROTOCOL_VERSION,
            ready: node.is_ready(),
            cluster_size: node.cluster.size(),
        },
    )
}

async fn catalog(State(node): State<PeerState>, v: Speaks) -> Response {
    reply(v, &node.catalog.entries())
}

async fn apply_catalog(State(node): State<PeerState>, v: Speaks, body: Bytes) -> Answer {
    let push: CatalogPush = decode(v, &body)?;
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
    Ok(reply(v, &changed))
}

async fn aliases(State(node): State<PeerState>, v: Speaks) -> Response {
    reply(v, &node.catalog.alias_entries())
}

async fn apply_aliases(State(node): State<PeerState>, v: Speaks, body: Bytes) -> Answer {
    let entries: Vec<AliasEntry> = decode(v, &body)?;
    let applied = tokio::task::spawn_blocking(move || node.catalog.apply_aliases(&entries)).await;
    let changed = applied
        .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| fail(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(reply(v, &changed))
}

/// This node's replica a peer addresses, and its collection. 404 means this node does not know
/// the collection (the caller pushes it and retries); a shard the collection does not have is
/// a 400.
fn replica(
    node: &Coordinator,
    (collection, shard): (String, u32),
) -> Result<(Arc<Collection>, LocalReplica), Refusal> {
    let c = node
        .catalog
        .get(&collection)
        .map_err(|e| fail(StatusCode::NOT_FOUND, e.to_string()))?;
    if shard >= c.config.shard_number {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            format!("collection {collection} has no shard {shard}"),
        ));
    }
    let me = node.cluster.ordinal;
    let owned = node.cluster.owners(&c.config, shard).contains(&me);
    let lagging = node.cluster.behind.refuses_reads(&c.name, shard);
    let local = LocalReplica::new(me, Arc::clone(&c), shard, owned).lagging(lagging);
    Ok((c, local))
}

/// A message this node refuses to apply, checked like a client's request ([`admission`]).
fn invalid(e: String) -> Refusal {
    metrics::counter!("shoal_peer_refused_total", "reason" => "invalid").increment(1);
    fail(StatusCode::BAD_REQUEST, e)
}

/// How a failed operation on this node's replica is answered: 409 when it holds no usable
/// replica (the caller tries another), 413 for a read whose answer is over its payload limit
/// (the caller answers its client's 400), else the status a client would get.
fn refusal(e: PeerError) -> Refusal {
    let status = match &e {
        PeerError::NoReplica { .. } => StatusCode::CONFLICT,
        PeerError::Shard {
            error: ShardError::Invalid(_),
            ..
        } => StatusCode::BAD_REQUEST,
        PeerError::Shard {
            error: ShardError::TooLarge(_),
            ..
        } => StatusCode::PAYLOAD_TOO_LARGE,
        PeerError::Shard {
            error: ShardError::Unavailable(_),
            ..
        } => StatusCode::SERVICE_UNAVAILABLE,
        PeerError::Expired { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    fail(status, e.to_string())
}

#[derive(serde::Deserialize)]
struct OpParams {
    #[serde(default)]
    complete_only: bool,
    #[serde(default = "yes")]
    with_payload: bool,
    /// What is left of the coordinator's deadline (none from a node of an older build).
    budget_ms: Option<u64>,
    /// The most stored payload bytes the answer may carry (none: no bound).
    payload_limit: Option<usize>,
    /// A plan's page: how much its changes may weigh, and after which point id it starts.
    plan_bytes: Option<usize>,
    plan_after: Option<String>,
}

fn yes() -> bool {
    true
}

async fn shard_op(
    State(node): State<PeerState>,
    Path(at): Path<(String, u32)>,
    Query(p): Query<OpParams>,
    v: Speaks,
    body: Bytes,
) -> Answer {
    let mut op: ShardOp = decode(v, &body)?;
    match &mut op {
        ShardOp::Search { with_payload, .. } => *with_payload = p.with_payload,
        ShardOp::Plan { page, .. } => {
            let after = (p.plan_after.as_deref().map(PointId::parse_text))
                .transpose()
                .map_err(invalid)?;
            if let Some(max_bytes) = p.plan_bytes {
                *page = PlanPage { after, max_bytes };
            }
        }
        _ => {}
    }
    let (c, local) = replica(&node, at)?;
    admission::check_op(&c, &op).map_err(invalid)?;
    // The read stops at the coordinator's deadline, or when the coordinator hangs up.
    let cancel = CancelOnDrop::default();
    let budget = p.budget_ms.map(std::time::Duration::from_millis);
    let how = ReadContext {
        complete_only: p.complete_only,
        deadline: (Deadline::after(budget).or_cancelled(cancel.flag()))
            .with_payload_limit(p.payload_limit),
    };
    let answer = local.read(&op, &how).await.map_err(refusal)?;
    Ok(reply(v, &answer))
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
    v: Speaks,
    body: Bytes,
) -> Answer {
    let changes: Vec<Change> = decode(v, &body)?;
    let (c, local) = replica(&node, at)?;
    admission::check_changes(&c, &changes).map_err(invalid)?;
    let applied = local.commit(&changes, p.durable).await.map_err(refusal)?;
    Ok(reply(v, &applied))
}

async fn records(
    State(node): State<PeerState>,
    Path(at): Path<(String, u32)>,
    v: Speaks,
    body: Bytes,
) -> Answer {
    let req: RecordsRequest = decode(v, &body)?;
    let (_, local) = replica(&node, at)?;
    let page = local.records(req).await.map_err(refusal)?;
    Ok(reply(v, &page))
}

async fn state(
    State(node): State<PeerState>,
    Path((collection, shard)): Path<(String, u32)>,
    v: Speaks,
) -> Answer {
    let c =
        (node.catalog.get(&collection)).map_err(|e| fail(StatusCode::NOT_FOUND, e.to_string()))?;
    // A replica that lacks acknowledged writes is no complete copy to fill or hand over from.
    let state = match c.replica_state(shard) {
        ReplicaState::Active if node.cluster.behind.refuses_reads(&c.name, shard) => {
            ReplicaState::Syncing
        }
        state => state,
    };
    Ok(reply(v, &state))
}

/// What this node acknowledged without `ordinal`'s replicas, and whether it still writes
/// without them ([`super::missed`]).
async fn missed(State(node): State<PeerState>, Path(ordinal): Path<u32>, v: Speaks) -> Response {
    let cluster = &node.cluster;
    reply(
        v,
        &cluster.deferred.report(ordinal, || cluster.hangs(ordinal)),
    )
}

/// `ordinal` took the news of what it missed, up to the sequence number in the body.
async fn forget_missed(
    State(node): State<PeerState>,
    Path(ordinal): Path<u32>,
    v: Speaks,
    body: Bytes,
) -> Answer {
    let upto: u64 = decode(v, &body)?;
    node.cluster.deferred.forget(ordinal, upto);
    Ok(reply(v, &true))
}

/// A peer tells this node which of its replicas lack writes the peer acknowledged.
async fn take_missed(State(node): State<PeerState>, v: Speaks, body: Bytes) -> Answer {
    let entries: Vec<MissedWrites> = decode(v, &body)?;
    let marked = super::recovery::take(&node, &entries);
    Ok(reply(v, &(marked > 0)))
}

/// A point-in-time dump of this node's replica, for a snapshot another node takes: written to a
/// scratch file (unlinked once open) and streamed back ([`super::snapshot`]).
async fn dump(State(node): State<PeerState>, Path(at): Path<(String, u32)>) -> Answer {
    let (_, local) = replica(&node, at)?;
    let scratch = node.catalog.snapshot_scratch();
    let internal = |e: std::io::Error| fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    std::fs::create_dir_all(&scratch).map_err(internal)?;
    let path = scratch.join(format!("dump-{}.points", uuid::Uuid::new_v4()));
    let points = local.dump(&path).await;
    let opened = tokio::fs::File::open(&path).await;
    let _ = std::fs::remove_file(&path);
    let points = points.map_err(refusal)?;
    let file = opened.map_err(internal)?;
    let len = file.metadata().await.map_err(internal)?.len();
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_string(),
            ),
            (axum::http::header::CONTENT_LENGTH, len.to_string()),
            (
                axum::http::HeaderName::from_static(super::snapshot::POINTS_HEADER),
                points.to_string(),
            ),
        ],
        super::snapshot::file_body(file),
    )
        .into_response())
}

/// One hand-off at a time: a second request waits for the first and then finds nothing left.
static HANDOFF: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The scale-down hand-off, asked for by this pod's own `preStop` hook (`shoal handoff`): other
/// hosts get a 403 even with the token.
async fn handoff(State(node): State<PeerState>, v: Speaks, req: Request) -> Answer {
    let connection = req.extensions().get::<ConnectionInfo>();
    if !connection.is_some_and(ConnectionInfo::is_local) {
        return Err(fail(
            StatusCode::FORBIDDEN,
            "the hand-off is asked for by the pod itself (its preStop hook), not by a peer",
        ));
    }
    let _one_at_a_time = HANDOFF.lock().await;
    let report = (super::rebalance::handoff(&node).await)
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(reply(v, &report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_host_is_local() {
        let at = |remote: &str, local: Option<&str>| ConnectionInfo {
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
