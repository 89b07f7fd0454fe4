//! Filters on fields without a declared index, in every clause: what the segments' implicit
//! columns say about `should`, `must_not` and nested filters agrees with the filter checked on
//! each payload (every value type: keyword, integer, float, bool, null, arrays, nested keys,
//! missing keys), and search, count and select through the planner equal exact filtered search
//! computed here by brute force over the stored points.

use super::*;
use crate::index::Metric;
use serde_json::{json, Value};

const POINTS: u64 = 2400;

fn shard(db: &sled::Db, dir: &Path) -> Shard {
    super::filtered_tests::planner_shard(db, dir, "u", 80)
}

/// Vectors around eight centres, spread by a hash of (point, coordinate): no lattice, no ties.
/// The centre is a hash of the point too, so that the payloads (functions of `i % m`) are
/// independent of the vectors (filters correlated with the vectors are the walk's own case:
/// `filtered_tests.rs`).
fn point_vector(i: u64) -> Vec<f32> {
    let hash = |x: u64| (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32 / (1u64 << 24) as f32;
    let centre = (hash(i + (1 << 40)) * 8.0) as u64;
    (0..8u64)
        .map(|j| ((centre + j) % 5) as f32 * 4.0 + hash(i * 8 + j) * 3.0)
        .collect()
}

/// Every kind of value a column may meet, and keys that are sometimes missing.
fn payload_of(i: u64) -> Payload {
    let mut p = json!({
        "kw": match i % 5 { 0 => json!(["a", "b"]), 1 => json!("b"), 2 => json!(null), 3 => json!("c"), _ => json!(i % 3) },
        "n": i % 10,
        "f": (i % 40) as f64 / 4.0,
        "b": i % 4 == 0,
        "obj": {"k": format!("v{}", i % 6), "m": [i % 3, i % 5]},
    });
    if i % 11 == 0 {
        p.as_object_mut().map(|o| o.remove("n"));
    }
    if i % 13 == 0 {
        p["f"] = json!("not a number");
    }
    p.as_object().cloned().unwrap_or_default()
}

fn load(shard: &Shard) {
    let changes = (0..POINTS)
        .map(|i| Change::upsert(PointId::Num(i), 1, point_vector(i), payload_of(i)))
        .collect();
    shard.commit(changes, false).expect("commit");
    while shard.optimize(1).expect("optimize").is_some() {}
    // Deletes, overlays (a payload change of sealed points) and a tail.
    let mut later: Vec<Change> = (3..POINTS)
        .step_by(53)
        .map(|i| Change::delete(PointId::Num(i), 2))
        .collect();
    for i in (0..POINTS).step_by(31) {
        let mut c = Change::upsert(PointId::Num(i), 3, point_vector(i), payload_of(i + 1));
        c.record.vector_version = 1;
        later.push(c);
    }
    later.extend(
        (POINTS..POINTS + 60)
            .map(|i| Change::upsert(PointId::Num(i), 4, point_vector(i), payload_of(i))),
    );
    shard.commit(later, false).expect("commit");
    assert!(!shard.state.read().segments.is_empty());
}

fn filters() -> Vec<Value> {
    let kw = |v: &str| json!({"key": "kw", "match": {"value": v}});
    vec![
        json!({"should": [kw("b")]}),
        json!({"should": [kw("c"), {"key": "n", "match": {"value": 3}}]}),
        json!({"should": [{"key": "b", "match": {"value": true}}, {"key": "f", "range": {"gte": 9.0}}]}),
        json!({"should": [{"key": "obj.k", "match": {"value": "v2"}}, {"key": "obj.m[]", "match": {"value": 4}}]}),
        json!({"should": [{"key": "kw", "match": {"any": ["a", "c"]}}, {"key": "kw", "match": {"value": 1}}]}),
        json!({"must_not": [kw("b")]}),
        json!({"must_not": [{"key": "n", "range": {"lt": 8}}]}),
        json!({"must_not": [{"key": "b", "match": {"value": false}}, kw("c")]}),
        json!({"must": [{"key": "n", "match": {"value": 2}}], "must_not": [kw("c")]}),
        json!({"must": [{"should": [kw("a"), kw("c")]}], "must_not": [{"key": "f", "range": {"gt": 5.0}}]}),
        json!({"must": [{"must_not": [kw("b")]}, {"key": "obj.k", "match": {"value": "v1"}}]}),
        // Conditions no column answers, beside ones that do: candidates narrow, the rest is checked.
        json!({"should": [kw("b")], "must_not": [{"is_empty": {"key": "n"}}]}),
        json!({"should": [kw("b"), {"is_null": {"key": "kw"}}]}),
        json!({"must_not": [{"key": "kw", "match": {"except": ["b"]}}]}),
        json!({"should": [kw("b")], "min_should": {"conditions": [kw("a"), {"key": "n", "match": {"value": 0}}], "min_count": 1}}),
        json!({"should": []}),
        json!({"must_not": [kw("nothing")]}),
    ]
}

fn parse(f: &Value) -> Filter {
    serde_json::from_value(f.clone()).expect("filter parses")
}

#[test]
fn implicit_columns_narrow_every_clause_and_agree_with_the_payload_check() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = shard(&db, dir.path());
    load(&shard);
    let state = shard.state.read();
    for f in filters() {
        let filter = parse(&f);
        let mut narrowed = false;
        for seg in &state.segments {
            let passing: Vec<u32> = (0..seg.len() as u32)
                .filter(|&i| seg.plain(i) && filter.matches(&seg.point_id(i), &seg.payload(i)))
                .collect();
            let Some(c) = seg.payload_index().candidates(&filter, seg) else {
                continue;
            };
            narrowed = true;
            for &i in &passing {
                assert!(
                    c.ids.contains(i),
                    "{f}: entry {i} passes but is no candidate"
                );
            }
            if c.exact {
                let plain = c.ids.iter().filter(|&i| seg.plain(i)).count();
                assert_eq!(plain, passing.len(), "{f}: exact candidates");
            }
        }
        let answered_by_columns =
            !f.to_string().contains("is_") && !f.to_string().contains("except");
        assert!(
            narrowed || !answered_by_columns,
            "{f}: the columns narrow it"
        );
    }
}

