//! The snapshot format's checks, and the point-in-time dump under concurrent writes.

use super::*;
use crate::index::{HnswParams, Metric};
use crate::shard::payload_index::FieldSchema;
use crate::shard::version::VersionClock;
use crate::shard::{Change, Shard, ShardConfig};
use crate::store::Store;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const DIM: usize = 4;

fn config() -> CollectionConfig {
    let keyword = FieldSchema::parse(&serde_json::json!("keyword")).expect("schema");
    let mut config = CollectionConfig::plain(DIM, Metric::Cosine);
    config.payload_schema.insert("tag".into(), keyword);
    config.incarnation = 7;
    config
}

fn open_shard(dir: &Path) -> Shard {
    let db = sled::Config::new().temporary(true).open().expect("sled");
    Shard::open(
        &Store::from_db(db),
        "t",
        dir,
        ShardConfig::new(DIM, Metric::Cosine, HnswParams::default()),
        Arc::new(VersionClock::default()),
    )
    .expect("open shard")
}

fn point(i: u64, version: u64, generation: u64) -> Change {
    let id = if i.is_multiple_of(3) {
        PointId::Uuid(uuid::Uuid::from_u128(i as u128 + 1))
    } else {
        PointId::Num(i)
    };
    let payload = serde_json::json!({"gen": generation, "tag": format!("t{i}")});
    let vector = vec![1.0, i as f32, (i % 5) as f32, generation as f32];
    Change::upsert(
        id,
        version,
        vector,
        payload.as_object().cloned().unwrap_or_default(),
    )
}

fn header(config: &CollectionConfig) -> Header {
    Header {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        collection: "c".into(),
        created: "2026-01-01T00:00:00Z".into(),
        shards: config.shard_number,
        config: config.to_json(),
    }
}

/// A small snapshot of 40 points: its path and the points it holds.
fn small_snapshot(dir: &Path) -> (PathBuf, Vec<SnapshotPoint>) {
    let shard = open_shard(&dir.join("shard"));
    shard
        .commit((0..40).map(|i| point(i, 10 + i, 1)).collect(), false)
        .expect("commit");
    let points = dir.join("0.points");
    assert_eq!(dump_shard(&shard, &points).expect("dump"), 40);
    let file = dir.join("c.snapshot");
    write_archive(&file, &header(&config()), &[(0, &points, 40)]).expect("write");
    let mut held = Vec::new();
    read_points(&file, |p| {
        held.push(p);
        Ok(())
    })
    .expect("read");
    (file, held)
}

#[test]
fn a_snapshot_reads_back_its_config_and_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, points) = small_snapshot(dir.path());
    let verified = verify(&file).expect("verify");
    assert_eq!(verified.points, 40);
    assert_eq!(verified.config, config());
    assert_eq!(points.len(), 40);
    // In id order (numbers, then UUIDs), each with its version and payload.
    let first = &points[0];
    assert_eq!(first.id, PointId::Num(1));
    assert_eq!(first.version, 11);
    assert!(first.payload_json.contains("\"t1\""));
    assert!(matches!(points[39].id, PointId::Uuid(_)));
}

#[test]
fn every_truncation_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, _) = small_snapshot(dir.path());
    let bytes = std::fs::read(&file).expect("read");
    // Everything up to the end of checksums.json (the last byte that is not zero) is needed;
    // what follows is tar's padding.
    let cut = dir.path().join("cut.snapshot");
    let needed = bytes.iter().rposition(|b| *b != 0).expect("data") + 1;
    for len in (0..needed).step_by(7).chain([needed - 1]) {
        std::fs::write(&cut, &bytes[..len]).expect("write");
        assert!(
            verify(&cut).is_err(),
            "a snapshot cut at {len} of {} was accepted",
            bytes.len()
        );
    }
}

