//! The peer protocol: what nodes send each other on the peer port, as bincode bodies.
//!
//! Every request carries [`PROTOCOL_HEADER`] with the sender's [`PROTOCOL_VERSION`]. A node
//! answers any version up to its own, so during a partitioned rolling update old and new nodes
//! serve one cluster together; a request from a newer version it does not know is refused with
//! a 400 that says so. Bump the version whenever a message below changes shape, and keep
//! decoding the older shapes for one release.
//!
//! Filters and payloads are JSON inside the bincode envelope: they are self-describing values
//! that bincode cannot carry.
//!
//! Collection names travel percent-encoded in request paths ([`shard_path`]): a name may hold
//! any character Qdrant allows, `#`, `%`, spaces and non-ASCII letters included.

use crate::collection::CollectionConfig;
use crate::shard::filter::Filter;
use crate::shard::point::{PointId, Record};
use crate::shard::search::{Hit, SearchSpec};
use crate::shard::{Change, Plan, PointView, Shard};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// 2: collection configs travel as JSON text; searches carry their quantization parameters.
pub const PROTOCOL_VERSION: u32 = 2;
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

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain data structures always encode.
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap_or_default()
}

/// Most bytes one message's strings and byte arrays may claim. bincode allocates a string's
/// length as announced before it reads the bytes: without a limit, a message announcing an
/// exabyte aborts the process. A real message claims no more than its own size.
const DECODE_LIMIT: usize = 1 << 32;

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    bincode::serde::decode_from_slice(bytes, config)
        .map(|(v, _)| v)
        .map_err(|e| format!("undecodable peer message: {e}"))
}

/// A collection as the catalog knows it; `config: None` records a deletion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub name: String,
    pub version: u64,
    pub config: Option<CollectionConfig>,
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

/// A versioned change to one point, as replicated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireChange {
    pub id: PointId,
    pub record: Record,
}

impl From<Change> for WireChange {
    fn from(c: Change) -> Self {
        WireChange {
            id: c.id,
            record: c.record,
        }
    }
}

impl From<WireChange> for Change {
    fn from(w: WireChange) -> Self {
        Change {
            id: w.id,
            record: w.record,
            payload: None,
        }
    }
}

/// A point as read from a shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WirePoint {
    pub id: PointId,
    pub version: u64,
    pub payload_json: String,
    pub vector: Option<Vec<f32>>,
}

impl From<PointView> for WirePoint {
    fn from(p: PointView) -> Self {
        let payload_json = serde_json::Value::Object((*p.payload).clone()).to_string();
        WirePoint {
            id: p.id,
            version: p.version,
            payload_json,
            vector: p.vector,
        }
    }
}

impl From<WirePoint> for PointView {
    fn from(w: WirePoint) -> Self {
        let payload = serde_json::from_str(&w.payload_json).unwrap_or_default();
        PointView {
            id: w.id,
            version: w.version,
            payload: Arc::new(payload),
            vector: w.vector,
        }
    }
}

/// An operation on one shard replica, native form: what the coordinator asks of a local
/// replica directly, and of a remote one through [`WireOp`].
#[derive(Debug, Clone)]
pub enum ShardOp {
    Search {
        vector: Vec<f32>,
        k: usize,
        ef: usize,
        exact: bool,
        filter: Option<Filter>,
        with_vector: bool,
        /// Local replicas only: a peer always answers with payloads (the wire shape of
        /// protocol version 1 has no such field).
        with_payload: bool,
        quantization: crate::index::QuantSearch,
    },
    Retrieve {
        ids: Vec<PointId>,
        with_vector: bool,
    },
    Scroll {
        from: Option<PointId>,
        limit: usize,
        filter: Option<Filter>,
        with_vector: bool,
    },
    Count {
        filter: Option<Filter>,
    },
    Plan {
        plan: Plan,
        version: u64,
    },
}

impl ShardOp {
    /// Whether the operation is short enough (an unfiltered HNSW search, a lookup of a few ids)
    /// to run right on the async worker. Handing it to the blocking pool would cost two thread
    /// wake-ups, about as much as the search itself; scans (exact, filtered, scroll, count, plans)
    /// still go to the blocking pool so they never stall the worker.
    pub fn is_quick(&self) -> bool {
        match self {
            ShardOp::Search { exact, filter, .. } => !exact && filter.is_none(),
            ShardOp::Retrieve { ids, .. } => ids.len() <= 64,
            _ => false,
        }
    }
}

/// What a [`ShardOp`] returns.
#[derive(Debug, Clone)]
pub enum ShardReply {
    Hits(Vec<Hit>),
    Points(Vec<PointView>),
    Count(u64),
    Changes(Vec<Change>),
}

