//! The peer protocol: what nodes send each other on the peer port, as bincode bodies
//! ([`crate::codec`]). The types below are the ones the coordinator and the replicas use
//! natively: there is no second, "wire" form of any of them.
//!
//! Routes (all under `/peer/v1`, all requiring the cluster token):
//!
//! | route | request | answer |
//! |---|---|---|
//! | `GET status` | — | [`PeerStatus`] |
//! | `GET catalog` | — | `Vec<`[`CatalogEntry`]`>` |
//! | `PUT catalog` | [`CatalogPush`] | `bool` (changed) |
//! | `POST shards/<c>/<s>/op` | [`ShardOp`] | [`ShardReply`] of the operation's kind |
//! | `POST shards/<c>/<s>/commit` | `Vec<`[`Change`]`>` | `u64` (applied) |
//! | `POST shards/<c>/<s>/records` | [`RecordsRequest`] | [`RecordsPage`] |
//! | `GET shards/<c>/<s>/state` | — | [`ReplicaState`](crate::collection::ReplicaState) |
//! | `POST handoff` | — | [`HandoffReport`] |
//!
//! Every request carries [`PROTOCOL_HEADER`] with the sender's [`PROTOCOL_VERSION`]. A node
//! answers any version up to its own, so during a partitioned rolling update old and new nodes
//! serve one cluster together; a request from a newer version it does not know is refused with
//! a 400 that says so. Bump the version whenever a message changes shape, and keep decoding the
//! older shapes for one release. What protocol 1 has no field for travels as query parameters,
//! which a node of an older build ignores: `complete_only`, `with_payload` (a search's hits
//! without payloads) and `budget_ms` (what is left of the request's deadline).
//!
//! Filters, plans and payloads are JSON text inside the bincode envelope
//! ([`crate::codec::json_text`]): they are self-describing values that bincode cannot carry.
//! A reply of another kind than its operation's is an error, never an empty answer
//! ([`ShardReply::hits`] and its siblings).
//!
//! Collection names travel percent-encoded in request paths ([`shard_path`]): a name may hold
//! any character Qdrant allows, `#`, `%`, spaces and non-ASCII letters included.

use crate::codec::json_text;
pub use crate::collection::catalog::CatalogEntry;
use crate::shard::filter::Filter;
use crate::shard::point::PointId;
use crate::shard::search::Hit;
use crate::shard::{Change, Plan, PointView};
use serde::{Deserialize, Serialize};

pub const PROTOCOL_VERSION: u32 = 1;
pub const PROTOCOL_HEADER: &str = "x-shoal-peer-protocol";
/// Carries the cluster token when one is configured.
pub const TOKEN_HEADER: &str = "x-shoal-cluster-token";

/// Everything but unreserved characters (RFC 3986) is percent-encoded in a path segment.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The peer route of one shard of a collection: `/peer/v1/shards/<collection>/<shard>/<what>`,
/// the name percent-encoded so that it arrives as it was sent.
pub fn shard_path(collection: &str, shard: u32, what: &str) -> String {
    let name = percent_encoding::utf8_percent_encode(collection, PATH_SEGMENT);
    format!("/peer/v1/shards/{name}/{shard}/{what}")
}

/// Largest request body the peer port reads: a commit carries at most one client request's
/// points (bincode floats take up to twice their shortest JSON form), and the coordinator cuts
/// larger writes (a payload change over a whole shard) into bodies of half this size.
pub fn peer_body_limit(max_request_bytes: usize) -> usize {
    max_request_bytes.saturating_mul(2).saturating_add(1 << 20)
}

pub use crate::codec::encode;

/// Reads a peer message, bounded ([`crate::codec::decode`]).
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    crate::codec::decode(bytes).map_err(|e| format!("undecodable peer message: {e}"))
}

/// A catalog change sent to a peer; `fresh` when its sender created the collection just now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogPush {
    pub entry: CatalogEntry,
    pub fresh: bool,
}

/// The result of a scale-down hand-off.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandoffReport {
    pub leaving: bool,
    pub cluster_size: u32,
    pub replicas_handed_off: usize,
}

