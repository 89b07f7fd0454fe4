//! Shard behaviour across writes, segment builds and reopen.

use super::*;
use crate::index::Metric;
use serde_json::json;

fn config() -> ShardConfig {
    // A low full-scan threshold so that filtered searches here also traverse the graph.
    ShardConfig {
        full_scan_threshold: 50,
        ..ShardConfig::new(4, Metric::Euclid, HnswParams::default())
    }
}

fn open(db: &sled::Db, dir: &Path) -> Shard {
    let store = Store::from_db(db.clone());
    Shard::open(
        &store,
        "t",
        dir,
        config(),
        Arc::new(VersionClock::default()),
    )
    .expect("open shard")
}

/// Opens a sled database a test just dropped: the dropped handle's flusher thread lets go of
/// the file lock only at its next tick, so an immediate open can find it still held.
pub(super) fn reopen_db(path: &Path) -> sled::Db {
    let started = std::time::Instant::now();
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) if started.elapsed() < std::time::Duration::from_secs(10) => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("reopen {}: {e}", path.display()),
        }
    }
}

fn payload(v: serde_json::Value) -> Payload {
    v.as_object().cloned().unwrap_or_default()
}

fn vec_for(i: u64) -> Vec<f32> {
    let x = i as f32;
    vec![
        x,
        (x * 0.37).sin() * 10.0,
        (x * 0.11).cos() * 10.0,
        (i % 7) as f32,
    ]
}

fn upserts(ids: std::ops::Range<u64>, version: u64) -> Vec<Change> {
    ids.map(|i| {
        Change::upsert(
            PointId::Num(i),
            version,
            vec_for(i),
            payload(json!({"i": i, "even": i % 2 == 0})),
        )
    })
    .collect()
}

fn nearest(
    shard: &Shard,
    q: &[f32],
    k: usize,
    filter: Option<&Filter>,
    exact: bool,
) -> Vec<PointId> {
    let spec = search::SearchSpec {
        vector: q,
        k,
        ef: 64,
        exact,
        filter,
        with_vector: false,
        with_payload: false,
        quantization: Default::default(),
    };
    shard
        .search(&spec)
        .into_iter()
        .map(|h| h.point.id)
        .collect()
}

#[test]
fn last_writer_wins_including_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = open(&db, dir.path());
    assert_eq!(shard.commit(upserts(0..10, 10), true).unwrap(), 10);
    // An older write is ignored; a newer one applies.
    assert_eq!(shard.commit(upserts(0..1, 5), true).unwrap(), 0);
    shard
        .commit(vec![Change::delete(PointId::Num(3), 20)], true)
        .unwrap();
    // A write older than the tombstone does not resurrect the point.
    assert_eq!(shard.commit(upserts(3..4, 15), true).unwrap(), 0);
    assert_eq!(shard.len(), 9);
    assert_eq!(shard.commit(upserts(3..4, 25), true).unwrap(), 1);
    assert_eq!(shard.len(), 10);
}

#[test]
fn updated_and_deleted_points_never_come_back_after_indexing() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = open(&db, dir.path());
    shard.commit(upserts(0..300, 1), false).unwrap();
    assert!(shard.optimize(100).unwrap().is_some());
    let (points, indexed, segments) = shard.stats();
    assert_eq!((points, indexed, segments), (300, 300, 1));

    // Move point 7 far away, delete point 8: both were indexed in the segment.
    shard
        .commit(
            vec![Change::upsert(
                PointId::Num(7),
                2,
                vec![1e4; 4],
                Payload::new(),
            )],
            false,
        )
        .unwrap();
    shard
        .execute(
            &Plan::Delete(Selector::Ids(vec![PointId::Num(8)])),
            3,
            false,
        )
        .unwrap();
    for exact in [false, true] {
        let found = nearest(&shard, &vec_for(7), 5, None, exact);
        assert!(
            !found.contains(&PointId::Num(7)) && !found.contains(&PointId::Num(8)),
            "{found:?}"
        );
        assert_eq!(
            nearest(&shard, &[1e4; 4], 1, None, exact),
            vec![PointId::Num(7)]
        );
    }
}

