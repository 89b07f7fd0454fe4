//! Benchmark (not a test) of filtered search in process: one shard of clustered vectors (100
//! Gaussian clusters) whose payloads hold two integer fields and a ~300-byte text, searched
//! unfiltered and with a `range` passing a chosen fraction of the points, on one thread, at
//! k = 10 and ef = 100:
//! - `r < p` (`r` = a random label mod 100): p % of the points, independent of the vectors;
//! - `c < p` (`c` = the point's cluster): ≈ p % of the points, all in p of the 100 clusters —
//!   correlated with the vectors (the queries come from every cluster, so most of them lie far
//!   from every member).
//!
//! Every filtered case runs under each of the planner's plans (`auto`: the planner's choice;
//! `exact`: score every candidate; `graph`: the walk over the whole graph; `members`: the
//! members-only walk), forced for all segments. Rounds interleave every case and plan
//! with the unfiltered search, so that the machine's load drifts on all of them alike; a row
//! reports the median time of a query over all rounds and queries, that median over the
//! unfiltered one, and recall@10 against exact filtered search (the same shard with `exact`).
//!
//! `cargo run --release --example filtered_bench -- [points] [dim] [mode] [max segment points]`
//!
//! `mode`: `unindexed` (the default: the planner's implicit columns), `indexed` (`r` and `c` get
//! an integer range index first), `both` (unindexed, then indexed, in one run), or `load` (build
//! the shard and stop). With a
//! maximum segment size the shard is loaded into as few segments as it allows (the whole tail
//! is built at once); without one the optimizer builds 100 000-point tails as it goes.
//! Environment: `FB_SELS` (percentages, `1,2,5,10,20,30,50`), `FB_KINDS` (`independent`,
//! `correlated`), `FB_PLANS` (`auto,exact,graph,members`), `FB_ROUNDS` (3), `FB_QUERIES`
//! (200), `FB_THRESHOLD` (the shard's `full_scan_threshold` in points), `FB_HIST` (set: print
//! per case how many queries found 0, 1, …, 10 of the true 10 — a walk that misses a few
//! queries entirely, e.g. from a wrong entry, shows as a count at 0).
//!
//! The shard is kept under `$TMPDIR/shoal-filtered-bench2-<points>x<dim>[-<max segment>]` and
//! reused.

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;
use shoal::index::{HnswParams, Metric};
use shoal::shard::filter::Filter;
use shoal::shard::payload_index::FieldSchema;
use shoal::shard::point::PointId;
use shoal::shard::search::{force_plan, Plan, SearchSpec};
use shoal::shard::version::VersionClock;
use shoal::shard::{Change, Shard, ShardConfig};
use std::sync::Arc;
use std::time::Instant;

fn gauss(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.gen_range(1e-12..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `n` points around 100 fixed centres, with the centre each was drawn around.
fn clustered(seed: u64, n: usize, dim: usize) -> (Vec<f32>, Vec<u64>) {
    let mut rng = StdRng::seed_from_u64(1234);
    let centres: Vec<f32> = (0..100 * dim).map(|_| 4.0 * gauss(&mut rng)).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * dim);
    let mut cluster = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.gen_range(0..100);
        cluster.push(c as u64);
        out.extend((0..dim).map(|j| centres[c * dim + j] + gauss(&mut rng)));
    }
    (out, cluster)
}