/// A read of one shard replica (or the read half of a read-modify-write: [`ShardOp::Plan`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardOp {
    /// The `k` nearest points to a prepared vector. Answered with [`ShardReply::Hits`].
    Search {
        vector: Vec<f32>,
        k: usize,
        ef: usize,
        exact: bool,
        #[serde(with = "json_text::option")]
        filter: Option<Filter>,
        with_vector: bool,
        /// Hits without payloads when false. Travels as the `with_payload` query parameter
        /// (protocol 1 has no field for it; a node of an older build sends payloads).
        #[serde(skip, default = "all_payloads")]
        with_payload: bool,
    },
    /// Points by id, in the order asked. Answered with [`ShardReply::Points`].
    Retrieve {
        ids: Vec<PointId>,
        with_vector: bool,
    },
    /// Up to `limit` points from `from` in id order. Answered with [`ShardReply::Points`].
    Scroll {
        from: Option<PointId>,
        limit: usize,
        #[serde(with = "json_text::option")]
        filter: Option<Filter>,
        with_vector: bool,
    },
    /// How many points pass the filter. Answered with [`ShardReply::Count`].
    Count {
        #[serde(with = "json_text::option")]
        filter: Option<Filter>,
    },
    /// The changes a plan makes at `version`. Answered with [`ShardReply::Changes`].
    Plan {
        #[serde(with = "json_text")]
        plan: Plan,
        version: u64,
    },
}

fn all_payloads() -> bool {
    true
}

impl ShardOp {
    /// The operation's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            ShardOp::Search { .. } => "search",
            ShardOp::Retrieve { .. } => "retrieve",
            ShardOp::Scroll { .. } => "scroll",
            ShardOp::Count { .. } => "count",
            ShardOp::Plan { .. } => "plan",
        }
    }
}

/// What a [`ShardOp`] answers. Each operation has one kind of reply; take it with the accessor
/// of that kind, which turns any other into an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardReply {
    Hits(Vec<Hit>),
    Points(Vec<PointView>),
    Count(u64),
    Changes(Vec<Change>),
}

/// A reply of another kind than the operation asked for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("answered {got} to a {expected}")]
pub struct WrongReply {
    pub expected: &'static str,
    pub got: &'static str,
}

impl ShardReply {
    pub fn kind(&self) -> &'static str {
        match self {
            ShardReply::Hits(_) => "list of hits",
            ShardReply::Points(_) => "list of points",
            ShardReply::Count(_) => "count",
            ShardReply::Changes(_) => "list of changes",
        }
    }

    fn wrong(&self, expected: &'static str) -> WrongReply {
        WrongReply {
            expected,
            got: self.kind(),
        }
    }

    /// The answer to a search.
    pub fn hits(self) -> Result<Vec<Hit>, WrongReply> {
        match self {
            ShardReply::Hits(h) => Ok(h),
            other => Err(other.wrong("search")),
        }
    }

    /// The answer to a retrieve or a scroll.
    pub fn points(self) -> Result<Vec<PointView>, WrongReply> {
        match self {
            ShardReply::Points(p) => Ok(p),
            other => Err(other.wrong("retrieve or scroll")),
        }
    }

    /// The answer to a count.
    pub fn count(self) -> Result<u64, WrongReply> {
        match self {
            ShardReply::Count(n) => Ok(n),
            other => Err(other.wrong("count")),
        }
    }

    /// The answer to a plan.
    pub fn changes(self) -> Result<Vec<Change>, WrongReply> {
        match self {
            ShardReply::Changes(c) => Ok(c),
            other => Err(other.wrong("plan")),
        }
    }
}

/// A page of a shard's records (tombstones included) with a version above `since`, in id order
/// after `after`: how a replica that was away catches up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordsRequest {
    pub since: u64,
    pub after: Option<PointId>,
    pub limit: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordsPage {
    pub changes: Vec<Change>,
    pub next: Option<PointId>,
}

/// What `GET /peer/v1/status` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerStatus {
    pub ordinal: u32,
    pub protocol: u32,
    pub ready: bool,
    pub cluster_size: u32,
}

#[cfg(test)]
mod tests;