#[test]
fn payload_updates_keep_the_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = open(&db, dir.path());
    shard.commit(upserts(0..200, 1), false).unwrap();
    shard.optimize(1).unwrap();
    let op = PayloadOp::Set {
        payload: payload(json!({"tag": "x"})),
        key: None,
    };
    shard
        .execute(
            &Plan::Payload(Selector::Ids(vec![PointId::Num(5)]), op),
            2,
            false,
        )
        .unwrap();
    assert_eq!(
        shard.stats().1,
        200,
        "a payload change must not re-index the vector"
    );
    let got = shard.get(&[PointId::Num(5)], true).pop().unwrap();
    assert_eq!(got.payload.get("tag"), Some(&json!("x")));
    assert_eq!(got.payload.get("i"), Some(&json!(5)));
    assert_eq!(got.vector.unwrap(), vec_for(5));
    // Search hits report the point's current version, with and without the payload, from the
    // segment and after a reopen.
    let hit_version = |shard: &Shard, with_payload: bool| {
        let spec = search::SearchSpec {
            vector: &vec_for(5),
            k: 1,
            ef: 256,
            exact: false,
            filter: None,
            with_vector: false,
            with_payload,
            quantization: Default::default(),
        };
        let hit = shard.search(&spec).pop().unwrap();
        assert_eq!(hit.point.id, PointId::Num(5));
        assert_eq!(hit.point.payload.is_empty(), !with_payload);
        hit.point.version
    };
    assert_eq!(hit_version(&shard, false), 2);
    assert_eq!(hit_version(&shard, true), 2);
    drop(shard);
    let shard = open(&db, dir.path());
    assert_eq!(shard.stats().1, 200);
    assert_eq!(hit_version(&shard, false), 2);
}

#[test]
fn filtered_search_returns_only_matches_and_enough_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = open(&db, dir.path());
    shard.commit(upserts(0..500, 1), false).unwrap();
    shard.optimize(1).unwrap();
    let even: Filter =
        serde_json::from_value(json!({"must": [{"key": "even", "match": {"value": true}}]}))
            .unwrap();
    // 250 candidates, above the threshold of 50: the graph is traversed with the filter.
    let found = nearest(&shard, &vec_for(11), 10, Some(&even), false);
    assert_eq!(found.len(), 10);
    assert!(found
        .iter()
        .all(|id| matches!(id, PointId::Num(n) if n % 2 == 0)));
    let exact = nearest(&shard, &vec_for(11), 10, Some(&even), true);
    let overlap = found.iter().filter(|id| exact.contains(id)).count();
    assert!(overlap >= 9, "filtered HNSW {found:?} vs exact {exact:?}");
    let one: Filter =
        serde_json::from_value(json!({"must": [{"key": "i", "match": {"value": 123}}]})).unwrap();
    assert_eq!(
        nearest(&shard, &vec_for(0), 10, Some(&one), false),
        vec![PointId::Num(123)]
    );
}

#[test]
fn a_sealed_point_with_a_new_vector_is_found_by_it_only_also_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("db");
    let moved = vec![1e4, -3.0, 2.0, 1.0];
    let check = |shard: &Shard| {
        for exact in [false, true] {
            let near_old = nearest(shard, &vec_for(7), 5, None, exact);
            assert!(!near_old.contains(&PointId::Num(7)), "{near_old:?}");
            assert_eq!(
                nearest(shard, &moved, 1, None, exact),
                vec![PointId::Num(7)]
            );
            let even: Filter =
                serde_json::from_value(json!({"must": [{"key": "i", "match": {"value": 7}}]}))
                    .unwrap();
            assert_eq!(
                nearest(shard, &moved, 1, Some(&even), exact),
                vec![PointId::Num(7)]
            );
        }
        let view = shard.get(&[PointId::Num(7)], true).pop().unwrap();
        assert_eq!(view.vector.as_deref(), Some(&moved[..]));
        assert_eq!(*view.payload, payload(json!({"i": 7, "even": false})));
        assert_eq!(shard.len(), 300);
    };
    {
        let db = reopen_db(&db_path);
        let shard = open(&db, dir.path());
        shard.commit(upserts(0..300, 1), true).unwrap();
        assert!(shard.optimize(100).unwrap().is_some());
        assert_eq!(shard.stats(), (300, 300, 1));
        // A missing id is skipped by the plan.
        let plan = Plan::Vectors(vec![
            (PointId::Num(7), moved.clone()),
            (PointId::Num(9999), moved.clone()),
        ]);
        assert_eq!(shard.execute(&plan, 2, true).unwrap(), 1);
        let stored = shard.stored_record(&PointId::Num(7)).unwrap();
        assert_eq!((stored.version, stored.vector_version), (2, 2));
        check(&shard);
    }
    // Reopened: the segment's stale copy stays dead, the new vector is replayed into the tail.
    let db = reopen_db(&db_path);
    let shard = open(&db, dir.path());
    check(&shard);
    // And once the tail is built into a segment too.
    shard.optimize(1).unwrap();
    check(&shard);
}

