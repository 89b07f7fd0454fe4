//! Criterion benches of the vector index: distance kernels per metric and dimension, HNSW search
//! at several `ef` on a small in-memory segment (20k × 64, built once), and filtered search with
//! an accept predicate that passes 10 % and 50 % of the points.
//!
//! `cargo bench --bench index` (add `-- search` etc. to pick a group). Each group is kept short
//! (small sample size, 1–2 s measurement) because the machine is shared.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{rngs::StdRng, Rng, SeedableRng};
use shoal::index::distance::kernels;
use shoal::index::{HnswParams, Metric, Segment};
use std::time::Duration;

fn gauss(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.gen_range(1e-12..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Clustered Gaussian data as in docs/benchmarks.md: centres N(0, 4²), points N(centre, 1).
fn clustered(seed: u64, n: usize, dim: usize, clusters: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..clusters * dim).map(|_| 4.0 * gauss(&mut rng)).collect();
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.gen_range(0..clusters);
        for j in 0..dim {
            out.push(centres[c * dim + j] + gauss(&mut rng));
        }
    }
    out
}

fn bench_kernels(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernels");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let mut rng = StdRng::seed_from_u64(1);
    for dim in [128usize, 768] {
        let a: Vec<f32> = (0..dim).map(|_| gauss(&mut rng)).collect();
        let b: Vec<f32> = (0..dim).map(|_| gauss(&mut rng)).collect();
        g.throughput(Throughput::Elements(dim as u64));
        g.bench_with_input(BenchmarkId::new("dot", dim), &dim, |bch, _| {
            bch.iter(|| kernels::dot(black_box(&a), black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("l2_squared", dim), &dim, |bch, _| {
            bch.iter(|| kernels::l2_squared(black_box(&a), black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("l1", dim), &dim, |bch, _| {
            bch.iter(|| kernels::l1(black_box(&a), black_box(&b)))
        });
        for (name, metric) in [
            ("cosine", Metric::Cosine),
            ("dot", Metric::Dot),
            ("euclid", Metric::Euclid),
            ("manhattan", Metric::Manhattan),
        ] {
            let (mut pa, mut pb) = (a.clone(), b.clone());
            metric.prepare(&mut pa);
            metric.prepare(&mut pb);
            g.bench_with_input(
                BenchmarkId::new(format!("metric_{name}"), dim),
                &dim,
                |bch, _| bch.iter(|| metric.distance(black_box(&pa), black_box(&pb))),
            );
        }
    }
    g.finish();
}

struct Fixture {
    seg: Segment,
    queries: Vec<f32>,
    dim: usize,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let (n, dim, nq) = (20_000usize, 64usize, 200usize);
    let all = clustered(7, n + nq, dim, 50);
    let (data, queries) = all.split_at(n * dim);
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = Segment::build(
        data.to_vec(),
        dim,
        Metric::Euclid,
        HnswParams {
            m: 16,
            ef_construct: 100,
        },
        dir.path(),
    )
    .expect("build segment");
    Fixture {
        seg,
        queries: queries.to_vec(),
        dim,
        _dir: dir,
    }
}

fn bench_search(c: &mut Criterion) {
    let f = fixture();
    let qs: Vec<&[f32]> = f.queries.chunks_exact(f.dim).collect();
    let mut g = c.benchmark_group("search_20k_x64");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(qs.len() as u64));
    for ef in [16usize, 32, 64, 128] {
        g.bench_with_input(BenchmarkId::new("hnsw_k10_ef", ef), &ef, |b, &ef| {
            b.iter(|| {
                for q in &qs {
                    black_box(f.seg.search(q, 10, ef, |_| true));
                }
            })
        });
    }
    // Filtered: the predicate accepts ids whose hash falls in the first `pct` percent.
    for pct in [10u32, 50] {
        let accept = move |id: u32| (id.wrapping_mul(2_654_435_761) >> 16) % 100 < pct;
        g.bench_with_input(
            BenchmarkId::new("filtered_k10_ef64_pct", pct),
            &pct,
            |b, _| {
                b.iter(|| {
                    for q in &qs {
                        black_box(f.seg.search(q, 10, 64, accept));
                    }
                })
            },
        );
    }
    g.sample_size(10).throughput(Throughput::Elements(20));
    g.bench_function("exact_k10", |b| {
        b.iter(|| {
            for q in qs.iter().take(20) {
                black_box(f.seg.exact(q, 10, |_| true));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_kernels, bench_search);
criterion_main!(benches);
