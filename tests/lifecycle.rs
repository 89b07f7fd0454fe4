//! The StatefulSet lifecycle on loopback, with a fake Kubernetes API serving `spec.replicas`:
//! ordered start gated by readiness, scale 3→2 with the leaving pod's preStop hand-off, scale
//! 2→3 with the old PVC, and a rolling restart 2, 1, 0 while a client queries without pause.
//! With replication factor 2: no failed query, no lost point.

mod common;
use common::dns::TestDns;
use common::kube::FakeKube;
use common::{free_port, numbered, vectors, Node};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SERVICE: &str = "shoal-headless.default.svc.cluster.local";
const DIM: usize = 8;
/// The peer port's shared secret (a Kubernetes Secret in production).
const TOKEN: &str = "lifecycle-secret";

fn brute_force(data: &[(u64, Vec<f32>)], q: &[f32], k: usize) -> Vec<u64> {
    let mut d: Vec<(f32, u64)> = data
        .iter()
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

fn exact_ids(http: &reqwest::blocking::Client, base: &str, q: &[f32]) -> Result<Vec<u64>, String> {
    let body = json!({"query": q, "limit": 10, "params": {"exact": true}});
    let resp = http
        .post(format!("{base}/collections/c/points/query"))
        .json(&body)
        .send()
        .map_err(|e| format!("connect: {e}"))?;
    let status = resp.status();
    let v: Value = resp.json().map_err(|e| format!("body: {e}"))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {v}"));
    }
    Ok(v["result"]["points"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
        .unwrap_or_default())
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn handoff(node: &Node) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
    command.args([
        "--peer-listen",
        &node.peer_addr.to_string(),
        "--cluster-token",
        TOKEN,
        "handoff",
        "--wait",
    ]);
    let out = common::output_within(&mut command, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "handoff failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scale_down_scale_up_and_rolling_restart_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dns = TestDns::start();
    let kube = FakeKube::start(3);
    let (port, peer_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let (dns_arg, kube_arg) = (dns.addr.to_string(), kube.url());
    let ip = |i: usize| Ipv4Addr::new(127, 0, 0, 31 + i as u8);

    // Ordered start: each pod only once the previous one is Ready (OrderedReady).
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            dns.set(&format!("shoal-{i}.{SERVICE}"), &[ip(i)]);
            let hostname = format!("shoal-{i}");
            let args = [
                "--hostname",
                &hostname,
                "--service",
                SERVICE,
                "--dns-server",
                &dns_arg,
                "--kube-api",
                &kube_arg,
                "--cluster-token",
                TOKEN,
            ];
            Node::start_at(
                IpAddr::V4(ip(i)),
                port,
                peer_port,
                &root.path().join(&hostname),
                &args,
            )
        })
        .collect();

    // The peer port wants the cluster token.
    let peer_status = |token: Option<&str>| {
        let mut r = reqwest::blocking::Client::new()
            .get(format!("http://{}/peer/v1/status", nodes[1].peer_addr))
            .header("x-shoal-peer-protocol", "1");
        if let Some(t) = token {
            r = r.header("x-shoal-cluster-token", t);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(peer_status(None), 401);
    assert_eq!(peer_status(Some("wrong")), 401);
    assert_eq!(peer_status(Some(TOKEN)), 200);

    nodes[0].ok(
        "PUT",
        "/collections/c",
        Some(json!({"vectors": {"size": DIM, "distance": "Euclid"}, "shard_number": 6, "replication_factor": 2})),
    );
    let mut data: Vec<(u64, Vec<f32>)> = numbered(0, 1500, DIM, 3);
    for chunk in data.chunks(500) {
        let points: Vec<Value> = chunk
            .iter()
            .map(|(id, v)| json!({"id": id, "vector": v}))
            .collect();
        nodes[1].ok(
            "PUT",
            "/collections/c/points?wait=true",
            Some(json!({ "points": points })),
        );
    }
    let queries = vectors(10, DIM, 11);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let check_all = |nodes: &[&Node], data: &[(u64, Vec<f32>)]| {
        for n in nodes {
            assert_eq!(
                n.count("c") as usize,
                data.len(),
                "count through {}",
                n.addr
            );
            for q in &queries {
                assert_eq!(
                    exact_ids(&http, &n.url(""), q).unwrap(),
                    brute_force(data, q, 10),
                    "through {}",
                    n.addr
                );
            }
        }
    };
    check_all(&[&nodes[0], &nodes[1], &nodes[2]], &data);

    // Scale 3 → 2: Kubernetes lowers spec.replicas, then stops shoal-2 after its preStop hook.
    kube.scale(2);
    handoff(&nodes[2]);
    nodes[2].stop();
    dns.set(&format!("shoal-2.{SERVICE}"), &[]);
    check_all(&[&nodes[0], &nodes[1]], &data);
    // Writes keep working on the smaller cluster.
    let extra: Vec<(u64, Vec<f32>)> = numbered(5000, 100, DIM, 5);
    let points: Vec<Value> = extra
        .iter()
        .map(|(id, v)| json!({"id": id, "vector": v}))
        .collect();
    nodes[0].ok(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({ "points": points })),
    );
    data.extend(extra);
    check_all(&[&nodes[0], &nodes[1]], &data);
    // Once the others see the new size, shards owned by {0, 1} only: each holds exactly its own.
    eventually("replicas settle on two nodes", || {
        let c0 = nodes[0].ok("GET", "/collections/c/cluster", None);
        let c1 = nodes[1].ok("GET", "/collections/c/cluster", None);
        let local = |c: &Value| c["local_shards"].as_array().map(Vec::len).unwrap_or(0);
        local(&c0) == 6 && local(&c1) == 6
    });

    // Scale 2 → 3: shoal-2 comes back on its old PVC and takes its shards again.
    kube.scale(3);
    dns.set(&format!("shoal-2.{SERVICE}"), &[ip(2)]);
    nodes[2].spawn();
    check_all(&[&nodes[0], &nodes[1], &nodes[2]], &data);
    eventually(
        "shoal-2 holds its shards again and the others dropped theirs",
        || {
            let total: usize = nodes
                .iter()
                .map(|n| {
                    n.ok("GET", "/collections/c/cluster", None)["local_shards"]
                        .as_array()
                        .map(Vec::len)
                        .unwrap_or(0)
                })
                .sum();
            total == 12
        },
    );
    check_all(&[&nodes[0], &nodes[1], &nodes[2]], &data);

    // Rolling restart 2, 1, 0 while a client queries and writes without pause through the pods
    // that are up (as the client Service would route).
    let up: Arc<Vec<AtomicBool>> = Arc::new((0..3).map(|_| AtomicBool::new(true)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let (queries_run, written) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::<(u64, Vec<f32>)>::new())),
    );
    let bases: Vec<String> = nodes.iter().map(|n| n.url("")).collect();
    let client = {
        let (up, stop, failures, queries_run, written) = (
            Arc::clone(&up),
            Arc::clone(&stop),
            Arc::clone(&failures),
            Arc::clone(&queries_run),
            Arc::clone(&written),
        );
        let mut known = data.clone();
        let queries = queries.clone();
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let target = (0..3)
                    .map(|k| (i + k) % 3)
                    .find(|k| up[*k].load(Ordering::SeqCst));
                let Some(target) = target else { continue };
                let base = &bases[target];
                if i.is_multiple_of(10) {
                    let (id, v) = (20_000 + i as u64, vectors(1, DIM, i as u64).remove(0));
                    let body = json!({"points": [{"id": id, "vector": v}]});
                    match http
                        .put(format!("{base}/collections/c/points?wait=true"))
                        .json(&body)
                        .send()
                    {
                        Ok(r) if r.status().is_success() => {
                            known.push((id, v.clone()));
                            written.lock().unwrap().push((id, v));
                        }
                        Ok(r) => failures
                            .lock()
                            .unwrap()
                            .push(format!("write via {target}: HTTP {}", r.status())),
                        Err(_) => {} // connection refused by a pod going down: the client retries elsewhere
                    }
                    continue;
                }
                let q = &queries[i % queries.len()];
                match exact_ids(&http, base, q) {
                    Ok(got) => {
                        queries_run.fetch_add(1, Ordering::Relaxed);
                        let want = brute_force(&known, q, 10);
                        if got != want {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("query via {target}: {got:?} != {want:?}"));
                        }
                    }
                    Err(e) if e.starts_with("connect") => {}
                    Err(e) => failures
                        .lock()
                        .unwrap()
                        .push(format!("query via {target}: {e}")),
                }
            }
        })
    };
    for i in [2usize, 1, 0] {
        up[i].store(false, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        handoff(&nodes[i]); // preStop runs on every termination; not a scale-down, so a no-op
        nodes[i].restart();
        up[i].store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1500));
    }
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        queries_run.load(Ordering::Relaxed) > 50,
        "the client must have been querying throughout"
    );
    data.extend(written.lock().unwrap().iter().cloned());
    check_all(&[&nodes[0], &nodes[1], &nodes[2]], &data);
}
