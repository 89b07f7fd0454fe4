//! A 3-node cluster on loopback, as a StatefulSet would run it: pods `shoal-0..2` on
//! 127.0.0.11–13 with the same ports, found through a DNS server inside the test that answers the
//! headless Service's names. Any node answers any request like one node holding all the data.

mod common;
use common::cluster::{PeerClient, TestCluster, SERVICE};
use common::{eventually, numbered, vectors, Node};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const DIM: usize = 16;
const N: usize = 3000;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn brute_force(
    data: &[(u64, Vec<f32>)],
    q: &[f32],
    k: usize,
    keep: impl Fn(u64) -> bool,
) -> Vec<u64> {
    let mut d: Vec<(f32, u64)> = data
        .iter()
        .filter(|(id, _)| keep(*id))
        .map(|(id, v)| {
            (
                v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
                *id,
            )
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(k).map(|(_, id)| id).collect()
}

fn ids(result: &Value) -> Vec<u64> {
    result["points"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
        .unwrap_or_default()
}

fn query(node: &Node, q: &[f32], exact: bool, filter: Option<Value>) -> Vec<u64> {
    let mut body = json!({"query": q, "limit": 10, "params": {"exact": exact, "hnsw_ef": 128}});
    if let Some(f) = filter {
        body["filter"] = f;
    }
    ids(&node.ok("POST", "/collections/c/points/query", Some(body)))
}

fn upsert(node: &Node, data: &[(u64, Vec<f32>)]) {
    for chunk in data.chunks(500) {
        let points: Vec<Value> =
            chunk.iter().map(|(id, v)| json!({"id": id, "vector": v, "payload": {"even": id % 2 == 0, "id": id}})).collect();
        node.ok(
            "PUT",
            "/collections/c/points?wait=true",
            Some(json!({ "points": points })),
        );
    }
}

fn assert_exact_everywhere(nodes: &[&Node], data: &[(u64, Vec<f32>)], queries: &[Vec<f32>]) {
    for node in nodes {
        for q in queries {
            assert_eq!(
                query(node, q, true, None),
                brute_force(data, q, 10, |_| true),
                "through {}",
                node.addr
            );
        }
        assert_eq!(
            node.count("c") as usize,
            data.len(),
            "count through {}",
            node.addr
        );
    }
}

#[test]
fn three_nodes_answer_like_one_and_survive_a_node_loss() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::start(root.path(), 3, 11, &["--indexing-threshold", "400"]);

    // A collection created through one node exists on all of them.
    cluster.nodes[2].ok(
        "PUT",
        "/collections/c",
        Some(json!({"vectors": {"size": DIM, "distance": "Euclid"}, "shard_number": 6, "replication_factor": 2})),
    );
    for n in &cluster.nodes {
        assert_eq!(n.ok("GET", "/collections/c/exists", None)["exists"], true);
    }
    let info = cluster.nodes[0].ok("GET", "/cluster", None);
    assert_eq!(info["ordinal"], 0);
    assert_eq!(info["cluster_size"], 3);
    assert_peer_api_only_on_peer_port(&cluster.nodes[1]);

    let mut data: Vec<(u64, Vec<f32>)> = numbered(0, N, DIM, 42);
    upsert(&cluster.nodes[0], &data);
    let queries = vectors(20, DIM, 7);

    // Exact answers through every node equal brute force; HNSW reaches recall 0.95.
    let all: Vec<&Node> = cluster.nodes.iter().collect();
    assert_exact_everywhere(&all, &data, &queries);
    // Collection info counts the whole collection through every node (each node holds only
    // some of the shards).
    for node in &cluster.nodes {
        let info = node.ok("GET", "/collections/c", None);
        assert_eq!(info["points_count"], N, "through {}", node.addr);
    }
    eventually("segments built", || {
        let i = cluster.nodes[1].ok("GET", "/collections/c", None);
        (
            i["indexed_vectors_count"].as_u64().unwrap_or(0) > 0,
            i["indexed_vectors_count"].clone(),
        )
    });
    let mut hits = 0;
    for q in &queries {
        let truth: BTreeSet<u64> = brute_force(&data, q, 10, |_| true).into_iter().collect();
        hits += query(&cluster.nodes[1], q, false, None)
            .iter()
            .filter(|id| truth.contains(id))
            .count();
    }
    let recall = hits as f64 / (10 * queries.len()) as f64;
    assert!(recall >= 0.95, "recall@10 through the cluster: {recall}");

    // Filters, scroll and count work across shards.
    let even = json!({"must": [{"key": "even", "match": {"value": true}}]});
    assert_eq!(
        query(&cluster.nodes[2], &queries[0], true, Some(even.clone())),
        brute_force(&data, &queries[0], 10, |id| id % 2 == 0)
    );
    let mut seen = Vec::new();
    let mut offset = Value::Null;
    loop {
        let page = cluster.nodes[2].ok(
            "POST",
            "/collections/c/points/scroll",
            Some(json!({"limit": 256, "offset": offset})),
        );
        seen.extend(ids(&page));
        offset = page["next_page_offset"].clone();
        if offset.is_null() {
            break;
        }
    }
    assert_eq!(
        seen,
        (0..N as u64).collect::<Vec<_>>(),
        "scroll returns every point once, in id order"
    );

    // Deleting through one node is seen through all.
    cluster.nodes[1].ok(
        "POST",
        "/collections/c/points/delete?wait=true",
        Some(json!({"filter": {"must": [{"key": "id", "range": {"lt": 100}}]}})),
    );
    data.retain(|(id, _)| *id >= 100);
    assert_exact_everywhere(&all, &data, &queries[..3]);

    // Without shard_number, a cluster collection gets two shards per node.
    cluster.nodes[1].ok(
        "PUT",
        "/collections/defaults",
        Some(json!({"vectors": {"size": 2, "distance": "Dot"}})),
    );
    let defaults = cluster.nodes[2].ok("GET", "/collections/defaults", None);
    assert_eq!(
        defaults["config"]["params"]["shard_number"], 6,
        "{defaults}"
    );

    // A second collection with one replica per shard: losing a node loses its shards.
    cluster.nodes[0].ok(
        "PUT",
        "/collections/single",
        Some(json!({"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 3})),
    );

    // Kill shoal-1: with RF 2 every query still answers fully, and writes succeed.
    cluster.nodes[1].kill9();
    let alive: Vec<&Node> = vec![&cluster.nodes[0], &cluster.nodes[2]];
    assert_exact_everywhere(&alive, &data, &queries[..5]);
    let extra: Vec<(u64, Vec<f32>)> = numbered(10_000, 200, DIM, 99);
    upsert(&cluster.nodes[2], &extra);
    data.extend(extra);
    assert_exact_everywhere(&alive, &data, &queries[..5]);
    let (status, body) =
        cluster.nodes[0].call("POST", "/collections/single/points/count", Some(json!({})));
    assert_eq!(status, 503, "{body}");
    assert!(
        body["status"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("shard"),
        "{body}"
    );

    // Bring shoal-1 back on its data dir: it catches up on what it missed and serves.
    cluster.nodes[1].spawn();
    let q = queries[0].clone();
    let truth = brute_force(&data, &q, 10, |_| true);
    eventually("shoal-1 caught up", || {
        let got = query(&cluster.nodes[1], &q, true, None);
        (
            got == truth && cluster.nodes[1].count("c") as usize == data.len(),
            got,
        )
    });

    // shoal-2 comes back on another address: peers find it again through DNS.
    cluster.nodes[2].stop();
    cluster.nodes[2].move_to(IpAddr::V4(ip(23)));
    cluster.dns.set(&format!("shoal-2.{SERVICE}"), &[ip(23)]);
    cluster.nodes[2].spawn();
    // With shoal-1 gone, shards held by {1, 2} can only be served by shoal-2 at its new address.
    cluster.nodes[1].kill9();
    let survivors: Vec<&Node> = vec![&cluster.nodes[0], &cluster.nodes[2]];
    eventually("shoal-2 found at its new address", || {
        let got = cluster.nodes[0].call(
            "POST",
            "/collections/c/points/count",
            Some(json!({"exact": true})),
        );
        (
            got.0 == 200 && got.1["result"]["count"].as_u64() == Some(data.len() as u64),
            got,
        )
    });
    assert_exact_everywhere(&survivors, &data, &queries[..3]);
    let peers = cluster.nodes[0].ok("GET", "/cluster", None);
    assert_eq!(
        peers["peers"]["2"]["uri"]
            .as_str()
            .map(|u| u.contains("127.0.0.23")),
        Some(true),
        "{peers}"
    );
}

#[test]
fn a_pod_without_an_ordinal_refuses_to_start() {
    let root = tempfile::tempdir().unwrap();
    let mut shoal = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
    shoal
        .args([
            "--hostname",
            "laptop",
            "--service",
            SERVICE,
            "--cluster-size",
            "3",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(root.path());
    let out = common::output_within(&mut shoal, std::time::Duration::from_secs(60));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no ordinal"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
}

/// Node-to-node routes answer on the peer port only, with the cluster token, and refuse a
/// protocol they do not know.
fn assert_peer_api_only_on_peer_port(node: &Node) {
    let http = reqwest::blocking::Client::new();
    let public = http
        .get(node.url("/peer/v1/catalog"))
        .header("x-shoal-peer-protocol", "1")
        .header("x-shoal-cluster-token", common::cluster::TOKEN)
        .send()
        .unwrap();
    assert_eq!(
        public.status().as_u16(),
        404,
        "peer routes must not exist on the public port"
    );
    let peer = |version: &str, token: Option<&str>| {
        let mut r = http
            .get(format!("http://{}/peer/v1/status", node.peer_addr))
            .header("x-shoal-peer-protocol", version);
        if let Some(t) = token {
            r = r.header("x-shoal-cluster-token", t);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    let token = Some(common::cluster::TOKEN);
    assert_eq!(peer("1", token).0, 200);
    assert_eq!(peer("1", None).0, 401);
    let (status, message) = peer("999", token);
    assert_eq!(status, 400);
    assert!(message.contains("newer"), "{message}");
    let no_header = http
        .get(format!("http://{}/peer/v1/status", node.peer_addr))
        .header("x-shoal-cluster-token", common::cluster::TOKEN)
        .send()
        .unwrap();
    assert_eq!(no_header.status().as_u16(), 400);
}

/// A collection name as a path segment of the public API.
fn enc(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Every replica of every shard of a collection, read from each node's peer port: the nodes
/// that hold a shard must be `copies` and hold the same records. Answers the live points.
fn replicas_agree(
    cluster: &TestCluster,
    collection: &str,
    shards: u32,
    copies: usize,
) -> Result<usize, String> {
    let mut points = 0;
    for shard in 0..shards {
        let replicas: Vec<_> = cluster
            .nodes
            .iter()
            .filter_map(|n| PeerClient::new(n.peer_addr).records(collection, shard))
            .collect();
        if replicas.len() != copies {
            return Err(format!("shard {shard}: {} replicas", replicas.len()));
        }
        if replicas[1..].iter().any(|r| *r != replicas[0]) {
            return Err(format!("shard {shard}: replicas differ"));
        }
        points += replicas[0].values().filter(|r| r.body.is_some()).count();
    }
    Ok(points)
}

#[test]
fn collections_with_any_name_replicate() {
    let root = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(root.path(), 3, 61, &[]);
    let names = [
        "with#hash",
        "100%",
        "two words",
        "ünïcødé-名前",
        "q&a=1;x+y",
        "tombstones.json",
        ".tombstones.json.tmp",
    ];
    for (i, name) in names.iter().enumerate() {
        let path = format!("/collections/{}", enc(name));
        cluster.nodes[i % 3].ok(
            "PUT",
            &path,
            Some(json!({"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 3, "replication_factor": 2})),
        );
        let points: Vec<Value> = (0..30)
            .map(|id| json!({"id": id, "vector": [id as f32, 1.0, 2.0, 3.0], "payload": {"name": name}}))
            .collect();
        cluster.nodes[(i + 1) % 3].ok(
            "PUT",
            &format!("{path}/points?wait=true"),
            Some(json!({ "points": points })),
        );
        for node in &cluster.nodes {
            let count = node.ok(
                "POST",
                &format!("{path}/points/count"),
                Some(json!({"exact": true})),
            );
            assert_eq!(count["count"], 30, "{name:?} through {}", node.addr);
        }
        assert_eq!(replicas_agree(&cluster, name, 3, 2), Ok(30), "{name:?}");
    }
    // Deleting through another node removes it everywhere; the others stay.
    cluster.nodes[2].ok(
        "DELETE",
        &format!("/collections/{}", enc("with#hash")),
        None,
    );
    for node in &cluster.nodes {
        let exists = |name: &str| {
            node.ok("GET", &format!("/collections/{}/exists", enc(name)), None)["exists"] == true
        };
        eventually("the deletion reached every node", || {
            (!exists("with#hash"), node.addr)
        });
        for name in &names[1..] {
            assert!(exists(name), "{name:?} on {}", node.addr);
        }
    }
}

#[test]
fn a_frozen_peer_stalls_neither_writes_nor_reads_and_catches_up() {
    let root = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(root.path(), 3, 51, &[]);
    let nodes = &cluster.nodes;
    nodes[0].ok(
        "PUT",
        "/collections/c",
        Some(json!({"vectors": {"size": 8, "distance": "Dot"}, "shard_number": 6, "replication_factor": 2})),
    );
    let data: Vec<(u64, Vec<f32>)> = numbered(0, 200, 8, 5);
    upsert(&nodes[0], &data);

    // SIGSTOP keeps shoal-2's sockets open: calls to it hang instead of failing.
    nodes[2].signal(libc::SIGSTOP);
    let window = Duration::from_secs(10);
    let started = Instant::now();
    let extra = vectors(2000, 8, 6);
    let mut written = 0usize;
    while started.elapsed() < window && written < extra.len() {
        let id = 10_000 + written as u64;
        nodes[written % 2].ok(
            "PUT",
            "/collections/c/points?wait=true",
            Some(json!({"points": [{"id": id, "vector": extra[written], "payload": {"id": id}}]})),
        );
        written += 1;
        if written.is_multiple_of(25) {
            // Reads through either healthy node see every write so far.
            assert_eq!(
                nodes[written % 2].count("c") as usize,
                data.len() + written,
                "count through {}",
                nodes[written % 2].addr
            );
        }
    }
    // With the frozen replica waited for (10 s per call) this would be one or two writes.
    assert!(
        written >= 50,
        "only {written} writes completed in {window:?} with a peer frozen"
    );
    let peers = nodes[0].ok("GET", "/cluster", None);
    assert_eq!(peers["peers"]["2"]["state"], "down", "{peers}");
    let q = vectors(1, 8, 7).remove(0);
    for node in &nodes[..2] {
        let hits = node.ok(
            "POST",
            "/collections/c/points/query",
            Some(json!({"query": q, "limit": 5, "params": {"exact": true}})),
        );
        assert_eq!(hits["points"].as_array().map(Vec::len), Some(5), "{hits}");
    }

    // Thawed, shoal-2 catches up on everything it missed: every replica holds the same records.
    nodes[2].signal(libc::SIGCONT);
    let total = data.len() + written;
    eventually("shoal-2 caught up", || {
        let agree = replicas_agree(&cluster, "c", 6, 2);
        (agree == Ok(total), agree)
    });
    // A replica's records are visible to the peer port (what the check above reads) from the
    // moment its commit writes them, a few milliseconds before that commit's fsync returns and
    // it updates what reads count; under load that window is long enough to be seen.
    eventually("counts through shoal-2 see every point", || {
        let n = nodes[2].count("c") as usize;
        (n == total, n)
    });
}

/// Sets its flag when dropped: a writer thread stops even when an assertion fails.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Whether every node but `frozen` sees node `frozen` down.
fn seen_down(nodes: &[Node], frozen: usize) -> bool {
    (nodes.iter().enumerate())
        .filter(|(i, _)| *i != frozen)
        .all(|(_, n)| n.ok("GET", "/cluster", None)["peers"][frozen.to_string()]["state"] == "down")
}

/// A node frozen while writes go on answers, from the moment it thaws, with every write
/// acknowledged meanwhile and since: its replicas that missed writes serve no read that wants a
/// complete replica until they caught up. Three freeze/thaw rounds, 25 counts and retrieves
/// through the thawed node each, no pause between the SIGCONT and the first read.
#[test]
fn reads_through_a_thawed_node_see_every_write_acknowledged_while_it_was_frozen() {
    let root = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(root.path(), 3, 121, &[]);
    let nodes = &cluster.nodes;
    nodes[0].ok(
        "PUT",
        "/collections/c",
        Some(json!({"vectors": {"size": 8, "distance": "Dot"}, "shard_number": 6, "replication_factor": 2})),
    );
    let data: Vec<(u64, Vec<f32>)> = numbered(0, 300, 8, 8);
    upsert(&nodes[0], &data);
    let mut total = data.len();
    for round in 0..3u64 {
        // Frozen, shoal-2 keeps its sockets open; once its peers see it down they acknowledge
        // writes without its replicas (write_consistency_factor 1).
        nodes[2].signal(libc::SIGSTOP);
        eventually("shoal-0 and shoal-1 see shoal-2 down", || {
            (seen_down(nodes, 2), ())
        });
        let first = 10_000 * (round + 1);
        let written = numbered(first, 200, 8, 9 + round);
        for (i, batch) in written.chunks(20).enumerate() {
            let points: Vec<Value> = (batch.iter())
                .map(|(id, v)| json!({"id": id, "vector": v, "payload": {"round": round}}))
                .collect();
            nodes[i % 2].ok(
                "PUT",
                "/collections/c/points?wait=true",
                Some(json!({ "points": points })),
            );
        }
        total += written.len();
        // Read through shoal-2 from the moment it thaws, while writes go on through the others
        // (its peers skip it until they see it answer): every read sees every write
        // acknowledged before it started.
        nodes[2].signal(libc::SIGCONT);
        let ids: Vec<u64> = written.iter().map(|(id, _)| *id).collect();
        let more = numbered(first + 1000, 500, 8, 20 + round);
        let (acked, done) = (AtomicUsize::new(0), AtomicBool::new(false));
        std::thread::scope(|s| {
            s.spawn(|| {
                for (i, (id, v)) in more.iter().enumerate() {
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    nodes[i % 2].ok(
                        "PUT",
                        "/collections/c/points?wait=true",
                        Some(json!({"points": [{"id": id, "vector": v}]})),
                    );
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            });
            let stop = StopOnDrop(&done);
            for read in 0..25 {
                let before = total + acked.load(Ordering::SeqCst);
                let counted = nodes[2].count("c") as usize;
                assert!(
                    counted >= before,
                    "round {round}: count {read} through shoal-2 after its thaw saw {counted} of {before} acknowledged points"
                );
                let found = nodes[2].ok(
                    "POST",
                    "/collections/c/points",
                    Some(json!({"ids": ids, "with_payload": false})),
                );
                assert_eq!(
                    found.as_array().map(Vec::len),
                    Some(ids.len()),
                    "round {round}: retrieve {read} through shoal-2 after its thaw"
                );
            }
            drop(stop);
        });
        total += acked.load(Ordering::SeqCst);
        // It catches up, and serves from its own replicas again: every replica agrees, and
        // every node calls every replica Active (Qdrant's states) again.
        eventually("shoal-2 caught up", || {
            let agree = replicas_agree(&cluster, "c", 6, 2);
            (agree == Ok(total), agree)
        });
        eventually("every replica is Active again", || {
            let states: Vec<Value> = (nodes.iter())
                .flat_map(|n| {
                    let info = n.ok("GET", "/collections/c/cluster", None);
                    let shards = |kind: &str| info[kind].as_array().cloned().unwrap_or_default();
                    [shards("local_shards"), shards("remote_shards")].concat()
                })
                .map(|s| s["state"].clone())
                .collect();
            (states.iter().all(|s| s == "Active"), states)
        });
    }
}

/// A version as a node whose clock runs `ahead` of this host's issues it.
fn version_ahead(ahead: Duration) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + ahead;
    (now.as_micros() as u64) << 8
}

/// Creates collection `name` with one shard and one replica through node 0, and answers the
/// index of the node that holds it once it does.
fn one_replica_collection(cluster: &TestCluster, name: &str) -> usize {
    cluster.nodes[0].ok(
        "PUT",
        &format!("/collections/{name}"),
        Some(json!({"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 1, "replication_factor": 1})),
    );
    let owner = || {
        (cluster.nodes.iter()).position(|n| PeerClient::new(n.peer_addr).records(name, 0).is_some())
    };
    eventually("the shard has an owner", || (owner().is_some(), ()));
    owner().expect("an owner")
}

#[test]
fn payload_changes_and_deletes_apply_over_a_write_from_a_clock_ahead() {
    use shoal::cluster::protocol::{encode, shard_path};
    use shoal::shard::point::{PointId, Record, RecordBody};
    use shoal::shard::Change;
    let root = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(root.path(), 3, 81, &[]);
    let owner = one_replica_collection(&cluster, "skew");
    let other = &cluster.nodes[(owner + 1) % 3];
    // Points 1-3 last written through a node whose clock runs 60 s ahead (clocks may differ by
    // up to 5 minutes): each record holds a version this node's clock has not reached.
    let ahead = version_ahead(Duration::from_secs(60));
    let records: Vec<Change> = (1..=3u64)
        .map(|id| Change {
            id: PointId::Num(id),
            record: Record {
                version: ahead,
                vector_version: ahead,
                body: Some(RecordBody {
                    vector: vec![1.0, id as f32],
                    payload_json: format!(r#"{{"v":"ahead","id":{id}}}"#),
                }),
            },
            payload: None,
        })
        .collect();
    let peer = PeerClient::new(cluster.nodes[owner].peer_addr);
    let (status, body) = peer.send(
        "POST",
        &format!("{}?durable=true", shard_path("skew", 0, "commit")),
        Some(common::cluster::TOKEN),
        encode(&records),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // A client then changes them through a node that does not hold the shard: the changes are
    // computed from the records they change, so they must win over them. The payload change
    // answered 503 (its version was older than the vector version it kept) and the deletes
    // answered "completed" and changed nothing.
    let changed = other.call(
        "POST",
        "/collections/skew/points/payload?wait=true",
        Some(json!({"payload": {"v": "later"}, "points": [1]})),
    );
    assert_eq!(changed.0, 200, "{}", changed.1);
    other.ok(
        "POST",
        "/collections/skew/points/delete?wait=true",
        Some(json!({"points": [2]})),
    );
    other.ok(
        "POST",
        "/collections/skew/points/delete?wait=true",
        Some(json!({"filter": {"must": [{"key": "id", "match": {"value": 3}}]}})),
    );
    for node in &cluster.nodes {
        let got = node.ok(
            "POST",
            "/collections/skew/points",
            Some(json!({"ids": [1, 2, 3], "with_payload": true})),
        );
        assert_eq!(
            got,
            json!([{"id": 1, "payload": {"v": "later", "id": 1}, "vector": null,
                    "shard_key": null, "order_value": null}]),
            "through {}",
            node.addr
        );
    }
}

#[test]
fn a_write_reaching_a_replica_whose_node_deleted_the_collection_gets_404() {
    use shoal::cluster::protocol::{encode, CatalogEntry, CatalogPush};
    let root = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(root.path(), 3, 91, &[]);
    let owner = one_replica_collection(&cluster, "gone");
    let other = &cluster.nodes[(owner + 1) % 3];
    // The collection is deleted on the owner's node only, as a delete made through it is for a
    // moment (the others hear of it from its broadcast or their next catalog sync).
    let tombstone = CatalogPush {
        entry: CatalogEntry {
            name: "gone".into(),
            version: version_ahead(Duration::from_secs(10)),
            config: None,
        },
        fresh: false,
    };
    let (status, body) = PeerClient::new(cluster.nodes[owner].peer_addr).send(
        "PUT",
        "/peer/v1/catalog",
        Some(common::cluster::TOKEN),
        encode(&tombstone),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // A write through a node that has not heard yet: its only replica is gone. It answered 503
    // (retry) though the collection no longer exists; the client gets the 404 it would get a
    // moment later.
    let (status, body) = other.call(
        "PUT",
        "/collections/gone/points?wait=true",
        Some(json!({"points": [{"id": 1, "vector": [1.0, 0.0]}]})),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = other.call(
        "POST",
        "/collections/gone/points/query",
        Some(json!({"query": [1.0, 0.0]})),
    );
    assert_eq!(status, 404, "{body}");
}

#[test]
fn a_payload_change_larger_than_a_plan_page_reaches_every_point_on_every_replica() {
    let root = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(root.path(), 3, 71, &[]);
    cluster.nodes[0].ok(
        "PUT",
        "/collections/big",
        Some(json!({"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 2, "replication_factor": 2})),
    );
    let pts: Vec<Value> = (0..60)
        .map(|i| json!({"id": i, "vector": [1.0, i as f32], "payload": {"i": i, "g": i % 2}}))
        .collect();
    cluster.nodes[1].ok(
        "PUT",
        "/collections/big/points?wait=true",
        Some(json!({ "points": pts })),
    );
    // 30 points of ~1 MB each per shard: two pages of changes (16 MB each) per shard, planned
    // by one replica and written to both.
    let blob = "b".repeat(1 << 20);
    cluster.nodes[2].ok(
        "POST",
        "/collections/big/points/payload?wait=true",
        Some(json!({"payload": {"blob": blob}, "filter": {"must": [{"key": "g", "match": {"value": 0}}]}})),
    );
    // Reading them all back is over what one request may hold (the default 64 MiB: 8 MB of
    // stored payload per shard of two), through any node, whichever replica answers: a 400.
    let all: Vec<u64> = (0..60).collect();
    for node in &cluster.nodes {
        let (status, body) = node.call(
            "POST",
            "/collections/big/points",
            Some(json!({"ids": all, "with_payload": true})),
        );
        assert_eq!(status, 400, "{body}");
        let got = node.ok(
            "POST",
            "/collections/big/points",
            Some(json!({"ids": [0, 1, 2, 3], "with_payload": true})),
        );
        assert_eq!(got.as_array().map(Vec::len), Some(4));
    }
    for node in &cluster.nodes {
        for shard in 0..2 {
            let Some(records) = PeerClient::new(node.peer_addr).records("big", shard) else {
                continue;
            };
            for (id, record) in records {
                let body = record.body.expect("live");
                let p: Value = serde_json::from_str(&body.payload_json).unwrap();
                let even = p["g"] == json!(0);
                assert_eq!(
                    p["blob"].as_str().map(str::len),
                    even.then_some(1 << 20),
                    "point {id} on {}",
                    node.addr
                );
            }
        }
    }
}