#[test]
fn a_point_whose_vector_is_deleted_keeps_its_payload_and_is_never_found() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("db");
    // 7 is sealed in a segment, 305 is in the tail.
    let gone = [PointId::Num(7), PointId::Num(305)];
    let check = |shard: &Shard| {
        assert_eq!(shard.len(), 310);
        let seven: Filter =
            serde_json::from_value(json!({"must": [{"key": "i", "range": {"gte": 0}}]})).unwrap();
        assert_eq!(shard.count(Some(&seven)), 310);
        for exact in [false, true] {
            for (id, i) in [(gone[0], 7), (gone[1], 305)] {
                for filter in [None, Some(&seven)] {
                    let found = nearest(shard, &vec_for(i), 20, filter, exact);
                    assert!(!found.contains(&id), "{found:?}");
                    assert_eq!(found.len(), 20);
                }
            }
        }
        let has_id: Filter =
            serde_json::from_value(json!({"must": [{"has_id": [7, 305, 8]}]})).unwrap();
        assert_eq!(
            nearest(shard, &vec_for(7), 5, Some(&has_id), true),
            vec![PointId::Num(8)]
        );
        for (view, i) in shard.get(&gone, true).into_iter().zip([7, 305]) {
            assert_eq!(view.vector, Some(Vec::new()));
            assert_eq!(*view.payload, payload(json!({"i": i, "even": false})));
        }
    };
    {
        let db = reopen_db(&db_path);
        let shard = open(&db, dir.path());
        shard.commit(upserts(0..300, 1), true).unwrap();
        assert!(shard.optimize(100).unwrap().is_some());
        shard.commit(upserts(300..310, 2), true).unwrap();
        let plan = Plan::DeleteVectors(Selector::Ids(gone.to_vec()));
        assert_eq!(shard.execute(&plan, 3, true).unwrap(), 2);
        // Again: nothing left to delete.
        assert_eq!(shard.execute(&plan, 4, true).unwrap(), 0);
        check(&shard);
    }
    let db = reopen_db(&db_path);
    let shard = open(&db, dir.path());
    check(&shard);
    shard.optimize(1).unwrap();
    check(&shard);
    // A new vector makes the point searchable again.
    let back = Plan::Vectors(vec![(PointId::Num(7), vec_for(7))]);
    shard.execute(&back, 5, true).unwrap();
    assert_eq!(
        nearest(&shard, &vec_for(7), 1, None, true),
        vec![PointId::Num(7)]
    );
    assert_eq!(shard.len(), 310);
}

#[test]
fn reopen_loads_segments_and_replays_only_the_tail() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("db");
    let q = vec_for(42);
    let before;
    {
        let db = reopen_db(&db_path);
        let shard = open(&db, dir.path());
        shard.commit(upserts(0..400, 1), true).unwrap();
        shard.optimize(1).unwrap();
        shard.commit(upserts(400..450, 2), true).unwrap();
        shard
            .execute(
                &Plan::Delete(Selector::Ids(vec![PointId::Num(42)])),
                3,
                true,
            )
            .unwrap();
        before = nearest(&shard, &q, 10, None, false);
        assert_eq!(shard.stats(), (449, 399, 1));
    }
    let db = reopen_db(&db_path);
    let shard = open(&db, dir.path());
    assert_eq!(
        shard.stats(),
        (449, 399, 1),
        "segment reloaded, 50 tail points replayed"
    );
    assert_eq!(nearest(&shard, &q, 10, None, false), before);
    // Merging after many deletes leaves one segment with only live points.
    let all: Filter =
        serde_json::from_value(json!({"must": [{"key": "i", "range": {"lt": 1200}}]})).unwrap();
    shard
        .execute(&Plan::Delete(Selector::Filter(all)), 4, true)
        .unwrap();
    assert_eq!(shard.len(), 0);
}