/// [`ShardOp`] on the wire: filters and plans travel as JSON text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireOp {
    Search {
        vector: Vec<f32>,
        k: usize,
        ef: usize,
        exact: bool,
        filter_json: Option<String>,
        with_vector: bool,
        /// `(ignore, rescore, oversampling)`.
        quantization: (bool, bool, f32),
    },
    Retrieve {
        ids: Vec<PointId>,
        with_vector: bool,
    },
    Scroll {
        from: Option<PointId>,
        limit: usize,
        filter_json: Option<String>,
        with_vector: bool,
    },
    Count {
        filter_json: Option<String>,
    },
    Plan {
        plan_json: String,
        version: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireReply {
    Hits(Vec<(f32, WirePoint)>),
    Points(Vec<WirePoint>),
    Count(u64),
    Changes(Vec<WireChange>),
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// How deep JSON inside a peer message may nest. A client's body nests at most 127 levels
/// (serde_json's limit), and a message wraps what it carries from it in a few more (a plan
/// wraps a filter in three), so serde_json's own limit would refuse what the client was allowed
/// to send: a `set_payload` with a deep filter answered 503 through any node that had to ask
/// a peer.
const PEER_JSON_DEPTH: usize = 136;

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    let depth = json_depth(s);
    if depth > PEER_JSON_DEPTH {
        return Err(format!(
            "bad JSON in peer message: it nests {depth} levels, more than {PEER_JSON_DEPTH}"
        ));
    }
    // Bounded by the check above instead of by serde_json's limit.
    let mut de = serde_json::Deserializer::from_str(s);
    de.disable_recursion_limit();
    T::deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| format!("bad JSON in peer message: {e}"))
}

