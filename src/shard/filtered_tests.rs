//! Filtered search through the planner: with and without payload indexes, over segments, the
//! tail and overlays, it returns what exact filtered search returns (recall measured, not timed).

use super::payload_index::{FieldSchema, PayloadSchema};
use super::*;
use crate::index::Metric;
use serde_json::{json, Value};

fn shard(db: &sled::Db, dir: &Path) -> Shard {
    planner_shard(db, dir, "f", 60)
}

/// An 8-dimension Euclid shard whose `full_scan_threshold` is low (in points), so that most
/// filters traverse the graph and only a few score their candidates exactly.
pub(super) fn planner_shard(db: &sled::Db, dir: &Path, name: &str, threshold: usize) -> Shard {
    let config = ShardConfig {
        full_scan_threshold: threshold,
        ..ShardConfig::new(8, Metric::Euclid, HnswParams::default())
    };
    let store = Store::from_db(db.clone());
    Shard::open(&store, name, dir, config, Arc::new(VersionClock::default())).expect("open")
}

/// Distinct vectors (no ties: exact results must compare equal across runs).
fn vector(i: u64) -> Vec<f32> {
    (0..8)
        .map(|j| {
            ((i * 31 + j * 17) % 97) as f32 / 9.0 + (i % 5) as f32 + (i * (j + 1)) as f32 * 1e-4
        })
        .collect()
}

fn payload_of(i: u64) -> Payload {
    let p = json!({
        "kw": format!("k{}", i % 10),
        "n": i % 100,
        "f": (i % 1000) as f64 / 10.0,
        "b": i.is_multiple_of(3),
        "text": format!("Alpha beta-gamma{} delta", i % 7),
        "tags": [format!("t{}", i % 4), format!("t{}", i % 6)],
        "when": format!("2024-01-{:02}T10:00:00Z", 1 + i % 28),
        "maybe": if i.is_multiple_of(9) { Value::Null } else { json!(i) },
    });
    p.as_object().cloned().unwrap_or_default()
}

fn load(shard: &Shard) {
    let changes = (0..3000)
        .map(|i| Change::upsert(PointId::Num(i), 1, vector(i), payload_of(i)))
        .collect();
    shard.commit(changes, false).expect("commit");
    while shard.optimize(1).expect("optimize").is_some() {}
    // Overlays (payload-only changes of sealed points), deletes, and a tail.
    let mut later = Vec::new();
    for i in (0..3000).step_by(37) {
        let mut p = payload_of(i);
        p.insert("kw".into(), json!("k3"));
        p.insert("n".into(), json!(7));
        p.insert("text".into(), json!("overlaid gamma3 words"));
        let mut c = Change::upsert(PointId::Num(i), 2, vector(i), p);
        c.record.vector_version = 1;
        later.push(c);
    }
    for i in (5..3000).step_by(41) {
        later.push(Change::delete(PointId::Num(i), 3));
    }
    for i in 3000..3100 {
        later.push(Change::upsert(PointId::Num(i), 4, vector(i), payload_of(i)));
    }
    shard.commit(later, false).expect("commit");
}

fn filters() -> Vec<Value> {
    vec![
        json!({"must": [{"key": "kw", "match": {"value": "k3"}}]}),
        json!({"must": [{"key": "kw", "match": {"any": ["k1", "k2"]}}]}),
        json!({"must": [{"key": "n", "match": {"value": 7}}]}),
        json!({"must": [{"key": "n", "range": {"gte": 10, "lt": 13}}]}),
        json!({"must": [{"key": "f", "range": {"gt": 50.0}}]}),
        json!({"must": [{"key": "b", "match": {"value": true}}]}),
        json!({"must": [{"key": "tags", "match": {"value": "t5"}}]}),
        json!({"must": [{"key": "text", "match": {"text": "gamma3"}}]}),
        json!({"must": [{"key": "kw", "match": {"value": "k3"}}, {"key": "b", "match": {"value": false}}]}),
        json!({"must": [{"key": "kw", "match": {"value": "k4"}}], "must_not": [{"key": "n", "match": {"value": 14}}]}),
        json!({"must": [{"key": "n", "range": {"lt": 50}}, {"is_empty": {"key": "maybe"}}]}),
        json!({"should": [{"key": "kw", "match": {"value": "k0"}}, {"key": "n", "match": {"value": 1}}]}),
        json!({"must": [{"key": "kw", "match": {"except": ["k0", "k1"]}}]}),
        json!({"must": [{"key": "kw", "match": {"value": "nothing"}}]}),
        json!({"must": [{"key": "n", "match": {"value": 42}}, {"key": "kw", "match": {"value": "k2"}}]}),
        json!({"must": [{"key": "when", "range": {"gte": "2024-01-10", "lt": "2024-01-15T00:00:00Z"}}]}),
        json!({"must_not": [{"key": "when", "range": {"gt": "2024-01-20T09:00:00+01:00"}}]}),
    ]
}