#[test]
fn plans_win_over_the_records_they_change() {
    // Records written at version 100 (through a node whose clock runs ahead); payload changes
    // and deletes planned at version 50 are computed from those records and must apply,
    // whether the points are in the tail or only in an indexed segment.
    for indexed in [false, true] {
        plans_win_over_the_records_they_change_in(indexed);
    }
}

fn plans_win_over_the_records_they_change_in(indexed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = open(&db, dir.path());
    shard.commit(upserts(0..4, 100), true).unwrap();
    if indexed {
        while shard.optimize(1).unwrap().is_some() {}
        assert_eq!(shard.stats().1, 4, "every point in a segment");
    }
    let set = PayloadOp::Set {
        payload: payload(json!({"tag": "later"})),
        key: None,
    };
    let ids = |ids: &[u64]| Selector::Ids(ids.iter().map(|i| PointId::Num(*i)).collect());
    shard
        .execute(&Plan::Payload(ids(&[0]), set), 50, true)
        .unwrap();
    shard.execute(&Plan::Delete(ids(&[1])), 50, true).unwrap();
    let odd: Filter =
        serde_json::from_value(json!({"must": [{"key": "i", "match": {"value": 3}}]})).unwrap();
    shard
        .execute(&Plan::Delete(Selector::Filter(odd)), 50, true)
        .unwrap();
    let got = shard.get(&(0..4).map(PointId::Num).collect::<Vec<_>>(), false);
    let got: Vec<(PointId, Option<&serde_json::Value>)> =
        got.iter().map(|p| (p.id, p.payload.get("tag"))).collect();
    assert_eq!(
        got,
        [
            (PointId::Num(0), Some(&json!("later"))),
            (PointId::Num(2), None)
        ],
        "indexed: {indexed}"
    );
}

#[test]
fn plans_come_in_pages_that_cover_every_point_once_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = open(&db, dir.path());
    shard.commit(upserts(0..300, 100), true).unwrap();
    shard.optimize(1).unwrap();
    shard.commit(upserts(300..500, 100), true).unwrap();
    let even: Filter =
        serde_json::from_value(json!({"must": [{"key": "even", "match": {"value": true}}]}))
            .unwrap();
    let plan = Plan::Payload(
        Selector::Filter(even),
        PayloadOp::Set {
            payload: payload(json!({"tag": "x"})),
            key: None,
        },
    );
    let whole = shard.plan(&plan, 200);
    assert_eq!(whole.len(), 250);
    let weight = whole[0].weight();
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = PlanPage {
            after,
            max_bytes: 40 * weight,
        };
        let changes = shard.plan_page(&plan, 200, page);
        if changes.is_empty() {
            break;
        }
        assert!(changes.len() <= 40, "a page stops at its weight");
        after = changes.last().map(|c| c.id);
        pages.push(changes);
    }
    assert_eq!(pages.len(), 7, "250 changes in pages of 40");
    let paged: Vec<PointId> = pages.iter().flatten().map(|c| c.id).collect();
    let mut ids: Vec<PointId> = whole.iter().map(|c| c.id).collect();
    ids.sort();
    assert_eq!(paged, ids, "every selected point once, in id order");
}

#[test]
fn payload_ops() {
    let mut p = payload(json!({"a": 1, "b": {"c": 2, "d": 3}}));
    apply_payload_op(
        &mut p,
        &PayloadOp::DeleteKeys(vec!["b.c".into(), "zz".into()]),
    );
    assert_eq!(
        serde_json::Value::Object(p.clone()),
        json!({"a": 1, "b": {"d": 3}})
    );
    apply_payload_op(
        &mut p,
        &PayloadOp::Set {
            payload: payload(json!({"x": 9})),
            key: Some("b".into()),
        },
    );
    assert_eq!(
        serde_json::Value::Object(p.clone()),
        json!({"a": 1, "b": {"d": 3, "x": 9}})
    );
    apply_payload_op(
        &mut p,
        &PayloadOp::Overwrite(payload(json!({"only": true}))),
    );
    assert_eq!(serde_json::Value::Object(p.clone()), json!({"only": true}));
    apply_payload_op(&mut p, &PayloadOp::Clear);
    assert!(p.is_empty());
}

