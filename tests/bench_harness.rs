//! The benchmark binary against a real node, small: upload into a one-segment collection, then
//! the paired mode (the node's own segment searched in process and over HTTP, interleaved).
//! Checks what the harness reports, not how fast anything is: both sides searched the same graph
//! (same recall at every ef), every round measured both, the medians are real figures.

mod common;
use common::Node;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const N: &str = "1500";

/// The benchmark binary, a workspace member of its own (benches/shoal-bench): `cargo test` at
/// the top builds it into the same target directory as this test, one level above `deps/`.
fn shoal_bench() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bench = dir.join(format!("shoal-bench{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bench.exists(),
        "{} is missing: run the tests from the top of the workspace (`cargo test --all-targets`), which builds it",
        bench.display()
    );
    bench
}

fn bench(args: &[&str], dir: &Path) -> Value {
    let out = dir.join("result.json");
    let status = Command::new(shoal_bench())
        .args(["--n", N, "--dim", "16", "--nq", "40", "--clusters", "5"])
        .args(["--m", "8", "--ef-construct", "40", "--warmup", "5"])
        .arg("--gt-cache")
        .arg(dir.join("gt"))
        .arg("--python")
        .arg(dir.join("no-python"))
        .arg("--out")
        .arg(&out)
        .args(args)
        .status()
        .expect("run shoal-bench");
    assert!(status.success(), "shoal-bench {args:?}: {status}");
    serde_json::from_slice(&std::fs::read(&out).expect("result JSON")).expect("JSON")
}

#[test]
fn paired_mode_measures_both_sides_on_the_nodes_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("node");
    // Threshold = n: the whole upload becomes one HNSW segment, as in scripts/bench-vs-hnswlib.
    let node = Node::start(&data, &["--indexing-threshold", N]);
    let url = node.url("");
    let url = url.trim_end_matches('/');

    let up = bench(
        &["--url", url, "--shard-number", "1", "--upload-only"],
        tmp.path(),
    );
    assert_eq!(up["extra"]["points_reported"], 1500, "{up}");

    let segments = data.join("collections/bench/shards/0/segments");
    let seg = std::fs::read_dir(&segments)
        .expect("segments dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seg-"))
        })
        .expect("one HNSW segment");

    let seg = seg.to_string_lossy().to_string();
    let r = bench(
        &[
            "--url",
            url,
            "--segment",
            &seg,
            "--ef",
            "16,64",
            "--concurrency",
            "1,2",
            "--rounds",
            "2",
            "--min-secs",
            "0.05",
        ],
        tmp.path(),
    );
    assert_eq!(r["mode"], "paired", "{r}");
    let runs = r["runs"].as_array().expect("runs");
    let recall = |series: &str, ef: u64| {
        runs.iter()
            .find(|x| x["series"] == series && x["ef"] == ef)
            .and_then(|x| x["recall"].as_f64())
            .unwrap_or_else(|| panic!("no {series} row at ef {ef}: {r}"))
    };
    for ef in [16, 64] {
        let local = recall("1 thread", ef);
        assert!(local > 0.5, "recall {local} at ef {ef}");
        for c in ["HTTP c=1", "HTTP c=2"] {
            assert_eq!(
                recall(c, ef),
                local,
                "{c} at ef {ef} searched another graph"
            );
        }
    }
    let pairs = r["extra"]["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 4, "{r}");
    for p in pairs {
        let ratios = p["ratios"].as_array().expect("ratios");
        assert_eq!(ratios.len(), 2, "{p}");
        assert!(
            ratios.iter().all(|x| x.as_f64().is_some_and(|x| x > 0.0)),
            "{p}"
        );
        for side in ["in_process_qps", "http_qps"] {
            assert!(p[side].as_array().is_some_and(|v| v.len() == 2), "{p}");
        }
    }
}
