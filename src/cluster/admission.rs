//! What a node accepts from its peers. The cluster token says who may speak on the peer port;
//! this module says what they may say. Records and operations from a peer are checked as
//! strictly as a client's request, so that a buggy, outdated or hostile peer cannot corrupt a
//! replica:
//!
//! - a vector has the collection's dimension, finite elements, and is in the form the collection
//!   stores (the public path's [`Collection::prepare_vector`] leaves it unchanged: Cosine vectors
//!   arrive normalised);
//! - a payload is a JSON object;
//! - a version is at most [`MAX_SKEW`](crate::shard::version::MAX_SKEW) ahead of this node's
//!   clock, and a record's vector version is not newer than the record;
//! - a search, scroll or plan asks no more than any coordinator would, and a plan's new vectors
//!   are checked like a record's.
//!
//! Catalog entries are checked by [`crate::collection::catalog::check_entry`].

use super::protocol::ShardOp;
use crate::collection::Collection;
use crate::shard::version::VersionClock;
use crate::shard::{Change, Plan};

/// Most neighbours one search asks of a shard: a client's `offset + limit` (at most 20 000 on
/// the public API) and its `hnsw_ef` (at most 100 000), with room to spare.
pub const MAX_SEARCH_K: usize = 100_000;
/// Most points one scroll asks of a shard (a client's limit, at most 100 000, plus one).
pub const MAX_SCROLL: usize = 100_001;

/// How far a peer's Cosine vector may be from unit length after rounding.
const NORMALISED_TOLERANCE: f32 = 1e-3;

/// Checks every change a peer asks this node to commit; the first bad one refuses them all.
pub fn check_changes(c: &Collection, changes: &[Change]) -> Result<(), String> {
    changes.iter().try_for_each(|change| {
        check_change(c, change).map_err(|e| format!("point {}: {e}", change.id))
    })
}

fn check_change(c: &Collection, change: &Change) -> Result<(), String> {
    let record = &change.record;
    VersionClock::check_from_peer(record.version)?;
    if record.vector_version > record.version {
        return Err(format!(
            "vector version {} is newer than the record's version {}",
            record.vector_version, record.version
        ));
    }
    let Some(body) = &record.body else {
        return Ok(());
    };
    // An empty vector is a point whose vector was deleted.
    if !body.vector.is_empty() {
        check_vector(c, &body.vector)?;
    }
    if !body.payload_json.trim_start().starts_with('{') {
        return Err("the payload must be a JSON object".into());
    }
    let payload: crate::shard::point::Payload = serde_json::from_str(&body.payload_json)
        .map_err(|e| format!("the payload is not valid JSON: {e}"))?;
    crate::shard::payload::check_payload(&payload)
}

/// A vector as the collection stores it: what the public path accepts, already prepared.
fn check_vector(c: &Collection, v: &[f32]) -> Result<(), String> {
    let prepared = c.prepare_vector(v.to_vec()).map_err(|e| e.to_string())?;
    let unchanged = prepared
        .iter()
        .zip(v)
        .all(|(p, x)| (p - x).abs() <= NORMALISED_TOLERANCE);
    if !unchanged {
        return Err(format!(
            "the vector is not in the collection's stored form ({:?} vectors are stored normalised)",
            c.config.distance
        ));
    }
    Ok(())
}