#[test]
fn records_since_pages_through_changes_including_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = open(&db, dir.path());
    shard.commit(upserts(0..100, 10), false).unwrap();
    shard.commit(upserts(50..60, 20), false).unwrap();
    shard
        .execute(
            &Plan::Delete(Selector::Ids(vec![PointId::Num(3)])),
            30,
            false,
        )
        .unwrap();
    assert_eq!(shard.max_version(), 30);
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let (page, next) = shard.records_since(15, after, 4).unwrap();
        seen.extend(
            page.into_iter()
                .map(|(id, r)| (id, r.version, r.body.is_some())),
        );
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut expected: Vec<_> = (50..60).map(|i| (PointId::Num(i), 20, true)).collect();
    expected.insert(0, (PointId::Num(3), 30, false));
    assert_eq!(seen, expected);
}

/// Every point in id order with version, payload and vector, plus the counts.
type Snapshot = (Vec<(PointId, u64, String, Vec<f32>)>, (usize, usize, usize));

/// Everything a reader can see of a shard.
fn snapshot(shard: &Shard) -> Snapshot {
    let points = shard
        .scroll(None, usize::MAX, None, true)
        .into_iter()
        .map(|p| {
            (
                p.id,
                p.version,
                serde_json::to_string(&*p.payload).unwrap(),
                p.vector.unwrap(),
            )
        })
        .collect();
    (points, shard.stats())
}

#[test]
fn reopen_replays_only_dirty_ids_and_matches_the_state_before() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("db");
    let reopen = |expected: &Snapshot| {
        let db = reopen_db(&db_path);
        let shard = open(&db, dir.path());
        assert_eq!(&snapshot(&shard), expected);
        // The reopened segments answer from their graphs. With a beam wider than the shard the
        // walk reaches every node of a connected graph, so it must find exactly the exact top 5
        // (at the tests' usual ef the graph, built on threads, may miss one now and then).
        for i in [0u64, 3, 47, 120, 205, 301, 777] {
            let q = vec_for(i);
            let spec = |exact| search::SearchSpec {
                vector: &q,
                k: 5,
                ef: 4096,
                exact,
                filter: None,
                with_vector: false,
                with_payload: false,
                quantization: Default::default(),
            };
            let ids = |exact| -> Vec<PointId> {
                shard
                    .search(&spec(exact))
                    .into_iter()
                    .map(|h| h.point.id)
                    .collect()
            };
            assert_eq!(ids(false), ids(true), "query {i}");
        }
        (db, shard)
    };
    let moved = |ids: std::ops::Range<u64>, version| -> Vec<Change> {
        ids.map(|i| {
            Change::upsert(
                PointId::Num(i),
                version,
                vec_for(i + 5000),
                payload(json!({"moved": i})),
            )
        })
        .collect()
    };
    let expected;
    {
        let db = reopen_db(&db_path);
        let shard = open(&db, dir.path());
        shard.commit(upserts(0..400, 1), true).unwrap();
        shard
            .commit(
                vec![Change::upsert(
                    PointId::Uuid(uuid::Uuid::from_u128(9)),
                    1,
                    vec_for(9),
                    Payload::new(),
                )],
                true,
            )
            .unwrap();
        assert!(shard.optimize(100).unwrap().is_some());
        // Sealed points: moved (to the tail), payload-updated (overlay), deleted.
        shard.commit(moved(0..50, 2), true).unwrap();
        let tag = PayloadOp::Set {
            payload: payload(json!({"tag": "x"})),
            key: None,
        };
        let some: Vec<PointId> = (100..120).map(PointId::Num).collect();
        shard
            .execute(&Plan::Payload(Selector::Ids(some), tag), 3, true)
            .unwrap();
        let gone: Vec<PointId> = (200..210).map(PointId::Num).collect();
        shard
            .execute(&Plan::Delete(Selector::Ids(gone)), 4, true)
            .unwrap();
        // A tail build: the older segment keeps stale copies of 0..50.
        assert!(shard.optimize(10).unwrap().is_some());
        assert_eq!(shard.stats().2, 2);
        shard
            .execute(
                &Plan::Delete(Selector::Ids(vec![PointId::Num(1), PointId::Num(2)])),
                5,
                true,
            )
            .unwrap();
        shard.commit(moved(300..305, 6), true).unwrap();
        shard.commit(upserts(700..800, 7), true).unwrap();
        expected = snapshot(&shard);
        assert_eq!(expected.1 .0, 401 - 10 - 2 + 100);
    }
    let (db, shard) = reopen(&expected);
    // The marks left: the tail (105), the overlays (20), and deletes whose copies remain (12).
    let marks = shard
        .store
        .with_tree(&shard.dirty, |t| Ok(t.len()))
        .unwrap();
    assert_eq!(marks, 105 + 20 + 12);
    // Merge everything (small segments), and reopen again.
    while shard.optimize(1).unwrap().is_some() {}
    let after = snapshot(&shard);
    assert_eq!(after.0, expected.0);
    assert_eq!(shard.stats().1, shard.stats().0, "everything indexed");
    drop((shard, db));
    let (_db, shard) = reopen(&after);
    let marks = shard
        .store
        .with_tree(&shard.dirty, |t| Ok(t.len()))
        .unwrap();
    assert!(marks <= 12, "only deletes with stale copies stay marked");
}

