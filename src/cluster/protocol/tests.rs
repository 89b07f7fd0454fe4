//! Every peer message survives the trip, in this node's protocol and in the previous release's
//! (protocol 1): the shapes below in `v1` are copied from the build before the messages became
//! one set of types and before protocol 2, so a node of that build and a node of this one
//! understand each other during a rolling update. Protocol 2 differs in two places, pinned
//! here too: a search carries its quantization parameters, and a collection config is JSON text.

use super::*;
use crate::collection::{CollectionConfig, ReplicaState};
use crate::index::{HnswParams, Metric, QuantSearch};
use crate::shard::point::{Payload, Record, RecordBody};
use crate::shard::{PayloadOp, Selector};
use std::sync::Arc;

/// Protocol 1 as it was written before the messages became one set of types.
mod v1 {
    use crate::shard::point::{PointId, Record};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub struct WireChange {
        pub id: PointId,
        pub record: Record,
    }

    #[derive(Serialize, Deserialize)]
    pub struct WirePoint {
        pub id: PointId,
        pub version: u64,
        pub payload_json: String,
        pub vector: Option<Vec<f32>>,
    }

    #[derive(Serialize, Deserialize)]
    pub enum WireOp {
        Search {
            vector: Vec<f32>,
            k: usize,
            ef: usize,
            exact: bool,
            filter_json: Option<String>,
            with_vector: bool,
        },
        Retrieve {
            ids: Vec<PointId>,
            with_vector: bool,
        },
        Scroll {
            from: Option<PointId>,
            limit: usize,
            filter_json: Option<String>,
            with_vector: bool,
        },
        Count {
            filter_json: Option<String>,
        },
        Plan {
            plan_json: String,
            version: u64,
        },
    }

    #[derive(Serialize, Deserialize)]
    pub enum WireReply {
        Hits(Vec<(f32, WirePoint)>),
        Points(Vec<WirePoint>),
        Count(u64),
        Changes(Vec<WireChange>),
    }

    #[derive(Serialize, Deserialize)]
    pub struct RecordsPage {
        pub changes: Vec<WireChange>,
        pub next: Option<PointId>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct CollectionConfig {
        pub size: usize,
        pub distance: crate::index::Metric,
        pub hnsw: crate::index::HnswParams,
        pub shard_number: u32,
        pub replication_factor: u32,
        pub write_consistency_factor: u32,
        pub on_disk_payload: bool,
    }