fn schema() -> PayloadSchema {
    [
        ("kw", json!("keyword")),
        (
            "n",
            json!({"type": "integer", "lookup": true, "range": true}),
        ),
        ("f", json!("float")),
        ("b", json!("bool")),
        ("tags", json!("keyword")),
        (
            "text",
            json!({"type": "text", "tokenizer": "word", "lowercase": true}),
        ),
        ("when", json!("datetime")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), FieldSchema::parse(&v).expect("schema")))
    .collect()
}

fn search(shard: &Shard, q: &[f32], filter: &Filter, exact: bool) -> Vec<(PointId, Payload)> {
    let spec = search::SearchSpec {
        vector: q,
        k: 10,
        ef: 64,
        exact,
        filter: Some(filter),
        with_vector: false,
        with_payload: true,
        quantization: Default::default(),
    };
    shard
        .search(&spec)
        .into_iter()
        .map(|h| (h.point.id, (*h.point.payload).clone()))
        .collect()
}

/// Mean recall@10 of the planner against exact filtered search over twenty queries (five let
/// one query in a poorly linked corner of these lattice-like vectors, in a graph built on
/// threads, pull the mean under the bar: 0.86 once in a fresh-clone run); checks that every hit
/// passes the filter as the shard evaluates it.
fn recall(shard: &Shard, filter: &Filter) -> f64 {
    let prepared = shard.prepare_filter(filter).into_owned();
    let (mut hit, mut total) = (0, 0);
    for q in (3u64..3100).step_by(163) {
        let q = vector(q);
        let exact: Vec<PointId> = search(shard, &q, filter, true)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let found = search(shard, &q, filter, false);
        for (id, p) in &found {
            assert!(prepared.matches(id, p), "{id} does not pass {filter:?}");
        }
        hit += found.iter().filter(|(id, _)| exact.contains(id)).count();
        total += exact.len();
    }
    if total == 0 {
        1.0
    } else {
        hit as f64 / total as f64
    }
}

#[test]
fn indexed_and_unindexed_filters_equal_exact_filtered_search() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = shard(&db, dir.path());
    load(&shard);
    let q = vector(1234);
    let mut unindexed = Vec::new();
    for f in filters() {
        let filter: Filter = serde_json::from_value(f.clone()).expect("filter");
        let r = recall(&shard, &filter);
        assert!(r >= 0.9, "unindexed {f}: recall {r}");
        unindexed.push((
            search(&shard, &q, &filter, true),
            shard.count(Some(&filter)),
        ));
    }
    shard.set_payload_schema(schema());
    for (f, (exact_before, count_before)) in filters().into_iter().zip(unindexed) {
        let filter: Filter = serde_json::from_value(f.clone()).expect("filter");
        let r = recall(&shard, &filter);
        assert!(r >= 0.9, "indexed {f}: recall {r}");
        if !f.to_string().contains("\"text\"") {
            // Same answers with the indexes (exact search scores the indexes' candidates).
            let ids = |v: &[(PointId, Payload)]| v.iter().map(|(id, _)| *id).collect::<Vec<_>>();
            assert_eq!(
                ids(&search(&shard, &q, &filter, true)),
                ids(&exact_before),
                "{f}"
            );
            assert_eq!(shard.count(Some(&filter)), count_before, "{f}");
        }
    }
}

