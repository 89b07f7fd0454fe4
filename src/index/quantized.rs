//! Scalar int8 quantization (Qdrant's `quantization_config.scalar`, `type: int8`).
//!
//! Every component `x` of every vector of a segment is mapped to one byte `c = round((x - lo) /
//! alpha)`, clamped to `0..=255`, where `[lo, lo + 255·alpha]` covers the central `quantile` of
//! all components (Qdrant's default 0.99: the extreme 1 % are clamped). A node's vector is then
//! approximated by `x̂ = lo + alpha·c`, a quarter of the bytes, and the HNSW traversal runs on
//! those codes. Distances are asymmetric: the codes are never decoded, the query is not cut to
//! 8 bits but held as `i16` at one scale (`QueryI16`: 15 bits at 128 dimensions, so its rounding
//! is noise next to the codes'), and one integer dot product per node does the work:
//!
//! - `q·x̂ = lo·Σq + alpha·Σ qᵢcᵢ`, so Cosine and Dot need one `Σ qᵢcᵢ` per node;
//! - `‖q - x̂‖² = ‖q‖² - 2 q·x̂ + ‖x̂‖²`, with `‖x̂‖²` stored per node (section `int8.norms`);
//! - Manhattan holds the query in code units, `tᵢ = (qᵢ - lo) / alpha`: `alpha·Σ|tᵢ - cᵢ|`.
//!
//! The AVX2 kernel widens 16 codes to `i16` and multiplies-and-pairs them with the query into
//! `i32` lanes (`vpmaddwd`): three instructions per 16 components, where widening the codes to
//! floats for an FMA took four per 8 and made a code cost as much to score as a float. The
//! scalar loops stay as the reference the SIMD kernels are tested against (exactly, for the
//! integer one: the query's scale rules out overflow).
//!
//! The nearest candidates found on the codes are then rescored with the float vectors (from the
//! mapped file) unless the search says `rescore: false` — see `Segment::search_quantized`.

use super::flat::{prefetch_row, Scorer};
use super::Metric;
use serde::{Deserialize, Serialize};

/// How the components of a segment were quantized.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Int8Params {
    pub lo: f32,
    pub alpha: f32,
    /// The quantile the range was chosen with (reported, not needed to decode).
    pub quantile: f32,
}

/// Chooses `lo` and `alpha` so that the central `quantile` of the components fits 256 codes.
/// Looks at a strided sample of at most a million components.
pub fn fit(vectors: &[f32], quantile: f32) -> Int8Params {
    let quantile = quantile.clamp(0.5, 1.0);
    let step = (vectors.len() / (1 << 20)).max(1);
    let mut sample: Vec<f32> = vectors.iter().step_by(step).copied().collect();
    if sample.is_empty() {
        return Int8Params {
            lo: 0.0,
            alpha: 1.0,
            quantile,
        };
    }
    sample.sort_unstable_by(f32::total_cmp);
    let last = sample.len() - 1;
    let tail = (1.0 - quantile as f64) / 2.0;
    let lo = sample[((last as f64) * tail).floor() as usize];
    let hi = sample[((last as f64) * (1.0 - tail)).ceil() as usize];
    let alpha = if hi > lo { (hi - lo) / 255.0 } else { 1e-6 };
    Int8Params {
        lo,
        alpha,
        quantile,
    }
}

/// The codes (`n * dim` bytes) and the squared norms of the decoded vectors.
pub fn encode(vectors: &[f32], dim: usize, p: Int8Params) -> (Vec<u8>, Vec<f32>) {
    let inv = 1.0 / p.alpha;
    let mut codes = Vec::with_capacity(vectors.len());
    let mut norms = Vec::with_capacity(vectors.len() / dim.max(1));
    for v in vectors.chunks_exact(dim) {
        let mut n2 = 0.0f32;
        for &x in v {
            let c = ((x - p.lo) * inv).round().clamp(0.0, 255.0) as u8;
            let d = p.lo + p.alpha * c as f32;
            n2 += d * d;
            codes.push(c);
        }
        norms.push(n2);
    }
    (codes, norms)
}

