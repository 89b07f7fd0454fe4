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
//! | `GET aliases` | — | `Vec<`[`AliasEntry`]`>` (tombstones included) |
//! | `PUT aliases` | `Vec<`[`AliasEntry`]`>` (one request's changes) | `bool` (changed) |
//! | `POST shards/<c>/<s>/op` | [`ShardOp`] | [`ShardReply`] of the operation's kind |
//! | `POST shards/<c>/<s>/commit` | `Vec<`[`Change`]`>` | `u64` (applied) |
//! | `POST shards/<c>/<s>/records` | [`RecordsRequest`] | [`RecordsPage`] |
//! | `GET shards/<c>/<s>/state` | — | [`ReplicaState`](crate::collection::ReplicaState) |
//! | `POST handoff` | — | [`HandoffReport`] |
//! | `GET missed/<ordinal>` | — | [`MissedReport`]: what this node acknowledged without that node's replicas |
//! | `DELETE missed/<ordinal>` | `u64` (the highest `seq` taken) | `bool`: those entries are forgotten |
//! | `PUT missed` | `Vec<`[`MissedWrites`]`>` (what the sender acknowledged without this node's replicas) | `bool` |
//!
//! The `missed` routes change no shape and need no new version: a node of an older build answers
//! them 404, and is then left to catch up by sync as before ([`super::recovery`]).
//!
//! Every request carries [`PROTOCOL_HEADER`] with the version of its shapes. A node answers any
//! version from [`OLDEST_PROTOCOL`] up to its own, in the shapes of the request's version, so
//! during a partitioned rolling update old and new nodes serve one cluster together; a request
//! from a newer version it does not know is refused with a 400 that says so. A node talks to a
//! peer in the older of their two versions (the peer's status says its version; status probes
//! are sent as [`OLDEST_PROTOCOL`], whose status shape every version shares). Bump the version
//! whenever a message changes shape, and keep reading and writing the older shapes for one
//! release: protocol 2 sends collection configs as JSON text (so that fields added later do not
//! change the shape) and searches with their quantization parameters; protocol 3 adds
//! operations and kinds of record but changes no shape, and a node never sends what the peer's
//! version lacks ([`ShardOp::since`]). What protocol 1 has no field for travels as query parameters,
//! which a node of an older build ignores: `complete_only`, `with_payload` (a search's hits
//! without payloads), `budget_ms` (what is left of the request's deadline), `payload_limit`
//! (the most stored payload bytes the answer may carry) and a plan's page (`plan_after`,
//! `plan_bytes`).
//!
//! Filters, plans and payloads are JSON text inside the bincode envelope
//! ([`crate::codec::json_text`]): they are self-describing values that bincode cannot carry.
//! A reply of another kind than its operation's is an error, never an empty answer
//! ([`ShardReply::hits`] and its siblings).
//!
//! Collection names travel percent-encoded in request paths ([`shard_path`]): a name may hold
//! any character Qdrant allows, `#`, `%`, spaces and non-ASCII letters included.

use crate::codec::json_text;
pub use crate::collection::aliases::AliasEntry;
pub use crate::collection::catalog::CatalogEntry;
use crate::index::QuantSearch;
use crate::shard::facet::{Direction, FacetValue, IndexedKey};
use crate::shard::filter::Filter;
use crate::shard::point::PointId;
use crate::shard::search::Hit;
use crate::shard::{Change, Plan, PlanPage, PointView, Shard};
use serde::{Deserialize, Serialize};

/// 2: collection configs travel as JSON text; searches carry their quantization parameters.
/// 3: the operations facet, ordered scroll and stats (with the replica's optimizer status),
/// plans that update or delete vectors, records without a vector (a deleted vector) and shard
/// dumps; none of them is sent to a peer that speaks an older version ([`ShardOp::since`],
/// [`changes_since`]): the reader tries another replica, a write counts that replica as not
/// acknowledging, and the error says the peer must be upgraded.
pub const PROTOCOL_VERSION: u32 = 3;
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