#[test]
fn full_text_index_matches_tokens_instead_of_substrings() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = shard(&db, dir.path());
    load(&shard);
    let by_text = |t: &str| {
        let f: Filter =
            serde_json::from_value(json!({"must": [{"key": "text", "match": {"text": t}}]}))
                .expect("filter");
        shard.count(Some(&f))
    };
    // Without an index: substrings ("gamma" is inside "beta-gamma3", "ALPHA" is not "Alpha").
    assert!(by_text("gamma") > 3000);
    assert_eq!(by_text("ALPHA"), 0);
    shard.set_payload_schema(schema());
    // With the word tokenizer and lowercase: whole tokens, any case, all of them.
    assert_eq!(by_text("gamma"), 0);
    assert_eq!(by_text("ALPHA"), by_text("alpha delta"));
    assert!(by_text("alpha") > 2900);
    assert_eq!(
        by_text("gamma3 overlaid"),
        82 - 2,
        "the overlays, less the deleted ones"
    );
}

#[test]
fn payload_index_info_counts_live_points_with_a_value_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("db");
    let exact_before;
    let filter: Filter =
        serde_json::from_value(json!({"must": [{"key": "kw", "match": {"value": "k3"}}]}))
            .expect("filter");
    {
        let db = super::tests::reopen_db(&db_path);
        let shard = shard(&db, dir.path());
        load(&shard);
        shard.set_payload_schema(schema());
        let info = shard.payload_index_info();
        let live = shard.len();
        assert_eq!(info["kw"].1, live);
        assert_eq!(info["kw"].0.data_type, payload_index::FieldType::Keyword);
        let with_maybe = shard.count(Some(
            &serde_json::from_value(json!({"must_not": [{"is_empty": {"key": "maybe"}}]}))
                .expect("filter"),
        ));
        assert_eq!(shard.payload_index_info().len(), 7);
        assert!(with_maybe < live);
        assert!(shard.memory().payload_index > 0);
        exact_before = search(&shard, &vector(9), &filter, true);
        db.flush().unwrap();
    }
    let db = super::tests::reopen_db(&db_path);
    let shard = shard(&db, dir.path());
    shard.set_payload_schema(schema());
    assert_eq!(search(&shard, &vector(9), &filter, true), exact_before);
    shard.set_payload_schema(PayloadSchema::new());
    assert_eq!(shard.memory().payload_index, 0);
    assert_eq!(search(&shard, &vector(9), &filter, true), exact_before);
}

#[test]
fn field_schemas_parse_like_qdrants() {
    let ok = [
        json!("keyword"),
        json!("integer"),
        json!({"type": "integer", "lookup": false, "range": true}),
        json!({"type": "text", "tokenizer": "whitespace", "min_token_len": 2, "max_token_len": 10, "lowercase": false}),
        json!({"type": "keyword", "is_tenant": true}),
        json!("uuid"),
        json!("datetime"),
        json!("bool"),
        json!("float"),
    ];
    for v in ok {
        FieldSchema::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
    }
    let bad = [
        json!("geo"),
        json!("nope"),
        json!(3),
        json!({"lookup": true}),
        json!({"type": "integer", "lookup": false, "range": false}),
        json!({"type": "text", "tokenizer": "prefix"}),
        json!({"type": "keyword", "lookup": true}),
        json!({"type": "text", "min_token_len": "x"}),
    ];
    for v in bad {
        let e = FieldSchema::parse(&v).expect_err("refused");
        assert!(e.starts_with("invalid field_schema"), "{e}");
    }
    assert_eq!(
        payload_index::datetime_micros("1970-01-02T00:00:01Z"),
        Some(86_401e6)
    );
    assert_eq!(
        payload_index::datetime_micros("2024-03-01T01:00:00+01:00"),
        payload_index::datetime_micros("2024-03-01")
    );
    assert_eq!(payload_index::datetime_micros("2024-13-01"), None);
}

