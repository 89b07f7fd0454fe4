//! Payload indexes end to end, through real `shoal` processes: an index made through one node of
//! a 3-node cluster reaches every node (and one that was down when it changed), facets and
//! `order_by` through any node are exact over all shards, filtered search keeps its recall
//! against exact filtered search; and a node killed with `kill -9` comes back with its indexes.

mod common;
use common::cluster::TestCluster;
use common::{eventually, numbered, vectors, Node};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const DIM: usize = 16;

/// The payload of point `i`: a keyword of 20 values (`kw` = "k3" holds 5 % of the points), an
/// integer, a float, and a tag list.
fn payload(i: u64) -> Value {
    json!({
        "kw": format!("k{}", i % 20),
        "n": i % 97,
        "f": (i % 1000) as f64 / 10.0,
        "tags": [format!("t{}", i % 3), format!("t{}", i % 5)],
    })
}

fn upsert(node: &Node, n: usize) -> Vec<(u64, Vec<f32>)> {
    let data: Vec<(u64, Vec<f32>)> = numbered(0, n, DIM, 42);
    for chunk in data.chunks(500) {
        let points: Vec<Value> = chunk
            .iter()
            .map(|(id, v)| json!({"id": id, "vector": v, "payload": payload(*id)}))
            .collect();
        node.ok(
            "PUT",
            "/collections/c/points?wait=true",
            Some(json!({ "points": points })),
        );
    }
    data
}

/// `payload_schema` without the per-node point counts: field → (data_type, params).
fn schema_of(node: &Node) -> BTreeMap<String, (Value, Value)> {
    let info = node.ok("GET", "/collections/c", None);
    info["payload_schema"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), (v["data_type"].clone(), v["params"].clone())))
                .collect()
        })
        .unwrap_or_default()
}

fn create_index(node: &Node, field: &str, schema: Value) {
    let r = node.ok(
        "PUT",
        "/collections/c/index?wait=true",
        Some(json!({"field_name": field, "field_schema": schema})),
    );
    assert_eq!(r["status"], "completed", "{r}");
}

/// What a facet on `kw` must answer, counted by hand: the 10 most frequent, ties by value.
fn expected_facet(data: &[(u64, Vec<f32>)], keep: impl Fn(u64) -> bool) -> Vec<(String, u64)> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (id, _) in data.iter().filter(|(id, _)| keep(*id)) {
        *counts.entry(format!("k{}", id % 20)).or_default() += 1;
    }
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(10);
    v
}

