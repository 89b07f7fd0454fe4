//! A node in a memory cgroup sized to its data, as Kubernetes runs it: it ingests, indexes in
//! bounded segments, is killed with -9, reopens, and answers exactly — and the kernel never had
//! to OOM-kill it. Needs a writable memory cgroup (v1 `/sys/fs/cgroup/memory`, or v2 with the
//! memory controller); skips with a message elsewhere.
//!
//! Also: a tail of a few points with large payloads is bounded by its bytes and ends in a segment
//! once writes are quiet (no cgroup needed).

mod common;
use common::{vectors, Node};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A memory cgroup made for this test, removed on drop.
struct Cgroup {
    dir: PathBuf,
    v2: bool,
}

impl Cgroup {
    fn create(limit: u64) -> Result<Cgroup, String> {
        let name = format!("shoal-test-{}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/memory");
        if v1.join("memory.limit_in_bytes").exists() {
            let dir = v1.join(&name);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string())
                .map_err(|e| format!("setting the v1 limit: {e}"))?;
            return Ok(Cgroup { dir, v2: false });
        }
        let v2 = Path::new("/sys/fs/cgroup");
        let controllers =
            std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+memory");
            let dir = v2.join(&name);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::write(dir.join("memory.max"), limit.to_string())
                .map_err(|e| format!("setting the v2 limit: {e}"))?;
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
            return Ok(Cgroup { dir, v2: true });
        }
        Err("no memory cgroup hierarchy here (neither v1 nor v2 with the memory controller)".into())
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    /// How often the kernel OOM-killed a process of this group.
    fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill ")
        } else {
            ("memory.oom_control", "oom_kill ")
        };
        self.read(file)
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Anonymous pages charged to this group: its active and inactive anon LRU lists (the same
    /// names in v1 and v2).
    fn anon_charged(&self) -> u64 {
        let stat = self.read("memory.stat");
        ["active_anon ", "inactive_anon "]
            .iter()
            .map(|key| {
                stat.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    fn peak(&self) -> u64 {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        self.read(file).trim().parse().unwrap_or(0)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The anonymous memory process `pid` has mapped (`RssAnon`), in bytes.
fn rss_anon(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb << 10)
}

fn scrape(node: &Node) -> String {
    node.http
        .get(node.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text")
}

fn info(node: &Node) -> Value {
    node.ok("GET", "/collections/c", None)
}

fn exact_top(data: &[Vec<f32>], q: &[f32], k: usize) -> Vec<u64> {
    let mut d: Vec<(f32, u64)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(),
                i as u64,
            )
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(k).map(|x| x.1).collect()
}

#[test]
fn node_in_a_memory_cgroup_ingests_indexes_survives_kill_9_and_answers_exactly() {
    const LIMIT: u64 = 256 << 20;
    let cgroup = match Cgroup::create(LIMIT) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED node_in_a_memory_cgroup…: cannot make a memory cgroup: {why} (run as root where /sys/fs/cgroup/memory or a v2 memory controller is writable)");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::new(
        [127, 0, 0, 1].into(),
        common::free_port("127.0.0.1"),
        common::free_port("127.0.0.1"),
        &dir.path().join("n"),
        &["--indexing-threshold", "4000"],
    );
    node.cgroup = Some(cgroup.dir.clone());
    node.spawn();
    // The node sized itself from the cgroup's limit.
    let metrics = scrape(&node);
    assert!(
        metrics.contains(&format!("shoal_memory_limit_bytes {LIMIT}")),
        "the node did not read its cgroup limit"
    );
    let (n, dim) = (16_000usize, 48usize);
    // Segments of at most 6 000 points (Qdrant's max_segment_size is in KB of vectors).
    let max_kb = 6_000 * dim * 4 / 1024;
    node.ok(
        "PUT",
        "/collections/c",
        Some(json!({"vectors": {"size": dim, "distance": "Euclid"},
                    "optimizers_config": {"max_segment_size": max_kb}})),
    );
    let data = vectors(n, dim, 11);
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let points: Vec<Value> = chunk
            .iter()
            .map(|&i| json!({"id": i, "vector": data[i], "payload": {"group": i % 100, "tag": format!("t{}", i % 7)}}))
            .collect();
        node.ok(
            "PUT",
            "/collections/c/points?wait=true",
            Some(json!({ "points": points })),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let i = info(&node);
        if i["status"] == "green" && i["indexed_vectors_count"] == i["points_count"] {
            assert_eq!(i["points_count"], n, "{i}");
            // Bounded builds: no segment above the maximum, so at least three of them.
            assert!(i["segments_count"].as_u64().unwrap_or(0) >= 3, "{i}");
            assert_eq!(
                i["config"]["optimizer_config"]["max_segment_size"], max_kb,
                "{i}"
            );
            break;
        }
        assert!(node.is_running(), "the node died while indexing");
        assert!(Instant::now() < deadline, "never fully indexed: {i}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let resident = scrape(&node);
    for component in ["vectors", "graph", "point_table", "payloads", "process"] {
        assert!(
            resident.contains(&format!(
                "shoal_memory_resident_bytes{{component=\"{component}\"}}"
            )),
            "no resident bytes for {component}"
        );
    }
    // sled's cache is reported as what it is, its configured bound, not as resident memory.
    assert!(
        !resident.contains("component=\"sled_cache\""),
        "sled's bound is not resident memory"
    );
    assert!(
        resident.contains("shoal_sled_cache_capacity_bytes"),
        "no sled cache bound"
    );
    // What the cgroup charges for anonymous memory is what the node maps: freed heap memory
    // really left. (mimalloc returned it in 64 KiB pieces of transparent huge pages, and such a
    // huge page stayed whole and charged: after a 100k x 128 upload in a 1 GiB pod, 348 MiB
    // charged for 143 MiB mapped, and the page cache left could not hold the segments.)
    let pid = node.pid().expect("the node runs");
    let (charged, mapped) = (cgroup.anon_charged(), rss_anon(pid));
    assert!(
        mapped > 0 && charged < mapped + (16 << 20),
        "the cgroup charges {} MiB of anonymous memory, the node maps {} MiB",
        charged >> 20,
        mapped >> 20
    );
    node.kill9();
    node.spawn();
    let i = info(&node);
    assert_eq!(i["points_count"], n, "{i}");
    assert_eq!(
        i["indexed_vectors_count"], n,
        "reopened indexed, not rebuilt: {i}"
    );
    for q in vectors(20, dim, 99) {
        let got = node.ok(
            "POST",
            "/collections/c/points/query",
            Some(json!({"query": q, "limit": 10, "params": {"exact": true}})),
        );
        let ids: Vec<u64> = got["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| p["id"].as_u64().expect("id"))
            .collect();
        assert_eq!(ids, exact_top(&data, &q, 10));
        let hnsw = node.ok(
            "POST",
            "/collections/c/points/query",
            Some(json!({"query": q, "limit": 10})),
        );
        assert_eq!(hnsw["points"].as_array().map(Vec::len), Some(10));
    }
    let p = node.ok("GET", "/collections/c/points/777", None);
    assert_eq!(p["payload"], json!({"group": 77, "tag": "t0"}));
    assert!(node.is_running());
    assert_eq!(
        cgroup.oom_kills(),
        0,
        "the kernel OOM-killed a process of the node's cgroup"
    );
    eprintln!(
        "cgroup peak {} MB of {} MB",
        cgroup.peak() >> 20,
        LIMIT >> 20
    );
    node.kill9();
}

/// A tail of a few points with large payloads (30 points of 210 KB: fewer than the quiet minimum
/// of points, 6 MB of text the tail would hold in RAM for good) is bounded by its bytes: once
/// writes are quiet it is built into a segment, and the node answers exactly from it.
#[test]
fn a_quiet_tail_of_large_payloads_ends_in_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("n"), &[]);
    node.create_collection("c", 8, "Euclid");
    let vs = vectors(30, 8, 5);
    let text = |i: usize| format!("{i:03}").repeat(70_000);
    for chunk in 0..3 {
        let points: Vec<Value> = (chunk * 10..chunk * 10 + 10)
            .map(
                |i| json!({"id": i, "vector": vs[i], "payload": {"group": i % 3, "text": text(i)}}),
            )
            .collect();
        node.ok(
            "PUT",
            "/collections/c/points?wait=true",
            Some(json!({ "points": points })),
        );
    }
    common::eventually("the quiet tail built into a segment", || {
        let i = info(&node);
        let done = i["status"] == "green"
            && i["points_count"] == 30
            && i["indexed_vectors_count"] == 30
            && i["segments_count"].as_u64() >= Some(1);
        (done, i)
    });
    let ids: Vec<usize> = (0..30).collect();
    let got = node.ok(
        "POST",
        "/collections/c/points",
        Some(json!({"ids": ids, "with_payload": true})),
    );
    let got = got.as_array().expect("points");
    assert_eq!(got.len(), 30);
    for p in got {
        let i = p["id"].as_u64().expect("id") as usize;
        assert_eq!(
            p["payload"]["text"].as_str(),
            Some(text(i).as_str()),
            "point {i}"
        );
        assert_eq!(p["payload"]["group"], i % 3);
    }
    let group_1 = json!({"must": [{"key": "group", "match": {"value": 1}}]});
    let count = node.ok(
        "POST",
        "/collections/c/points/count",
        Some(json!({"filter": group_1, "exact": true})),
    );
    assert_eq!(count["count"], 10);
    let hits = node.ok(
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": vs[4], "filter": group_1, "limit": 3})),
    );
    let got: Vec<u64> = hits["points"]
        .as_array()
        .expect("hits")
        .iter()
        .filter_map(|h| h["id"].as_u64())
        .collect();
    let in_group: Vec<Vec<f32>> = (0..30)
        .map(|i| {
            if i % 3 == 1 {
                vs[i].clone()
            } else {
                vec![1e6; 8]
            }
        })
        .collect();
    assert_eq!(got, exact_top(&in_group, &vs[4], 3));
}