/// The field of a facet or order_by with its index type.
fn key(k: &str, kind: payload_index::FieldType) -> facet::IndexedKey {
    facet::IndexedKey::new(k, kind).expect("key path")
}

#[test]
fn facet_counts_and_order_by_are_exact_with_or_without_an_index() {
    use payload_index::FieldType::{Bool, Float, Keyword};
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = shard(&db, dir.path());
    load(&shard);
    // Without the index (a replica whose schema is behind): the same answers, from payloads.
    let sorted = |mut v: Vec<(facet::FacetValue, usize)>| {
        v.sort();
        v
    };
    let answers = || {
        let by_f = shard.scroll_ordered(
            &key("f", Float),
            facet::Direction::Desc,
            None,
            40,
            None,
            false,
        );
        let by_f: Vec<(f64, PointId)> = by_f.into_iter().map(|(x, p)| (x, p.id)).collect();
        (sorted(shard.facet(&key("kw", Keyword), None)), by_f)
    };
    let unindexed = answers();
    shard.set_payload_schema(schema());
    assert_eq!(answers(), unindexed);
    // Facet: the counts a full count per value gives.
    let hits = sorted(shard.facet(&key("kw", Keyword), None));
    assert_eq!(hits.len(), 10);
    for (v, n) in &hits {
        let f: Filter = serde_json::from_value(
            json!({"must": [{"key": "kw", "match": {"value": v.to_json()}}]}),
        )
        .expect("filter");
        assert_eq!(shard.count(Some(&f)), *n, "{v:?}");
    }
    let even: Filter =
        serde_json::from_value(json!({"must": [{"key": "b", "match": {"value": true}}]}))
            .expect("filter");
    let total: usize = shard
        .facet(&key("b", Bool), Some(&even))
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(total, shard.count(Some(&even)));
    let tags = shard.facet(&key("tags", Keyword), None);
    assert_eq!(
        tags.len(),
        6,
        "t0..t5, a point counted once per distinct value"
    );

    // order_by: the values in order, from start_from, filter applied.
    let ordered = |direction, start, filter: Option<&Filter>| {
        shard
            .scroll_ordered(&key("f", Float), direction, start, 50, filter, false)
            .into_iter()
            .map(|(x, p)| (x, p.id))
            .collect::<Vec<_>>()
    };
    let mut all: Vec<(f64, PointId)> = Vec::new();
    for (id, p) in shard
        .scroll(None, 10_000, None, false)
        .into_iter()
        .map(|p| (p.id, p.payload))
    {
        if let Some(x) = p.get("f").and_then(Value::as_f64) {
            all.push((x, id));
        }
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    assert_eq!(
        ordered(facet::Direction::Asc, None, None),
        all[..50].to_vec()
    );
    let from: Vec<_> = all
        .iter()
        .filter(|(x, _)| *x >= 42.0)
        .take(50)
        .cloned()
        .collect();
    assert_eq!(ordered(facet::Direction::Asc, Some(42.0), None), from);
    let desc = ordered(facet::Direction::Desc, Some(42.0), Some(&even));
    assert!(desc.windows(2).all(|w| w[0].0 >= w[1].0));
    assert!(desc.iter().all(|(x, _)| *x <= 42.0));
    assert_eq!(desc.len(), 50);
}

#[test]
fn quoted_keys_with_dots_give_the_same_answers_with_and_without_an_index() {
    // `"a.b"` is the top-level key `a.b`; `a.b` is `b` inside `a`. Both are in every payload,
    // with different values, so an index or a column keyed by the wrong one answers wrong.
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = shard(&db, dir.path());
    let payload = |i: u64, v: u64| {
        json!({"a.b": format!("q{}", i % 10), "a": {"b": format!("q{}", (i + 3) % 10)},
               "x.y": (i * 7) % 50, "x": {"y": i % 50}, "v": v})
        .as_object()
        .cloned()
        .unwrap_or_default()
    };
    let changes = (0..1500)
        .map(|i| Change::upsert(PointId::Num(i), 1, vector(i), payload(i, 1)))
        .collect();
    shard.commit(changes, false).expect("commit");
    while shard.optimize(1).expect("optimize").is_some() {}
    // Overlays (a payload change of sealed points) and a tail.
    let mut later: Vec<Change> = (0..1500)
        .step_by(29)
        .map(|i| {
            let mut c = Change::upsert(PointId::Num(i), 2, vector(i), payload(i + 1, 2));
            c.record.vector_version = 1;
            c
        })
        .collect();
    later
        .extend((1500..1600).map(|i| Change::upsert(PointId::Num(i), 3, vector(i), payload(i, 3))));
    shard.commit(later, false).expect("commit");
    assert!(!shard.state.read().segments.is_empty());

    let filters = [
        json!({"must": [{"key": "\"a.b\"", "match": {"value": "q3"}}]}),
        json!({"must": [{"key": "\"a.b\"", "match": {"any": ["q1", "q7"]}}]}),
        json!({"must": [{"key": "a.b", "match": {"value": "q3"}}]}),
        json!({"must": [{"key": "\"a\".\"b\"", "match": {"value": "q3"}}]}),
        json!({"must": [{"key": "\"x.y\"", "range": {"gte": 10, "lt": 14}}]}),
        json!({"must": [{"key": "x.y", "range": {"gte": 10, "lt": 14}}]}),
        json!({"must": [{"key": "\"a.b\"", "match": {"value": "q3"}}, {"key": "x.y", "match": {"value": 3}}]}),
    ];
    // What the filter means, from the stored payloads (no index, no column, no projection).
    let expected = |f: &Filter| -> Vec<PointId> {
        shard
            .scroll(None, 10_000, None, false)
            .into_iter()
            .filter(|p| f.matches(&p.id, &p.payload))
            .map(|p| p.id)
            .collect()
    };
    let answers = |shard: &Shard| -> Vec<(Vec<PointId>, usize, Vec<PointId>)> {
        filters
            .iter()
            .map(|f| {
                let f: Filter = serde_json::from_value(f.clone()).expect("filter");
                let mut all = shard.select(&Selector::Filter(f.clone()));
                all.sort();
                let top = search(shard, &vector(700), &f, true);
                (
                    all,
                    shard.count(Some(&f)),
                    top.into_iter().map(|(id, _)| id).collect(),
                )
            })
            .collect()
    };
    // Unindexed (implicit columns, keyed by the parsed path).
    let before = answers(&shard);
    for (f, (all, count, _)) in filters.iter().zip(&before) {
        let filter: Filter = serde_json::from_value(f.clone()).expect("filter");
        assert_eq!(*all, expected(&filter), "{f}");
        assert_eq!(*count, all.len(), "{f}");
        assert!(!all.is_empty(), "{f} matches something");
    }
    assert_ne!(
        before[0].0, before[2].0,
        "\"a.b\" and a.b are different fields"
    );
    assert_eq!(before[2].0, before[3].0, "\"a\".\"b\" is a.b");

    // Declared indexes on the quoted keys, named as a client writes them.
    let schema: PayloadSchema = [("\"a.b\"", json!("keyword")), ("\"x.y\"", json!("integer"))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), FieldSchema::parse(&v).expect("schema")))
        .collect();
    shard.set_payload_schema(schema);
    let quoted: Filter = serde_json::from_value(filters[0].clone()).expect("filter");
    for seg in &shard.state.read().segments {
        let c = seg
            .payload_index()
            .candidates(&quoted, seg)
            .expect("indexed");
        assert!(c.exact);
        let by_hand = (0..seg.len() as u32)
            .filter(|&i| seg.payload(i).get("a.b") == Some(&json!("q3")))
            .count();
        assert_eq!(
            c.ids.len(),
            by_hand,
            "the index holds the top-level key a.b"
        );
    }
    assert_eq!(answers(&shard), before);
    for f in &filters {
        let filter: Filter = serde_json::from_value(f.clone()).expect("filter");
        assert!(recall(&shard, &filter) >= 0.9, "{f}");
    }
    // Facets and order_by read the field by path, as filters do.
    use payload_index::FieldType::{Integer, Keyword};
    let facet = shard.facet(&key("\"a.b\"", Keyword), None);
    let q3 = facet
        .iter()
        .find(|(v, _)| v.to_json() == json!("q3"))
        .map(|(_, n)| *n);
    assert_eq!(q3, Some(before[0].1));
    let inner = shard.facet(&key("a.b", Keyword), None);
    let q3_inner = inner
        .iter()
        .find(|(v, _)| v.to_json() == json!("q3"))
        .map(|(_, n)| *n);
    assert_eq!(
        q3_inner,
        Some(before[2].1),
        "a.b is b inside a (no index: from payloads)"
    );
    assert!(
        facet::IndexedKey::new("a..b", Keyword).is_err(),
        "not a key path"
    );
    let ordered = shard.scroll_ordered(
        &key("\"x.y\"", Integer),
        facet::Direction::Asc,
        Some(10.0),
        5,
        None,
        false,
    );
    assert!(ordered
        .iter()
        .all(|(x, p)| *x >= 10.0 && p.payload["x.y"] == json!(*x as u64)));
    assert_eq!(shard.payload_index_info()["\"a.b\""].1, shard.len());
}