/// Checks an operation a peer asks this node to run on one of its replicas.
pub fn check_op(c: &Collection, op: &ShardOp) -> Result<(), String> {
    match op {
        ShardOp::Search { vector, k, ef, .. } => {
            check_vector(c, vector)?;
            if *k > MAX_SEARCH_K || *ef > MAX_SEARCH_K {
                return Err(format!(
                    "a search may ask at most {MAX_SEARCH_K} neighbours (k {k}, ef {ef})"
                ));
            }
            Ok(())
        }
        ShardOp::Scroll { limit, .. } | ShardOp::ScrollOrdered { limit, .. }
            if *limit > MAX_SCROLL =>
        {
            Err(format!(
                "a scroll may ask at most {MAX_SCROLL} points, not {limit}"
            ))
        }
        ShardOp::Plan { version, plan, .. } => {
            VersionClock::check_from_peer(*version)?;
            match plan {
                Plan::Payload(_, op) => op.validate(),
                Plan::Delete(_) | Plan::DeleteVectors(_) => Ok(()),
                Plan::Vectors(points) => points.iter().try_for_each(|(id, v)| {
                    check_vector(c, v).map_err(|e| format!("point {id}: {e}"))
                }),
            }
        }
        ShardOp::Scroll { .. }
        | ShardOp::ScrollOrdered { .. }
        | ShardOp::Retrieve { .. }
        | ShardOp::Count { .. }
        | ShardOp::Facet { .. }
        | ShardOp::Stats { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::CollectionConfig;
    use crate::index::Metric;
    use crate::shard::point::PointId;
    use crate::shard::version::{version_span, MAX_SKEW};
    use std::sync::Arc;

    fn collection(distance: Metric) -> (tempfile::TempDir, Collection) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let config = CollectionConfig::plain(2, distance);
        let c = Collection::new(
            "c".into(),
            config,
            1,
            dir.path().join("c"),
            crate::store::Store::from_db(db),
            Arc::new(VersionClock::default()),
        );
        (dir, c)
    }

    fn upsert(version: u64, vector: Vec<f32>, payload_json: &str) -> Change {
        let mut change = Change::upsert(PointId::Num(1), version, vector, Default::default());
        if let Some(body) = change.record.body.as_mut() {
            body.payload_json = payload_json.into();
        }
        change
    }

    #[test]
    fn refuses_what_a_client_could_not_write() {
        let (_dir, c) = collection(Metric::Cosine);
        let now = VersionClock::default().next();
        let ok = upsert(now, vec![0.6, 0.8], r#"{"a": 1}"#);
        assert!(check_changes(&c, &[ok.clone(), Change::delete(PointId::Num(2), now)]).is_ok());
        let bad = [
            upsert(now, vec![1.0, 0.0, 0.0], "{}"),
            upsert(now, vec![f32::NAN, 0.0], "{}"),
            upsert(now, vec![3.0, 4.0], "{}"),
            upsert(now, vec![0.6, 0.8], "[1]"),
            upsert(now, vec![0.6, 0.8], "{\"a\":"),
            upsert(u64::MAX, vec![0.6, 0.8], "{}"),
            upsert(now + version_span(MAX_SKEW * 2), vec![0.6, 0.8], "{}"),
            Change::delete(PointId::Num(3), u64::MAX),
        ];
        for change in bad {
            let e = check_changes(&c, &[ok.clone(), change.clone()]);
            assert!(e.is_err(), "accepted {change:?}");
        }
        let mut newer_vector = ok.clone();
        newer_vector.record.vector_version = now + 1;
        assert!(check_changes(&c, &[newer_vector]).is_err());
    }

    #[test]
    fn non_cosine_vectors_are_taken_as_they_are() {
        let (_dir, c) = collection(Metric::Euclid);
        let now = VersionClock::default().next();
        assert!(check_changes(&c, &[upsert(now, vec![3.0, 4.0], "{}")]).is_ok());
    }

    #[test]
    fn operations_are_bounded() {
        let (_dir, c) = collection(Metric::Dot);
        let search = |vector: Vec<f32>, k: usize| ShardOp::Search {
            vector,
            k,
            ef: k,
            exact: false,
            filter: None,
            with_vector: false,
            with_payload: true,
            quantization: Default::default(),
        };
        assert!(check_op(&c, &search(vec![1.0, 2.0], 10)).is_ok());
        assert!(check_op(&c, &search(vec![1.0], 10)).is_err());
        assert!(check_op(&c, &search(vec![1.0, f32::INFINITY], 10)).is_err());
        assert!(check_op(&c, &search(vec![1.0, 2.0], usize::MAX)).is_err());
        let scroll = |limit| ShardOp::Scroll {
            from: None,
            limit,
            filter: None,
            with_vector: false,
        };
        assert!(check_op(&c, &scroll(MAX_SCROLL)).is_ok());
        assert!(check_op(&c, &scroll(usize::MAX)).is_err());
        let plan = ShardOp::Plan {
            plan: crate::shard::Plan::Delete(crate::shard::Selector::Ids(vec![])),
            version: u64::MAX,
            page: Default::default(),
        };
        assert!(check_op(&c, &plan).is_err());
    }
}