/// How deeply JSON text nests objects and arrays, read byte by byte without parsing it.
fn json_depth(s: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in s.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn opt_from_json<T: serde::de::DeserializeOwned>(s: &Option<String>) -> Result<Option<T>, String> {
    s.as_deref().map(from_json).transpose()
}

impl From<&ShardOp> for WireOp {
    fn from(op: &ShardOp) -> Self {
        match op.clone() {
            ShardOp::Search {
                vector,
                k,
                ef,
                exact,
                filter,
                with_vector,
                with_payload: _,
                quantization: q,
            } => WireOp::Search {
                vector,
                k,
                ef,
                exact,
                filter_json: filter.as_ref().map(to_json),
                with_vector,
                quantization: (q.ignore, q.rescore, q.oversampling),
            },
            ShardOp::Retrieve { ids, with_vector } => WireOp::Retrieve { ids, with_vector },
            ShardOp::Scroll {
                from,
                limit,
                filter,
                with_vector,
            } => WireOp::Scroll {
                from,
                limit,
                filter_json: filter.as_ref().map(to_json),
                with_vector,
            },
            ShardOp::Count { filter } => WireOp::Count {
                filter_json: filter.as_ref().map(to_json),
            },
            ShardOp::Plan { plan, version } => WireOp::Plan {
                plan_json: to_json(&plan),
                version,
            },
        }
    }
}

impl TryFrom<WireOp> for ShardOp {
    type Error = String;
    fn try_from(op: WireOp) -> Result<Self, String> {
        Ok(match op {
            WireOp::Search {
                vector,
                k,
                ef,
                exact,
                filter_json,
                with_vector,
                quantization: (ignore, rescore, oversampling),
            } => ShardOp::Search {
                vector,
                k,
                ef,
                exact,
                filter: opt_from_json(&filter_json)?,
                with_vector,
                with_payload: true,
                quantization: crate::index::QuantSearch {
                    ignore,
                    rescore,
                    oversampling,
                },
            },
            WireOp::Retrieve { ids, with_vector } => ShardOp::Retrieve { ids, with_vector },
            WireOp::Scroll {
                from,
                limit,
                filter_json,
                with_vector,
            } => ShardOp::Scroll {
                from,
                limit,
                filter: opt_from_json(&filter_json)?,
                with_vector,
            },
            WireOp::Count { filter_json } => ShardOp::Count {
                filter: opt_from_json(&filter_json)?,
            },
            WireOp::Plan { plan_json, version } => ShardOp::Plan {
                plan: from_json(&plan_json)?,
                version,
            },
        })
    }
}

impl From<ShardReply> for WireReply {
    fn from(r: ShardReply) -> Self {
        match r {
            ShardReply::Hits(h) => WireReply::Hits(
                h.into_iter()
                    .map(|h| (h.distance, h.point.into()))
                    .collect(),
            ),
            ShardReply::Points(p) => WireReply::Points(p.into_iter().map(Into::into).collect()),
            ShardReply::Count(n) => WireReply::Count(n),
            ShardReply::Changes(c) => WireReply::Changes(c.into_iter().map(Into::into).collect()),
        }
    }
}

impl From<WireReply> for ShardReply {
    fn from(r: WireReply) -> Self {
        match r {
            WireReply::Hits(h) => ShardReply::Hits(
                h.into_iter()
                    .map(|(distance, p)| Hit {
                        distance,
                        point: p.into(),
                    })
                    .collect(),
            ),
            WireReply::Points(p) => ShardReply::Points(p.into_iter().map(Into::into).collect()),
            WireReply::Count(n) => ShardReply::Count(n),
            WireReply::Changes(c) => ShardReply::Changes(c.into_iter().map(Into::into).collect()),
        }
    }
}

/// Runs an operation on a local replica.
pub fn execute(shard: &Shard, op: &ShardOp) -> ShardReply {
    match op {
        ShardOp::Search {
            vector,
            k,
            ef,
            exact,
            filter,
            with_vector,
            with_payload,
            quantization,
        } => {
            let spec = SearchSpec {
                vector,
                k: *k,
                ef: *ef,
                exact: *exact,
                filter: filter.as_ref(),
                with_vector: *with_vector,
                with_payload: *with_payload,
                quantization: *quantization,
            };
            ShardReply::Hits(shard.search(&spec))
        }
        ShardOp::Retrieve { ids, with_vector } => ShardReply::Points(shard.get(ids, *with_vector)),
        ShardOp::Scroll {
            from,
            limit,
            filter,
            with_vector,
        } => ShardReply::Points(shard.scroll(*from, *limit, filter.as_ref(), *with_vector)),
        ShardOp::Count { filter } => ShardReply::Count(shard.count(filter.as_ref()) as u64),
        ShardOp::Plan { plan, version } => ShardReply::Changes(shard.plan(plan, *version)),
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
    pub changes: Vec<WireChange>,
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
mod tests {
    use super::*;

    #[test]
    fn a_huge_announced_length_is_an_error_not_an_abort() {
        // A string announcing 2^60 bytes (bincode varint: 253, then a u64).
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode::<String>(&bytes).is_err());
        let push = CatalogPush {
            entry: CatalogEntry {
                name: String::new(),
                version: 1,
                config: None,
            },
            fresh: false,
        };
        let mut forged = bytes.clone();
        forged.extend_from_slice(&encode(&push)[1..]);
        assert!(decode::<CatalogPush>(&forged).is_err());
        assert_eq!(
            decode::<CatalogPush>(&encode(&push)).unwrap().entry,
            push.entry
        );
    }

    /// The deepest filter a client body can hold (the body nests at most 127 levels, serde_json's
    /// limit, one of them the body object): 126 levels.
    fn deepest_public_filter() -> Filter {
        let text = format!(
            "{}{}{}",
            "{\"must\":".repeat(124),
            r#"{"key":"i","match":{"value":1}}"#,
            "}".repeat(124)
        );
        let body = format!("{{\"filter\":{text}}}");
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("a client may send it");
        serde_json::from_value(parsed["filter"].clone()).expect("a filter")
    }

    #[test]
    fn every_filter_a_client_may_send_crosses_the_peer_port() {
        // Plans wrap the filter in two or three more levels; they used to be refused by the
        // replica ("recursion limit exceeded"), so a set_payload or delete with such a filter
        // answered 503 through any node that was not an owner of every shard.
        use crate::shard::{PayloadOp, Selector};
        let filter = deepest_public_filter();
        let select = || Selector::Filter(filter.clone());
        let ops = [
            (
                "delete",
                ShardOp::Plan {
                    plan: Plan::Delete(select()),
                    version: 1,
                },
            ),
            (
                "payload",
                ShardOp::Plan {
                    plan: Plan::Payload(select(), PayloadOp::Clear),
                    version: 1,
                },
            ),
            (
                "count",
                ShardOp::Count {
                    filter: Some(filter.clone()),
                },
            ),
        ];
        for (what, op) in ops {
            let wire = decode::<WireOp>(&encode(&WireOp::from(&op))).unwrap();
            let back = ShardOp::try_from(wire).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(format!("{back:?}"), format!("{op:?}"), "{what}");
        }
        // Still bounded: a message nesting far deeper is refused, not parsed.
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = ShardOp::try_from(WireOp::Plan {
            plan_json: deep,
            version: 1,
        })
        .unwrap_err();
        assert!(e.contains("nests"), "{e}");
        // Brackets and escaped quotes inside strings do not count.
        let text = r#"{"a":["[{\"\\", {"b": []}]}"#;
        assert_eq!(json_depth(text), 4);
        assert!(serde_json::from_str::<serde_json::Value>(text).is_ok());
    }

    #[test]
    fn names_survive_the_path() {
        let path = shard_path("a#b %c/ü?", 3, "commit");
        assert_eq!(path, "/peer/v1/shards/a%23b%20%25c%2F%C3%BC%3F/3/commit");
    }
}