#[test]
fn indexes_of_a_reopened_shard_arrive_in_the_background_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = Arc::new(shard(&db, dir.path()));
    load(&shard);
    let filters: Vec<Filter> = (filters().into_iter())
        .filter(|f| !f.to_string().contains("\"text\""))
        .map(|f| serde_json::from_value(f).expect("filter"))
        .collect();
    let unindexed: Vec<usize> = filters.iter().map(|f| shard.count(Some(f))).collect();
    shard.set_payload_schema_in_background(schema());
    // At once: the schema is in force, answers are the same whether or not a segment's
    // indexes are back yet.
    assert_eq!(shard.payload_schema().len(), schema().len());
    let counts = || {
        filters
            .iter()
            .map(|f| shard.count(Some(f)))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(), unindexed);
    let started = std::time::Instant::now();
    let built = || {
        let segments = shard.state.read().segments.clone();
        (segments.iter()).all(|s| s.payload_index().fields.len() == schema().len())
    };
    while !built() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the background build never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(counts(), unindexed);
}

#[test]
fn a_uuid_index_answers_like_no_index_for_values_that_are_not_uuids() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = shard(&db, dir.path());
    let uuid_of = |i: u64| format!("{:08x}-0000-4000-8000-{:012x}", i % 5, i % 5);
    let changes = (0..1200)
        .map(|i| {
            let u = match i % 4 {
                0 => json!("x"),
                1 => json!(["x", uuid_of(i)]),
                2 => json!(uuid_of(i).to_uppercase()),
                _ => json!(uuid_of(i)),
            };
            let p = json!({"u": u}).as_object().cloned().unwrap_or_default();
            Change::upsert(PointId::Num(i), 1, vector(i), p)
        })
        .collect();
    shard.commit(changes, false).expect("commit");
    while shard.optimize(1).expect("optimize").is_some() {}
    let filters = [
        json!({"must": [{"key": "u", "match": {"value": "x"}}]}),
        json!({"must": [{"key": "u", "match": {"any": ["x", uuid_of(3)]}}]}),
        json!({"must": [{"key": "u", "match": {"value": uuid_of(2)}}]}),
        json!({"must": [{"key": "u", "match": {"value": uuid_of(2).to_uppercase()}}]}),
        json!({"must": [{"key": "u", "match": {"value": "not-a-uuid"}}]}),
    ];
    let answers = |shard: &Shard| {
        filters
            .iter()
            .map(|f| {
                let f: Filter = serde_json::from_value(f.clone()).expect("filter");
                (shard.count(Some(&f)), search(shard, &vector(7), &f, false))
            })
            .collect::<Vec<_>>()
    };
    let without = answers(&shard);
    assert_eq!(without[0].0, 600, "\"x\" alone and in a list");
    let schema: PayloadSchema = [(
        "u".to_string(),
        FieldSchema::parse(&json!("uuid")).expect("uuid"),
    )]
    .into_iter()
    .collect();
    shard.set_payload_schema(schema);
    assert_eq!(answers(&shard), without);
}

