//! shoal-bench: recall@k, QPS (1 thread and all cores), p50/p95/p99 latency, build and reopen time,
//! disk size and peak memory of shoal's HNSW segment — in process, or over HTTP against a running
//! node or cluster (`--url`) — on a deterministic synthetic dataset or on `.npy` / `.fvecs` files.
//!
//! Data: `--clusters 0` gives uniform random vectors in [0, 1)^dim; otherwise `clusters` Gaussian
//! clusters with centres N(0, 4²) and points N(centre, 1) (the reference data of docs/benchmarks.md).
//! Queries come from the same distribution. Exact ground truth is computed once (parallel brute
//! force) and cached in `--gt-cache` under a hash of data + queries + metric + k.
//!
//! Output: a markdown table on stdout, JSON at `--out`, and a PNG plot of recall vs QPS next to it
//! (drawn by `scripts/plot_bench.py` with matplotlib, when a Python with matplotlib is found —
//! `scripts/bench-vs-hnswlib` makes one in `bench-out/venv`).
//!
//! Examples:
//!   shoal-bench --n 100000 --dim 128                      # in process, reference data
//!   shoal-bench --write-data bench-out/data               # write data.npy / queries.npy, exit
//!   shoal-bench --data d.npy --queries q.npy --out r.json
//!   shoal-bench --url http://127.0.0.1:6333 --concurrency 1,2
//!   shoal-bench --url http://127.0.0.1:6333 --filtered --n 100000 --dim 64 --ef 64   # filtered search
//!   shoal-bench --url http://127.0.0.1:6333 --segment …/segments/seg-<id> --local-cpu 0   # paired

// The node's allocator, so that in-process figures measure the code the node runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod data;
mod filtered;
mod http;
mod paired;
mod quant_ab;
mod report;
mod spin;

use anyhow::{Context, Result};
use clap::Parser;
use data::Matrix;
use rayon::prelude::*;
use report::{percentile, Progress};
use serde_json::json;
use shoal::index::{
    BuildOptions, HnswParams, Metric, QuantSearch, RepairOptions, ScalarInt8, Segment,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    about = "Benchmark shoal: recall@k, QPS, latency, build/reopen time, disk, memory — in process or over HTTP"
)]
struct Args {
    /// Points to generate (or the first N rows of --data).
    #[arg(long)]
    n: Option<usize>,
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Number of Gaussian clusters; 0 = uniform random vectors.
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Queries to generate (or the first N rows of --queries).
    #[arg(long)]
    nq: Option<usize>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Dataset file (.npy 2-D float32/float64, or .fvecs) instead of the generator.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Query file (.npy or .fvecs); required with --data.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Write the generated data.npy and queries.npy into this directory and exit.
    #[arg(long)]
    write_data: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    m: usize,
    #[arg(long, default_value_t = 100)]
    ef_construct: usize,
    /// Comma-separated beam widths.
    #[arg(long, value_delimiter = ',', default_value = "32,48,64,96,128,256")]
    ef: Vec<usize>,
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// cosine | dot | euclid | manhattan
    #[arg(long, default_value = "euclid")]
    metric: String,
    /// Threads for the all-cores QPS figure (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Untimed queries before each timed pass.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Ground-truth cache directory.
    #[arg(long, default_value = "bench-out/gt")]
    gt_cache: PathBuf,
    /// JSON result file; the PNG goes beside it with a .png extension.
    #[arg(long, default_value = "bench-out/result.json")]
    out: PathBuf,
    /// Python with matplotlib used for the PNG (default: bench-out/venv/bin/python if present).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Name of this run in the JSON and the plot legend.
    #[arg(long)]
    label: Option<String>,
    /// Override hnsw_rs's max_nb_connection (default: the mapping from m).
    #[arg(long)]
    max_nb_connection: Option<usize>,
    /// Also re-prune full neighbour lists with the HNSW heuristic (off by default: measured worse).
    #[arg(long)]
    reprune: bool,
    #[arg(long)]
    no_reconnect: bool,
    /// In process: quantize the segment to int8 with this quantile (codes in RAM, Qdrant's
    /// `always_ram`) and search the codes, rescoring the beam with the float vectors.
    #[arg(long)]
    int8_quantile: Option<f32>,
    /// With --int8-quantile: search the one segment both ways, on the float vectors (the codes
    /// ignored) and on the codes, alternating `--rounds` slices of `--min-secs` at every ef, and
    /// report the medians side by side (see quant_ab.rs).
    #[arg(long, requires = "int8_quantile")]
    int8_ab: bool,
    /// With --int8-quantile: Qdrant's `params.quantization.oversampling` (default 1).
    #[arg(long, default_value_t = 1.0)]
    oversampling: f32,
    /// With --int8-quantile: `params.quantization.rescore: false`.
    #[arg(long)]
    no_rescore: bool,
    /// With --dir: open the segment already built there (same data and parameters) instead of
    /// building it again.
    #[arg(long, requires = "dir")]
    reuse: bool,
    /// Where to build the segment (default: a temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Measure a segment a node built (`…/shards/<n>/segments/seg-<id>`) instead of building
    /// one: in process and over HTTP then search the very same graph.
    #[arg(long)]
    segment: Option<PathBuf>,