#[test]
fn previous_format_shard_is_reindexed_from_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    {
        let shard = open(&db, dir.path());
        shard.commit(upserts(0..300, 1), true).unwrap();
    }
    // What an older shoal leaves: a manifest without a format, a segment dir of hnsw_rs files.
    let segs = dir.path().join("segments");
    std::fs::write(segs.join("manifest.json"), br#"{"segments":[7]}"#).unwrap();
    std::fs::create_dir_all(segs.join("seg-7")).unwrap();
    std::fs::write(segs.join("seg-7/hnsw.hnsw.graph"), b"old").unwrap();
    let shard = open(&db, dir.path());
    assert_eq!(shard.stats(), (300, 0, 0));
    assert!(!segs.join("seg-7").exists());
    assert!(shard.optimize(100).unwrap().is_some());
    assert_eq!(shard.stats(), (300, 300, 1));
    assert_eq!(
        nearest(&shard, &vec_for(17), 1, None, false),
        vec![PointId::Num(17)]
    );
}

#[test]
fn a_new_configuration_rebuilds_the_segments_built_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = open(&db, dir.path());
    shard.commit(upserts(0..300, 1), false).unwrap();
    shard.commit(upserts(300..600, 2), false).unwrap();
    assert!(shard.optimize(300).unwrap().is_some());
    assert!(shard.optimize(300).unwrap().is_none(), "nothing more to do");
    let built = |shard: &Shard| -> Vec<bool> {
        let c = shard.config();
        let state = shard.state.read();
        state
            .segments
            .iter()
            .map(|s| s.index.built_with(c.hnsw, c.int8))
            .collect()
    };
    assert!(built(&shard).iter().all(|b| *b));
    let before = nearest(&shard, &vec_for(42), 10, None, true);

    let int8 = crate::index::ScalarInt8 {
        quantile: 0.98,
        always_ram: false,
    };
    shard.reconfigure(ShardConfig {
        hnsw: HnswParams {
            m: 8,
            ef_construct: 40,
        },
        int8: Some(int8),
        ..shard.config()
    });
    assert!(
        built(&shard).iter().all(|b| !*b),
        "built under the old parameters"
    );
    assert!(
        shard.optimizing(300),
        "a rebuild is due (collection status yellow)"
    );
    let mut rebuilds = 0;
    while shard.optimize(300).unwrap().is_some() {
        rebuilds += 1;
        assert!(rebuilds <= 10, "the rebuilds must converge");
    }
    assert!(rebuilds >= 1);
    assert!(built(&shard).iter().all(|b| *b));
    assert!(shard
        .state
        .read()
        .segments
        .iter()
        .all(|s| s.index.int8().is_some()));
    assert_eq!(shard.stats().0, 600, "no point lost");
    assert_eq!(nearest(&shard, &vec_for(42), 10, None, true), before);

    // Quantization removed: rebuilt without codes.
    shard.reconfigure(ShardConfig {
        int8: None,
        ..shard.config()
    });
    while shard.optimize(300).unwrap().is_some() {}
    assert!(shard
        .state
        .read()
        .segments
        .iter()
        .all(|s| s.index.int8().is_none()));
    assert_eq!(shard.stats().1, 600, "every point is in a segment again");
}