/// 4000 points of 16 dimensions around 20 centres, with `r` (a hash of the id mod 100:
/// independent of the vectors) and `c` (5 × the point's cluster: `c < 5 p` is p of the 20
/// clusters, correlated with the vectors), in one segment; and 40 queries, two near each centre.
fn clustered_shard(db: &sled::Db, dir: &Path) -> (Shard, Vec<Vec<f32>>) {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let shard = {
        let config = ShardConfig {
            full_scan_threshold: 60,
            ..ShardConfig::new(16, Metric::Euclid, HnswParams::default())
        };
        let store = Store::from_db(db.clone());
        Shard::open(&store, "c", dir, config, Arc::new(VersionClock::default())).expect("open")
    };
    let mut rng = StdRng::seed_from_u64(3);
    let centres: Vec<f32> = (0..20 * 16).map(|_| rng.gen_range(-8.0..8.0)).collect();
    let changes = (0..4000u64)
        .map(|i| {
            let c = rng.gen_range(0..20usize);
            let v = (0..16)
                .map(|j| centres[c * 16 + j] + rng.gen_range(-1.0f32..1.0))
                .collect();
            let r = (i.wrapping_mul(2_654_435_761) >> 8) % 100;
            let p = json!({"r": r, "c": 5 * c}).as_object().cloned();
            Change::upsert(PointId::Num(i), 1, v, p.unwrap_or_default())
        })
        .collect();
    shard.commit(changes, false).expect("commit");
    while shard.optimize(1).expect("optimize").is_some() {}
    let queries = (0..40)
        .map(|q| {
            let c = q % 20;
            let v = (0..16).map(|j| centres[c * 16 + j] + rng.gen_range(-1.0f32..1.0));
            v.collect::<Vec<f32>>()
        })
        .collect();
    (shard, queries)
}