    // ---- HTTP mode ----
    /// Benchmark a running node or cluster instead: comma-separated base URLs. Writes and queries
    /// go to the first; indexing progress is summed over all of them.
    #[arg(long, value_delimiter = ',')]
    url: Vec<String>,
    #[arg(long, default_value = "bench")]
    collection: String,
    /// Comma-separated numbers of requests in flight.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    concurrency: Vec<usize>,
    /// Time queries with the reqwest client (sleeps between answers) instead of the spinning
    /// socket client (keeps one core busy so the node is never charged for waking it).
    #[arg(long)]
    no_spin: bool,
    /// Queries per request: 1 posts /points/search, more post /points/search/batch.
    #[arg(long, default_value_t = 1)]
    query_batch: usize,
    /// Each single-thread measurement (in process and over HTTP) repeats the query set until it
    /// has run this long.
    #[arg(long, default_value_t = 3.0)]
    min_secs: f64,
    /// Points per upsert request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    #[arg(long)]
    shard_number: Option<u32>,
    #[arg(long)]
    replication_factor: Option<u32>,
    /// Reuse the collection as it is (no delete, create, upload).
    #[arg(long)]
    skip_upload: bool,
    /// With both --url and --segment: alternate in-process and HTTP slices this many times at
    /// every ef and report medians (see paired.rs).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// With both --url and --segment: the CPU the in-process slices run on (the node's core).
    #[arg(long)]
    local_cpu: Option<usize>,
    /// Create, upload and wait for indexing, then stop (a later run measures with --skip-upload).
    #[arg(long)]
    upload_only: bool,
    /// Start measuring once this fraction of the points is in HNSW segments (and counts are stable).
    #[arg(long, default_value_t = 1.0)]
    min_indexed: f64,
    /// Points the nodes together must report before measuring (default: n; n·RF for summed replicas).
    #[arg(long)]
    expect_points: Option<usize>,
    #[arg(long, default_value_t = 1200)]
    index_timeout_s: u64,
    /// Upload two small payload fields with every point.
    #[arg(long)]
    payloads: bool,
    /// `params.quantization` (JSON) of every search over HTTP, e.g. '{"ignore":true}' to search
    /// a quantized collection's float vectors.
    #[arg(long)]
    quantization: Option<String>,
    /// JSON merged into the create-collection body, e.g. '{"quantization_config": …}'.
    #[arg(long)]
    create_extra: Option<String>,
    /// Wait for status green (every build done) as well as the indexed fraction.
    #[arg(long)]
    until_green: bool,
    /// Filtered search: 0.1/1/5/10/20/50 %-selective keyword filters, unindexed then indexed, against
    /// exact filtered ground truth (see `filtered.rs`).
    #[arg(long)]
    filtered: bool,
    /// With --filtered: only the filters `s{m} = "v0"` for these moduli (e.g. `10,5` for 10 % and
    /// 20 %), besides the unfiltered case.
    #[arg(long, value_delimiter = ',')]
    moduli: Vec<usize>,
    /// With --filtered: skip the pass with keyword indexes (only the unindexed fields).
    #[arg(long)]
    unindexed_only: bool,
    /// With --filtered: the clause the filters are written with (the same points either way).
    #[arg(long, value_enum, default_value = "must")]
    clause: filtered::Clause,
}