    #[derive(Serialize, Deserialize)]
    pub struct CatalogEntry {
        pub name: String,
        pub version: u64,
        pub config: Option<CollectionConfig>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct CatalogPush {
        pub entry: CatalogEntry,
        pub fresh: bool,
    }
}

fn payload() -> Arc<Payload> {
    let p: Payload =
        serde_json::from_str(r#"{"city": "Zürich", "n": [1, 2.5, null], "o": {"a": true}}"#)
            .unwrap();
    Arc::new(p)
}

fn point(id: u64, vector: bool) -> PointView {
    PointView {
        id: PointId::Num(id),
        version: 40 + id,
        payload: payload(),
        vector: vector.then(|| vec![0.5, -1.25, 3e7]),
    }
}

fn wire_point(p: &PointView) -> v1::WirePoint {
    v1::WirePoint {
        id: p.id,
        version: p.version,
        payload_json: serde_json::to_string(p.payload.as_ref()).unwrap(),
        vector: p.vector.clone(),
    }
}

fn change(id: u64, live: bool) -> Change {
    if live {
        Change::upsert(PointId::Num(id), 7, vec![1.0, 2.0], (*payload()).clone())
    } else {
        Change::delete(PointId::Uuid(uuid::Uuid::from_u128(id as u128)), 9)
    }
}

fn filter() -> Filter {
    serde_json::from_str(
        r#"{"must": [{"key": "city", "match": {"value": "Zürich"}}], "must_not": {"has_id": [3]}}"#,
    )
    .unwrap()
}

/// Encodes, decodes, and encodes again: the same bytes both times.
fn round_trip<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    let bytes = encode(value);
    let back: T = decode(&bytes).expect("decodes");
    assert_eq!(encode(&back), bytes);
    back
}

#[test]
fn every_operation_round_trips_and_reads_as_protocol_1() {
    let plan = Plan::Payload(
        Selector::Filter(filter()),
        PayloadOp::Set {
            payload: (*payload()).clone(),
            key: Some("a.b".into()),
        },
    );
    let cases: Vec<(ShardOp, v1::WireOp)> = vec![
        (
            ShardOp::Search {
                vector: vec![0.25, 0.75],
                k: 10,
                ef: 64,
                exact: false,
                filter: Some(filter()),
                with_vector: true,
                with_payload: false,
                quantization: QuantSearch {
                    ignore: true,
                    rescore: false,
                    oversampling: 2.5,
                },
            },
            v1::WireOp::Search {
                vector: vec![0.25, 0.75],
                k: 10,
                ef: 64,
                exact: false,
                filter_json: Some(serde_json::to_string(&filter()).unwrap()),
                with_vector: true,
            },
        ),
        (
            ShardOp::Retrieve {
                ids: vec![PointId::Num(1), PointId::Uuid(uuid::Uuid::from_u128(5))],
                with_vector: false,
            },
            v1::WireOp::Retrieve {
                ids: vec![PointId::Num(1), PointId::Uuid(uuid::Uuid::from_u128(5))],
                with_vector: false,
            },
        ),
        (
            ShardOp::Scroll {
                from: Some(PointId::Num(4)),
                limit: 11,
                filter: None,
                with_vector: true,
            },
            v1::WireOp::Scroll {
                from: Some(PointId::Num(4)),
                limit: 11,
                filter_json: None,
                with_vector: true,
            },
        ),
        (
            ShardOp::Count {
                filter: Some(filter()),
            },
            v1::WireOp::Count {
                filter_json: Some(serde_json::to_string(&filter()).unwrap()),
            },
        ),
        (
            ShardOp::Plan {
                plan: plan.clone(),
                version: 99,
                page: Default::default(),
            },
            v1::WireOp::Plan {
                plan_json: serde_json::to_string(&plan).unwrap(),
                version: 99,
            },
        ),
    ];
    let payloads_wanted =
        |op: &ShardOp| format!("{op:?}").replace("with_payload: false", "with_payload: true");
    for (op, old) in cases {
        assert_eq!(encode_as(1, &op), encode(&old), "{op:?}");
        let from_v1: ShardOp = decode_as(1, &encode(&old)).unwrap();
        assert_eq!(encode_as(1, &from_v1), encode(&old));
        // Protocol 2: a search appends (ignore, rescore, oversampling); nothing else changed.
        let mut v2 = encode(&old);
        if let ShardOp::Search { quantization, .. } = &op {
            let q = (
                quantization.ignore,
                quantization.rescore,
                quantization.oversampling,
            );
            v2.extend(encode(&q));
            // Read from protocol 1, a search takes the default quantization parameters.
            assert!(
                matches!(from_v1, ShardOp::Search { quantization, .. } if quantization == QuantSearch::default())
            );
        } else {
            assert_eq!(payloads_wanted(&from_v1), payloads_wanted(&op));
        }
        assert_eq!(encode(&op), v2, "{op:?}");
        let back = round_trip(&op);
        assert_eq!(payloads_wanted(&back), payloads_wanted(&op));
    }
    // `with_payload` is not in the body: a decoded search wants payloads until told otherwise.
    let decoded: ShardOp = decode(&encode(&ShardOp::Search {
        vector: vec![1.0],
        k: 1,
        ef: 1,
        exact: true,
        filter: None,
        with_vector: false,
        with_payload: false,
        quantization: QuantSearch::default(),
    }))
    .unwrap();
    assert!(matches!(
        decoded,
        ShardOp::Search {
            with_payload: true,
            ..
        }
    ));
}

#[test]
fn every_reply_round_trips_and_reads_as_protocol_1() {
    let points = vec![point(1, true), point(2, false)];
    let hits: Vec<Hit> = points
        .iter()
        .enumerate()
        .map(|(i, p)| Hit {
            distance: i as f32 * 0.5,
            point: p.clone(),
        })
        .collect();
    let changes = vec![change(1, true), change(2, false)];
    let old_changes = || {
        changes
            .iter()
            .map(|c| v1::WireChange {
                id: c.id,
                record: c.record.clone(),
            })
            .collect::<Vec<_>>()
    };
    let cases: Vec<(ShardReply, v1::WireReply)> = vec![
        (
            ShardReply::Hits(hits.clone()),
            v1::WireReply::Hits(
                hits.iter()
                    .map(|h| (h.distance, wire_point(&h.point)))
                    .collect(),
            ),
        ),
        (
            ShardReply::Points(points.clone()),
            v1::WireReply::Points(points.iter().map(wire_point).collect()),
        ),
        (ShardReply::Count(12345), v1::WireReply::Count(12345)),
        (
            ShardReply::Changes(changes.clone()),
            v1::WireReply::Changes(old_changes()),
        ),
    ];
    for (reply, old) in cases {
        assert_eq!(encode(&reply), encode(&old), "{reply:?}");
        assert_eq!(encode_as(1, &reply), encode(&old), "{reply:?}");
        round_trip(&reply);
    }
    let page = RecordsPage {
        changes: changes.clone(),
        next: Some(PointId::Num(3)),
    };
    assert_eq!(
        encode(&page),
        encode(&v1::RecordsPage {
            changes: old_changes(),
            next: Some(PointId::Num(3)),
        })
    );
    let back = round_trip(&page);
    assert_eq!(back.changes[0].record, changes[0].record);
    assert!(
        back.changes[0].payload.is_none(),
        "the receiver parses the payload"
    );
    assert_eq!(round_trip(&changes).len(), 2);
}

#[test]
fn every_other_message_round_trips() {
    let config = CollectionConfig {
        size: 4,
        distance: Metric::Cosine,
        hnsw: HnswParams::default(),
        shard_number: 3,
        replication_factor: 2,
        write_consistency_factor: 1,
        on_disk_payload: true,
        quantization: Some(crate::index::ScalarInt8 {
            quantile: 0.99,
            always_ram: true,
        }),
        full_scan_threshold_kb: Some(123),
        optimizers: crate::collection::OptimizersConfig {
            max_segment_size_kb: Some(1024),
            ..Default::default()
        },
        // Payload indexes travel in the catalog entry (a quoted key path as its name).
        payload_schema: [(
            "\"a.b\"".to_string(),
            crate::shard::payload_index::FieldSchema::parse(&serde_json::json!("keyword"))
                .expect("schema"),
        )]
        .into_iter()
        .collect(),
        incarnation: 7,
    };
    for entry in [
        CatalogEntry {
            name: "a#b %c ü".into(),
            version: 17,
            config: Some(config.clone()),
        },
        CatalogEntry {
            name: "gone".into(),
            version: 18,
            config: None,
        },
    ] {
        let push = round_trip(&CatalogPush {
            entry: entry.clone(),
            fresh: true,
        });
        assert_eq!(push.entry, entry);
        assert!(push.fresh);
        assert_eq!(round_trip(&vec![entry.clone()]), vec![entry.clone()]);
        // Protocol 1: the config inline, without what it has no fields for.
        let old = v1::CatalogPush {
            entry: v1::CatalogEntry {
                name: entry.name.clone(),
                version: entry.version,
                config: entry.config.as_ref().map(|c| v1::CollectionConfig {
                    size: c.size,
                    distance: c.distance,
                    hnsw: c.hnsw,
                    shard_number: c.shard_number,
                    replication_factor: c.replication_factor,
                    write_consistency_factor: c.write_consistency_factor,
                    on_disk_payload: c.on_disk_payload,
                }),
            },
            fresh: true,
        };
        let push = CatalogPush {
            entry: entry.clone(),
            fresh: true,
        };
        assert_eq!(encode_as(1, &push), encode(&old));
        if entry.config.is_some() {
            assert_ne!(
                encode(&push),
                encode(&old),
                "protocol 2 sends configs as JSON text"
            );
        }
        let read: CatalogPush = decode_as(1, &encode(&old)).unwrap();
        let expected = entry.config.clone().map(|c| CollectionConfig {
            quantization: None,
            full_scan_threshold_kb: None,
            optimizers: Default::default(),
            payload_schema: Default::default(),
            incarnation: 0,
            ..c
        });
        assert_eq!(read.entry.config, expected);
        assert_eq!(read.entry.name, entry.name);
    }
    let req = round_trip(&RecordsRequest {
        since: 5,
        after: Some(PointId::Uuid(uuid::Uuid::from_u128(8))),
        limit: 2000,
    });
    assert_eq!((req.since, req.limit), (5, 2000));
    let status = round_trip(&PeerStatus {
        ordinal: 2,
        protocol: PROTOCOL_VERSION,
        ready: true,
        cluster_size: 3,
    });
    assert_eq!((status.ordinal, status.cluster_size), (2, 3));
    let report = round_trip(&HandoffReport {
        leaving: true,
        cluster_size: 2,
        replicas_handed_off: 4,
    });
    assert_eq!(report.replicas_handed_off, 4);
    for state in [
        ReplicaState::Active,
        ReplicaState::Syncing,
        ReplicaState::Absent,
    ] {
        assert_eq!(round_trip(&state), state);
    }
    assert!(round_trip(&true));
    assert_eq!(round_trip(&7u64), 7);
}

#[test]
fn an_unreadable_payload_fails_the_message_rather_than_becoming_empty() {
    let mut bad = wire_point(&point(1, false));
    bad.payload_json = "{\"a\": ".into();
    let err = decode::<ShardReply>(&encode(&v1::WireReply::Points(vec![bad]))).unwrap_err();
    assert!(err.contains("payload"), "{err}");
    let mut not_an_object = wire_point(&point(1, false));
    not_an_object.payload_json = "[1]".into();
    assert!(decode::<ShardReply>(&encode(&v1::WireReply::Points(vec![not_an_object]))).is_err());
}

#[test]
fn a_reply_of_another_kind_is_an_error() {
    assert_eq!(ShardReply::Count(3).count().unwrap(), 3);
    let wrong = ShardReply::Count(0).hits().unwrap_err();
    assert_eq!(wrong.to_string(), "answered count to a search");
    assert!(ShardReply::Hits(vec![]).points().is_err());
    assert!(ShardReply::Points(vec![]).count().is_err());
    assert!(ShardReply::Points(vec![]).changes().is_err());
    // A count's bytes are not a list of hits: the tag tells them apart.
    assert!(decode::<ShardReply>(&encode(&ShardReply::Count(0)))
        .unwrap()
        .hits()
        .is_err());
}

#[test]
fn a_huge_announced_length_is_an_error_not_an_abort() {
    let mut bytes = vec![253u8];
    bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(decode::<String>(&bytes).is_err());
    let push = CatalogPush {
        entry: CatalogEntry {
            name: String::new(),
            version: 1,
            config: None,
        },
        fresh: false,
    };
    let mut forged = bytes.clone();
    forged.extend_from_slice(&encode(&push)[1..]);
    assert!(decode::<CatalogPush>(&forged).is_err());
    assert_eq!(
        decode::<CatalogPush>(&encode(&push)).unwrap().entry,
        push.entry
    );
    let record = Record {
        version: 1,
        vector_version: 1,
        body: Some(RecordBody {
            vector: vec![1.0],
            payload_json: "{}".into(),
        }),
    };
    let mut huge_vector = encode(&vec![v1::WireChange {
        id: PointId::Num(1),
        record,
    }]);
    huge_vector.truncate(huge_vector.len() - 8);
    huge_vector.push(253);
    huge_vector.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(decode::<Vec<Change>>(&huge_vector).is_err());
}

#[test]
fn names_survive_the_path() {
    let path = shard_path("a#b %c/ü?", 3, "commit");
    assert_eq!(path, "/peer/v1/shards/a%23b%20%25c%2F%C3%BC%3F/3/commit");
}

/// The deepest filter a client body can hold (the body nests at most 127 levels, serde_json's
/// limit, one of them the body object): 126 levels.
fn deepest_public_filter() -> Filter {
    let text = format!(
        "{}{}{}",
        "{\"must\":".repeat(124),
        r#"{"key":"i","match":{"value":1}}"#,
        "}".repeat(124)
    );
    let body = format!("{{\"filter\":{text}}}");
    let parsed: serde_json::Value = serde_json::from_str(&body).expect("a client may send it");
    serde_json::from_value(parsed["filter"].clone()).expect("a filter")
}

#[test]
fn every_filter_a_client_may_send_crosses_the_peer_port() {
    // Plans wrap the filter in two or three more levels; they used to be refused by the
    // replica ("recursion limit exceeded"), so a set_payload or delete with such a filter
    // answered 503 through any node that was not an owner of every shard.
    let filter = deepest_public_filter();
    let select = || Selector::Filter(filter.clone());
    let ops = [
        (
            "delete",
            ShardOp::Plan {
                plan: Plan::Delete(select()),
                version: 1,
                page: Default::default(),
            },
        ),
        (
            "payload",
            ShardOp::Plan {
                plan: Plan::Payload(select(), PayloadOp::Clear),
                version: 1,
                page: Default::default(),
            },
        ),
        (
            "count",
            ShardOp::Count {
                filter: Some(filter.clone()),
            },
        ),
    ];
    for (what, op) in ops {
        let back = decode::<ShardOp>(&encode(&op)).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(format!("{back:?}"), format!("{op:?}"), "{what}");
    }
    // Still bounded: a message nesting far deeper is refused, not parsed.
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let e = decode::<ShardOp>(&encode(&(4u32, deep, 1u64))).unwrap_err();
    assert!(e.contains("nests"), "{e}");
    // Brackets and escaped quotes inside strings do not count.
    let text = r#"{"a":["[{\"\\", {"b": []}]}"#;
    assert_eq!(crate::codec::json_text::depth(text), 4);
    assert!(serde_json::from_str::<serde_json::Value>(text).is_ok());
}

#[test]
fn facets_and_ordered_scrolls_round_trip_and_a_bad_key_path_does_not_decode() {
    use crate::shard::facet::{Direction, FacetValue, IndexedKey};
    use crate::shard::payload_index::FieldType;
    let field = IndexedKey::new("\"a.b\"[].c", FieldType::Keyword).expect("key path");
    let ops = [
        ShardOp::Facet {
            field: field.clone(),
            filter: Some(filter()),
        },
        ShardOp::ScrollOrdered {
            field: IndexedKey::new("f", FieldType::Float).expect("key path"),
            direction: Direction::Desc,
            start_from: Some(4.5),
            limit: 7,
            filter: None,
            with_vector: true,
        },
    ];
    for op in &ops {
        let back = round_trip(op);
        assert_eq!(format!("{back:?}"), format!("{op:?}"));
    }
    let replies = [
        ShardReply::Facet(vec![
            (FacetValue::Keyword("x".into()), 3),
            (FacetValue::Int(-4), 1),
            (FacetValue::Bool(true), 9),
        ]),
        ShardReply::Ordered(vec![(
            2.5,
            PointView {
                id: PointId::Num(3),
                version: 1,
                payload: payload(),
                vector: None,
            },
        )]),
    ];
    for reply in &replies {
        let back = round_trip(reply);
        assert_eq!(format!("{back:?}"), format!("{reply:?}"));
    }
    assert!(ShardReply::Count(1).facet().is_err());
    assert!(ShardReply::Count(1).ordered().is_err());
    // A key that is not a key path cannot arrive from a peer.
    let bad = encode(&("a..b".to_string(), FieldType::Keyword));
    assert!(decode::<IndexedKey>(&bad).is_err());
}

#[test]
fn what_protocol_3_added_is_never_sent_in_an_older_version() {
    use super::{changes_since, ShardStats, DUMP_SINCE, OLDEST_PROTOCOL, PROTOCOL_VERSION};
    use crate::shard::facet::IndexedKey;
    use crate::shard::payload_index::FieldType;
    assert_eq!(PROTOCOL_VERSION, 3);
    let field = IndexedKey::new("f", FieldType::Keyword).expect("key path");
    let stats = ShardOp::Stats {
        indexing_threshold: 20_000,
    };
    let newer = [
        ShardOp::Facet {
            field,
            filter: None,
        },
        stats.clone(),
        ShardOp::Plan {
            plan: Plan::DeleteVectors(Selector::Ids(vec![PointId::Num(1)])),
            version: 1,
            page: Default::default(),
        },
        ShardOp::Plan {
            plan: Plan::Vectors(vec![(PointId::Num(1), vec![1.0])]),
            version: 1,
            page: Default::default(),
        },
    ];
    for op in &newer {
        assert_eq!(op.since(), 3, "{op:?}");
    }
    let older = ShardOp::Count { filter: None };
    assert_eq!(older.since(), OLDEST_PROTOCOL);
    assert_eq!(DUMP_SINCE, 3);
    // A record whose vector was deleted needs 3; a tombstone or a point with a vector does not.
    let mut changes = vec![change(1, true), change(2, false)];
    assert_eq!(changes_since(&changes), OLDEST_PROTOCOL);
    if let Some(body) = changes[0].record.body.as_mut() {
        body.vector.clear();
    }
    assert_eq!(changes_since(&changes), 3);

    // Stats travel with the optimizer status.
    let back = round_trip(&stats);
    assert!(matches!(
        back,
        ShardOp::Stats {
            indexing_threshold: 20_000
        }
    ));
    let reply = ShardStats {
        points: 10,
        indexed: 4,
        segments: 1,
        fields: vec![("a".into(), 3)],
        optimizing: true,
        optimizer_error: Some("disk full".into()),
    };
    let back = round_trip(&ShardReply::Stats(reply.clone()))
        .stats()
        .expect("stats");
    assert_eq!(back, reply);
    let sum = back.plus(ShardStats {
        points: 1,
        fields: vec![("a".into(), 1), ("b".into(), 1)],
        ..ShardStats::default()
    });
    assert_eq!((sum.points, sum.optimizing), (11, true));
    assert_eq!(sum.fields, vec![("a".into(), 4), ("b".into(), 1)]);
    assert_eq!(sum.optimizer_error.as_deref(), Some("disk full"));
}
