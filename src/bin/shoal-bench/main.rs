//! shoal-bench: recall@10, single-thread QPS and latency of the vector index (`shoal::index`)
//! on a deterministic synthetic dataset, plus build and reopen time.
//!
//! First version: the index only (no hnswlib side by side yet). Data: `--clusters 0` gives
//! uniform random vectors in [0, 1)^dim; otherwise `clusters` Gaussian clusters with centres
//! N(0, 4²) and points N(centre, 1) (the data of /work/shared/NOTES.md). Queries come from the
//! same distribution. Ground truth is exact (parallel brute force).

use anyhow::{Context, Result};
use clap::Parser;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rayon::prelude::*;
use shoal::index::{BuildOptions, HnswParams, Metric, RepairOptions, Segment};
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Benchmark shoal's HNSW segment: recall@k, QPS, latency, build and reopen time")]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    n: usize,
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Number of Gaussian clusters; 0 = uniform random vectors.
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 16)]
    m: usize,
    #[arg(long, default_value_t = 100)]
    ef_construct: usize,
    /// Comma-separated beam widths.
    #[arg(long, value_delimiter = ',', default_value = "32,48,64,100,128,256")]
    ef: Vec<usize>,
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// cosine | dot | euclid | manhattan
    #[arg(long, default_value = "euclid")]
    metric: String,
    /// Override hnsw_rs's max_nb_connection (default: the mapping from m).
    #[arg(long)]
    max_nb_connection: Option<usize>,
    /// Also re-prune full neighbour lists with the HNSW heuristic (off by default: measured worse).
    #[arg(long)]
    reprune: bool,
    #[arg(long)]
    no_reconnect: bool,
    /// Where to build the segment (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn gauss(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.gen_range(1e-12..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `count` vectors; clustered data draws clusters from `centres`.
fn generate(
    rng: &mut StdRng,
    count: usize,
    dim: usize,
    centres: &[f32],
    metric: Metric,
) -> Vec<f32> {
    let clusters = centres.len() / dim.max(1);
    let mut out = Vec::with_capacity(count * dim);
    let mut v = vec![0.0f32; dim];
    for _ in 0..count {
        if clusters == 0 {
            v.iter_mut().for_each(|x| *x = rng.gen::<f32>());
        } else {
            let c = rng.gen_range(0..clusters);
            for (j, x) in v.iter_mut().enumerate() {
                *x = centres[c * dim + j] + gauss(rng);
            }
        }
        metric.prepare(&mut v);
        out.extend_from_slice(&v);
    }
    out
}

fn parse_metric(s: &str) -> Result<Metric> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "cosine" => Metric::Cosine,
        "dot" => Metric::Dot,
        "euclid" | "l2" => Metric::Euclid,
        "manhattan" | "l1" => Metric::Manhattan,
        other => anyhow::bail!("unknown metric {other}"),
    })
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let metric = parse_metric(&a.metric)?;
    let mut rng = StdRng::seed_from_u64(a.seed);
    let centres: Vec<f32> = (0..a.clusters * a.dim)
        .map(|_| 4.0 * gauss(&mut rng))
        .collect();
    let t = Instant::now();
    let data = generate(&mut rng, a.n, a.dim, &centres, metric);
    let queries = generate(&mut rng, a.queries, a.dim, &centres, metric);
    let gen_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let truth: Vec<Vec<u32>> = queries
        .par_chunks(a.dim)
        .map(|q| {
            let mut d: Vec<(f32, u32)> = data
                .chunks_exact(a.dim)
                .enumerate()
                .map(|(i, v)| (metric.distance(q, v), i as u32))
                .collect();
            let k = a.k.min(d.len());
            if k > 0 {
                d.select_nth_unstable_by(k - 1, |x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            }
            d.truncate(k);
            d.into_iter().map(|x| x.1).collect()
        })
        .collect();
    let gt_s = t.elapsed().as_secs_f64();

    let (dir, remove_after) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("shoal-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let params = HnswParams {
        m: a.m,
        ef_construct: a.ef_construct,
    };
    let opts = BuildOptions {
        max_nb_connection: a.max_nb_connection,
        repair: RepairOptions {
            reprune: a.reprune,
            reconnect: !a.no_reconnect,
        },
    };
    let t = Instant::now();
    let built = Segment::build_with_options(data, a.dim, metric, params, &dir, opts)?;
    let build_s = t.elapsed().as_secs_f64();
    let stats = built.repair_stats();
    drop(built);
    let t = Instant::now();
    let seg = Segment::open(&dir, metric)?;
    let reopen_s = t.elapsed().as_secs_f64();

    println!(
        "# shoal-bench: n={} dim={} clusters={} queries={} seed={} metric={:?} m={} ef_construct={} max_nb_connection={} reprune={} reconnect={} kernels={}",
        a.n,
        a.dim,
        a.clusters,
        a.queries,
        a.seed,
        metric,
        a.m,
        a.ef_construct,
        a.max_nb_connection.unwrap_or_else(|| params.max_nb_connection()),
        a.reprune,
        !a.no_reconnect,
        shoal::index::distance::kernels::simd_level()
    );
    println!(
        "# data gen {gen_s:.2} s, ground truth {gt_s:.2} s, build {build_s:.2} s, reopen {reopen_s:.2} s, disk {:.1} MB",
        dir_size(&dir) as f64 / 1e6
    );
    println!(
        "# graph: edges {} -> {} after repair, layer-0 unreachable before reconnect {}, reconnected {}",
        stats.edges_before, stats.edges_after, stats.unreachable_layer0, stats.reconnected
    );
    println!("| ef | recall@{} | QPS (1 thread) | p50 µs | p99 µs |", a.k);
    println!("|---|---|---|---|---|");
    let qs: Vec<&[f32]> = queries.chunks_exact(a.dim).collect();
    for &ef in &a.ef {
        // Warm-up pass (caches, scratch allocation), not timed.
        for q in qs.iter().take(100) {
            std::hint::black_box(seg.search(q, a.k, ef, |_| true));
        }
        let mut lat = Vec::with_capacity(qs.len());
        let mut hits = 0usize;
        let mut total = 0usize;
        let t = Instant::now();
        for (q, tr) in qs.iter().zip(&truth) {
            let s = Instant::now();
            let got = seg.search(q, a.k, ef, |_| true);
            lat.push(s.elapsed().as_secs_f64());
            hits += got.iter().filter(|x| tr.contains(&x.1)).count();
            total += tr.len();
        }
        let wall = t.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize] * 1e6;
        println!(
            "| {ef} | {:.3} | {:.0} | {:.0} | {:.0} |",
            hits as f64 / total.max(1) as f64,
            qs.len() as f64 / wall,
            pct(0.5),
            pct(0.99)
        );
    }
    if remove_after {
        drop(seg);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