/// A float query in the integer kernel's form: `qᵢ ≈ iᵢ / scale` with `iᵢ` in `i16`, the scale
/// as large as keeps `Σ |iᵢ|·255` within `i32` (so no sum over one vector's codes can overflow,
/// in any order of addition) and `|iᵢ|` within `i16`. At 128 dimensions that leaves 15 bits per
/// component against the codes' 8: the query's rounding is noise next to the codes'.
pub(crate) struct QueryI16 {
    pub ints: Vec<i16>,
    /// `1 / scale`.
    pub inv_scale: f32,
}

impl QueryI16 {
    pub fn new(q: &[f32]) -> QueryI16 {
        let max = q.iter().fold(0.0f64, |m, &x| m.max(f64::from(x).abs()));
        let sum: f64 = q.iter().map(|&x| f64::from(x).abs()).sum();
        // Rounding adds at most 1/2 to each |iᵢ|, and the products' passage through `f32` a
        // relative 2⁻²⁴ (the margin).
        let budget = f64::from(i32::MAX) / 255.0 * (1.0 - 1e-5) - q.len() as f64 / 2.0;
        let scale = if max > 0.0 && sum.is_finite() && budget > 0.0 {
            (f64::from(i16::MAX) / max).min(budget / sum)
        } else {
            1.0
        };
        // Round half away from zero without `round` (a libm call per component on the x86-64
        // baseline); `as` saturates, and the scale keeps every value within ±32767.5.
        let ints = q
            .iter()
            .map(|&x| {
                let v = (f64::from(x) * scale) as f32;
                (v + 0.5f32.copysign(v)) as i16
            })
            .collect();
        QueryI16 {
            ints,
            inv_scale: (1.0 / scale) as f32,
        }
    }
}

/// Distances from one float query to int8-coded nodes: `base + mul · Σ iᵢcᵢ` (+ the node's
/// `‖x̂‖²` for Euclid), one integer kernel call per node; Manhattan `alpha · Σ |tᵢ - cᵢ|`, the
/// query in code units.
pub(crate) struct Int8Scorer<'a> {
    metric: Metric,
    codes: &'a [u8],
    norms: &'a [f32],
    dim: usize,
    /// The query in `i16` (dot-product metrics) or in code units (Manhattan).
    ints: Vec<i16>,
    units: Vec<f32>,
    base: f32,
    mul: f32,
    dot: kernels::DotFn,
    l1: kernels::L1Fn,
}

impl<'a> Int8Scorer<'a> {
    pub fn new(
        metric: Metric,
        q: &[f32],
        p: Int8Params,
        codes: &'a [u8],
        norms: &'a [f32],
        dim: usize,
    ) -> Self {
        let table = &*kernels::TABLE;
        let mut s = Int8Scorer {
            metric,
            codes,
            norms,
            dim,
            ints: Vec::new(),
            units: Vec::new(),
            base: 0.0,
            mul: 0.0,
            dot: table.dot,
            l1: table.l1,
        };
        if metric == Metric::Manhattan {
            s.units = q.iter().map(|&x| (x - p.lo) / p.alpha).collect();
            s.mul = p.alpha;
            return s;
        }
        // q·x̂ = lo·Σq + alpha·Σ qᵢcᵢ ≈ lo·Σq + (alpha / scale)·Σ iᵢcᵢ
        let qi = QueryI16::new(q);
        let q_sum: f32 = q.iter().sum();
        let (lin, per) = (p.lo * q_sum, p.alpha * qi.inv_scale);
        (s.base, s.mul) = match metric {
            Metric::Cosine => (1.0 - lin, -per),
            Metric::Dot => (-lin, -per),
            _ => (q.iter().map(|x| x * x).sum::<f32>() - 2.0 * lin, -2.0 * per),
        };
        s.ints = qi.ints;
        s
    }
}

impl Scorer for Int8Scorer<'_> {
    #[inline(always)]
    fn dist(&self, id: u32) -> f32 {
        let o = id as usize * self.dim;
        let c = &self.codes[o..o + self.dim];
        // SAFETY: the kernels come from `kernels::TABLE`, which holds only what this CPU runs.
        unsafe {
            match self.metric {
                Metric::Manhattan => self.mul * (self.l1)(&self.units, c),
                Metric::Euclid => {
                    self.base
                        + self.mul * (self.dot)(&self.ints, c) as f32
                        + self.norms[id as usize]
                }
                _ => self.base + self.mul * (self.dot)(&self.ints, c) as f32,
            }
        }
    }

    #[inline(always)]
    fn prefetch(&self, id: u32) {
        prefetch_row(self.codes.as_ptr(), id, self.dim);
    }
}

