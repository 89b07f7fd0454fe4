//! The peer port as an attacker finds it: closed on a single node; in a cluster, every request
//! without the cluster token refused before anything is read, and with the token, every
//! malformed, oversized or out-of-bounds message refused with a 4xx — each leaving the node's
//! catalog and records exactly as they were, and the node up.

mod common;
use common::cluster::{cluster_args, PeerClient, TestCluster, SERVICE, TOKEN};
use common::dns::TestDns;
use common::Node;
use serde_json::json;
use shoal::cluster::protocol::{
    encode, shard_path, CatalogEntry, CatalogPush, MissedWrites, RecordsRequest, ShardOp,
};
use shoal::collection::CollectionConfig;
use shoal::index::{HnswParams, Metric};
use shoal::shard::point::{PointId, Record, RecordBody};
use shoal::shard::Change;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A version as a node's clock issues it, `ahead` in the future.
fn version_in(ahead: Duration) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + ahead;
    (now.as_micros() as u64) << 8
}

/// Operations as a peer could send them, with JSON text a coordinator would never write:
/// the protocol's shape, its filters and plans as raw text.
#[derive(serde::Serialize)]
enum RawOp {
    #[allow(dead_code)]
    Search,
    #[allow(dead_code)]
    Retrieve,
    #[allow(dead_code)]
    Scroll,
    Count {
        filter_json: Option<String>,
    },
    Plan {
        plan_json: String,
        version: u64,
    },
}

fn record(version: u64, vector: Vec<f32>, payload_json: &str) -> Change {
    Change {
        payload: None,
        id: PointId::Num(1),
        record: Record {
            version,
            vector_version: version,
            body: Some(RecordBody {
                vector,
                payload_json: payload_json.into(),
            }),
        },
    }
}

fn config(size: usize, shard_number: u32) -> CollectionConfig {
    CollectionConfig {
        size,
        distance: Metric::Cosine,
        hnsw: HnswParams::default(),
        shard_number,
        replication_factor: 1,
        write_consistency_factor: 1,
        on_disk_payload: true,
        quantization: None,
        full_scan_threshold_kb: None,
        optimizers: Default::default(),
        payload_schema: Default::default(),
        incarnation: 0,
    }
}

fn catalog_push(name: &str, version: u64, config: Option<CollectionConfig>) -> Vec<u8> {
    encode(&CatalogPush {
        entry: CatalogEntry {
            name: name.into(),
            version,
            config,
        },
        fresh: true,
    })
}

/// What the node holds: its catalog and every record of collection `c`, read with the token.
fn snapshot(peer: &PeerClient) -> String {
    let mut catalog: Vec<CatalogEntry> = peer.call("GET", "/peer/v1/catalog", &());
    catalog.sort_by(|a, b| a.name.cmp(&b.name));
    format!("{catalog:?} {:?}", peer.records("c", 0))
}

/// A one-node cluster holding collection `c` (4-d Cosine, one shard) with ten points.
fn node_with_data(root: &std::path::Path, ip: u8) -> (TestCluster, PeerClient) {
    let cluster = TestCluster::start(root, 1, ip, &["--max-request-bytes", "200000"]);
    let node = &cluster.nodes[0];
    node.ok(
        "PUT",
        "/collections/c",
        Some(json!({"vectors": {"size": 4, "distance": "Cosine"}, "shard_number": 1})),
    );
    let points: Vec<_> = (0..10)
        .map(|i| json!({"id": i, "vector": [1.0, i as f32, 0.5, 0.25], "payload": {"i": i}}))
        .collect();
    node.ok(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({ "points": points })),
    );
    let peer = PeerClient::new(node.peer_addr);
    (cluster, peer)
}

#[test]
fn a_single_node_opens_no_peer_port_and_hands_nothing_off() {
    let root = tempfile::tempdir().unwrap();
    let node = Node::start(&root.path().join("single"), &["--cluster-token", TOKEN]);
    let connected = std::net::TcpStream::connect_timeout(&node.peer_addr, Duration::from_secs(2));
    assert!(
        connected.is_err(),
        "a single node must not listen on its peer port {}",
        node.peer_addr
    );
    // The preStop hook runs with the container's environment, token or not.
    for token in [None, Some(TOKEN)] {
        let mut handoff = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
        handoff.args([
            "--peer-listen",
            &node.peer_addr.to_string(),
            "handoff",
            "--wait",
        ]);
        handoff.env_remove("SHOAL_CLUSTER_TOKEN");
        if let Some(t) = token {
            handoff.env("SHOAL_CLUSTER_TOKEN", t);
        }
        let out = common::output_within(&mut handoff, Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("nothing to hand off"), "{stderr}");
    }
}

