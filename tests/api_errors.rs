//! Bad input gets a 4xx in Qdrant's error shape, names the problem, and changes nothing.

mod common;
use common::{vectors, Node};
use serde_json::{json, Value};

fn error_of(v: &Value) -> String {
    v["status"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no Qdrant error in {v}"))
        .to_string()
}

fn expect_4xx(
    node: &Node,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
    mentions: &str,
) {
    let (s, v) = node.call(method, path, body);
    assert_eq!(s, status, "{method} {path}: {v}");
    let e = error_of(&v);
    assert!(
        e.to_lowercase().contains(&mentions.to_lowercase()),
        "error {e:?} should mention {mentions:?}"
    );
}

#[test]
fn bad_requests_are_rejected_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("n"), &["--max-request-bytes", "65536"]);
    node.create_collection("c", 4, "Euclid");
    let pts: Vec<Value> = vectors(10, 4, 1)
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"id": i, "vector": v, "payload": {"i": i}}))
        .collect();
    node.ok(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({ "points": pts })),
    );
    assert_eq!(node.count("c"), 10);

    // Wrong size in the middle of a batch: nothing of the batch is written.
    let batch = json!({"points": [
        {"id": 100, "vector": [1.0, 2.0, 3.0, 4.0]},
        {"id": 101, "vector": [1.0, 2.0, 3.0]},
    ]});
    expect_4xx(
        &node,
        "PUT",
        "/collections/c/points?wait=true",
        Some(batch),
        400,
        "expected dim: 4, got 3",
    );
    assert_eq!(node.count("c"), 10);

    // Columnar batch with mismatched lengths.
    let batch = json!({"batch": {"ids": [200, 201], "vectors": [[1, 2, 3, 4]]}});
    expect_4xx(
        &node,
        "PUT",
        "/collections/c/points?wait=true",
        Some(batch),
        400,
        "2 ids but 1 vectors",
    );

    // NaN and infinity are not JSON; an overflowing float becomes infinite and is refused.
    let (s, v) = node.raw(
        "PUT",
        "/collections/c/points?wait=true",
        b"{\"points\":[{\"id\":300,\"vector\":[1,2,NaN,4]}]}",
    );
    assert_eq!(s, 400, "{v}");
    assert!(error_of(&v).contains("JSON"));
    let (s, v) = node.raw(
        "PUT",
        "/collections/c/points?wait=true",
        b"{\"points\":[{\"id\":300,\"vector\":[1,2,1e39,4]}]}",
    );
    assert_eq!(s, 400, "{v}");
    assert!(error_of(&v).contains("finite"), "{v}");

    // Invalid ids.
    for bad in [json!(-1), json!(1.5), json!("not-a-uuid"), json!(null)] {
        let body = json!({"points": [{"id": bad, "vector": [1, 2, 3, 4]}]});
        let (s, v) = node.call("PUT", "/collections/c/points?wait=true", Some(body));
        assert_eq!(s, 400, "{v}");
        assert!(
            error_of(&v).contains("id") || error_of(&v).contains("UUID"),
            "{v}"
        );
    }
    let (s, _) = node.call("GET", "/collections/c/points/not-a-uuid", None);
    assert_eq!(s, 400);
    let (s, _) = node.call("GET", "/collections/c/points/12345", None);
    assert_eq!(s, 404);

    // Malformed JSON, unknown collection, unknown distance, bad filters, bad bounds.
    let (s, v) = node.raw(
        "POST",
        "/collections/c/points/query",
        b"{\"query\": [1,2,3,4",
    );
    assert_eq!(s, 400, "{v}");
    expect_4xx(
        &node,
        "POST",
        "/collections/nope/points/query",
        Some(json!({"query": [1, 2, 3, 4]})),
        404,
        "nope",
    );
    expect_4xx(
        &node,
        "PUT",
        "/collections/d",
        Some(json!({"vectors": {"size": 4, "distance": "Cosinus"}})),
        400,
        "Cosinus",
    );
    expect_4xx(
        &node,
        "PUT",
        "/collections/d",
        Some(json!({"vectors": {"size": 0, "distance": "Dot"}})),
        400,
        "size",
    );
    expect_4xx(
        &node,
        "PUT",
        "/collections/c",
        Some(json!({"vectors": {"size": 4, "distance": "Dot"}})),
        400,
        "already exists",
    );
    expect_4xx(
        &node,
        "PUT",
        "/collections/a%2Fb",
        Some(json!({"vectors": {"size": 4, "distance": "Dot"}})),
        400,
        "invalid",
    );
    let bad_filter = json!({"query": [1, 2, 3, 4], "filter": {"must": [{"kye": "i"}]}});
    expect_4xx(
        &node,
        "POST",
        "/collections/c/points/query",
        Some(bad_filter),
        400,
        "kye",
    );
    expect_4xx(
        &node,
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": [1, 2, 3]})),
        400,
        "dim",
    );
    let huge = json!({"query": [1, 2, 3, 4], "params": {"hnsw_ef": 0}});
    expect_4xx(
        &node,
        "POST",
        "/collections/c/points/query",
        Some(huge),
        400,
        "hnsw_ef",
    );
    expect_4xx(
        &node,
        "POST",
        "/collections/c/points/delete",
        Some(json!({})),
        400,
        "exactly one",
    );
    expect_4xx(
        &node,
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": {"recommend": {}}})),
        400,
        "unsupported",
    );

    // A body over the configured limit.
    let big: Vec<Value> = (0..3000)
        .map(|i| json!({"id": i + 1000, "vector": [1.5, 2.5, 3.5, 4.5]}))
        .collect();
    let (s, v) = node.call(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({ "points": big })),
    );
    assert_eq!(s, 413, "{v}");
    assert!(error_of(&v).to_lowercase().contains("body"), "{v}");

    // Unknown routes answer in the same shape.
    expect_4xx(&node, "GET", "/nothing/here", None, 404, "no route");

    // Nothing above changed anything, and the node still serves.
    assert_eq!(node.count("c"), 10);
    let r = node.ok(
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": [0, 0, 0, 0], "limit": 3})),
    );
    assert_eq!(r["points"].as_array().map(Vec::len), Some(3));
    let (s, _) = node.call("GET", "/collections/d", None);
    assert_eq!(
        s, 404,
        "a rejected create must not leave a collection behind"
    );
}
