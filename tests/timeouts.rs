//! `--request-timeout-secs` stops a search or a facet that overruns, rather than only answering
//! 504 while the read runs on: a heavy exact search or facet (every point through an expensive
//! filter) on a node with one worker and a short timeout gets its 504, the node counts the read
//! it stopped, and it keeps serving.

mod common;
use common::{vectors, Node};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const DIM: usize = 32;
const POINTS: usize = 40_000;

/// Reads the node stopped for their deadline, from `/metrics` (summed over their labels).
fn reads_stopped(node: &Node) -> f64 {
    let metrics = node
        .http
        .get(node.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    metrics
        .lines()
        .filter(|l| l.starts_with("shoal_reads_stopped_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A node whose every point stays in the exact-scan tail, with one worker and a 1 s request
/// timeout, holding [`POINTS`] points with an integer `n` and a keyword `kw` (indexed).
fn heavy_node(tmp: &tempfile::TempDir) -> (Node, Vec<Vec<f32>>) {
    let node = Node::start(
        &tmp.path().join("node"),
        &[
            "--request-timeout-secs",
            "1",
            "--workers",
            "1",
            "--indexing-threshold",
            "1000000",
        ],
    );
    node.create_collection("heavy", DIM, "Euclid");
    node.ok(
        "PUT",
        "/collections/heavy/index?wait=true",
        Some(json!({"field_name": "kw", "field_schema": "keyword"})),
    );
    let all = vectors(POINTS, DIM, 7);
    for (chunk, vs) in all.chunks(1_000).enumerate() {
        let points: Vec<Value> = vs
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = chunk * 1_000 + i;
                json!({"id": id, "vector": v, "payload": {"n": id, "kw": format!("k{}", id % 10)}})
            })
            .collect();
        node.ok(
            "PUT",
            "/collections/heavy/points?wait=true",
            Some(json!({ "points": points })),
        );
    }
    (node, all)
}

/// Each point's payload checked against 10 000 text alternatives none of them holds (value
/// alternatives would be merged into one set lookup): seconds of work, and no point passes.
fn heavy_filter() -> Value {
    let none_of: Vec<Value> = (0..10_000)
        .map(|i| json!({"key": "n", "match": {"text": format!("t{i}")}}))
        .collect();
    json!({"should": none_of})
}

/// Waits (bounded) until the node counts a read stopped since `before`, and checks that it
/// still serves.
fn assert_stopped_and_serving(node: &Node, before: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reads_stopped(node) <= before {
        assert!(Instant::now() < deadline, "the read was never stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(node.count("heavy"), POINTS as u64);
}

#[test]
fn a_search_past_the_request_timeout_gets_a_504_and_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, all) = heavy_node(&tmp);
    let before = reads_stopped(&node);

    // No point passes the filter, so none can be skipped as too far from the query to enter
    // the top k (the tail's filter is checked only on points that would).
    let heavy = json!({
        "vector": all[0],
        "limit": 10,
        "params": {"exact": true},
        "filter": heavy_filter(),
    });
    let (status, answer) = node.call("POST", "/collections/heavy/points/search", Some(heavy));
    assert_eq!(status, 504, "{answer}");
    let error = answer["status"]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("Timeout"), "{answer}");

    // The node stopped the search (not only the answer) and serves the next requests.
    assert_stopped_and_serving(&node, before);
    let light = json!({"vector": all[1], "limit": 3, "filter": {"must": [{"key": "n", "match": {"value": 1}}]}});
    let hits = node.ok("POST", "/collections/heavy/points/search", Some(light));
    assert_eq!(hits[0]["id"], 1, "{hits}");
}

#[test]
fn a_facet_past_the_request_timeout_gets_a_504_and_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, _) = heavy_node(&tmp);
    let before = reads_stopped(&node);
    let heavy = json!({"key": "kw", "filter": heavy_filter()});
    let (status, answer) = node.call("POST", "/collections/heavy/facet", Some(heavy));
    assert_eq!(status, 504, "{answer}");
    let error = answer["status"]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("Timeout"), "{answer}");
    assert_stopped_and_serving(&node, before);
    let light = node.ok(
        "POST",
        "/collections/heavy/facet",
        Some(json!({"key": "kw"})),
    );
    assert_eq!(light["hits"].as_array().map(Vec::len), Some(10), "{light}");
}