fn facet(node: &Node, body: Value) -> Vec<(String, u64)> {
    let r = node.ok("POST", "/collections/c/facet", Some(body));
    r["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| {
                    (
                        h["value"].as_str().unwrap_or_default().to_string(),
                        h["count"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `(f, id)` of the points scroll returns with `order_by` on `f`.
fn ordered(node: &Node, order_by: Value, filter: Option<Value>) -> Vec<(f64, u64)> {
    let mut body = json!({"limit": 40, "order_by": order_by, "with_payload": true});
    if let Some(f) = filter {
        body["filter"] = f;
    }
    let r = node.ok("POST", "/collections/c/points/scroll", Some(body));
    assert!(r["next_page_offset"].is_null(), "{r}");
    r["points"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let x = p["order_value"].as_f64().unwrap_or(f64::NAN);
                    assert_eq!(p["payload"]["f"].as_f64(), Some(x), "{p}");
                    (x, p["id"].as_u64().unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn expected_order(
    data: &[(u64, Vec<f32>)],
    desc: bool,
    from: f64,
    keep: impl Fn(u64) -> bool,
) -> Vec<(f64, u64)> {
    let mut v: Vec<(f64, u64)> = data
        .iter()
        .filter(|(id, _)| keep(*id))
        .map(|(id, _)| ((id % 1000) as f64 / 10.0, *id))
        .filter(|(x, _)| if desc { *x <= from } else { *x >= from })
        .collect();
    v.sort_by(|a, b| {
        let by_value = if desc {
            b.0.total_cmp(&a.0)
        } else {
            a.0.total_cmp(&b.0)
        };
        by_value.then(a.1.cmp(&b.1))
    });
    v.truncate(40);
    v
}

fn brute_force(data: &[(u64, Vec<f32>)], q: &[f32], keep: impl Fn(u64) -> bool) -> Vec<u64> {
    let mut d: Vec<(f32, u64)> = data
        .iter()
        .filter(|(id, _)| keep(*id))
        .map(|(id, v)| {
            let d = v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
            (d, *id)
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(10).map(|(_, id)| id).collect()
}

/// Mean recall@10 of filtered search through `node` against exact filtered search by hand.
fn filtered_recall(
    node: &Node,
    data: &[(u64, Vec<f32>)],
    filter: &Value,
    keep: impl Fn(u64) -> bool + Copy,
) -> f64 {
    let (mut hit, mut total) = (0, 0);
    for q in vectors(10, DIM, 7) {
        let exact = brute_force(data, &q, keep);
        let r = node.ok(
            "POST",
            "/collections/c/points/query",
            Some(json!({"query": q, "limit": 10, "filter": filter})),
        );
        let found: Vec<u64> = r["points"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
            .unwrap_or_default();
        assert!(
            found.iter().all(|id| keep(*id)),
            "{found:?} through {}",
            node.addr
        );
        hit += found.iter().filter(|id| exact.contains(id)).count();
        total += exact.len();
    }
    hit as f64 / total as f64
}

#[test]
fn an_index_made_through_one_node_serves_every_node_and_a_node_that_was_down() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(root.path(), 3, 111, &["--indexing-threshold", "400"]);
    cluster.nodes[0].ok(
        "PUT",
        "/collections/c",
        Some(json!({"vectors": {"size": DIM, "distance": "Euclid"}, "shard_number": 6, "replication_factor": 2})),
    );
    let data = upsert(&cluster.nodes[1], 4000);
    eventually("segments built", || {
        let i = cluster.nodes[1].ok("GET", "/collections/c", None);
        (
            i["status"] == "green" && i["segments_count"].as_u64() > Some(0),
            i,
        )
    });

    // Through node 0: every node reports the same schema, every node's replicas built it.
    create_index(&cluster.nodes[0], "kw", json!("keyword"));
    create_index(
        &cluster.nodes[0],
        "f",
        json!({"type": "float", "is_principal": false}),
    );
    create_index(&cluster.nodes[0], "n", json!("integer"));
    let schema = schema_of(&cluster.nodes[0]);
    assert_eq!(schema.len(), 3, "{schema:?}");
    assert_eq!(schema["kw"].0, "keyword");
    assert_eq!(schema["f"].1["type"], "float");
    for node in &cluster.nodes {
        assert_eq!(schema_of(node), schema, "through {}", node.addr);
        let info = node.ok("GET", "/collections/c", None);
        let local = info["points_count"].as_u64().unwrap_or_default();
        assert!(local > 0);
        assert_eq!(
            info["payload_schema"]["kw"]["points"].as_u64(),
            Some(local),
            "every local point has kw: {info}"
        );
    }

    // Facets and order_by through any node: exact over all six shards.
    let k3 = |id: u64| id % 20 == 3;
    let filter_k3 = json!({"must": [{"key": "kw", "match": {"value": "k3"}}]});
    let tags_t1 = json!({"must": [{"key": "tags", "match": {"value": "t1"}}]});
    let has_t1 = |id: u64| id % 3 == 1 || id % 5 == 1;
    for node in &cluster.nodes {
        assert_eq!(
            facet(node, json!({"key": "kw", "limit": 10})),
            expected_facet(&data, |_| true)
        );
        assert_eq!(
            facet(node, json!({"key": "kw", "filter": tags_t1, "exact": true})),
            expected_facet(&data, has_t1)
        );
        assert_eq!(
            ordered(node, json!("f"), None),
            expected_order(&data, false, f64::MIN, |_| true)
        );
        assert_eq!(
            ordered(
                node,
                json!({"key": "f", "direction": "desc", "start_from": 50.5}),
                Some(tags_t1.clone())
            ),
            expected_order(&data, true, 50.5, has_t1)
        );
        // Filtered search on an indexed (5 %) and an unindexed (tags, 47 %) field keeps its
        // recall against exact filtered search.
        let r = filtered_recall(node, &data, &filter_k3, k3);
        assert!(
            r >= 0.95,
            "indexed filter: recall {r} through {}",
            node.addr
        );
        let r = filtered_recall(node, &data, &tags_t1, has_t1);
        assert!(
            r >= 0.95,
            "unindexed filter: recall {r} through {}",
            node.addr
        );
    }

    // A node down while the schema changes learns the change from its peers' catalogs.
    cluster.nodes[2].stop();
    cluster.nodes[1].ok("DELETE", "/collections/c/index/n?wait=true", None);
    create_index(&cluster.nodes[1], "tags", json!("keyword"));
    let changed = schema_of(&cluster.nodes[0]);
    assert!(changed.contains_key("tags") && !changed.contains_key("n"));
    cluster.nodes[2].spawn();
    eventually("shoal-2 caught up with the schema", || {
        let seen = schema_of(&cluster.nodes[2]);
        (seen == changed, seen)
    });
    let tags = facet(&cluster.nodes[2], json!({"key": "tags"}));
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (id, _) in &data {
        let mut t = vec![format!("t{}", id % 3), format!("t{}", id % 5)];
        t.dedup();
        for v in t {
            *expected.entry(v).or_default() += 1;
        }
    }
    let mut expected: Vec<(String, u64)> = expected.into_iter().collect();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert_eq!(tags, expected, "a point counted once per distinct value");
}

#[test]
fn payload_indexes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(&dir.path().join("n"), &["--indexing-threshold", "300"]);
    node.ok(
        "PUT",
        "/collections/c",
        Some(json!({"vectors": {"size": DIM, "distance": "Euclid"}})),
    );
    let data = upsert(&node, 2000);
    create_index(&node, "kw", json!("keyword"));
    create_index(&node, "f", json!({"type": "float"}));
    create_index(
        &node,
        "n",
        json!({"type": "integer", "lookup": true, "range": false}),
    );
    node.ok("DELETE", "/collections/c/index/n?wait=true", None);
    let schema = schema_of(&node);
    let filter = json!({"must": [{"key": "kw", "match": {"value": "k3"}}, {"key": "f", "range": {"lt": 40.0}}]});
    let count = |node: &Node| {
        node.ok(
            "POST",
            "/collections/c/points/count",
            Some(json!({"filter": filter, "exact": true})),
        )["count"]
            .as_u64()
    };
    let before = (
        count(&node),
        facet(&node, json!({"key": "kw", "limit": 20})),
    );
    assert_eq!(
        before.0,
        Some(
            data.iter()
                .filter(|(id, _)| id % 20 == 3 && ((id % 1000) as f64 / 10.0) < 40.0)
                .count() as u64
        )
    );

    node.restart_after_kill9();
    assert_eq!(schema_of(&node), schema, "the schema as acknowledged");
    assert_eq!(
        (
            count(&node),
            facet(&node, json!({"key": "kw", "limit": 20}))
        ),
        before
    );
    assert_eq!(
        ordered(&node, json!("f"), None),
        expected_order(&data, false, f64::MIN, |_| true)
    );
    let (status, e) = node.call(
        "POST",
        "/collections/c/points/scroll",
        Some(json!({"order_by": "n"})),
    );
    assert_eq!(status, 400, "the deleted index stays deleted: {e}");
}

/// A facet over as many distinct values as points is refused with a 400 naming the memory
/// budget (each shard stops counting before its values outgrow its share of the request's
/// memory), where facets over fewer values answer. (A facet past its deadline: `timeouts.rs`.)
#[test]
fn a_facet_over_too_many_distinct_values_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // 2 MB per request: a one-shard facet may hold 0.5 MB of values, ~4 700 of 40 bytes.
    let node = Node::start(
        &tmp.path().join("n"),
        &["--request-memory-budget-bytes", "2000000"],
    );
    node.create_collection("c", 2, "Dot");
    create_index(&node, "kw", json!("keyword"));
    create_index(&node, "ten", json!("keyword"));
    let n = 20_000u64;
    let ids: Vec<u64> = (0..n).collect();
    for chunk in ids.chunks(2000) {
        let points: Vec<Value> = (chunk.iter())
            .map(|i| json!({"id": i, "vector": [1.0, *i as f32], "payload": {"kw": format!("{i:040}"), "ten": format!("t{}", i % 10)}}))
            .collect();
        node.ok(
            "PUT",
            "/collections/c/points?wait=true",
            Some(json!({ "points": points })),
        );
    }
    let (status, answer) = node.call(
        "POST",
        "/collections/c/facet",
        Some(json!({"key": "kw", "limit": 10})),
    );
    assert_eq!(status, 400, "{answer}");
    let error = answer["status"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`kw`") && error.contains("--request-memory-budget-bytes"),
        "{answer}"
    );
    let tens = facet(&node, json!({"key": "ten", "limit": 20}));
    assert_eq!(tens.len(), 10);
    assert!(tens.iter().all(|(_, count)| *count == n / 10), "{tens:?}");
    let three = facet(
        &node,
        json!({"key": "kw", "filter": {"must": [{"has_id": [1, 2, 3]}]}}),
    );
    let expected: Vec<(String, u64)> = (1..=3).map(|i| (format!("{i:040}"), 1)).collect();
    assert_eq!(three, expected);
}