#[test]
fn a_cluster_node_does_not_start_without_a_token() {
    let root = tempfile::tempdir().unwrap();
    let dns = TestDns::start();
    let run = |token: Option<&str>| {
        let mut args = cluster_args(0, 1, &dns);
        let at = args.iter().position(|a| a == "--cluster-token").unwrap();
        args.drain(at..at + 2);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
        cmd.args(&args)
            .args(["--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(root.path())
            .env_remove("SHOAL_CLUSTER_TOKEN");
        if let Some(t) = token {
            cmd.env("SHOAL_CLUSTER_TOKEN", t);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run shoal");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("a cluster node started without a usable token ({token:?})");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "started with token {token:?}");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
        stderr
    };
    for token in [None, Some(""), Some("   ")] {
        let stderr = run(token);
        assert!(stderr.contains("--cluster-token"), "{stderr}");
        assert!(
            stderr.contains(SERVICE) || stderr.contains("--service"),
            "{stderr}"
        );
    }
    assert!(run(Some("short")).contains("too short"));
}

#[test]
fn the_peer_port_refuses_every_request_without_the_token() {
    let root = tempfile::tempdir().unwrap();
    let (cluster, peer) = node_with_data(root.path(), 71);
    let before = snapshot(&peer);
    let now = version_in(Duration::ZERO);
    // Each would change something, or read every record, if it were let through.
    let requests: Vec<(&str, String, Vec<u8>)> = vec![
        ("GET", "/peer/v1/status".into(), vec![]),
        ("GET", "/peer/v1/catalog".into(), vec![]),
        (
            "PUT",
            "/peer/v1/catalog".into(),
            catalog_push("c", now, None),
        ),
        (
            "PUT",
            "/peer/v1/catalog".into(),
            catalog_push("new", now, Some(config(4, 1))),
        ),
        (
            "POST",
            shard_path("c", 0, "commit"),
            encode(&vec![record(now, vec![1.0, 0.0, 0.0, 0.0], "{}")]),
        ),
        (
            "POST",
            shard_path("c", 0, "records"),
            encode(&RecordsRequest {
                since: 0,
                after: None,
                limit: 100,
            }),
        ),
        (
            "POST",
            shard_path("c", 0, "op"),
            encode(&ShardOp::Count { filter: None }),
        ),
        ("GET", shard_path("c", 0, "state"), vec![]),
        ("POST", "/peer/v1/handoff".into(), vec![]),
        ("GET", "/peer/v1/missed/0".into(), vec![]),
        ("DELETE", "/peer/v1/missed/0".into(), encode(&u64::MAX)),
        (
            "PUT",
            "/peer/v1/missed".into(),
            encode(&vec![MissedWrites {
                collection: "c".into(),
                shard: 0,
                since: 0,
                from: vec![1],
                seq: 1,
            }]),
        ),
        ("GET", "/peer/v1/no-such-route".into(), vec![]),
        ("POST", shard_path("c", 0, "commit"), vec![0xAB; 2_000_000]),
    ];
    let wrong = [
        None,
        Some(""),
        Some("wrong"),
        Some(&TOKEN[..TOKEN.len() - 1]),
        Some(&*format!("{TOKEN}x")),
        Some(&*TOKEN.to_uppercase()),
        Some(&*format!("Bearer {TOKEN}")),
    ];
    for (method, path, body) in &requests {
        for token in wrong {
            match peer.try_send(method, path, token, body.clone()) {
                Ok((status, answer)) => assert_eq!(
                    status,
                    401,
                    "{method} {path} with {token:?}: {}",
                    String::from_utf8_lossy(&answer)
                ),
                // Refused from the headers, the connection closed under a large body.
                Err(e) => assert!(body.len() > 100_000, "{method} {path}: {e}"),
            }
        }
    }
    assert_eq!(
        snapshot(&peer),
        before,
        "an unauthenticated request changed something"
    );
    assert_eq!(cluster.nodes[0].count("c"), 10);
}

#[test]
fn peer_messages_are_checked_like_client_requests() {
    let root = tempfile::tempdir().unwrap();
    let (cluster, peer) = node_with_data(root.path(), 72);
    let node = &cluster.nodes[0];
    let before = snapshot(&peer);
    let now = version_in(Duration::ZERO);
    let unit = vec![0.5, 0.5, 0.5, 0.5];
    let commit = shard_path("c", 0, "commit");
    let commit_of = |changes: Vec<Change>| ("POST", commit.clone(), encode(&changes));
    let mut stale_vector = record(now, unit.clone(), "{}");
    stale_vector.record.vector_version = now + 1;
    // A string that announces 2^60 bytes where the payload's length goes.
    let mut huge_string = encode(&vec![record(now, unit.clone(), "")]);
    huge_string.pop();
    huge_string.push(253);
    huge_string.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let refused: Vec<(&str, String, Vec<u8>)> = vec![
        commit_of(vec![record(now, vec![1.0, 0.0, 0.0], "{}")]),
        commit_of(vec![record(now, vec![1.0, 0.0, 0.0, 0.0, 0.0], "{}")]),
        commit_of(vec![record(now, vec![f32::NAN, 0.0, 0.0, 0.0], "{}")]),
        commit_of(vec![record(now, vec![f32::INFINITY, 0.0, 0.0, 0.0], "{}")]),
        commit_of(vec![record(now, vec![3.0, 4.0, 0.0, 0.0], "{}")]),
        commit_of(vec![record(now, unit.clone(), "[1, 2]")]),
        commit_of(vec![record(now, unit.clone(), "{\"a\": ")]),
        commit_of(vec![record(u64::MAX, unit.clone(), "{}")]),
        commit_of(vec![record(
            version_in(Duration::from_secs(3600)),
            unit.clone(),
            "{}",
        )]),
        commit_of(vec![stale_vector]),
        commit_of(vec![
            record(now, unit.clone(), "{}"),
            record(u64::MAX, unit.clone(), "{}"),
        ]),
        ("POST", commit.clone(), vec![]),
        ("POST", commit.clone(), vec![0xFF; 64]),
        (
            "POST",
            commit.clone(),
            encode(&vec![record(now, unit.clone(), "{}")])[..20].to_vec(),
        ),
        ("POST", commit.clone(), huge_string),
        ("POST", commit.clone(), vec![0x11; 2_000_000]),
        (
            "POST",
            shard_path("c", 7, "commit"),
            encode(&vec![record(now, unit.clone(), "{}")]),
        ),
        (
            "PUT",
            "/peer/v1/catalog".into(),
            catalog_push("c", u64::MAX, None),
        ),
        (
            "PUT",
            "/peer/v1/catalog".into(),
            catalog_push("c", version_in(Duration::from_secs(3600)), None),
        ),
        (
            "PUT",
            "/peer/v1/catalog".into(),
            catalog_push("a/b", now, Some(config(4, 1))),
        ),
        (
            "PUT",
            "/peer/v1/catalog".into(),
            catalog_push("", now, Some(config(4, 1))),
        ),
        (
            "PUT",
            "/peer/v1/catalog".into(),
            catalog_push("x", now, Some(config(0, 1))),
        ),
        (
            "PUT",
            "/peer/v1/catalog".into(),
            catalog_push("x", now, Some(config(4, 0))),
        ),
        (
            "PUT",
            "/peer/v1/catalog".into(),
            catalog_push("x", now, Some(config(4, u32::MAX))),
        ),
        (
            "PUT",
            "/peer/v1/catalog".into(),
            catalog_push("x", now, Some(config(1 << 40, 1))),
        ),
        ("PUT", "/peer/v1/catalog".into(), vec![1, 2, 3]),
        (
            "POST",
            shard_path("c", 0, "op"),
            encode(&ShardOp::Search {
                vector: vec![1.0],
                k: 10,
                ef: 10,
                exact: true,
                filter: None,
                with_vector: false,
                with_payload: true,
                quantization: Default::default(),
            }),
        ),
        (
            "POST",
            shard_path("c", 0, "op"),
            encode(&ShardOp::Search {
                vector: unit.clone(),
                k: usize::MAX,
                ef: usize::MAX,
                exact: false,
                filter: None,
                with_vector: false,
                with_payload: true,
                quantization: Default::default(),
            }),
        ),
        (
            "POST",
            shard_path("c", 0, "op"),
            encode(&ShardOp::Scroll {
                from: None,
                limit: usize::MAX,
                filter: None,
                with_vector: true,
            }),
        ),
        (
            "POST",
            shard_path("c", 0, "op"),
            encode(&RawOp::Plan {
                plan_json: r#"{"Delete": {"Ids": [1]}}"#.into(),
                version: u64::MAX,
            }),
        ),
        (
            "POST",
            shard_path("c", 0, "op"),
            encode(&RawOp::Count {
                filter_json: Some("{not json".into()),
            }),
        ),
    ];
    for (method, path, body) in &refused {
        let (status, answer) = peer.send(method, path, Some(TOKEN), body.clone());
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            (400..500).contains(&status),
            "{method} {path} ({} bytes) answered {status}: {answer}",
            body.len()
        );
    }
    assert_eq!(
        snapshot(&peer),
        before,
        "a refused peer message changed something"
    );

    // After a refused u64::MAX record, a client's upsert of the same point is not a no-op.
    node.ok(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({"points": [{"id": 1, "vector": [0.0, 0.0, 3.0, 4.0], "payload": {"new": true}}]})),
    );
    let got = node.ok("GET", "/collections/c/points/1", None);
    assert_eq!(got["payload"], json!({"new": true}), "{got}");

    // A record within bounds is taken: the route works, and versions a little ahead are fine.
    let ahead = version_in(Duration::from_secs(60));
    let accepted = vec![Change {
        id: PointId::Num(77),
        ..record(ahead, unit.clone(), r#"{"from": "peer"}"#)
    }];
    let applied: u64 = peer.call("POST", &commit, &accepted);
    assert_eq!(applied, 1);
    assert_eq!(node.count("c"), 11);
    // The node's clock moved past it: the next client write still wins.
    node.ok(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({"points": [{"id": 77, "vector": [1.0, 0.0, 0.0, 0.0], "payload": {"from": "client"}}]})),
    );
    let got = node.ok("GET", "/collections/c/points/77", None);
    assert_eq!(got["payload"], json!({"from": "client"}), "{got}");
}

/// A node of the previous release (protocol 1) and a node of this one serve one cluster during a
/// rolling update: this node reads protocol 1's shapes and answers in them, and refuses versions
/// it does not know.
#[test]
fn a_peer_of_the_previous_protocol_is_answered_in_its_shapes() {
    use shoal::cluster::protocol::{ShardReply, OLDEST_PROTOCOL, PROTOCOL_VERSION};
    assert_eq!(OLDEST_PROTOCOL, 1);
    let root = tempfile::tempdir().unwrap();
    let (cluster, peer) = node_with_data(root.path(), 73);
    let node = &cluster.nodes[0];
    let old = PeerClient::new(peer.addr).speaking(1);

    // Its catalog, in protocol 1's shapes: the config inline (what protocol 1 has fields for).
    let catalog: Vec<CatalogEntry> = old.call("GET", "/peer/v1/catalog", &());
    let c = catalog
        .iter()
        .find(|e| e.name == "c")
        .expect("c in the catalog");
    assert_eq!(
        c.config.as_ref().map(|c| (c.size, c.shard_number)),
        Some((4, 1))
    );

    // A collection pushed in protocol 1's shapes is created, with the defaults of what it lacks.
    let push = CatalogPush {
        entry: CatalogEntry {
            name: "from-v1".into(),
            version: version_in(Duration::ZERO),
            config: Some(config(4, 1)),
        },
        fresh: true,
    };
    let changed: bool = old.call("PUT", "/peer/v1/catalog", &push);
    assert!(changed);
    let info = node.ok("GET", "/collections/from-v1", None);
    assert_eq!(
        info["config"]["params"]["vectors"]["size"],
        json!(4),
        "{info}"
    );
    assert_eq!(info["config"]["quantization_config"], json!(null), "{info}");

    // A search in protocol 1's shape (no quantization parameters) gets its hits.
    let search = ShardOp::Search {
        vector: vec![0.5, 0.5, 0.5, 0.5],
        k: 3,
        ef: 16,
        exact: true,
        filter: None,
        with_vector: false,
        with_payload: true,
        quantization: Default::default(),
    };
    let reply: ShardReply = old.call("POST", &shard_path("c", 0, "op"), &search);
    let hits = reply.hits().expect("hits");
    assert_eq!(hits.len(), 3);
    assert!(hits.iter().all(|h| h.point.payload.contains_key("i")));

    // Versions it does not speak are refused, with the reason.
    for (version, says) in [(PROTOCOL_VERSION + 1, "newer"), (0, "older")] {
        let client = PeerClient::new(peer.addr).speaking(version);
        let (status, body) = client.send("GET", "/peer/v1/catalog", Some(TOKEN), encode(&()));
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(says), "{body}");
    }
}