fn payload(label: u64, cluster: u64) -> serde_json::Map<String, serde_json::Value> {
    let mut p = serde_json::Map::new();
    p.insert("r".into(), json!(label % 100));
    p.insert("c".into(), json!(cluster));
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

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn env_num(name: &str, default: usize) -> usize {
    (std::env::var(name).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let arg = |i: usize| std::env::args().nth(i).and_then(|s| s.parse().ok());
    let (n, dim): (usize, usize) = (arg(1).unwrap_or(100_000), arg(2).unwrap_or(64));
    let max_segment: Option<usize> = arg(4);
    let name = match max_segment {
        Some(m) => format!("shoal-filtered-bench2-{n}x{dim}-{m}"),
        None => format!("shoal-filtered-bench2-{n}x{dim}"),
    };
    let dir = std::env::temp_dir().join(name);
    let db = sled::Config::new().path(dir.join("db")).open()?;
    let mut config = ShardConfig::new(dim, Metric::Euclid, HnswParams::default());
    if let Some(points) = max_segment {
        // Segments as a node whose memory allows them would build them: the whole load is
        // one tail, built at the end.
        config.optimizer.max_segment_points = points;
        config.optimizer.max_tail_points = n.max(points);
        config.optimizer.max_tail_bytes = usize::MAX;
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
        let (data, clusters) = clustered(7, n, dim);
        let mut rng = StdRng::seed_from_u64(5);
        for (b, chunk) in data.chunks(1000 * dim).enumerate() {
            let changes = chunk
                .chunks(dim)
                .enumerate()
                .map(|(j, v)| {
                    let id = (b * 1000 + j) as u64;
                    let p = payload(rng.gen(), clusters[id as usize]);
                    Change::upsert(PointId::Num(id), id + 1, v.to_vec(), p)
                })
                .collect();
            shard.commit(changes, false)?;
            if max_segment.is_none() && (b + 1) % 100 == 0 {
                while shard.optimize(1)?.is_some() {}
            }
        }
        eprintln!("loaded {n} points in {:?}", t.elapsed());
        while shard.optimize(1)?.is_some() {}
        eprintln!("loaded and indexed {n} points in {:?}", t.elapsed());
    }
    let mode = std::env::args()
        .nth(3)
        .unwrap_or_else(|| "unindexed".into());
    let (live, indexed, segments) = shard.stats();
    eprintln!("{live} points, {indexed} indexed, {segments} segments");
    if mode == "load" {
        return Ok(());
    }
    let queries = clustered(99, env_num("FB_QUERIES", 200), dim).0;
    let queries: Vec<&[f32]> = queries.chunks(dim).collect();
    if mode != "indexed" {
        println!("\nno payload index (implicit columns)\n");
        measure(&shard, &queries)?;
    }
    if mode == "indexed" || mode == "both" {
        let t = Instant::now();
        let range = json!({"type": "integer", "lookup": false, "range": true});
        let range = FieldSchema::parse(&range).map_err(anyhow::Error::msg)?;
        shard.set_payload_schema(
            ["r", "c"]
                .iter()
                .map(|f| (f.to_string(), range.clone()))
                .collect(),
        );
        eprintln!(
            "payload indexes built in {:?}: {} bytes",
            t.elapsed(),
            shard.memory().payload_index
        );
        println!("\ninteger range indexes\n");
        measure(&shard, &queries)?;
    }
    Ok(())
}

/// One row: a filter (or none) searched under one plan.
struct Case {
    name: String,
    plan: &'static str,
    filter: Option<Filter>,
    /// Per-query times (µs) over all rounds.
    times: Vec<f64>,
    recall: f64,
}

/// The plans a case can run under: the planner's choice, then each plan forced.
const PLANS: [&str; 4] = ["auto", "exact", "graph", "members"];

fn plan_of(name: &str) -> Option<Plan> {
    match name {
        "exact" => Some(Plan::Exact),
        "graph" => Some(Plan::Graph),
        "members" => Some(Plan::Members),
        _ => None,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Times every case and plan, interleaved round by round, and prints the table.
fn measure(shard: &Shard, queries: &[&[f32]]) -> anyhow::Result<()> {
    let sels = env_list("FB_SELS", "1,2,5,10,20,30,50");
    let kinds = env_list("FB_KINDS", "independent,correlated");
    let plans: Vec<&'static str> = env_list("FB_PLANS", "auto,exact,graph,members")
        .iter()
        .filter_map(|p| PLANS.into_iter().find(|q| q == p))
        .collect();
    let rounds = env_num("FB_ROUNDS", 3);
    let ids = |filter: Option<&Filter>, q: &[f32], exact: bool| -> Vec<PointId> {
        shard
            .search(&spec(q, filter, exact))
            .into_iter()
            .map(|h| h.point.id)
            .collect()
    };
    let mut cases = vec![Case {
        name: "none".into(),
        plan: "-",
        filter: None,
        times: Vec::new(),
        recall: 1.0,
    }];
    for kind in &kinds {
        let key = if kind == "correlated" { "c" } else { "r" };
        for sel in &sels {
            let p: u64 = sel.parse()?;
            let f: Filter =
                serde_json::from_value(json!({"must": [{"key": key, "range": {"lt": p}}]}))?;
            for plan in &plans {
                cases.push(Case {
                    name: format!("{kind} `{key}` < {p} ({p} %)"),
                    plan,
                    filter: Some(f.clone()),
                    times: Vec::new(),
                    recall: 0.0,
                });
            }
        }
    }
    // Recall first (which also builds the implicit columns, untimed); the truth is computed
    // once per filter, whatever the plans.
    let mut truths: Vec<(String, Vec<Vec<PointId>>)> = Vec::new();
    for case in cases.iter_mut().filter(|c| c.filter.is_some()) {
        if truths.last().is_none_or(|(name, _)| *name != case.name) {
            let truth = (queries.iter())
                .map(|q| ids(case.filter.as_ref(), q, true))
                .collect();
            truths.push((case.name.clone(), truth));
        }
        let Some((_, truth)) = truths.last() else {
            continue;
        };
        force_plan(plan_of(case.plan));
        let (mut hit, mut total) = (0, 0);
        let mut hist = [0usize; 11];
        for (q, t) in queries.iter().zip(truth) {
            let got = ids(case.filter.as_ref(), q, false);
            let h = got.iter().filter(|id| t.contains(id)).count();
            hist[h.min(10)] += 1;
            hit += h;
            total += t.len();
        }
        if std::env::var_os("FB_HIST").is_some() {
            eprintln!("{} {}: queries by hits@10 {hist:?}", case.name, case.plan);
        }
        case.recall = hit as f64 / total.max(1) as f64;
    }
    for _ in 0..rounds {
        for case in cases.iter_mut() {
            force_plan(plan_of(case.plan));
            for q in queries {
                let t = Instant::now();
                std::hint::black_box(shard.search(&spec(q, case.filter.as_ref(), false)));
                case.times.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    force_plan(None);
    let base = median(&mut cases[0].times.clone());
    println!("| filter | plan | median µs | × unfiltered | recall@10 |");
    println!("|---|---|---|---|---|");
    for case in &mut cases {
        let m = median(&mut case.times);
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.3} |",
            case.name,
            case.plan,
            m,
            m / base.max(1e-9),
            case.recall
        );
    }
    Ok(())
}