#[test]
fn a_flipped_byte_is_refused_or_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, points) = small_snapshot(dir.path());
    let bytes = std::fs::read(&file).expect("read");
    let bad = dir.path().join("bad.snapshot");
    let mut accepted = 0;
    for at in (0..bytes.len()).step_by(3) {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x24;
        std::fs::write(&bad, &flipped).expect("write");
        let mut held = Vec::new();
        let read = read_points(&bad, |p| {
            held.push(p);
            Ok(())
        });
        if let Ok(v) = read {
            // Only bytes nothing reads (tar padding, unused header fields) may change.
            accepted += 1;
            assert_eq!(held, points, "byte {at} changed the points silently");
            assert_eq!(v.config, config(), "byte {at} changed the config silently");
        }
    }
    assert!(
        accepted < bytes.len() / 6,
        "most flips must be caught ({accepted} were not)"
    );
}

#[test]
fn another_format_version_and_a_wrong_dimension_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, points) = small_snapshot(dir.path());
    let shard_file = dir.path().join("0.points");

    let mut newer = header(&config());
    newer.version = FORMAT_VERSION + 1;
    let file = dir.path().join("v2.snapshot");
    write_archive(&file, &newer, &[(0, &shard_file, 40)]).expect("write");
    let e = verify(&file).expect_err("newer format");
    assert!(e.contains("format version"), "{e}");

    let mut wide = config();
    wide.size = DIM + 1;
    let file = dir.path().join("dim.snapshot");
    write_archive(&file, &header(&wide), &[(0, &shard_file, 40)]).expect("write");
    let e = verify(&file).expect_err("wrong dimension");
    assert!(e.contains("dimension mismatch"), "{e}");

    // A shard announced and missing.
    let mut two_shards = config();
    two_shards.shard_number = 2;
    let two = header(&two_shards);
    let file = dir.path().join("missing.snapshot");
    write_archive(&file, &two, &[(0, &shard_file, 40)]).expect("write");
    let e = verify(&file).expect_err("missing shard");
    assert!(e.contains("shard 1 is missing"), "{e}");
    assert_eq!(points.len(), 40);
}

/// While a writer rewrites every point of a shard in one commit after another (each commit
/// gives all of them the next generation), every dump holds all the points, all of the same
/// generation: the state at one instant, never a mix of two commits.
#[test]
fn a_dump_is_point_in_time_under_concurrent_writes() {
    const POINTS: u64 = 2000;
    let dir = tempfile::tempdir().expect("tempdir");
    let shard = Arc::new(open_shard(&dir.path().join("shard")));
    shard
        .commit((0..POINTS).map(|i| point(i, 1, 0)).collect(), false)
        .expect("commit");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (shard, stop) = (Arc::clone(&shard), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut generation = 0;
            while !stop.load(Ordering::Acquire) {
                generation += 1;
                let changes = (0..POINTS)
                    .map(|i| point(i, 1 + generation, generation))
                    .collect();
                shard.commit(changes, false).expect("commit");
            }
            generation
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..12 {
        let file = dir.path().join(format!("{round}.points"));
        let count = dump_shard(&shard, &file).expect("dump");
        assert_eq!(count, POINTS);
        let mut input = std::io::BufReader::new(std::fs::File::open(&file).expect("open"));
        let mut generations = std::collections::BTreeSet::new();
        let mut read = 0;
        while let Some(p) = read_point(&mut input).expect("frame") {
            let payload: serde_json::Value = serde_json::from_str(&p.payload_json).expect("json");
            let generation = payload["gen"].as_u64().expect("gen");
            assert_eq!(p.vector.len(), DIM);
            generations.insert(generation);
            read += 1;
        }
        assert_eq!(read, POINTS);
        assert_eq!(
            generations.len(),
            1,
            "dump {round} mixes commits: {generations:?}"
        );
        seen.extend(generations);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    stop.store(true, Ordering::Release);
    let written = writer.join().expect("writer");
    assert!(written > 1, "the writer must have run during the dumps");
    assert!(
        seen.len() > 1 || written < 3,
        "dumps saw only generations {seen:?}"
    );
}
