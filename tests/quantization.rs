//! Scalar int8 quantization through the REST API: the config is accepted, reported back and used;
//! searches meet recall against brute force with and without rescoring options; what shoal does
//! not support is refused, never ignored.

mod common;
use common::{vectors, Node};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn ids(v: &Value) -> Vec<u64> {
    v["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["id"].as_u64().expect("id"))
        .collect()
}

#[test]
fn int8_collections_are_configured_reported_and_searched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("n"), &["--indexing-threshold", "1000"]);
    for (bad, what) in [
        (json!({"product": {"compression": "x16"}}), "product"),
        (json!({"scalar": {"type": "int4"}}), "int8"),
        (
            json!({"scalar": {"type": "int8", "quantile": 0.2}}),
            "quantile",
        ),
    ] {
        let (status, body) = node.call(
            "PUT",
            "/collections/bad",
            Some(json!({"vectors": {"size": 8, "distance": "Cosine"}, "quantization_config": bad})),
        );
        assert_eq!(status, 400, "{body}");
        assert!(
            body["status"]["error"]
                .as_str()
                .unwrap_or("")
                .contains(what),
            "{body}"
        );
    }
    node.ok(
        "PUT",
        "/collections/q",
        Some(json!({"vectors": {"size": 32, "distance": "Euclid"},
                    "quantization_config": {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": true}}})),
    );
    let n = 3000;
    let data = vectors(n, 32, 5);
    let points: Vec<Value> = (0..n)
        .map(|i| json!({"id": i, "vector": data[i]}))
        .collect();
    node.ok(
        "PUT",
        "/collections/q/points?wait=true",
        Some(json!({ "points": points })),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let info = loop {
        let i = node.ok("GET", "/collections/q", None);
        if i["status"] == "green" && i["indexed_vectors_count"] == n {
            break i;
        }
        assert!(Instant::now() < deadline, "never indexed: {i}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        info["config"]["quantization_config"],
        json!({"scalar": {"type": "int8", "quantile": 0.99, "always_ram": true}})
    );
    let mut hits = [0usize; 3];
    let queries = vectors(30, 32, 77);
    for q in &queries {
        let exact = ids(&node.ok(
            "POST",
            "/collections/q/points/query",
            Some(json!({"query": q, "limit": 10, "params": {"exact": true}})),
        ));
        for (k, params) in [
            json!({}),
            json!({"quantization": {"rescore": true, "oversampling": 2.0}}),
            json!({"quantization": {"ignore": true}}),
        ]
        .iter()
        .enumerate()
        {
            let got = ids(&node.ok(
                "POST",
                "/collections/q/points/query",
                Some(json!({"query": q, "limit": 10, "params": params})),
            ));
            hits[k] += got.iter().filter(|id| exact.contains(id)).count();
        }
    }
    for (k, h) in hits.iter().enumerate() {
        let recall = *h as f64 / (10 * queries.len()) as f64;
        assert!(recall >= 0.9, "params #{k}: recall@10 {recall}");
    }
    let (status, body) = node.call(
        "POST",
        "/collections/q/points/query",
        Some(json!({"query": queries[0], "params": {"quantization": {"oversampling": 0.5}}})),
    );
    assert_eq!(status, 400, "{body}");
}
