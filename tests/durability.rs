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

/// Ids of the node's threads called `name` (`/proc/<pid>/task/<tid>/comm`).
fn threads_named(node: &Node, name: &str) -> Vec<u64> {
    let pid = node.pid().expect("the node is running");
    let mut tids: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the node's threads")
        .filter_map(|t| {
            let t = t.ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            (comm.trim_end() == name).then(|| t.file_name().to_str()?.parse().ok())?
        })
        .collect();
    tids.sort_unstable();
    tids
}

#[test]
fn acknowledged_upserts_survive_kill_9_during_ingest() {
    let dir = tempfile::tempdir().unwrap();
    // A low threshold makes segment builds happen during the ingest, so the kill can land mid-build.
    let mut node = Node::start(&dir.path().join("n"), &["--indexing-threshold", "300"]);
    node.create_collection("c", 8, "Cosine");

    let writers = Writers::start(&node, "c", 8, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while writers.batches() < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writers did not get 40 batches acknowledged"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    node.kill9();
    let acked = writers.stop();
    assert!(acked.len() >= 2000);

    node.restart_after_kill9();
    assert_all_present(&node, "c", &acked);
}

/// Two writer threads upserting batches of 50 points with `wait=true` until stopped or until a
/// request fails; they keep the ids acknowledged and the failures answered.
struct Writers {
    acked: Arc<Mutex<Vec<u64>>>,
    failures: Arc<Mutex<Vec<String>>>,
    batches: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    /// Writers to collection `c` of `dim`; each point carries a payload of `payload_bytes` of
    /// text besides its writer number. Ids start at `first` (a second round does not overwrite
    /// the first).
    fn start(node: &Node, c: &str, dim: usize, payload_bytes: usize) -> Writers {
        Writers::start_from(node, c, dim, payload_bytes, 0)
    }

    fn start_from(node: &Node, c: &str, dim: usize, payload_bytes: usize, first: u64) -> Writers {
        let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
        let failures: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let batches = Arc::new(AtomicU64::new(0));
        let threads = (0..2u64)
            .map(|w| {
                let (acked, failures, stop, batches) = (
                    Arc::clone(&acked),
                    Arc::clone(&failures),
                    Arc::clone(&stop),
                    Arc::clone(&batches),
                );
                let url = node.url(&format!("/collections/{c}/points?wait=true"));
                let text = "x".repeat(payload_bytes);
                std::thread::spawn(move || {
                    let http = reqwest::blocking::Client::new();
                    let mut b = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let ids: Vec<u64> = (0..50)
                            .map(|i| first + w * 1_000_000 + b * 50 + i)
                            .collect();
                        let vs = vectors(50, dim, first + w * 1000 + b);
                        let points: Vec<Value> = ids
                            .iter()
                            .zip(vs)
                            .map(|(id, v)| {
                                json!({"id": id, "vector": v, "payload": {"w": w, "text": text}})
                            })
                            .collect();
                        match http.put(&url).json(&json!({ "points": points })).send() {
                            Ok(r) if r.status().is_success() => {
                                acked.lock().unwrap().extend(ids);
                                batches.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => {
                                let status = r.status();
                                let body = r.text().unwrap_or_default();
                                failures.lock().unwrap().push(format!("{status}: {body}"));
                                break;
                            }
                            Err(_) => break, // the node is gone: this batch was never acknowledged
                        }
                        b += 1;
                    }
                })
            })
            .collect();
        Writers {
            acked,
            failures,
            batches,
            stop,
            threads,
        }
    }

    fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    /// Stops the writers; answers the ids acknowledged.
    fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

/// Every id of `acked` is a point of `c`. Asked in pages: how many ids the writers got
/// acknowledged depends on the machine's speed, and one retrieve of them all may be over the
/// request's memory budget.
fn assert_all_present(node: &Node, c: &str, acked: &[u64]) {
    let mut found = 0;
    for page in acked.chunks(2000) {
        let ids: Vec<Value> = page.iter().map(|i| json!(i)).collect();
        let points = node.ok(
            "POST",
            &format!("/collections/{c}/points"),
            Some(json!({"ids": ids, "with_payload": false})),
        );
        found += points.as_array().map(Vec::len).unwrap_or(0);
    }
    assert_eq!(
        found,
        acked.len(),
        "every acknowledged point must survive kill -9"
    );
    assert!(node.count(c) as usize >= acked.len());
}

/// A value of the node's `/metrics` (0 when absent).
fn metric(node: &Node, name: &str) -> f64 {
    let text = reqwest::blocking::get(node.url("/metrics"))
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| rest.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The record store reopens sled to bound its recovery (a 1 MiB threshold here): writes racing
/// the reopens all land (none is refused), and acknowledged writes survive `kill -9` right after
/// a reopen and during one.
#[test]
fn acknowledged_upserts_survive_kill_9_around_sled_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(&dir.path().join("n"), &["--sled-reopen-after-mb", "1"]);
    node.create_collection("c", 16, "Cosine");
    let reopens = |node: &Node| metric(node, "shoal_sled_reopens_total");

    // ~1.3 MiB logged (about 1 KB a point), then quiet: one reopen follows, and a kill right
    // after it loses nothing.
    let text = "x".repeat(300);
    let mut acked: Vec<u64> = Vec::new();
    for b in 0..28u64 {
        let points: Vec<Value> = vectors(50, 16, b)
            .into_iter()
            .enumerate()
            .map(|(i, v)| json!({"id": 50 * b + i as u64, "vector": v, "payload": {"text": text}}))
            .collect();
        node.ok(
            "PUT",
            "/collections/c/points?wait=true",
            Some(json!({ "points": points })),
        );
        acked.extend((0..50).map(|i| 50 * b + i));
    }
    assert_eq!(
        reopens(&node),
        0.0,
        "not due while writes go on below twice the threshold"
    );
    common::eventually("a reopen once writes are quiet", || {
        let now = reopens(&node);
        (now >= 1.0, now)
    });
    node.kill9();
    node.restart_after_kill9();
    assert_all_present(&node, "c", &acked);

    // Writes never go quiet: reopens are forced among them, and every batch is acknowledged.
    let writers = Writers::start_from(&node, "c", 16, 300, 100_000);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while reopens(&node) < 3.0 {
        assert!(
            writers.failures().is_empty() && std::time::Instant::now() < deadline,
            "writes were refused or no reopen came: {:?}, {} reopens",
            writers.failures(),
            reopens(&node)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let failures = writers.failures();
    acked.extend(writers.stop());
    assert!(
        failures.is_empty(),
        "writes racing a reopen were refused: {failures:?}"
    );

    // Killed while a reopen is under way (as seen by its gauge; if the polls never catch one,
    // the kill lands among the writes and forced reopens all the same).
    let writers = Writers::start_from(&node, "c", 16, 300, 10_000_000);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while metric(&node, "shoal_sled_reopening") < 1.0 && std::time::Instant::now() < deadline {
        assert!(writers.failures().is_empty(), "{:?}", writers.failures());
    }
    let during = metric(&node, "shoal_sled_reopening") >= 1.0;
    node.kill9();
    eprintln!("killed during a reopen (as its gauge showed just before): {during}");
    acked.extend(writers.stop());
    node.restart_after_kill9();
    assert_all_present(&node, "c", &acked);
}

#[test]
fn restart_reopens_segments_without_rebuilding() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(&dir.path().join("n"), &["--indexing-threshold", "500"]);
    node.create_collection("c", 16, "Euclid");
    // Builds run on one optimizer thread that lives as long as the node (not on tokio's
    // blocking pool, whose threads exit and leave their memory pages behind).
    let optimizer = threads_named(&node, "shoal-optimizer");
    assert_eq!(optimizer.len(), 1, "one optimizer thread");
    let vs = vectors(2000, 16, 7);
    // Each chunk is indexed before the next is written: four builds.
    for chunk in 0..4 {
        let points: Vec<Value> = (chunk * 500..(chunk + 1) * 500)
            .map(|i| json!({"id": i, "vector": vs[i], "payload": {"i": i}}))
            .collect();
        node.ok(
            "PUT",
            "/collections/c/points?wait=true",
            Some(json!({ "points": points })),
        );
        let written = Some((chunk as u64 + 1) * 500);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while info(&node, "c")["indexed_vectors_count"].as_u64() != written {
            assert!(
                std::time::Instant::now() < deadline,
                "index never built: {}",
                info(&node, "c")
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    // A build is counted once it has cleaned up after itself, a moment after its points show
    // as indexed.
    common::eventually("a build a chunk", || {
        let builds = metric(&node, "shoal_index_build_seconds_count");
        (builds >= 4.0, builds)
    });
    assert_eq!(
        threads_named(&node, "shoal-optimizer"),
        optimizer,
        "the same optimizer thread after the builds"
    );
    assert!(
        !threads_named(&node, "shoal-build-0").is_empty(),
        "hnsw_rs inserted on the named build pool"
    );
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
