//! Benchmark (not a test) of filtered search in process: one shard of clustered vectors whose
//! payloads hold keyword fields of known selectivity and a ~300-byte text, searched unfiltered
//! and with a `match` on a field passing 0.1 %, 1 %, 10 % and 50 % of the points. Reports QPS on
//! one thread and recall@10 against exact filtered search (the same shard with `exact: true`).
//!
//! `cargo run --release --example filtered_bench -- [points] [dim] [mode] [max segment points]`
//!
//! `mode`: `unindexed` (the default: the planner's implicit columns), `indexed` (the four keyword
//! fields get a keyword payload index first), or `both` (unindexed, then indexed, in one run, so
//! that both tables share the machine's load). `FB_SECS` sets how long each row is timed (2 s),
//! `FB_CASES` which rows run (comma-separated selectivity moduli, `0` for no filter: `0,10`),
//! which is what a profiler wants, and `FB_THRESHOLD` the shard's `full_scan_threshold` in
//! points (the planner still walks the graph above its own break-even bound).
//!
//! The shard is kept under `$TMPDIR/shoal-filtered-bench-<points>x<dim>` and reused.

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;
use shoal::index::{HnswParams, Metric};
use shoal::shard::filter::Filter;
use shoal::shard::payload_index::FieldSchema;
use shoal::shard::point::PointId;
use shoal::shard::search::SearchSpec;
use shoal::shard::version::VersionClock;
use shoal::shard::{Change, Shard, ShardConfig};
use std::sync::Arc;
use std::time::Instant;