/// The integer and code kernels of int8 search, dispatched at run time like the float ones
/// (`distance.rs`): AVX2 when the CPU has it, otherwise the scalar reference loops (which the
/// compiler vectorises for the baseline target). The AVX2 versions are pinned to the scalar ones
/// by the tests below: the integer kernel exactly, the Manhattan one to float rounding.
pub(crate) mod kernels {
    use std::sync::LazyLock;

    /// `Σ qᵢ·cᵢ` of an `i16` query and `u8` codes (common prefix of the two).
    pub(crate) type DotFn = unsafe fn(&[i16], &[u8]) -> i32;
    /// `Σ |tᵢ - cᵢ|` of a float query in code units and `u8` codes.
    pub(crate) type L1Fn = unsafe fn(&[f32], &[u8]) -> f32;

    pub(crate) struct Table {
        pub dot: DotFn,
        pub l1: L1Fn,
    }

    pub(crate) static TABLE: LazyLock<Table> = LazyLock::new(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                return Table {
                    dot: avx2::dot,
                    l1: avx2::l1,
                };
            }
        }
        Table {
            dot: scalar::dot_k,
            l1: scalar::l1_k,
        }
    });

    /// The references: plain loops.
    pub(crate) mod scalar {
        /// Exact as long as the caller's bound holds (see `QueryI16::new`): no `i32` overflow.
        pub(crate) fn dot(q: &[i16], c: &[u8]) -> i32 {
            q.iter().zip(c).map(|(&x, &y)| x as i32 * y as i32).sum()
        }

        pub(crate) fn l1(t: &[f32], c: &[u8]) -> f32 {
            const LANES: usize = 8;
            let n = t.len().min(c.len());
            let (ts, cs) = (t[..n].chunks_exact(LANES), c[..n].chunks_exact(LANES));
            let (t_tail, c_tail) = (ts.remainder(), cs.remainder());
            let mut acc = [0.0f32; LANES];
            for (tx, cx) in ts.zip(cs) {
                for ((a, &x), &y) in acc.iter_mut().zip(tx).zip(cx) {
                    *a += (x - y as f32).abs();
                }
            }
            let mut s: f32 = acc.iter().sum();
            for (&x, &y) in t_tail.iter().zip(c_tail) {
                s += (x - y as f32).abs();
            }
            s
        }

        // `unsafe fn` only to share the table's pointer types; safe to call.
        pub(super) unsafe fn dot_k(q: &[i16], c: &[u8]) -> i32 {
            dot(q, c)
        }
        pub(super) unsafe fn l1_k(t: &[f32], c: &[u8]) -> f32 {
            l1(t, c)
        }
    }

    /// AVX2: 32 codes per step, widened to `i16` and multiplied-and-paired into `i32` lanes by
    /// `vpmaddwd` (one instruction per 16 codes, against five per 16 when codes are widened to
    /// floats and fused-multiplied).
    #[cfg(target_arch = "x86_64")]
    pub(crate) mod avx2 {
        use std::arch::x86_64::*;

        #[target_feature(enable = "avx2")]
        pub(crate) unsafe fn dot(q: &[i16], c: &[u8]) -> i32 {
            let n = q.len().min(c.len());
            let (qp, cp) = (q.as_ptr(), c.as_ptr());
            let mut a0 = _mm256_setzero_si256();
            let mut a1 = _mm256_setzero_si256();
            let mut i = 0;
            // SAFETY (all loads): i + width <= n <= both lengths.
            while i + 32 <= n {
                let c0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(cp.add(i) as *const __m128i));
                let c1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(cp.add(i + 16) as *const __m128i));
                let q0 = _mm256_loadu_si256(qp.add(i) as *const __m256i);
                let q1 = _mm256_loadu_si256(qp.add(i + 16) as *const __m256i);
                a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(c0, q0));
                a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(c1, q1));
                i += 32;
            }
            if i + 16 <= n {
                let c0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(cp.add(i) as *const __m128i));
                let q0 = _mm256_loadu_si256(qp.add(i) as *const __m256i);
                a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(c0, q0));
                i += 16;
            }
            let a = _mm256_add_epi32(a0, a1);
            let s4 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
            let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
            let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1));
            let mut s = _mm_cvtsi128_si32(s1);
            while i < n {
                s += *qp.add(i) as i32 * *cp.add(i) as i32;
                i += 1;
            }
            s
        }

        #[target_feature(enable = "avx2")]
        pub(crate) unsafe fn l1(t: &[f32], c: &[u8]) -> f32 {
            let n = t.len().min(c.len());
            let (tp, cp) = (t.as_ptr(), c.as_ptr());
            let sign = _mm256_set1_ps(-0.0);
            let mut a0 = _mm256_setzero_ps();
            let mut a1 = _mm256_setzero_ps();
            let mut i = 0;
            // SAFETY (all loads): i + width <= n <= both lengths.
            while i + 16 <= n {
                let c0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    cp.add(i) as *const __m128i
                )));
                let c1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    cp.add(i + 8) as *const __m128i
                )));
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(tp.add(i)), c0);
                let d1 = _mm256_sub_ps(_mm256_loadu_ps(tp.add(i + 8)), c1);
                a0 = _mm256_add_ps(a0, _mm256_andnot_ps(sign, d0));
                a1 = _mm256_add_ps(a1, _mm256_andnot_ps(sign, d1));
                i += 16;
            }
            let a = _mm256_add_ps(a0, a1);
            let s4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
            let mut s = _mm_cvtss_f32(s1);
            while i < n {
                s += (*tp.add(i) - *cp.add(i) as f32).abs();
                i += 1;
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Every remainder of the 32- and 16-wide steps, and the widths embeddings come in.
    fn dims() -> impl Iterator<Item = usize> {
        (0..=96).chain([127, 128, 129, 384, 768, 1536, 4096, 65536])
    }

    /// Queries of every kind the scale must survive: random, huge, tiny, one spike, constant
    /// extremes, zeros.
    fn queries(rng: &mut StdRng, dim: usize) -> Vec<Vec<f32>> {
        let mut qs = vec![
            (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect(),
            (0..dim).map(|_| rng.gen_range(-1e38..1e38)).collect(),
            (0..dim).map(|_| rng.gen_range(-1e-30..1e-30)).collect(),
            vec![f32::MAX; dim],
            vec![-f32::MAX; dim],
            vec![0.0; dim],
            vec![1e-40; dim],
            vec![-f32::MIN_POSITIVE; dim],
            (0..dim)
                .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
                .collect(),
        ];
        let mut spike = vec![1e-3f32; dim];
        if dim > 0 {
            spike[dim / 2] = -1e6;
        }
        qs.push(spike);
        qs
    }

    fn codes(rng: &mut StdRng, dim: usize) -> Vec<Vec<u8>> {
        vec![
            (0..dim).map(|_| rng.gen()).collect(),
            vec![255; dim],
            vec![0; dim],
            (0..dim).map(|i| if i % 2 == 0 { 255 } else { 0 }).collect(),
        ]
    }

    #[test]
    fn integer_kernels_equal_the_reference_without_overflow() {
        let mut rng = StdRng::seed_from_u64(17);
        for dim in dims() {
            for q in queries(&mut rng, dim) {
                let qi = QueryI16::new(&q);
                assert_eq!(qi.ints.len(), dim);
                let bound: i64 = qi.ints.iter().map(|&x| i64::from(x).abs() * 255).sum();
                assert!(bound <= i64::from(i32::MAX), "dim {dim}: bound {bound}");
                for c in codes(&mut rng, dim) {
                    let exact: i64 = qi
                        .ints
                        .iter()
                        .zip(&c)
                        .map(|(&x, &y)| x as i64 * y as i64)
                        .sum();
                    assert_eq!(
                        kernels::scalar::dot(&qi.ints, &c) as i64,
                        exact,
                        "dim {dim}"
                    );
                    // SAFETY: the table holds only kernels this CPU runs.
                    let chosen = unsafe { (kernels::TABLE.dot)(&qi.ints, &c) };
                    assert_eq!(chosen as i64, exact, "dim {dim}");
                    #[cfg(target_arch = "x86_64")]
                    if std::arch::is_x86_feature_detected!("avx2") {
                        // SAFETY: AVX2 detected.
                        let avx2 = unsafe { kernels::avx2::dot(&qi.ints, &c) };
                        assert_eq!(avx2 as i64, exact, "dim {dim}");
                    }
                }
            }
        }
    }

    #[test]
    fn query_scale_keeps_the_query_precise() {
        let mut rng = StdRng::seed_from_u64(3);
        let q: Vec<f32> = (0..128).map(|_| rng.gen_range(-20.0..20.0)).collect();
        let qi = QueryI16::new(&q);
        let max = q.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for (x, &i) in q.iter().zip(&qi.ints) {
            assert!((x - i as f32 * qi.inv_scale).abs() <= 0.5 * qi.inv_scale * 1.001);
        }
        // 128 dimensions: the i16 range is the limit, not the i32 budget.
        assert!(
            qi.ints.iter().any(|&i| i.unsigned_abs() > 30_000),
            "max {max}"
        );
    }

    #[test]
    fn manhattan_kernels_match_the_reference() {
        let mut rng = StdRng::seed_from_u64(5);
        for dim in dims().filter(|&d| d <= 4096) {
            let t: Vec<f32> = (0..dim).map(|_| rng.gen_range(-300.0..600.0)).collect();
            for c in codes(&mut rng, dim) {
                let exact: f64 = t
                    .iter()
                    .zip(&c)
                    .map(|(&x, &y)| (x as f64 - y as f64).abs())
                    .sum();
                let tol = 1e-5 * exact.max(1.0);
                let reference = kernels::scalar::l1(&t, &c) as f64;
                assert!(
                    (reference - exact).abs() <= tol,
                    "dim {dim}: {reference} vs {exact}"
                );
                // SAFETY: the table holds only kernels this CPU runs.
                let chosen = unsafe { (kernels::TABLE.l1)(&t, &c) } as f64;
                assert!(
                    (chosen - exact).abs() <= tol,
                    "dim {dim}: {chosen} vs {exact}"
                );
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 detected.
                    let avx2 = unsafe { kernels::avx2::l1(&t, &c) } as f64;
                    assert!((avx2 - exact).abs() <= tol, "dim {dim}: {avx2} vs {exact}");
                }
            }
        }
    }

    #[test]
    fn distances_approximate_the_float_ones() {
        let mut rng = StdRng::seed_from_u64(11);
        for dim in [1, 7, 37, 128] {
            let v: Vec<f32> = (0..dim * 20).map(|_| rng.gen_range(-1.1..1.1)).collect();
            let p = fit(&v, 0.99);
            let (codes, norms) = encode(&v, dim, p);
            let q: Vec<f32> = (0..dim).map(|i| (i as f32 / 9.0).sin()).collect();
            for metric in [
                Metric::Cosine,
                Metric::Dot,
                Metric::Euclid,
                Metric::Manhattan,
            ] {
                let s = Int8Scorer::new(metric, &q, p, &codes, &norms, dim);
                for row in 0..20 {
                    let x = &v[row * dim..(row + 1) * dim];
                    // The distance to the decoded vector, in float: what the kernels approximate
                    // up to the query's rounding.
                    let decoded: Vec<f32> = codes[row * dim..(row + 1) * dim]
                        .iter()
                        .map(|&c| p.lo + p.alpha * c as f32)
                        .collect();
                    let exact = metric.distance(&q, x);
                    let on_codes = metric.distance(&q, &decoded);
                    let approx = s.dist(row as u32);
                    let scale = exact.abs().max(1.0);
                    assert!(
                        (on_codes - approx).abs() < 1e-3 * scale,
                        "{metric:?} dim {dim}: {on_codes} vs {approx}"
                    );
                    assert!(
                        (exact - approx).abs() < 0.05 * scale * (dim as f32).sqrt(),
                        "{metric:?} dim {dim}: {exact} vs {approx}"
                    );
                }
            }
        }
    }
}
