//! A data dir written by the previous storage format (hnsw_rs dumps) opens with nothing lost, is
//! re-indexed into the current format, and then reopens from that.

mod common;
use common::Node;
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v0-410c277");

fn unpack(to: &Path) -> Value {
    let file = std::fs::File::open(Path::new(FIXTURE).join("data.tar.gz")).expect("fixture");
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(to)
        .expect("unpack fixture");
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(Path::new(FIXTURE).join("expected.json.gz")).expect("expected"),
    )
    .read_to_string(&mut text)
    .expect("read expected");
    serde_json::from_str(&text).expect("expected json")
}

fn check(node: &Node, expected: &Value) {
    for (name, want) in expected.as_object().expect("collections") {
        let got = node.ok(
            "POST",
            &format!("/collections/{name}/points/scroll"),
            Some(json!({"limit": 10000, "with_payload": true, "with_vector": true})),
        );
        assert_eq!(
            got["points"], want["points"],
            "collection {name}: points differ"
        );
        let dim = want["points"][0]["vector"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        let q = node.ok(
            "POST",
            &format!("/collections/{name}/points/query"),
            Some(json!({"query": vec![0.1; dim], "limit": 10, "params": {"exact": true}})),
        );
        let ids: Vec<Value> = q["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| p["id"].clone())
            .collect();
        assert_eq!(
            Value::from(ids),
            want["exact_query"],
            "collection {name}: query differs"
        );
    }
}

#[test]
fn previous_format_data_dir_opens_and_is_reindexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = unpack(dir.path());
    let data = dir.path().join("data");
    let mut node = Node::start(&data, &["--indexing-threshold", "200"]);
    check(&node, &expected);
    // The optimizer rebuilds the old collection's index in the current format.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let info = node.ok("GET", "/collections/old", None);
        if info["indexed_vectors_count"] == info["points_count"] && info["status"] == "green" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never re-indexed: {info}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let seg_dir = data.join("collections/old/shards/0/segments");
    let names: Vec<String> = std::fs::read_dir(&seg_dir)
        .expect("segments")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "manifest.json" || n.starts_with("seg-")),
        "{names:?}"
    );
    for n in names.iter().filter(|n| n.starts_with("seg-")) {
        assert!(
            !seg_dir.join(n).join("hnsw.hnsw.graph").exists(),
            "old dump left in {n}"
        );
    }
    check(&node, &expected);
    node.restart_after_kill9();
    check(&node, &expected);
    let info = node.ok("GET", "/collections/old", None);
    assert_eq!(
        info["indexed_vectors_count"], info["points_count"],
        "{info}"
    );
}
