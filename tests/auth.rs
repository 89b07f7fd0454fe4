//! API keys: without a key every protected route answers 401, the probes stay open, a read-only
//! key reads but cannot write.

mod common;
use common::Node;
use serde_json::json;

#[test]
fn api_keys_guard_every_route_but_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        &dir.path().join("n"),
        &["--api-key", "s3cret", "--read-only-api-key", "look"],
    );
    let http = reqwest::blocking::Client::new();
    let send =
        |method: &str, path: &str, key: Option<(&str, &str)>, body: Option<serde_json::Value>| {
            let mut r = http.request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                node.url(path),
            );
            if let Some((h, v)) = key {
                r = r.header(h, v);
            }
            if let Some(b) = body {
                r = r.json(&b);
            }
            r.send().unwrap().status().as_u16()
        };
    for probe in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(send("GET", probe, None, None), 200, "{probe}");
    }
    let create = json!({"vectors": {"size": 2, "distance": "Dot"}});
    let upsert = json!({"points": [{"id": 1, "vector": [1.0, 0.0]}]});
    let query = json!({"query": [1.0, 0.0]});
    for (m, p, b) in [
        ("GET", "/", None),
        ("GET", "/collections", None),
        ("GET", "/metrics", None),
        ("PUT", "/collections/c", Some(create.clone())),
        ("POST", "/collections/c/points/query", Some(query.clone())),
    ] {
        assert_eq!(send(m, p, None, b.clone()), 401, "{m} {p} without a key");
        assert_eq!(
            send(m, p, Some(("api-key", "wrong")), b),
            401,
            "{m} {p} with a wrong key"
        );
    }
    assert_eq!(
        send(
            "PUT",
            "/collections/c",
            Some(("api-key", "look")),
            Some(create.clone())
        ),
        403
    );
    assert_eq!(
        send(
            "PUT",
            "/collections/c",
            Some(("authorization", "Bearer s3cret")),
            Some(create)
        ),
        200
    );
    assert_eq!(
        send(
            "PUT",
            "/collections/c/points?wait=true",
            Some(("api-key", "look")),
            Some(upsert.clone())
        ),
        403
    );
    assert_eq!(
        send(
            "PUT",
            "/collections/c/points?wait=true",
            Some(("api-key", "s3cret")),
            Some(upsert)
        ),
        200
    );
    assert_eq!(
        send(
            "POST",
            "/collections/c/points/query",
            Some(("api-key", "look")),
            Some(query)
        ),
        200
    );
    assert_eq!(
        send(
            "POST",
            "/collections/c/points/delete",
            Some(("authorization", "Bearer look")),
            Some(json!({"points": [1]}))
        ),
        403
    );
    assert_eq!(
        send(
            "GET",
            "/collections/c",
            Some(("authorization", "Bearer look")),
            None
        ),
        200
    );
}
