//! Datasets: the deterministic generator (uniform or clustered Gaussian), `.npy` / `.fvecs`
//! readers and writers, a content hash, and the on-disk ground-truth cache.

use anyhow::{bail, Context, Result};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rayon::prelude::*;
use shoal::index::Metric;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Row-major `n × dim` f32 matrix.
#[derive(Clone)]
pub struct Matrix {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn rows(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
    pub fn truncate(&mut self, n: usize) {
        self.data.truncate(n.min(self.rows()) * self.dim);
    }
}

fn gauss(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.gen_range(1e-12..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// The reference data of docs/benchmarks.md when `clusters > 0`: centres N(0, 4²), points N(centre, 1), queries from
/// the same distribution; uniform [0, 1)^dim otherwise. Same seed, same numbers, on any machine.
pub fn generate(seed: u64, n: usize, nq: usize, dim: usize, clusters: usize) -> (Matrix, Matrix) {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..clusters * dim).map(|_| 4.0 * gauss(&mut rng)).collect();
    let mut gen = |count: usize| {
        let mut out = Vec::with_capacity(count * dim);
        for _ in 0..count {
            if clusters == 0 {
                out.extend((0..dim).map(|_| rng.gen::<f32>()));
            } else {
                let c = rng.gen_range(0..clusters);
                for j in 0..dim {
                    out.push(centres[c * dim + j] + gauss(&mut rng));
                }
            }
        }
        Matrix { dim, data: out }
    };
    let data = gen(n);
    let queries = gen(nq);
    (data, queries)
}

/// Reads `.npy` (2-D little-endian f32 or f64, C order) or `.fvecs`.
pub fn load(path: &Path) -> Result<Matrix> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => parse_npy(&bytes).with_context(|| format!("parsing {}", path.display())),
        Some("fvecs") => parse_fvecs(&bytes).with_context(|| format!("parsing {}", path.display())),
        _ => bail!("{}: expected a .npy or .fvecs file", path.display()),
    }
}

