//! Durability: acknowledged writes survive `kill -9`, and a restart reopens the HNSW segments
//! instead of rebuilding them.

mod common;
use common::{vectors, Node};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

fn info(node: &Node, c: &str) -> Value {
    node.ok("GET", &format!("/collections/{c}"), None)
}

#[test]
fn acknowledged_upserts_survive_kill_9_during_ingest() {
    let dir = tempfile::tempdir().unwrap();
    // A low threshold makes segment builds happen during the ingest, so the kill can land mid-build.
    let mut node = Node::start(&dir.path().join("n"), &["--indexing-threshold", "300"]);
    node.create_collection("c", 8, "Cosine");

    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (acked, stop, batches) =
                (Arc::clone(&acked), Arc::clone(&stop), Arc::clone(&batches));
            let url = node.url("/collections/c/points?wait=true");
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut b = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<u64> = (0..50).map(|i| w * 1_000_000 + b * 50 + i).collect();
                    let vs = vectors(50, 8, w * 1000 + b);
                    let points: Vec<Value> = ids
                        .iter()
                        .zip(vs)
                        .map(|(id, v)| json!({"id": id, "vector": v, "payload": {"w": w}}))
                        .collect();
                    match http.put(&url).json(&json!({ "points": points })).send() {
                        Ok(r) if r.status().is_success() => {
                            acked.lock().unwrap().extend(ids);
                            batches.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => break, // the node is gone: this batch was never acknowledged
                    }
                    b += 1;
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while batches.load(Ordering::Relaxed) < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writers did not get 40 batches acknowledged"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 2000);

    node.restart_after_kill9();
    let ids: Vec<Value> = acked.iter().map(|i| json!(i)).collect();
    let found = node.ok(
        "POST",
        "/collections/c/points",
        Some(json!({"ids": ids, "with_payload": false})),
    );
    let found = found.as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(
        found,
        acked.len(),
        "every acknowledged point must survive kill -9"
    );
    assert!(node.count("c") as usize >= acked.len());
}

#[test]
fn restart_reopens_segments_without_rebuilding() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(&dir.path().join("n"), &["--indexing-threshold", "500"]);
    node.create_collection("c", 16, "Euclid");
    let vs = vectors(2000, 16, 7);
    for chunk in 0..4 {
        let points: Vec<Value> = (chunk * 500..(chunk + 1) * 500)
            .map(|i| json!({"id": i, "vector": vs[i], "payload": {"i": i}}))
            .collect();
        node.ok(
            "PUT",
            "/collections/c/points?wait=true",
            Some(json!({ "points": points })),
        );
    }
    // Wait for the background optimizer to index everything.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while info(&node, "c")["indexed_vectors_count"].as_u64() != Some(2000) {
        assert!(
            std::time::Instant::now() < deadline,
            "index never built: {}",
            info(&node, "c")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Writes after the last build stay in the tail and are replayed on open.
    let late: Vec<Value> = (2000..2050)
        .map(|i| json!({"id": i, "vector": vectors(1, 16, i as u64)[0]}))
        .collect();
    node.ok(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({ "points": late })),
    );
    node.ok(
        "POST",
        "/collections/c/points/delete?wait=true",
        Some(json!({"points": [5, 6, 7]})),
    );
    let query = json!({"query": vs[5], "limit": 10, "params": {"exact": true}});
    let before = node.ok("POST", "/collections/c/points/query", Some(query.clone()));
    let segments_before = info(&node, "c")["segments_count"].clone();

    for restart in [Node::restart as fn(&mut Node), Node::restart_after_kill9] {
        restart(&mut node);
        // Immediately after readiness the segments are already indexed: reloaded, not rebuilt.
        let i = info(&node, "c");
        assert_eq!(i["points_count"], 2047, "{i}");
        assert_eq!(i["segments_count"], segments_before, "{i}");
        assert_eq!(i["indexed_vectors_count"].as_u64(), Some(1997), "{i}");
        assert_eq!(
            node.ok("POST", "/collections/c/points/query", Some(query.clone())),
            before
        );
        let hnsw = node.ok(
            "POST",
            "/collections/c/points/query",
            Some(json!({"query": vs[100], "limit": 1})),
        );
        assert_eq!(hnsw["points"][0]["id"], 100);
    }
}
