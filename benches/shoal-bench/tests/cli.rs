//! The benchmark binary from the outside: its options parse, and a tiny in-process run reports
//! recall against its own exact ground truth. (Building this test is also what makes `cargo test`
//! at the top build the binary that the server's harness test drives against a node.)

use std::process::Command;

fn shoal_bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shoal-bench"))
}

#[test]
fn it_describes_its_options() {
    let out = shoal_bench()
        .arg("--help")
        .output()
        .expect("run shoal-bench");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in ["--url", "--n", "--dim", "--out"] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[test]
fn a_tiny_in_process_run_reports_recall() {
    let dir = std::env::temp_dir().join(format!("shoal-bench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("result.json");
    let status = shoal_bench()
        .args(["--n", "300", "--dim", "8", "--nq", "10", "--clusters", "3"])
        .args(["--m", "8", "--ef-construct", "40", "--warmup", "2"])
        .arg("--gt-cache")
        .arg(dir.join("gt"))
        .arg("--python")
        .arg(dir.join("no-python"))
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run shoal-bench");
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&out).expect("result JSON");
    let _ = std::fs::remove_dir_all(&dir);
    let result: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let runs = result["runs"].as_array().expect("runs");
    assert!(!runs.is_empty(), "no runs in {result}");
    for run in runs {
        let recall = run["recall"].as_f64().expect("recall");
        assert!(recall > 0.5 && recall <= 1.0, "recall {recall} in {run}");
    }
}