fn parse_fvecs(b: &[u8]) -> Result<Matrix> {
    if b.len() < 4 {
        bail!("empty fvecs file");
    }
    let dim = u32::from_le_bytes(b[0..4].try_into()?) as usize;
    if dim == 0 || !b.len().is_multiple_of(4 * (dim + 1)) {
        bail!("fvecs size {} is not a multiple of 4·(1+{dim})", b.len());
    }
    let mut data = Vec::with_capacity(b.len() / 4);
    for rec in b.chunks_exact(4 * (dim + 1)) {
        let d = u32::from_le_bytes(rec[0..4].try_into()?) as usize;
        if d != dim {
            bail!("fvecs rows of different dimensions ({d} and {dim})");
        }
        data.extend(
            rec[4..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    Ok(Matrix { dim, data })
}

fn parse_npy(b: &[u8]) -> Result<Matrix> {
    if b.len() < 10 || &b[0..6] != b"\x93NUMPY" {
        bail!("not an .npy file");
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 => (u32::from_le_bytes(b[8..12].try_into()?) as usize, 12),
        v => bail!("unsupported .npy version {v}"),
    };
    let header = std::str::from_utf8(b.get(start..start + hlen).context("truncated header")?)?;
    let body = &b[start + hlen..];
    if header.contains("'fortran_order': True") {
        bail!("Fortran-order arrays are not supported");
    }
    let shape_s = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .context("no shape")?;
    let shape: Vec<usize> = shape_s
        .trim_start_matches([' ', '('])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()?;
    let (n, dim) = match shape[..] {
        [n, d] => (n, d),
        _ => bail!("expected a 2-D array, got shape {shape:?}"),
    };
    let data: Vec<f32> = if header.contains("'<f4'") {
        body.chunks_exact(4)
            .take(n * dim)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else if header.contains("'<f8'") {
        body.chunks_exact(8)
            .take(n * dim)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect()
    } else {
        bail!("dtype must be <f4 or <f8: {header}");
    };
    if data.len() != n * dim {
        bail!("truncated data: {} of {} values", data.len(), n * dim);
    }
    Ok(Matrix { dim, data })
}

/// Writes a 2-D `<f4` `.npy` (version 1.0).
pub fn write_npy(path: &Path, m: &Matrix) -> Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        m.rows(),
        m.dim
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for x in &m.data {
        f.write_all(&x.to_le_bytes())?;
    }
    f.flush()?;
    Ok(())
}

/// FNV-1a over the dataset, the queries, the metric and k: the ground-truth cache key.
pub fn content_hash(data: &Matrix, queries: &Matrix, metric: Metric, k: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |w: u64| {
        h ^= w;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for m in [data, queries] {
        eat(m.rows() as u64);
        eat(m.dim as u64);
        for x in &m.data {
            eat(x.to_bits() as u64);
        }
    }
    for b in format!("{metric:?}").bytes() {
        eat(b as u64);
    }
    eat(k as u64);
    h
}

/// Exact k nearest ids of every query (parallel brute force), read from `cache_dir` when this
/// exact (data, queries, metric, k) was computed before. Stored as `.ivecs`.
pub fn ground_truth(
    data: &Matrix,
    queries: &Matrix,
    metric: Metric,
    k: usize,
    cache_dir: &Path,
) -> Result<(Vec<Vec<u32>>, PathBuf, bool)> {
    let key = content_hash(data, queries, metric, k);
    let path = cache_dir.join(format!("gt-{key:016x}-k{k}.ivecs"));
    if let Ok(mut f) = std::fs::File::open(&path) {
        let mut b = Vec::new();
        f.read_to_end(&mut b)?;
        let rows: Vec<Vec<u32>> = b
            .chunks_exact(4 * (k + 1))
            .map(|r| {
                r[4..]
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            })
            .collect();
        if rows.len() == queries.rows() {
            return Ok((rows, path, true));
        }
    }
    let truth = exact_knn(data, queries, metric, k, &|_| true);
    std::fs::create_dir_all(cache_dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for row in &truth {
            f.write_all(&(k as u32).to_le_bytes())?;
            for i in 0..k {
                f.write_all(&row.get(i).copied().unwrap_or(u32::MAX).to_le_bytes())?;
            }
        }
        f.flush()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok((truth, path, false))
}

/// Exact k nearest ids of every query among the rows `keep` accepts (parallel brute force):
/// the ground truth of a search, or of a filtered search.
pub fn exact_knn(
    data: &Matrix,
    queries: &Matrix,
    metric: Metric,
    k: usize,
    keep: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<Vec<u32>> {
    let dim = data.dim;
    queries
        .data
        .par_chunks(dim)
        .map(|q| {
            let mut d: Vec<(f32, u32)> = data
                .data
                .chunks_exact(dim)
                .enumerate()
                .filter(|(i, _)| keep(*i))
                .map(|(i, v)| (metric.distance(q, v), i as u32))
                .collect();
            let kk = k.min(d.len());
            let cmp = |x: &(f32, u32), y: &(f32, u32)| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1));
            if kk > 0 && kk < d.len() {
                d.select_nth_unstable_by(kk - 1, cmp);
            }
            d.truncate(kk);
            d.sort_by(cmp);
            d.into_iter().map(|x| x.1).collect()
        })
        .collect()
}

/// recall@k of `got` (ids per query) against `truth`.
pub fn recall(got: &[Vec<u32>], truth: &[Vec<u32>], k: usize) -> f64 {
    let mut hits = 0usize;
    let mut total = 0usize;
    for (g, t) in got.iter().zip(truth) {
        let t = &t[..k.min(t.len())];
        hits += g.iter().take(k).filter(|x| t.contains(x)).count();
        total += t.len();
    }
    hits as f64 / total.max(1) as f64
}
