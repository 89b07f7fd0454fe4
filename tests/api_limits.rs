//! The public API's guard rails and self-description: `/openapi.json`, the request limits
//! (`--max-concurrent-requests`, `--request-timeout-secs`, `--max-batch-points`), request ids
//! and JSON logs. No assertion depends on timing beyond "a 1 ms budget is too short for a large
//! exact search" and "32 parallel searches with a cap of 1 overlap at least once".

mod common;
use common::{vectors, Node};
use serde_json::{json, Value};

fn error_of(v: &Value) -> String {
    v["status"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no Qdrant error in {v}"))
        .to_string()
}

fn fill(node: &Node, name: &str, n: usize, dim: usize) {
    node.ok(
        "PUT",
        &format!("/collections/{name}"),
        Some(json!({"vectors": {"size": dim, "distance": "Euclid"}})),
    );
    for (chunk, vs) in vectors(n, dim, 3).chunks(5000).enumerate() {
        let pts: Vec<Value> = vs
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"id": chunk * 5000 + i, "vector": v, "payload": {"i": i}}))
            .collect();
        node.ok(
            "PUT",
            &format!("/collections/{name}/points?wait=true"),
            Some(json!({ "points": pts })),
        );
    }
}

fn exact_search(dim: usize, limit: usize) -> Value {
    json!({"query": vec![0.5; dim], "limit": limit, "params": {"exact": true}, "with_payload": true})
}

#[test]
fn openapi_describes_every_route_and_follows_the_key_rule() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("n"), &[]);
    let (s, doc) = node.call("GET", "/openapi.json", None);
    assert_eq!(s, 200, "{doc}");
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3."),
        "{doc}"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let expected: &[(&str, &[&str])] = &[
        ("/", &["get"]),
        ("/healthz", &["get"]),
        ("/livez", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
        ("/cluster", &["get"]),
        ("/collections", &["get"]),
        ("/collections/{name}", &["get", "put", "patch", "delete"]),
        ("/collections/{name}/exists", &["get"]),
        ("/collections/aliases", &["post"]),
        ("/aliases", &["get"]),
        ("/collections/{name}/aliases", &["get"]),
        ("/collections/{name}/cluster", &["get"]),
        ("/collections/{name}/index", &["put"]),
        ("/collections/{name}/index/{field_name}", &["delete"]),
        ("/collections/{name}/facet", &["post"]),
        ("/collections/{name}/points", &["post", "put"]),
        ("/collections/{name}/points/{id}", &["get"]),
        ("/collections/{name}/points/delete", &["post"]),
        ("/collections/{name}/points/payload", &["post", "put"]),
        ("/collections/{name}/points/payload/delete", &["post"]),
        ("/collections/{name}/points/payload/clear", &["post"]),
        ("/collections/{name}/points/scroll", &["post"]),
        ("/collections/{name}/points/count", &["post"]),
        ("/collections/{name}/points/query", &["post"]),
        ("/collections/{name}/points/query/batch", &["post"]),
        ("/collections/{name}/points/search", &["post"]),
        ("/collections/{name}/points/search/batch", &["post"]),
        ("/collections/{name}/points/search/groups", &["post"]),
        ("/collections/{name}/points/query/groups", &["post"]),
        ("/collections/{name}/points/vectors", &["put"]),
        ("/collections/{name}/points/vectors/delete", &["post"]),
        ("/collections/{name}/points/batch", &["post"]),
        ("/collections/{name}/snapshots", &["get", "post"]),
        (
            "/collections/{name}/snapshots/{snapshot_name}",
            &["get", "delete"],
        ),
        ("/collections/{name}/snapshots/recover", &["put"]),
        ("/collections/{name}/snapshots/upload", &["post"]),
        ("/snapshots", &["get", "post"]),
        ("/snapshots/{snapshot_name}", &["get", "delete"]),
    ];
    // Writes without a JSON body: taking a snapshot, and an upload (multipart).
    let no_json_body = [
        "/collections/{name}/snapshots",
        "/collections/{name}/snapshots/upload",
        "/snapshots",
    ];
    assert_eq!(
        paths.len(),
        expected.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (path, methods) in expected {
        let item = &paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not described"));
        for m in *methods {
            let op = &item[*m];
            assert!(op.is_object(), "{m} {path} is not described");
            assert!(
                op["responses"]["4XX"].is_object(),
                "{m} {path}: no error response"
            );
            if (*m == "post" || *m == "put" || *m == "patch") && !no_json_body.contains(path) {
                assert!(
                    op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                    "{m} {path}: no body"
                );
            }
        }
    }
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "Filter",
        "Condition",
        "ExtendedPointId",
        "Distance",
        "QueryPoints",
        "UpsertPoints",
        "ErrorResponse",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    // The envelope: a successful query answer is {result, status, time}.
    let ok = &paths["/collections/{name}/points/query"]["post"]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    let env_name = ok["$ref"]
        .as_str()
        .expect("ref")
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let required: Vec<&str> = schemas[&env_name]["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, ["result", "status", "time"]);

    // Qdrant does not exempt any such document from its key rule: neither does shoal.
    let keyed = Node::start(&dir.path().join("k"), &["--api-key", "k-123"]);
    let (s, v) = keyed.call("GET", "/openapi.json", None);
    assert_eq!(s, 401, "{v}");
    let r = keyed
        .http
        .get(keyed.url("/openapi.json"))
        .header("api-key", "k-123")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn upsert_batches_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("n"), &["--max-batch-points", "5"]);
    node.create_collection("c", 2, "Dot");
    let pts = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"id": i, "vector": [1.0, i as f32]}))
            .collect()
    };
    let (s, v) = node.call(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({"points": pts(6)})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(error_of(&v).contains("--max-batch-points"), "{v}");
    let ids: Vec<u64> = (0..6).collect();
    let vecs: Vec<Vec<f32>> = (0..6).map(|i| vec![1.0, i as f32]).collect();
    let (s, v) = node.call(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({"batch": {"ids": ids, "vectors": vecs}})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(error_of(&v).contains("at most 5"), "{v}");
    assert_eq!(node.count("c"), 0);
    node.ok(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({"points": pts(5)})),
    );
    assert_eq!(node.count("c"), 5);
}