/// The oldest protocol this node still speaks: it reads and writes that version's shapes for a
/// peer of the previous release ([`crate::codec::encode_as`]).
pub const OLDEST_PROTOCOL: u32 = 1;

/// A peer message in the shapes of protocol `version`.
pub fn encode_as<T: Serialize>(version: u32, value: &T) -> Vec<u8> {
    crate::codec::encode_as(version, value)
}

/// A message in this node's own shapes.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_as(PROTOCOL_VERSION, value)
}

/// Reads a peer message in the shapes of protocol `version`, bounded
/// ([`crate::codec::decode`]).
pub fn decode_as<T: serde::de::DeserializeOwned>(version: u32, bytes: &[u8]) -> Result<T, String> {
    crate::codec::decode_as(version, bytes).map_err(|e| format!("undecodable peer message: {e}"))
}

/// Reads a peer message in this node's own shapes.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decode_as(PROTOCOL_VERSION, bytes)
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
        /// How quantized segments are searched, as `(ignore, rescore, oversampling)`.
        #[serde(with = "quant_search")]
        quantization: QuantSearch,
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
        /// Which page of the changes. Travels as the `plan_after` and `plan_bytes` query
        /// parameters (no protocol has a field for it; a node of an older build answers the
        /// whole plan).
        #[serde(skip)]
        page: PlanPage,
    },
    /// How many points (passing the filter) hold each value of a field: every value, exact.
    /// Answered with [`ShardReply::Facet`]. (Protocol 3, like every variant after it.)
    Facet {
        field: IndexedKey,
        #[serde(with = "json_text::option")]
        filter: Option<Filter>,
    },
    /// Up to `limit` points ordered by a field, from `start_from` on. Answered with
    /// [`ShardReply::Ordered`].
    ScrollOrdered {
        field: IndexedKey,
        direction: Direction,
        start_from: Option<f64>,
        limit: usize,
        #[serde(with = "json_text::option")]
        filter: Option<Filter>,
        with_vector: bool,
    },
    /// What the replica holds and whether it is optimizing (collection info). Answered with
    /// [`ShardReply::Stats`]. `indexing_threshold` is the asking node's (`--indexing-threshold`,
    /// the same on every node of a StatefulSet), for collections that do not set their own.
    Stats { indexing_threshold: u64 },
}

/// What one replica of a shard holds: collection info sums them over the shards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStats {
    /// Live points.
    pub points: u64,
    /// Points inside HNSW segments.
    pub indexed: u64,
    pub segments: u64,
    /// Per indexed payload field (by its key as the schema writes it), the points holding a
    /// value for it.
    pub fields: Vec<(String, u64)>,
    /// A build runs or is due (collection info's `yellow`).
    pub optimizing: bool,
    /// The last build's error, if it failed.
    pub optimizer_error: Option<String>,
}

impl ShardStats {
    /// What a replica holds; `indexing_threshold` applies where its collection sets none.
    pub fn of(shard: &Shard, indexing_threshold: usize) -> ShardStats {
        let (points, indexed, segments) = shard.stats();
        ShardStats {
            points: points as u64,
            indexed: indexed as u64,
            segments: segments as u64,
            fields: (shard.payload_index_info().into_iter())
                .map(|(key, (_, n))| (key, n as u64))
                .collect(),
            optimizing: shard.optimizing(indexing_threshold),
            optimizer_error: shard.last_error.lock().clone(),
        }
    }

    /// The sum of two shards' stats.
    pub fn plus(mut self, other: ShardStats) -> ShardStats {
        self.points += other.points;
        self.indexed += other.indexed;
        self.segments += other.segments;
        self.optimizing |= other.optimizing;
        self.optimizer_error = self.optimizer_error.or(other.optimizer_error);
        for (key, n) in other.fields {
            match self.fields.iter_mut().find(|(k, _)| *k == key) {
                Some((_, m)) => *m += n,
                None => self.fields.push((key, n)),
            }
        }
        self
    }
}

fn all_payloads() -> bool {
    true
}

