//! Arbitrary requests into the peer port's router, in process, against a one-node cluster with two
//! collections (one named `a#b %c`). The first bytes choose the route, the collection, the shard
//! and the token (right, none, wrong); the rest is the body, either raw bytes or a record built
//! from them (so that the admission checks, not only the decoder, see odd vectors, versions and
//! payloads). Every message type is also decoded from the raw bytes directly.
//!
//! Invariants: nothing panics; a request without the right token is a 401; no request is a 5xx.

#![no_main]

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use shoal::cluster::discovery::Discovery;
use shoal::cluster::identity::Identity;
use shoal::cluster::coordinator::Coordinator;
use shoal::cluster::protocol::{
    self, CatalogPush, RecordsRequest, ShardOp, PROTOCOL_HEADER, TOKEN_HEADER,
};
use shoal::cluster::{peer_api, Cluster, PeerToken};
use shoal::collection::catalog::Catalog;
use shoal::collection::CollectionConfig;
use shoal::index::{HnswParams, Metric};
use shoal::shard::point::{PointId, Record, RecordBody};
use shoal::shard::Change;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-cluster-token-0123456789";
const NAMES: [&str; 3] = ["c", "a#b %c", "missing"];

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    _dir: tempfile::TempDir,
}

fn collection_config(size: usize, distance: Metric, shard_number: u32) -> CollectionConfig {
    CollectionConfig {
        size,
        distance,
        hnsw: HnswParams::default(),
        shard_number,
        replication_factor: 1,
        write_consistency_factor: 1,
        on_disk_payload: true,
        quantization: None,
        optimizers: Default::default(),
    }
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let data = dir.path().to_string_lossy().into_owned();
        let node = runtime.block_on(async {
            let identity = Identity::from_hostname("shoal-0").expect("identity");
            let discovery = Discovery::new(identity.clone(), "fuzz.local".into(), 6335, None)
                .expect("discovery");
            let token = PeerToken::new(Some(TOKEN), None).expect("token");
            let cluster = Cluster::new(identity, discovery, 1, token).expect("cluster");
            let catalog =
                Catalog::open(dir.path(), 0, 1 << 20, |c| cluster.local_shards(c)).expect("catalog");
            for (name, c) in [("c", collection_config(4, Metric::Cosine, 2)), ("a#b %c", collection_config(3, Metric::Dot, 1))] {
                let local = cluster.local_shards(&c);
                catalog.create(name, c, &local).expect("collection");
            }
            let node = Coordinator::new(catalog, cluster, None, 65536);
            node.set_ready(true);
            node
        });
        Harness {
            app: peer_api::router(Arc::new(node)),
            runtime,
            _dir: dir,
        }
    })
}

/// A record whose fields come from the fuzzer's bytes.
fn record_from(bytes: &[u8]) -> Vec<Change> {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        for (j, b) in bytes.iter().skip(i * 8).take(8).enumerate() {
            w[j] = *b;
        }
        u64::from_le_bytes(w)
    };
    let version = match bytes.first().copied().unwrap_or(0) % 3 {
        0 => word(0),
        1 => u64::MAX,
        _ => (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
            << 8)
            .wrapping_add(word(0) >> 20),
    };
    let floats: Vec<f32> = bytes
        .get(8..)
        .unwrap_or(&[])
        .chunks_exact(4)
        .take(6)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let payload = String::from_utf8_lossy(bytes.get(32..).unwrap_or(&[])).into_owned();
    vec![Change {
        payload: None,
        id: PointId::Num(word(1) % 64),
        record: Record {
            version,
            vector_version: version.wrapping_sub(word(2) % 3),
            body: (word(3) % 5 != 0).then_some(RecordBody {
                vector: floats,
                payload_json: payload,
            }),
        },
    }]
}

fuzz_target!(|data: &[u8]| {
    // The decoders alone, on the raw bytes.
    let _ = protocol::decode::<Vec<Change>>(data);
    let _ = protocol::decode::<CatalogPush>(data);
    let _ = protocol::decode::<ShardOp>(data);
    let _ = protocol::decode::<RecordsRequest>(data);

    let [route, who, shard, mode, rest @ ..] = data else {
        return;
    };
    let name = NAMES[(*route as usize / 8) % NAMES.len()];
    let shard = u32::from(*shard % 4);
    let (method, path) = match route % 8 {
        0 => ("GET", "/peer/v1/status".to_string()),
        1 => ("GET", "/peer/v1/catalog".to_string()),
        2 => ("PUT", "/peer/v1/catalog".to_string()),
        3 => ("POST", protocol::shard_path(name, shard, "op") + "?complete_only=true"),
        4 => ("POST", protocol::shard_path(name, shard, "commit") + "?durable=false"),
        5 => ("POST", protocol::shard_path(name, shard, "records")),
        6 => ("GET", protocol::shard_path(name, shard, "state")),
        _ => ("POST", "/peer/v1/handoff".to_string()),
    };
    let body = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        protocol::encode(&record_from(rest))
    };
    let mut request = Request::builder()
        .method(method)
        .uri(&path)
        .header(PROTOCOL_HEADER, "1");
    let right = who % 3 == 0;
    match who % 3 {
        0 => request = request.header(TOKEN_HEADER, TOKEN),
        1 => {}
        _ => request = request.header(TOKEN_HEADER, &TOKEN[..TOKEN.len() - 1]),
    }
    let request = request.body(Body::from(body)).expect("request");
    let h = harness();
    let response = h
        .runtime
        .block_on(h.app.clone().oneshot(request))
        .expect("the router is infallible");
    let status = response.status();
    if !right {
        assert_eq!(status.as_u16(), 401, "{method} {path} without the token");
    }
    assert!(!status.is_server_error(), "{method} {path} answered {status}");
});