/// Twenty points with 100 KB payloads (2 MB of text, a tail of fewer points than the quiet
/// minimum): with the bound on the tail's bytes they are built into a segment once writes are
/// quiet — or at once when they pass `max_tail_bytes` — and read back exactly from it.
#[test]
fn a_tail_of_large_payloads_is_built_by_its_bytes() {
    let big = "x".repeat(100_000);
    let changes = || -> Vec<Change> {
        (0..20)
            .map(|i| {
                Change::upsert(
                    PointId::Num(i),
                    1,
                    vec_for(i),
                    payload(json!({"i": i, "text": big})),
                )
            })
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let shard = open(&db, &dir.path().join("quiet"));
    shard.commit(changes(), true).unwrap();
    let held = shard.state.read().tail_bytes(4);
    assert!(held > 2_000_000, "{held}");
    // Writes are not quiet yet, and 20 points are under every point bound: nothing is due...
    assert!(shard.optimize(20_000).unwrap().is_none());
    // ...but the collection reports the build due once writes stop (status yellow).
    assert!(shard.optimizing(20_000));
    *shard.last_write.lock() -= optimizer::QUIET;
    let built = shard
        .optimize(20_000)
        .unwrap()
        .expect("a quiet tail of 2 MB is built");
    assert_eq!(built.points, 20);
    assert_eq!(shard.stats(), (20, 20, 1));
    let state = shard.state.read();
    assert_eq!((state.tail_bytes(4), state.points.len()), (0, 0));
    drop(state);
    let views = shard.get(&[PointId::Num(3)], false);
    assert_eq!(
        views[0].payload.get("text").and_then(|t| t.as_str()),
        Some(big.as_str())
    );
    let matching = shard.select(&Selector::Filter(
        serde_json::from_value(json!({"must": [{"key": "i", "match": {"value": 3}}]})).unwrap(),
    ));
    assert_eq!(matching, vec![PointId::Num(3)]);

    // Past max_tail_bytes the tail is due while writes go on.
    let mut bounded = config();
    bounded.optimizer.max_tail_bytes = 1 << 20;
    let shard = Shard::open(
        &Store::from_db(db.clone()),
        "bounded",
        &dir.path().join("bounded"),
        bounded,
        Arc::new(VersionClock::default()),
    )
    .unwrap();
    shard.commit(changes(), true).unwrap();
    assert_eq!(shard.optimize(20_000).unwrap().map(|b| b.points), Some(20));
}

/// A fast bulk load leaves a tail larger than a segment may be (on an unlimited node, a million
/// points against segments of ≈ 313 000): it is built in segments of at most
/// `max_segment_points`, none absorbing another past the maximum, and every point ends indexed
/// and found.
#[test]
fn a_tail_larger_than_a_segment_is_built_in_bounded_segments() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let mut bounded = config();
    bounded.optimizer.max_segment_points = 1000;
    bounded.optimizer.max_tail_points = 10_000;
    let shard = Shard::open(
        &Store::from_db(db),
        "bulk",
        &dir.path().join("bulk"),
        bounded,
        Arc::new(VersionClock::default()),
    )
    .unwrap();
    shard.commit(upserts(0..3500, 1), true).unwrap();
    // Writes stopped: the last 500, under the threshold, are built too.
    *shard.last_write.lock() -= optimizer::QUIET;
    let mut builds = Vec::new();
    while let Some(built) = shard.optimize(1000).unwrap() {
        builds.push(built.points);
        assert!(
            builds.len() <= 10,
            "the optimizer never settles: {builds:?}"
        );
    }
    assert!(builds.iter().all(|&p| p <= 1000), "{builds:?}");
    let (live, indexed, segments) = shard.stats();
    assert_eq!((live, indexed), (3500, 3500), "{builds:?}");
    assert!(segments >= 4, "{segments} segments for 3500 points");
    assert!(shard.state.read().segments.iter().all(|s| s.len() <= 1000));
    for i in [0, 999, 1000, 2345, 3499] {
        assert_eq!(
            nearest(&shard, &vec_for(i), 1, None, true),
            vec![PointId::Num(i)]
        );
    }
}