/// Mean recall@10 against exact filtered search over `queries`.
fn recall_of(shard: &Shard, queries: &[Vec<f32>], filter: &Filter) -> f64 {
    let (mut hit, mut total) = (0, 0);
    for q in queries {
        let ids = |exact| {
            search(shard, q, filter, exact)
                .into_iter()
                .map(|(id, _)| id)
        };
        let truth: Vec<PointId> = ids(true).collect();
        hit += ids(false).filter(|id| truth.contains(id)).count();
        total += truth.len();
    }
    hit as f64 / total.max(1) as f64
}

/// The planner's choice and every plan forced (exact scoring, the members-only walk where
/// the members are spread evenly around the query and exact scoring elsewhere, the per-query
/// walk, the whole-graph walk, the members-only walk) meet recall@10 ≥ 0.95 against exact filtered
/// search, for filters independent of the vectors and filters whose members sit in a few
/// clusters (most queries far from them), on implicit columns and on declared indexes.
#[test]
fn the_planner_and_the_graph_walk_meet_recall_on_independent_and_correlated_filters() {
    use search::{force_plan, Plan};
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let (shard, queries) = clustered_shard(&db, dir.path());
    let range = json!({"type": "integer", "lookup": false, "range": true});
    let range = FieldSchema::parse(&range).expect("schema");
    for indexed in [false, true] {
        if indexed {
            let schema = ["r", "c"].map(|k| (k.to_string(), range.clone()));
            shard.set_payload_schema(schema.into_iter().collect());
        }
        for (key, pct) in [
            ("r", 5),
            ("r", 10),
            ("r", 30),
            ("c", 5),
            ("c", 10),
            ("c", 30),
        ] {
            let f = json!({"must": [{"key": key, "range": {"lt": pct}}]});
            let filter: Filter = serde_json::from_value(f.clone()).expect("filter");
            let plans = [
                Plan::Exact,
                Plan::EvenWalk,
                Plan::Walk,
                Plan::Graph,
                Plan::Members,
            ];
            for plan in std::iter::once(None).chain(plans.map(Some)) {
                force_plan(plan);
                let r = recall_of(&shard, &queries, &filter);
                force_plan(None);
                assert!(r >= 0.95, "{f} indexed {indexed} plan {plan:?}: recall {r}");
            }
        }
    }
}