/// The "1 thread" figure at one `ef`: every query in turn on this thread, after `warmup`.
fn one_thread_sweep(
    qs: &[&[f32]],
    ef: usize,
    warmup: usize,
    min_secs: f64,
    truth: &[Vec<u32>],
    k: usize,
    search: impl Fn(&[f32]) -> Vec<u32>,
) -> Row {
    for q in qs.iter().take(warmup) {
        std::hint::black_box(search(q));
    }
    // Recall from the first pass; QPS and latency over as many passes as fill `min_secs`, as the
    // HTTP sweep does, so that neither side of a comparison is a 100 ms sample.
    let mut lat = Vec::with_capacity(qs.len());
    let mut got = Vec::with_capacity(qs.len());
    let mut done = 0usize;
    let t = Instant::now();
    loop {
        for q in qs {
            let s = Instant::now();
            let r = search(q);
            lat.push(s.elapsed().as_secs_f64() * 1e6);
            if got.len() < qs.len() {
                got.push(r);
            } else {
                std::hint::black_box(r);
            }
        }
        done += qs.len();
        if t.elapsed().as_secs_f64() >= min_secs || qs.is_empty() {
            break;
        }
    }
    let wall = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Row {
        ef,
        series: "1 thread".into(),
        recall: data::recall(&got, truth, k),
        qps: done as f64 / wall,
        lat,
    }
}

/// The name of an HTTP series: its concurrency, and its batch size when queries are batched.
fn http_series(concurrency: usize, query_batch: usize) -> String {
    if query_batch > 1 {
        format!("HTTP c={concurrency} batch {query_batch}")
    } else {
        format!("HTTP c={concurrency}")
    }
}

/// A segment a node built, with the map from its internal ids to the bench's point ids (row
/// numbers).
struct NodeSegment {
    seg: shoal::shard::sealed::SealedSegment,
    point: Vec<u32>,
}