fn gauss(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.gen_range(1e-12..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `n` points around 100 fixed centres.
fn clustered(seed: u64, n: usize, dim: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(1234);
    let centres: Vec<f32> = (0..100 * dim).map(|_| 4.0 * gauss(&mut rng)).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.gen_range(0..100);
        out.extend((0..dim).map(|j| centres[c * dim + j] + gauss(&mut rng)));
    }
    out
}

/// Keyword fields: `s1000` passes 0.1 % of points for one value, `s100` 1 %, `s10` 10 %, `s2` 50 %.
const FIELDS: [(&str, u64, &str); 4] = [
    ("s1000", 1000, "0.1 %"),
    ("s100", 100, "1 %"),
    ("s10", 10, "10 %"),
    ("s2", 2, "50 %"),
];

fn payload(label: u64) -> serde_json::Map<String, serde_json::Value> {
    let mut p = serde_json::Map::new();
    for (field, m, _) in FIELDS {
        p.insert(field.into(), json!(format!("v{}", label % m)));
    }
    p.insert(
        "doc".into(),
        json!("lorem ipsum dolor sit amet ".repeat(12)),
    );
    p
}

fn spec<'a>(vector: &'a [f32], filter: Option<&'a Filter>, exact: bool) -> SearchSpec<'a> {
    SearchSpec {
        vector,
        k: 10,
        ef: 100,
        exact,
        filter,
        with_vector: false,
        with_payload: false,
        quantization: Default::default(),
    }
}

fn main() -> anyhow::Result<()> {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (n, dim) = (arg(1, 100_000), arg(2, 64));
    let dir = std::env::temp_dir().join(format!("shoal-filtered-bench-{n}x{dim}"));
    let db = sled::Config::new().path(dir.join("db")).open()?;
    let mut config = ShardConfig::new(dim, Metric::Euclid, HnswParams::default());
    // Segments as a pod with a memory limit would build them (default: this machine's).
    if let Some(points) = std::env::args().nth(4).and_then(|s| s.parse().ok()) {
        config.optimizer.max_segment_points = points;
    }
    if let Some(points) = std::env::var("FB_THRESHOLD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        config.full_scan_threshold = points;
    }
    let shard = Shard::open(
        &shoal::store::Store::from_db(db),
        "bench",
        &dir.join("shard"),
        config,
        Arc::new(VersionClock::default()),
    )?;
    if shard.is_empty() {
        let t = Instant::now();
        let data = clustered(7, n, dim);
        let mut rng = StdRng::seed_from_u64(5);
        for (b, chunk) in data.chunks(1000 * dim).enumerate() {
            let changes = chunk
                .chunks(dim)
                .enumerate()
                .map(|(j, v)| {
                    let id = (b * 1000 + j) as u64;
                    Change::upsert(PointId::Num(id), id + 1, v.to_vec(), payload(rng.gen()))
                })
                .collect();
            shard.commit(changes, false)?;
            if (b + 1) % 100 == 0 {
                while shard.optimize(1)?.is_some() {}
            }
        }
        while shard.optimize(1)?.is_some() {}
        eprintln!("loaded and indexed {n} points in {:?}", t.elapsed());
    }
    let mode = std::env::args()
        .nth(3)
        .unwrap_or_else(|| "unindexed".into());
    let (live, indexed, segments) = shard.stats();
    eprintln!("{live} points, {indexed} indexed, {segments} segments");
    let queries = clustered(99, 200, dim);
    let queries: Vec<&[f32]> = queries.chunks(dim).collect();
    if mode != "indexed" {
        println!("\nno payload index (implicit columns)\n");
        measure(&shard, &queries)?;
    }
    if mode == "indexed" || mode == "both" {
        let t = Instant::now();
        let keyword = FieldSchema::parse(&json!("keyword")).map_err(anyhow::Error::msg)?;
        shard.set_payload_schema(
            FIELDS
                .iter()
                .map(|f| (f.0.to_string(), keyword.clone()))
                .collect(),
        );
        eprintln!(
            "payload indexes built in {:?}: {} bytes",
            t.elapsed(),
            shard.memory().payload_index
        );
        println!("\nkeyword indexes\n");
        measure(&shard, &queries)?;
    }
    Ok(())
}

/// Times every case on one thread and prints its row: QPS, mean latency, recall@10 against the
/// same shard's exact filtered search.
fn measure(shard: &Shard, queries: &[&[f32]]) -> anyhow::Result<()> {
    let wanted = std::env::var("FB_CASES").unwrap_or_else(|_| "0,1000,100,10,2".into());
    let wanted: Vec<u64> = wanted
        .split(',')
        .filter_map(|m| m.trim().parse().ok())
        .collect();
    let secs: f64 = (std::env::var("FB_SECS").ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let ids = |filter: Option<&Filter>, q: &[f32], exact: bool| -> Vec<PointId> {
        shard
            .search(&spec(q, filter, exact))
            .into_iter()
            .map(|h| h.point.id)
            .collect()
    };
    println!("| filter | selectivity | QPS | mean latency | recall@10 |");
    println!("|---|---|---|---|---|");
    let mut cases: Vec<(String, &str, Option<Filter>)> = Vec::new();
    if wanted.contains(&0) {
        cases.push(("none".into(), "100 %", None));
    }
    for (field, _, sel) in FIELDS.into_iter().filter(|f| wanted.contains(&f.1)) {
        let f =
            serde_json::from_value(json!({"must": [{"key": field, "match": {"value": "v0"}}]}))?;
        cases.push((format!("`{field}` = v0"), sel, Some(f)));
    }
    for (name, sel, filter) in &cases {
        let truth: Vec<Vec<PointId>> = queries
            .iter()
            .map(|q| ids(filter.as_ref(), q, true))
            .collect();
        let (mut hit, mut total) = (0, 0);
        for (q, t) in queries.iter().zip(&truth) {
            let got = ids(filter.as_ref(), q, false);
            hit += got.iter().filter(|id| t.contains(id)).count();
            total += t.len();
        }
        let started = Instant::now();
        let mut done = 0usize;
        while started.elapsed().as_secs_f64() < secs {
            for q in queries {
                std::hint::black_box(shard.search(&spec(q, filter.as_ref(), false)));
            }
            done += queries.len();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "| {name} | {sel} | {:.0} | {:.0} µs | {:.3} |",
            done as f64 / secs,
            secs * 1e6 / done as f64,
            hit as f64 / total.max(1) as f64
        );
    }
    Ok(())
}
