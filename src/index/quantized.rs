//! Scalar int8 quantization (Qdrant's `quantization_config.scalar`, `type: int8`).
//!
//! Every component `x` of every vector of a segment is mapped to one byte `c = round((x - lo) /
//! alpha)`, clamped to `0..=255`, where `[lo, lo + 255·alpha]` covers the central `quantile` of
//! all components (Qdrant's default 0.99: the extreme 1 % are clamped). A node's vector is then
//! approximated by `x̂ = lo + alpha·c`, a quarter of the bytes, and the HNSW traversal runs on
//! those codes. Distances are asymmetric — the query stays in float — which costs nothing extra
//! here (the kernel widens eight codes to floats per step) and loses less than quantizing the
//! query as well:
//!
//! - `q·x̂ = lo·Σq + alpha·Σ qᵢcᵢ`, so Cosine and Dot need one `Σ qᵢcᵢ` per node;
//! - `‖q - x̂‖² = ‖q‖² - 2 q·x̂ + ‖x̂‖²`, with `‖x̂‖²` stored per node (section `int8.norms`);
//! - Manhattan dequantizes on the fly.
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

/// Distances from one float query to int8-coded nodes.
pub(crate) struct Int8Scorer<'a> {
    metric: Metric,
    q: &'a [f32],
    q_sum: f32,
    q_norm2: f32,
    p: Int8Params,
    codes: &'a [u8],
    norms: &'a [f32],
    dim: usize,
    dot: DotU8,
}

impl<'a> Int8Scorer<'a> {
    pub fn new(
        metric: Metric,
        q: &'a [f32],
        p: Int8Params,
        codes: &'a [u8],
        norms: &'a [f32],
        dim: usize,
    ) -> Self {
        Int8Scorer {
            metric,
            q,
            q_sum: q.iter().sum(),
            q_norm2: q.iter().map(|x| x * x).sum(),
            p,
            codes,
            norms,
            dim,
            dot: dot_u8_kernel(),
        }
    }
}

impl Scorer for Int8Scorer<'_> {
    #[inline(always)]
    fn dist(&self, id: u32) -> f32 {
        let o = id as usize * self.dim;
        let c = &self.codes[o..o + self.dim];
        match self.metric {
            Metric::Manhattan => {
                let mut s = 0.0f32;
                for (&x, &c) in self.q.iter().zip(c) {
                    s += (x - (self.p.lo + self.p.alpha * c as f32)).abs();
                }
                s
            }
            m => {
                // SAFETY: the kernel was chosen for this CPU by `dot_u8_kernel`.
                let qc = unsafe { (self.dot)(self.q, c) };
                let dot = self.p.lo * self.q_sum + self.p.alpha * qc;
                match m {
                    Metric::Cosine => 1.0 - dot,
                    Metric::Dot => -dot,
                    _ => self.q_norm2 - 2.0 * dot + self.norms[id as usize],
                }
            }
        }
    }

    #[inline(always)]
    fn prefetch(&self, id: u32) {
        prefetch_row(self.codes.as_ptr(), id, self.dim);
    }
}

type DotU8 = unsafe fn(&[f32], &[u8]) -> f32;

fn dot_u8_kernel() -> DotU8 {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        });
        if *AVX2 {
            return avx2_dot_u8;
        }
    }
    portable_dot_u8
}

/// `Σ qᵢcᵢ` (safe; `unsafe fn` only to share the kernel pointer type).
unsafe fn portable_dot_u8(q: &[f32], c: &[u8]) -> f32 {
    let n = q.len().min(c.len());
    let mut acc = [0.0f32; 8];
    let chunks = n / 8;
    for k in 0..chunks {
        for l in 0..8 {
            acc[l] += q[k * 8 + l] * c[k * 8 + l] as f32;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        s += q[i] * c[i] as f32;
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_dot_u8(q: &[f32], c: &[u8]) -> f32 {
    use std::arch::x86_64::*;
    let n = q.len().min(c.len());
    let (qp, cp) = (q.as_ptr(), c.as_ptr());
    let mut a0 = _mm256_setzero_ps();
    let mut a1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n, within both slices.
        let b0 = _mm_loadl_epi64(cp.add(i) as *const __m128i);
        let b1 = _mm_loadl_epi64(cp.add(i + 8) as *const __m128i);
        let f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b0));
        let f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b1));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i)), f0, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i + 8)), f1, a1);
        i += 16;
    }
    let a = _mm256_add_ps(a0, a1);
    let hi = _mm256_extractf128_ps(a, 1);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(a), hi);
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    let mut s = _mm_cvtss_f32(s1);
    while i < n {
        s += *qp.add(i) * *cp.add(i) as f32;
        i += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_and_distances_approximate() {
        let dim = 37;
        let v: Vec<f32> = (0..dim * 20)
            .map(|i| ((i * 7919) % 113) as f32 / 50.0 - 1.1)
            .collect();
        let p = fit(&v, 0.99);
        let (codes, norms) = encode(&v, dim, p);
        let q: Vec<f32> = (0..dim).map(|i| (i as f32 / 9.0).sin()).collect();
        for row in 0..20 {
            let c = &codes[row * dim..(row + 1) * dim];
            // SAFETY: the portable kernel is always safe; the chosen one is for this CPU.
            let (a, b) = unsafe { (portable_dot_u8(&q, c), dot_u8_kernel()(&q, c)) };
            assert!((a - b).abs() < 1e-3 * a.abs().max(1.0), "{a} vs {b}");
            for metric in [
                Metric::Cosine,
                Metric::Dot,
                Metric::Euclid,
                Metric::Manhattan,
            ] {
                let s = Int8Scorer::new(metric, &q, p, &codes, &norms, dim);
                let exact = metric.distance(&q, &v[row * dim..(row + 1) * dim]);
                let approx = s.dist(row as u32);
                assert!(
                    (exact - approx).abs() < 0.05 * exact.abs().max(1.0),
                    "{metric:?}: {exact} vs {approx}"
                );
            }
        }
    }
}