#[test]
fn slow_requests_time_out_with_a_504() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(&dir.path().join("n"), &["--indexing-threshold", "1000000"]);
    let dim = 32;
    fill(&node, "big", 20_000, dim);
    node.extra_args = [
        "--indexing-threshold",
        "1000000",
        "--request-timeout-secs",
        "0.001",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    node.restart();
    let (s, v) = node.call(
        "POST",
        "/collections/big/points/query",
        Some(exact_search(dim, 10_000)),
    );
    assert_eq!(s, 504, "{v}");
    assert!(error_of(&v).contains("--request-timeout-secs"), "{v}");
    // The probes are outside the limits, and the node keeps serving.
    let (s, _) = node.call("GET", "/readyz", None);
    assert_eq!(s, 200);
    let (s, _) = node.call("GET", "/metrics", None);
    assert_eq!(s, 200);
}

#[test]
fn excess_concurrent_requests_get_a_503() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        &dir.path().join("n"),
        &[
            "--max-concurrent-requests",
            "1",
            "--indexing-threshold",
            "1000000",
        ],
    );
    let dim = 32;
    fill(&node, "c", 4000, dim);
    let node = std::sync::Arc::new(node);
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let node = node.clone();
            std::thread::spawn(move || {
                (0..4)
                    .map(|_| {
                        node.call(
                            "POST",
                            "/collections/c/points/query",
                            Some(exact_search(dim, 1000)),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answers: Vec<(u16, Value)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let shed: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, v)| v)
        .collect();
    assert!(!shed.is_empty(), "no request was shed with a cap of 1");
    assert!(
        error_of(shed[0]).contains("--max-concurrent-requests"),
        "{}",
        shed[0]
    );
    for (s, v) in &answers {
        assert!(*s == 200 || *s == 503, "unexpected {s}: {v}");
    }
    assert!(answers.iter().any(|(s, _)| *s == 200));
    let (s, _) = node.call("GET", "/readyz", None);
    assert_eq!(s, 200);
}

#[test]
fn request_ids_are_returned_and_logged_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let mut node = Node::start(
        &data,
        &["--log-format", "json", "--api-key", "top-secret-key"],
    );
    let send = |id: Option<&str>| {
        let mut r = node
            .http
            .get(node.url("/collections"))
            .header("api-key", "top-secret-key");
        if let Some(id) = id {
            r = r.header("x-request-id", id);
        }
        let resp = r.send().unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .expect("x-request-id")
    };
    assert_eq!(send(Some("client-id-42")), "client-id-42");
    let generated = send(None);
    assert!(uuid_like(&generated), "{generated}");
    let too_long = "x".repeat(500);
    let replaced = send(Some(&too_long));
    assert!(uuid_like(&replaced), "{replaced}");
    // A failing request carries the id too.
    let r = node
        .http
        .get(node.url("/collections/nope"))
        .header("api-key", "top-secret-key")
        .header("x-request-id", "req-404")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.headers()["x-request-id"], "req-404");
    node.stop();

    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(!log.contains("top-secret-key"), "the API key was logged");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for id in ["client-id-42", generated.as_str(), "req-404"] {
        assert!(
            lines.iter().any(|l| l["span"]["request_id"] == id),
            "no log line carries request id {id}"
        );
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}