/// Few candidates are scored exactly, more are found by walking the graph (whole or members
/// only, chosen per query: `index::members_are_rare_near`): above the smaller of
/// `full_scan_threshold` and √(32·ef·n) the walk chosen per query; below it, exact scoring up
/// to 60·ef candidates whatever the segment's size, the members-only walk above where the
/// query finds them spread evenly (exact scoring otherwise) — so a 10 % filter costs about
/// an unfiltered walk in a segment of 100 000 and of 313 592 alike.
#[test]
fn the_planner_scores_exactly_up_to_the_break_even() {
    use search::{even_walk_break_even, exact_break_even, plan, Plan};
    assert_eq!(exact_break_even(100_000, 100), 17_888);
    assert_eq!(exact_break_even(1_000_000, 100), 56_568);
    assert_eq!(even_walk_break_even(100), 6_000);
    assert_eq!(plan(6_000, 100_000, 100, 40_000), Plan::Exact);
    assert_eq!(plan(6_001, 100_000, 100, 40_000), Plan::EvenWalk);
    assert_eq!(plan(17_888, 100_000, 100, 40_000), Plan::EvenWalk);
    assert_eq!(plan(17_889, 100_000, 100, 40_000), Plan::Walk);
    // 10 % of the largest segment at 64 dimensions on 2 CPUs: walked where spread evenly.
    assert_eq!(plan(31_359, 313_592, 100, 40_000), Plan::EvenWalk);
    assert_eq!(plan(40_000, 1_000_000, 100, 40_000), Plan::EvenWalk);
    assert_eq!(plan(40_001, 1_000_000, 100, 40_000), Plan::Walk);
    // `full_scan_threshold` (3 333 points of 768 dimensions by default) still caps both.
    assert_eq!(plan(3_333, 60_000, 100, 3_333), Plan::Exact);
    assert_eq!(plan(3_334, 60_000, 100, 3_333), Plan::Walk);
    assert_eq!(plan(60, 4_000, 64, 60), Plan::Exact);
    assert_eq!(plan(61, 4_000, 64, 60), Plan::Walk);
    // A larger beam makes the walk dearer: more is scored exactly.
    assert_eq!(plan(12_000, 100_000, 200, 40_000), Plan::Exact);
    assert_eq!(plan(12_001, 100_000, 200, 40_000), Plan::EvenWalk);
}

/// On these lattice-like vectors (points equal mod 485 are near-duplicates, linked mostly to
/// each other) the members of a filter are split into pieces two hops do not join: the
/// members-only walk runs out of members before its beam is full and hands over to the whole
/// graph instead of answering from the pieces it reached (it gave recall 0.78 on `n` in
/// [10, 13) before it did).
#[test]
fn every_walk_meets_recall_where_members_are_split_into_pieces() {
    use search::{force_plan, Plan};
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = shard(&db, dir.path());
    load(&shard);
    let filters = [
        json!({"must": [{"key": "n", "range": {"gte": 10, "lt": 13}}]}),
        json!({"must": [{"key": "n", "match": {"value": 7}}]}),
        json!({"must": [{"key": "kw", "match": {"value": "k3"}}, {"key": "b", "match": {"value": false}}]}),
    ];
    for f in filters {
        let filter: Filter = serde_json::from_value(f.clone()).expect("filter");
        for plan in [Plan::Walk, Plan::Graph, Plan::Members] {
            force_plan(Some(plan));
            let r = recall(&shard, &filter);
            force_plan(None);
            assert!(r >= 0.9, "{f} {plan:?}: recall {r}");
        }
    }
}