/// [`QuantSearch`] on the wire: the tuple `(ignore, rescore, oversampling)`; nothing in
/// protocol 1, which searches with the defaults.
mod quant_search {
    use crate::codec::shape_version;
    use crate::index::QuantSearch;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(q: &QuantSearch, s: S) -> Result<S::Ok, S::Error> {
        if shape_version() == Some(1) {
            return s.serialize_unit();
        }
        (q.ignore, q.rescore, q.oversampling).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<QuantSearch, D::Error> {
        if shape_version() == Some(1) {
            <()>::deserialize(d)?;
            return Ok(QuantSearch::default());
        }
        let (ignore, rescore, oversampling) = <(bool, bool, f32)>::deserialize(d)?;
        Ok(QuantSearch {
            ignore,
            rescore,
            oversampling,
        })
    }
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
            ShardOp::Facet { .. } => "facet",
            ShardOp::ScrollOrdered { .. } => "ordered scroll",
            ShardOp::Stats { .. } => "stats",
        }
    }

    /// The oldest protocol version that has this operation: a node sends it only to a peer
    /// that speaks that version or a newer one.
    pub fn since(&self) -> u32 {
        match self {
            ShardOp::Facet { .. } | ShardOp::ScrollOrdered { .. } | ShardOp::Stats { .. } => 3,
            ShardOp::Plan {
                plan: Plan::Vectors(_) | Plan::DeleteVectors(_),
                ..
            } => 3,
            _ => OLDEST_PROTOCOL,
        }
    }
}

/// The oldest protocol version that can carry these changes: a record without a vector (a
/// deleted vector) needs 3.
pub fn changes_since(changes: &[Change]) -> u32 {
    let vectorless =
        (changes.iter()).any(|c| (c.record.body.as_ref()).is_some_and(|b| b.vector.is_empty()));
    if vectorless {
        3
    } else {
        OLDEST_PROTOCOL
    }
}

/// The oldest protocol version with the shard dump route (collection snapshots).
pub const DUMP_SINCE: u32 = 3;

/// What a [`ShardOp`] answers. Each operation has one kind of reply; take it with the accessor
/// of that kind, which turns any other into an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardReply {
    Hits(Vec<Hit>),
    Points(Vec<PointView>),
    Count(u64),
    Changes(Vec<Change>),
    /// Each value of a field with how many points hold it.
    Facet(Vec<(FacetValue, u64)>),
    /// Points with the value they are ordered by, in order.
    Ordered(Vec<(f64, PointView)>),
    Stats(ShardStats),
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
            ShardReply::Facet(_) => "facet counts",
            ShardReply::Ordered(_) => "list of ordered points",
            ShardReply::Stats(_) => "stats",
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

    /// The answer to a facet.
    pub fn facet(self) -> Result<Vec<(FacetValue, u64)>, WrongReply> {
        match self {
            ShardReply::Facet(f) => Ok(f),
            other => Err(other.wrong("facet")),
        }
    }

    /// The answer to an ordered scroll.
    pub fn ordered(self) -> Result<Vec<(f64, PointView)>, WrongReply> {
        match self {
            ShardReply::Ordered(p) => Ok(p),
            other => Err(other.wrong("ordered scroll")),
        }
    }

    /// The answer to a stats request.
    pub fn stats(self) -> Result<ShardStats, WrongReply> {
        match self {
            ShardReply::Stats(s) => Ok(s),
            other => Err(other.wrong("stats")),
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

/// Writes a node acknowledged without one owner's replica of a shard ([`super::missed`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissedWrites {
    pub collection: String,
    pub shard: u32,
    /// The replica lacks records with a version above this.
    pub since: u64,
    /// The owners that acknowledged those writes: the replica catches up from them.
    pub from: Vec<u32>,
    /// The sender's ledger sequence number at the last write recorded here.
    pub seq: u64,
}

/// What `GET /peer/v1/missed/<ordinal>` answers: what the answering node acknowledged without
/// the asking node's replicas, and whether it still leaves them out of writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissedReport {
    pub writes: Vec<MissedWrites>,
    /// The answering node counts the asking one as hanging and writes without it: more writes
    /// may be missed, and the asker is not done catching up.
    pub skipping: bool,
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
