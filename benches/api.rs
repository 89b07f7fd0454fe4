//! Criterion bench of reading search bodies: serde_json against `api::fast_json`, on 1000
//! different 128-d bodies (so that branch predictors cannot learn one body), with numbers as Rust
//! clients write an `f32` (shortest form) and as Python clients do (the `f32` widened to `f64`).
//!
//! `cargo bench --bench api`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{rngs::StdRng, Rng, SeedableRng};
use shoal::api::fast_json::FastParse;
use shoal::service::models::SearchPoints;
use std::hint::black_box;

fn bodies(python: bool) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(5);
    (0..1000)
        .map(|_| {
            let v: Vec<String> = (0..128)
                .map(|_| {
                    let x: f32 = rng.gen_range(-3.0..3.0);
                    if python {
                        format!("{:?}", x as f64)
                    } else {
                        format!("{x}")
                    }
                })
                .collect();
            format!(
                "{{\"vector\":[{}],\"limit\":10,\"params\":{{\"hnsw_ef\":64}}}}",
                v.join(",")
            )
        })
        .collect()
}

fn bench_search_body(c: &mut Criterion) {
    for (name, python) in [("rust", false), ("python", true)] {
        let bodies = bodies(python);
        let mut group = c.benchmark_group(format!("search_body_{name}"));
        group.throughput(Throughput::Elements(1));
        let mut i = 0;
        group.bench_function("serde_json", |b| {
            b.iter(|| {
                i = (i + 1) % bodies.len();
                let parsed: Option<SearchPoints> =
                    serde_json::from_str(black_box(&bodies[i])).expect("valid body");
                parsed
            })
        });
        group.bench_function("fast_json", |b| {
            b.iter(|| {
                i = (i + 1) % bodies.len();
                Option::<SearchPoints>::fast(black_box(bodies[i].as_bytes())).expect("fast path")
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_search_body);
criterion_main!(benches);
