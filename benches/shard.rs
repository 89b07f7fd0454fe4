//! Criterion bench of the write path below the API: batches of upserts committed to a
//! `shoal::shard::Shard` (sled records + in-memory tail), without and with the fsync that
//! `wait=true` asks for. Ids keep increasing across iterations, so every batch inserts new points.
//!
//! `cargo bench --bench shard`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{rngs::StdRng, Rng, SeedableRng};
use shoal::index::{HnswParams, Metric};
use shoal::shard::point::{Payload, PointId};
use shoal::shard::version::VersionClock;
use shoal::shard::{Change, Shard, ShardConfig};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

fn bench_upsert(c: &mut Criterion) {
    let dim = 128usize;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .open()
        .expect("sled");
    let clock = Arc::new(VersionClock::default());
    let config = ShardConfig::new(dim, Metric::Euclid, HnswParams::default());
    let shard = Shard::open(
        &shoal::store::Store::from_db(db.clone()),
        "bench_0",
        &dir.path().join("shard"),
        config,
        Arc::clone(&clock),
    )
    .expect("shard");
    let mut rng = StdRng::seed_from_u64(3);
    let pool: Vec<f32> = (0..4096 * dim).map(|_| rng.gen::<f32>()).collect();
    let next_id = Cell::new(0u64);

    let mut g = c.benchmark_group("shard_upsert");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (batch, durable) in [(100usize, false), (1000, false), (1000, true)] {
        g.throughput(Throughput::Elements(batch as u64));
        let name = if durable { "durable" } else { "buffered" };
        g.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, &batch| {
            b.iter_batched(
                || {
                    (0..batch)
                        .map(|_| {
                            let id = next_id.get();
                            next_id.set(id + 1);
                            let row = (id as usize % 4096) * dim;
                            let mut payload = Payload::new();
                            payload.insert("n".into(), serde_json::json!(id));
                            Change::upsert(
                                PointId::Num(id),
                                clock.next(),
                                pool[row..row + dim].to_vec(),
                                payload,
                            )
                        })
                        .collect::<Vec<_>>()
                },
                |changes| shard.commit(changes, durable).expect("commit"),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_upsert);
criterion_main!(benches);