#[test]
fn unindexed_filters_in_any_clause_equal_exact_filtered_search() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = shard(&db, dir.path());
    load(&shard);
    let stored = shard.scroll(None, 100_000, None, true);
    for f in filters() {
        let filter = parse(&f);
        let passing: Vec<&PointView> = stored
            .iter()
            .filter(|p| filter.matches(&p.id, &p.payload))
            .collect();
        assert_eq!(shard.count(Some(&filter)), passing.len(), "{f}: count");
        let (mut hit, mut total) = (0, 0);
        for q in (5..POINTS).step_by(79) {
            let q = point_vector(q);
            let distance = |p: &PointView| {
                let v = p.vector.as_deref().expect("scrolled with vectors");
                Metric::Euclid.distance(&q, v)
            };
            let mut truth: Vec<(f32, PointId)> =
                passing.iter().map(|p| (distance(p), p.id)).collect();
            truth.sort_by(|a, b| a.0.total_cmp(&b.0));
            truth.truncate(10);
            let spec = search::SearchSpec {
                vector: &q,
                k: 10,
                ef: 100,
                exact: false,
                filter: Some(&filter),
                with_vector: false,
                with_payload: true,
                quantization: Default::default(),
            };
            let found = shard.search(&spec);
            for h in &found {
                assert!(
                    filter.matches(&h.point.id, &h.point.payload),
                    "{f}: {} passes",
                    h.point.id
                );
            }
            hit += (found.iter())
                .filter(|h| truth.iter().any(|(_, id)| *id == h.point.id))
                .count();
            total += truth.len();
        }
        let recall = if total == 0 {
            1.0
        } else {
            hit as f64 / total as f64
        };
        assert!(recall >= 0.95, "{f}: recall@10 {recall}");
    }
}