impl NodeSegment {
    /// Opens `dir`; notes its reopen time in `extra`.
    fn open(
        dir: &Path,
        metric: Metric,
        extra: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<NodeSegment> {
        let t = Instant::now();
        let seg = shoal::shard::sealed::SealedSegment::open(0, dir, metric)
            .with_context(|| format!("opening {}", dir.display()))?;
        extra.insert("reopen_s".into(), json!(t.elapsed().as_secs_f64()));
        extra.insert("segment".into(), json!(dir));
        let point = (0..seg.len() as u32)
            .map(|i| match seg.point_id(i) {
                shoal::shard::point::PointId::Num(n) => n as u32,
                _ => u32::MAX,
            })
            .collect();
        Ok(NodeSegment { seg, point })
    }

    /// The point ids of the `k` nearest to `q` at beam width `ef`.
    fn search(&self, q: &[f32], k: usize, ef: usize) -> Vec<u32> {
        self.seg
            .index
            .search(q, k, ef, |_| true)
            .into_iter()
            .map(|x| self.point[x.1 as usize])
            .collect()
    }
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

fn qdrant_distance(m: Metric) -> &'static str {
    match m {
        Metric::Cosine => "Cosine",
        Metric::Dot => "Dot",
        Metric::Euclid => "Euclid",
        Metric::Manhattan => "Manhattan",
    }
}

fn load_dataset(a: &Args) -> Result<(Matrix, Matrix, serde_json::Value)> {
    match (&a.data, &a.queries) {
        (Some(d), Some(q)) => {
            let mut data = data::load(d)?;
            let mut queries = data::load(q)?;
            anyhow::ensure!(
                data.dim == queries.dim,
                "data dim {} != query dim {}",
                data.dim,
                queries.dim
            );
            if let Some(n) = a.n {
                data.truncate(n);
            }
            if let Some(nq) = a.nq {
                queries.truncate(nq);
            }
            let desc = json!({"source": "files", "data": d, "queries": q, "n": data.rows(), "nq": queries.rows(), "dim": data.dim});
            Ok((data, queries, desc))
        }
        (None, None) => {
            let (n, nq) = (a.n.unwrap_or(100_000), a.nq.unwrap_or(1000));
            let (data, queries) = data::generate(a.seed, n, nq, a.dim, a.clusters);
            let desc = json!({"source": "generated", "kind": if a.clusters == 0 { "uniform" } else { "clustered-gaussian" },
                "clusters": a.clusters, "seed": a.seed, "n": n, "nq": nq, "dim": a.dim});
            Ok((data, queries, desc))
        }
        _ => anyhow::bail!("--data and --queries go together"),
    }
}

struct Row {
    ef: usize,
    series: String,
    recall: f64,
    qps: f64,
    lat: Vec<f64>,
}

impl Row {
    fn json(&self) -> serde_json::Value {
        json!({"series": self.series, "ef": self.ef, "recall": self.recall, "qps": self.qps,
            "p50_us": percentile(&self.lat, 0.5), "p95_us": percentile(&self.lat, 0.95), "p99_us": percentile(&self.lat, 0.99)})
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    let metric = parse_metric(&a.metric)?;
    let t = Instant::now();
    let (mut base, mut queries, dataset) = load_dataset(&a)?;
    if let Some(dir) = &a.write_data {
        std::fs::create_dir_all(dir)?;
        data::write_npy(&dir.join("data.npy"), &base)?;
        data::write_npy(&dir.join("queries.npy"), &queries)?;
        println!(
            "wrote {} and {}",
            dir.join("data.npy").display(),
            dir.join("queries.npy").display()
        );
        return Ok(());
    }
    for m in [&mut base, &mut queries] {
        m.data
            .chunks_exact_mut(m.dim)
            .for_each(|v| metric.prepare(v));
    }
    let load_s = t.elapsed().as_secs_f64();
    let dim = base.dim;

    let t = Instant::now();
    eprintln!(
        "[truth] exact {}-NN of {} queries over {} points…",
        a.k,
        queries.rows(),
        base.rows()
    );
    let (truth, gt_path, cached) = data::ground_truth(&base, &queries, metric, a.k, &a.gt_cache)?;
    let gt_s = t.elapsed().as_secs_f64();
    eprintln!(
        "[truth] {} in {gt_s:.2} s: {}",
        if cached { "cached" } else { "computed" },
        gt_path.display()
    );

    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut rows: Vec<Row> = Vec::new();
    let mut extra = serde_json::Map::new();
    let mode;
    let label;
    // The run's name: --label, else what the mode is called.
    let label_or = |default: &str| a.label.clone().unwrap_or_else(|| default.to_string());

    if let (false, Some(sdir)) = (a.url.is_empty(), &a.segment) {
        mode = "paired";
        label = label_or("shoal paired (node's segment)");
        let node_segment = NodeSegment::open(sdir, metric, &mut extra)?;
        let target = http::Target::new(a.url.clone(), a.collection.clone(), 4)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let expect = a.expect_points.unwrap_or(base.rows());
        rt.block_on(target.wait_indexed(
            expect,
            a.min_indexed,
            Duration::from_secs(a.index_timeout_s),
        ))?;
        let setup = paired::Setup {
            segment: &node_segment,
            queries: &queries,
            truth: &truth,
            k: a.k,
            warmup: a.warmup,
            min_secs: a.min_secs,
            rounds: a.rounds,
            local_cpu: a.local_cpu,
            spin: !a.no_spin,
            query_batch: a.query_batch,
        };
        let (paired_rows, pairs) = paired::run(&setup, &target, &rt, &a.ef, &a.concurrency)?;
        rows = paired_rows;
        extra.insert("pairs".into(), pairs);
        extra.insert("rounds".into(), json!(a.rounds));
        extra.insert("urls".into(), json!(a.url));
    } else if let (true, Some(sdir)) = (a.url.is_empty(), &a.segment) {
        mode = "in-process";
        label = label_or("shoal in-process (node's segment)");
        let node_segment = NodeSegment::open(sdir, metric, &mut extra)?;
        let qs: Vec<&[f32]> = queries.data.chunks_exact(dim).collect();
        let mut p = Progress::new("search", a.ef.len());
        for (i, &ef) in a.ef.iter().enumerate() {
            let search = |q: &[f32]| node_segment.search(q, a.k, ef);
            rows.push(one_thread_sweep(
                &qs, ef, a.warmup, a.min_secs, &truth, a.k, search,
            ));
            p.set(i + 1);
        }
        p.done();
    } else if a.url.is_empty() {
        mode = "in-process";
        label = label_or(match a.int8_quantile {
            Some(_) => "shoal in-process int8",
            None => "shoal in-process",
        });
        extra.insert("int8_quantile".into(), json!(a.int8_quantile));
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
        let reuse = a.reuse && dir.join("segment.shoal").exists();
        let (build_s, stats) = if reuse {
            eprintln!("[build] reusing the segment in {}", dir.display());
            (0.0, Default::default())
        } else {
            eprintln!(
                "[build] {} × {dim}, m={} ef_construct={}…",
                base.rows(),
                a.m,
                a.ef_construct
            );
            let t = Instant::now();
            let never = std::sync::atomic::AtomicBool::new(false);
            let data = base.data.clone();
            let int8 = a.int8_quantile.map(|quantile| ScalarInt8 {
                quantile,
                always_ram: true,
            });
            let attach = Default::default();
            let built =
                Segment::build_full(data, dim, metric, params, int8, attach, &dir, opts, &never)?;
            let build_s = t.elapsed().as_secs_f64();
            let stats = built.repair_stats();
            drop(built);
            drop(base);
            (build_s, stats)
        };
        let t = Instant::now();
        let seg = Segment::open(&dir, metric)?;
        seg.keep_codes_in_ram();
        let reopen_s = t.elapsed().as_secs_f64();
        // Int8 segments are searched on their codes (Qdrant's default: rescore, oversampling 1).
        let quant = QuantSearch {
            oversampling: a.oversampling,
            rescore: !a.no_rescore,
            ..QuantSearch::default()
        };
        let disk = report::dir_size(&dir);
        eprintln!(
            "[build] {build_s:.2} s, reopen {reopen_s:.3} s, disk {:.1} MB",
            disk as f64 / 1e6
        );

        let qs: Vec<&[f32]> = queries.data.chunks_exact(dim).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        if a.int8_ab {
            let setup = quant_ab::Setup {
                segment: &seg,
                queries: &qs,
                truth: &truth,
                k: a.k,
                warmup: a.warmup,
                min_secs: a.min_secs,
                rounds: a.rounds,
                quant,
            };
            rows = quant_ab::run(&setup, &a.ef);
        } else {
            let mut p = Progress::new("search", a.ef.len() * 2);
            for (i, &ef) in a.ef.iter().enumerate() {
                let search = |q: &[f32]| {
                    seg.search_quantized(q, a.k, ef, quant, |_| true)
                        .into_iter()
                        .map(|x| x.1)
                        .collect()
                };
                rows.push(one_thread_sweep(
                    &qs, ef, a.warmup, a.min_secs, &truth, a.k, search,
                ));
                p.set(2 * i + 1);

                // All cores: every query once, spread over the pool (latency per query as seen by its thread).
                let t = Instant::now();
                let res: Vec<(f64, Vec<u32>)> = pool.install(|| {
                    qs.par_iter()
                        .map(|q| {
                            let s = Instant::now();
                            let r = seg.search_quantized(q, a.k, ef, quant, |_| true);
                            (
                                s.elapsed().as_secs_f64() * 1e6,
                                r.into_iter().map(|x| x.1).collect(),
                            )
                        })
                        .collect()
                });
                let wall = t.elapsed().as_secs_f64();
                let mut lat: Vec<f64> = res.iter().map(|x| x.0).collect();
                lat.sort_by(f64::total_cmp);
                let got: Vec<Vec<u32>> = res.into_iter().map(|x| x.1).collect();
                let recall = data::recall(&got, &truth, a.k);
                rows.push(Row {
                    ef,
                    series: format!("{threads} threads"),
                    recall,
                    qps: qs.len() as f64 / wall,
                    lat,
                });
                p.set(2 * i + 2);
            }
            p.done();
        }
        let rss_now = report::proc_status_bytes("self", "VmRSS:");
        let hwm = report::proc_status_bytes("self", "VmHWM:");
        extra.insert("build_s".into(), json!(build_s));
        extra.insert("reopen_s".into(), json!(reopen_s));
        extra.insert("disk_bytes".into(), json!(disk));
        extra.insert("peak_rss_bytes".into(), json!(hwm));
        extra.insert("rss_after_reopen_bytes".into(), json!(rss_now));
        extra.insert(
            "graph".into(),
            json!({"max_nb_connection": a.max_nb_connection.unwrap_or_else(|| params.max_nb_connection()),
                "edges_before_repair": stats.edges_before, "edges_after_repair": stats.edges_after,
                "unreachable_layer0": stats.unreachable_layer0, "reconnected": stats.reconnected}),
        );
        if remove_after {
            drop(seg);
            let _ = std::fs::remove_dir_all(&dir);
        }
    } else {
        mode = "http";
        label = label_or("shoal");
        let maxc = a.concurrency.iter().copied().max().unwrap_or(1);
        let mut target = http::Target::new(a.url.clone(), a.collection.clone(), maxc)?;
        target.payloads = a.payloads;
        target.selective = a.filtered;
        target.until_green = a.until_green;
        if let Some(q) = &a.quantization {
            serde_json::from_str::<serde_json::Value>(q).context("--quantization is not JSON")?;
            target.quantization = Some(q.clone());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let n = base.rows();
        rt.block_on(async {
            if !a.skip_upload {
                let mut body = json!({"vectors": {"size": dim, "distance": qdrant_distance(metric)},
                    "hnsw_config": {"m": a.m, "ef_construct": a.ef_construct}});
                if let Some(s) = a.shard_number {
                    body["shard_number"] = json!(s);
                }
                if let Some(r) = a.replication_factor {
                    body["replication_factor"] = json!(r);
                }
                if let Some(extra) = &a.create_extra {
                    let extra: serde_json::Value =
                        serde_json::from_str(extra).context("--create-extra is not JSON")?;
                    for (k, v) in extra.as_object().into_iter().flatten() {
                        body[k] = v.clone();
                    }
                }
                target.create(body).await?;
                let up = target.upload(&base, a.batch).await?;
                extra.insert("upload_s".into(), json!(up));
                extra.insert("upload_points_per_s".into(), json!(n as f64 / up));
            }
            let (wait_s, points, indexed) = target
                .wait_indexed(
                    a.expect_points.unwrap_or(n),
                    a.min_indexed,
                    Duration::from_secs(a.index_timeout_s),
                )
                .await?;
            extra.insert("index_wait_s".into(), json!(wait_s));
            extra.insert("points_reported".into(), json!(points));
            extra.insert("indexed_reported".into(), json!(indexed));
            // The HTTP stack alone: a trivial route on the same keep-alive pool.
            let base_lat = target.baseline("/readyz", 1000).await?;
            let (b50, b99) = (percentile(&base_lat, 0.5), percentile(&base_lat, 0.99));
            eprintln!("[http] GET /readyz round trip: p50 {b50:.0} µs, p99 {b99:.0} µs");
            extra.insert("readyz_p50_us".into(), json!(b50));
            extra.insert("readyz_p99_us".into(), json!(b99));
            if a.upload_only {
                return Ok(());
            }
            if a.filtered {
                let cases =
                    filtered::cases(&base, &queries, metric, a.k, &truth, &a.moduli, a.clause);
                let passes: &[bool] = if a.unindexed_only {
                    &[false]
                } else {
                    &[false, true]
                };
                for &indexed in passes {
                    if indexed {
                        filtered::create_indexes(&target).await?;
                    } else {
                        filtered::drop_indexes(&target).await?;
                    }
                    for case in cases.iter().filter(|c| !indexed || c.filter.is_some()) {
                        target.filter = case.filter.clone();
                        for &c in &a.concurrency {
                            for &ef in &a.ef {
                                let r = (target
                                    .sweep(&queries, a.k, ef, c, a.min_secs, !a.no_spin, 1))
                                .await?;
                                let how = if indexed { ", indexed" } else { "" };
                                rows.push(Row {
                                    ef,
                                    series: format!("{}{how}, c={c}", case.name),
                                    recall: data::recall(&r.ids, &case.truth, a.k),
                                    qps: r.qps,
                                    lat: r.lat_us,
                                });
                                eprintln!(
                                    "[filtered] {}{how} c={c} ef={ef}: {:.0} QPS",
                                    case.name, r.qps
                                );
                            }
                        }
                    }
                }
                return Ok(());
            }
            let mut p = Progress::new("http search", a.ef.len() * a.concurrency.len());
            let mut done = 0;
            for &c in &a.concurrency {
                for &ef in &a.ef {
                    let r = target
                        .sweep(&queries, a.k, ef, c, a.min_secs, !a.no_spin, a.query_batch)
                        .await?;
                    let recall = data::recall(&r.ids, &truth, a.k);
                    rows.push(Row {
                        ef,
                        series: http_series(c, a.query_batch),
                        recall,
                        qps: r.qps,
                        lat: r.lat_us,
                    });
                    done += 1;
                    p.set(done);
                }
            }
            p.done();
            Ok::<_, anyhow::Error>(())
        })?;
        extra.insert("urls".into(), json!(a.url));
    }

    // ---- report ----
    println!(
        "# shoal-bench {mode}: {} | metric={:?} m={} ef_construct={} k={} | load {load_s:.2} s, ground truth {gt_s:.2} s{}",
        dataset, metric, a.m, a.ef_construct, a.k, if cached { " (cached)" } else { "" }
    );
    if let (Some(b), Some(r), Some(d)) = (
        extra.get("build_s"),
        extra.get("reopen_s"),
        extra.get("disk_bytes"),
    ) {
        println!(
            "# build {:.2} s, reopen {:.3} s, disk {:.1} MB, peak RSS {:.0} MB",
            b.as_f64().unwrap_or(0.0),
            r.as_f64().unwrap_or(0.0),
            d.as_f64().unwrap_or(0.0) / 1e6,
            extra
                .get("peak_rss_bytes")
                .and_then(|x| x.as_f64())
                .unwrap_or(0.0)
                / 1e6
        );
    }
    if let Some(u) = extra.get("upload_s") {
        println!(
            "# upload {:.1} s, index wait {:.1} s",
            u.as_f64().unwrap_or(0.0),
            extra["index_wait_s"].as_f64().unwrap_or(0.0)
        );
    }
    if let (Some(b50), Some(b99)) = (extra.get("readyz_p50_us"), extra.get("readyz_p99_us")) {
        println!(
            "# HTTP round trip of GET /readyz: p50 {:.0} µs, p99 {:.0} µs",
            b50.as_f64().unwrap_or(0.0),
            b99.as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "| series | ef | recall@{} | QPS | p50 µs | p95 µs | p99 µs |",
        a.k
    );
    println!("|---|---|---|---|---|---|---|");
    let mut series: Vec<String> = Vec::new();
    for r in &rows {
        if !series.contains(&r.series) {
            series.push(r.series.clone());
        }
    }
    for s in &series {
        for r in rows.iter().filter(|r| &r.series == s) {
            println!(
                "| {} | {} | {:.3} | {:.0} | {:.0} | {:.0} | {:.0} |",
                r.series,
                r.ef,
                r.recall,
                r.qps,
                percentile(&r.lat, 0.5),
                percentile(&r.lat, 0.95),
                percentile(&r.lat, 0.99)
            );
        }
    }

    let out = json!({
        "tool": "shoal-bench", "mode": mode, "label": label, "machine": report::machine(),
        "dataset": dataset, "metric": format!("{metric:?}"), "k": a.k,
        "params": {"m": a.m, "ef_construct": a.ef_construct}, "threads": threads,
        "ground_truth": gt_path, "ground_truth_s": gt_s,
        "extra": extra,
        "runs": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "series": series.iter().map(|s| json!({"name": format!("{label} ({s})"),
            "points": rows.iter().filter(|r| &r.series == s).map(|r| json!({"ef": r.ef, "recall": r.recall, "qps": r.qps})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
    });
    if let Some(parent) = a.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&out)?)?;
    eprintln!("wrote {}", a.out.display());
    plot(&a, &a.out);
    Ok(())
}

/// Draws recall vs QPS with `scripts/plot_bench.py` when a Python with matplotlib is at hand.
fn plot(a: &Args, json_path: &Path) {
    let python = a
        .python
        .clone()
        .unwrap_or_else(|| PathBuf::from("bench-out/venv/bin/python"));
    let script = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/plot_bench.py"),
        PathBuf::from("scripts/plot_bench.py"),
    ]
    .into_iter()
    .find(|p| p.exists());
    let png = json_path.with_extension("png");
    let Some(script) = script.filter(|_| python.exists()) else {
        eprintln!(
            "(no PNG: needs {} with matplotlib and scripts/plot_bench.py — run scripts/bench-vs-hnswlib once, or pass --python)",
            python.display()
        );
        return;
    };
    match std::process::Command::new(&python)
        .arg(&script)
        .arg("--out")
        .arg(&png)
        .arg(json_path)
        .status()
    {
        Ok(s) if s.success() => eprintln!("wrote {}", png.display()),
        Ok(s) => eprintln!("(plot failed: {s})"),
        Err(e) => eprintln!("(plot failed: {e})"),
    }
}
