//! Faults (issue 16): a full disk on a small tmpfs mounted by the test (skipped with a message
//! where it cannot mount: it needs root), and SIGTERM during an index build.

mod common;
use common::{vectors, Node};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A tmpfs mounted for one test; unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().to_path_buf();
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let target = c(path.to_str()?);
        let options = c(&format!("size={mib}m"));
        // SAFETY: NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c("tmpfs").as_ptr(),
                target.as_ptr(),
                c("tmpfs").as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs ({}); the disk-full test needs root",
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(Tmpfs { _dir: dir, path })
    }

    /// Writes a file until the volume is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        filler
    }

    fn free(&self) -> u64 {
        shoal::store::free_bytes(&self.path).unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.path.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; a lazy unmount never blocks on open files.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn error_of(v: &Value) -> String {
    v["status"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn upsert(node: &Node, ids: std::ops::Range<u64>) -> (u16, Value) {
    let pts: Vec<Value> = ids
        .map(|i| json!({"id": i, "vector": vectors(1, 8, i)[0], "payload": {"i": i}}))
        .collect();
    node.call(
        "PUT",
        "/collections/c/points?wait=true",
        Some(json!({ "points": pts })),
    )
}

/// Retries an upsert until it is accepted; panics if writes do not resume within 15 s.
fn upsert_until_accepted(node: &Node, ids: std::ops::Range<u64>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, v) = upsert(node, ids.clone());
        if s == 200 {
            return;
        }
        assert_eq!(s, 503, "{v}");
        assert!(Instant::now() < deadline, "writes did not resume: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn indexed(node: &Node) -> (u64, u64) {
    let info = node.ok("GET", "/collections/c", None);
    (
        info["points_count"].as_u64().unwrap(),
        info["indexed_vectors_count"].as_u64().unwrap(),
    )
}

fn leftovers(data: &Path) -> Vec<String> {
    let segs = data.join("collections/c/shards/0/segments");
    std::fs::read_dir(segs)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

fn searchable(node: &Node, expected: u64) {
    assert_eq!(node.count("c"), expected);
    let hits = node.ok(
        "POST",
        "/collections/c/points/query",
        Some(json!({"query": vectors(1, 8, 3)[0], "limit": 3})),
    );
    assert_eq!(hits["points"].as_array().unwrap().len(), 3);
}

#[test]
fn a_full_disk_refuses_writes_serves_reads_and_recovers_by_itself() {
    let Some(volume) = Tmpfs::mount(48) else {
        return;
    };
    let data = volume.path.join("data");
    let mut node = Node::start(
        &data,
        &[
            "--disk-reserve-bytes",
            "8388608",
            "--indexing-threshold",
            "200",
        ],
    );
    node.create_collection("c", 8, "Euclid");
    assert_eq!(upsert(&node, 0..300).0, 200);

    // Full: writes get a 503 that says why, reads go on.
    let filler = volume.fill();
    let (s, v) = upsert(&node, 300..400);
    assert_eq!(s, 503, "{v}");
    assert!(error_of(&v).contains("data volume is full"), "{v}");
    searchable(&node, 300);

    // Freed: writes resume by themselves, the postponed index build runs once, and nothing
    // keeps consuming the freed space.
    std::fs::remove_file(&filler).unwrap();
    upsert_until_accepted(&node, 300..400);
    let deadline = Instant::now() + Duration::from_secs(120);
    while indexed(&node) != (400, 400) {
        assert!(
            Instant::now() < deadline,
            "the index was not built: {:?}",
            indexed(&node)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = volume.free();
    std::thread::sleep(Duration::from_secs(3));
    let after = volume.free();
    assert!(
        before.abs_diff(after) < 1 << 20,
        "free space moved from {before} to {after} with the node idle"
    );
    assert!(leftovers(&data).is_empty(), "{:?}", leftovers(&data));

    // Full again: SIGTERM exits cleanly (every acknowledged write is on disk).
    let filler = volume.fill();
    node.stop();
    // A restart on the full volume opens read-only: reads served, writes refused clearly.
    node.spawn();
    searchable(&node, 400);
    let (s, v) = upsert(&node, 400..500);
    assert_eq!(s, 503, "{v}");
    assert!(error_of(&v).contains("--disk-reserve-bytes"), "{v}");
    std::fs::remove_file(&filler).unwrap();
    upsert_until_accepted(&node, 400..500);
    searchable(&node, 500);
    node.restart();
    searchable(&node, 500);
}

#[test]
fn sled_failing_on_a_full_disk_is_reopened_once_space_is_freed() {
    let Some(volume) = Tmpfs::mount(32) else {
        return;
    };
    let data = volume.path.join("data");
    // No reserve: the write itself meets the full disk, as when the disk fills from outside
    // between the check and the write; sled then fails every write until reopened.
    let mut node = Node::start(&data, &["--disk-reserve-bytes", "0"]);
    node.create_collection("c", 8, "Euclid");
    assert_eq!(upsert(&node, 0..300).0, 200);
    let filler = volume.fill();
    let (s, v) = upsert(&node, 300..600);
    assert_eq!(s, 503, "{v}");
    searchable(&node, 300);
    std::fs::remove_file(&filler).unwrap();
    upsert_until_accepted(&node, 300..600);
    searchable(&node, 600);
    node.restart();
    searchable(&node, 600);
}

#[test]
fn sigterm_cancels_an_index_build_which_starts_again_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let mut node = Node::start(&data, &["--indexing-threshold", "1000000"]);
    let dim = 32;
    node.create_collection("c", dim, "Euclid");
    let n = 12_000;
    for (chunk, vs) in vectors(n, dim, 11).chunks(5_000).enumerate() {
        let pts: Vec<Value> = vs
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"id": chunk * 5_000 + i, "vector": v}))
            .collect();
        node.ok(
            "PUT",
            "/collections/c/points?wait=true",
            Some(json!({ "points": pts })),
        );
    }
    node.stop();
    node.extra_args = vec!["--indexing-threshold".into(), "1000".into()];
    node.spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while leftovers(&data).is_empty() {
        assert!(Instant::now() < deadline, "no build started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let status = node.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    eprintln!("stopped {:?} after SIGTERM, mid-build", started.elapsed());
    // The build was cancelled, not waited for: its directory is gone and no segment exists.
    assert!(leftovers(&data).is_empty(), "{:?}", leftovers(&data));
    let segs = std::fs::read_dir(data.join("collections/c/shards/0/segments")).unwrap();
    let built: Vec<String> = segs
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("seg-"))
        .collect();
    assert!(built.is_empty(), "the build ran to its end: {built:?}");
    // After the restart every point is there and the build starts again.
    node.spawn();
    assert_eq!(node.count("c"), n as u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while leftovers(&data).is_empty() && indexed(&node).1 == 0 {
        assert!(Instant::now() < deadline, "no build after the restart");
        std::thread::sleep(Duration::from_millis(20));
    }
}
