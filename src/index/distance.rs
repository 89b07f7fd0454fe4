//! Distance metrics and the kernels that compute them.
//!
//! Everything inside the index works with one convention: a *distance*, where lower is closer.
//! Qdrant reports a *score* whose direction depends on the metric (similarity for Cosine and Dot,
//! distance for Euclid and Manhattan); [`Metric::score`] converts at the edge.
//!
//! | metric    | stored vector  | internal distance | score reported     |
//! |-----------|----------------|-------------------|--------------------|
//! | Cosine    | L2-normalised  | `1 - a·b`         | `a·b`              |
//! | Dot       | as given       | `-a·b`            | `a·b`              |
//! | Euclid    | as given       | `‖a-b‖²`          | `‖a-b‖`            |
//! | Manhattan | as given       | `Σ|a-b|`          | `Σ|a-b|`           |

use serde::{Deserialize, Serialize};

/// The four distances Qdrant offers, spelled as in its API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Metric {
    Cosine,
    Dot,
    Euclid,
    Manhattan,
}

impl Metric {
    /// Prepares a vector for storage: Cosine vectors are normalised once so that search is a dot
    /// product. Qdrant does the same and returns the normalised vector to clients.
    /// The norm is computed in `f64`: in `f32` a vector of elements near `3e38` has an infinite
    /// norm and would be stored as zeros.
    pub fn prepare(self, v: &mut [f32]) {
        if self == Metric::Cosine {
            let norm = v
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt();
            if norm > f64::from(f32::EPSILON) {
                v.iter_mut()
                    .for_each(|x| *x = (f64::from(*x) / norm) as f32);
            }
        }
    }

    /// Internal distance between two prepared vectors: lower is closer.
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => 1.0 - kernels::dot(a, b),
            Metric::Dot => -kernels::dot(a, b),
            Metric::Euclid => kernels::l2_squared(a, b),
            Metric::Manhattan => kernels::l1(a, b),
        }
    }

    /// Converts an internal distance into the score Qdrant would report.
    pub fn score(self, distance: f32) -> f32 {
        match self {
            Metric::Cosine => 1.0 - distance,
            Metric::Dot => -distance,
            Metric::Euclid => distance.max(0.0).sqrt(),
            Metric::Manhattan => distance,
        }
    }

    /// Whether a higher score is better (similarities) or a lower one (distances).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::Cosine | Metric::Dot)
    }

    /// Whether `score` passes Qdrant's `score_threshold`: at least it for similarities,
    /// at most it for distances.
    pub fn passes_threshold(self, score: f32, threshold: f32) -> bool {
        if self.higher_is_better() {
            score >= threshold
        } else {
            score <= threshold
        }
    }
}

impl Metric {
    /// The internal distance as one resolved function, for hot loops: the SIMD level is chosen
    /// once per process and the metric once per call site, so the loop pays one indirect call.
    #[inline]
    pub(crate) fn distance_fn(self) -> kernels::DistFn {
        kernels::DistFn::for_metric(self)
    }
}

/// The raw kernels, dispatched at run time: AVX2+FMA versions when the CPU has them (detected
/// once, cached in a `LazyLock` of function pointers), otherwise portable 8-lane loops that the
/// compiler vectorises with the x86-64 baseline (SSE2) or whatever the target offers. The binary
/// never assumes the build machine's CPU (no `target-cpu=native`).
///
/// All kernels use the common prefix when the slices differ in length.
pub mod kernels {
    use super::Metric;
    use std::sync::LazyLock;

    type Kernel = unsafe fn(&[f32], &[f32]) -> f32;

    /// One set of kernels: the three primitives and the four internal distances built on them.
    struct Table {
        name: &'static str,
        dot: Kernel,
        l2: Kernel,
        l1: Kernel,
        cosine_dist: Kernel,
        dot_dist: Kernel,
    }

    static TABLE: LazyLock<Table> = LazyLock::new(select);

    fn select() -> Table {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Table {
                    name: "avx2+fma",
                    dot: avx2::dot,
                    l2: avx2::l2_squared,
                    l1: avx2::l1,
                    cosine_dist: avx2::cosine_dist,
                    dot_dist: avx2::dot_dist,
                };
            }
        }
        Table {
            name: "portable",
            dot: portable::dot_k,
            l2: portable::l2_k,
            l1: portable::l1_k,
            cosine_dist: portable::cosine_dist_k,
            dot_dist: portable::dot_dist_k,
        }
    }

    /// Whether the AVX2+FMA kernels are in use (for reports).
    pub fn simd_level() -> &'static str {
        TABLE.name
    }

    #[inline]
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: the table only holds AVX2 kernels when the CPU supports AVX2 and FMA.
        unsafe { (TABLE.dot)(a, b) }
    }

    #[inline]
    pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as in `dot`.
        unsafe { (TABLE.l2)(a, b) }
    }

    #[inline]
    pub fn l1(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as in `dot`.
        unsafe { (TABLE.l1)(a, b) }
    }

    /// A metric's internal distance resolved to one kernel pointer.
    #[derive(Clone, Copy)]
    pub(crate) struct DistFn(Kernel);

    impl DistFn {
        pub(crate) fn for_metric(metric: Metric) -> DistFn {
            let t = &*TABLE;
            DistFn(match metric {
                Metric::Cosine => t.cosine_dist,
                Metric::Dot => t.dot_dist,
                Metric::Euclid => t.l2,
                Metric::Manhattan => t.l1,
            })
        }

        #[inline(always)]
        pub(crate) fn eval(self, a: &[f32], b: &[f32]) -> f32 {
            // SAFETY: the pointer comes from `TABLE`, which only holds kernels the CPU supports.
            unsafe { (self.0)(a, b) }
        }
    }

    /// Portable 8-lane loops (what the compiler vectorises well with any baseline).
    mod portable {
        const LANES: usize = 8;

        #[inline(always)]
        pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            let (a, b) = (&a[..n], &b[..n]);
            let mut acc = [0.0f32; LANES];
            let chunks = n / LANES;
            for c in 0..chunks {
                let o = c * LANES;
                for l in 0..LANES {
                    acc[l] += a[o + l] * b[o + l];
                }
            }
            let mut sum: f32 = acc.iter().sum();
            for i in chunks * LANES..n {
                sum += a[i] * b[i];
            }
            sum
        }

        #[inline(always)]
        pub(super) fn l2(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            let (a, b) = (&a[..n], &b[..n]);
            let mut acc = [0.0f32; LANES];
            let chunks = n / LANES;
            for c in 0..chunks {
                let o = c * LANES;
                for l in 0..LANES {
                    let d = a[o + l] - b[o + l];
                    acc[l] += d * d;
                }
            }
            let mut sum: f32 = acc.iter().sum();
            for i in chunks * LANES..n {
                let d = a[i] - b[i];
                sum += d * d;
            }
            sum
        }

        #[inline(always)]
        pub(super) fn l1(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            let (a, b) = (&a[..n], &b[..n]);
            let mut acc = [0.0f32; LANES];
            let chunks = n / LANES;
            for c in 0..chunks {
                let o = c * LANES;
                for l in 0..LANES {
                    acc[l] += (a[o + l] - b[o + l]).abs();
                }
            }
            let mut sum: f32 = acc.iter().sum();
            for i in chunks * LANES..n {
                sum += (a[i] - b[i]).abs();
            }
            sum
        }

        // `unsafe fn` only so they share the table's pointer type; they are safe to call.
        pub(super) unsafe fn dot_k(a: &[f32], b: &[f32]) -> f32 {
            dot(a, b)
        }
        pub(super) unsafe fn l2_k(a: &[f32], b: &[f32]) -> f32 {
            l2(a, b)
        }
        pub(super) unsafe fn l1_k(a: &[f32], b: &[f32]) -> f32 {
            l1(a, b)
        }
        pub(super) unsafe fn cosine_dist_k(a: &[f32], b: &[f32]) -> f32 {
            1.0 - dot(a, b)
        }
        pub(super) unsafe fn dot_dist_k(a: &[f32], b: &[f32]) -> f32 {
            -dot(a, b)
        }
    }

    /// AVX2+FMA kernels: four 8-lane accumulators (32 floats per step), then 8-float steps,
    /// then a scalar tail. Only called through `TABLE` after run-time detection.
    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use std::arch::x86_64::*;

        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn hsum(v: __m256) -> f32 {
            let lo = _mm256_castps256_ps128(v);
            let hi = _mm256_extractf128_ps(v, 1);
            let s = _mm_add_ps(lo, hi);
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
            _mm_cvtss_f32(s)
        }

        /// Generates one kernel: `$step(acc, x, y)` accumulates 8 lanes, `$scalar(x, y)` one.
        macro_rules! kernel {
            ($name:ident, $step:expr, $scalar:expr) => {
                #[target_feature(enable = "avx2,fma")]
                pub(super) unsafe fn $name(a: &[f32], b: &[f32]) -> f32 {
                    let n = a.len().min(b.len());
                    let (pa, pb) = (a.as_ptr(), b.as_ptr());
                    let step = $step;
                    let mut acc0 = _mm256_setzero_ps();
                    let mut acc1 = _mm256_setzero_ps();
                    let mut acc2 = _mm256_setzero_ps();
                    let mut acc3 = _mm256_setzero_ps();
                    let mut i = 0;
                    // SAFETY (all loads): i + width <= n <= both lengths.
                    while i + 32 <= n {
                        acc0 = step(acc0, _mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                        acc1 = step(
                            acc1,
                            _mm256_loadu_ps(pa.add(i + 8)),
                            _mm256_loadu_ps(pb.add(i + 8)),
                        );
                        acc2 = step(
                            acc2,
                            _mm256_loadu_ps(pa.add(i + 16)),
                            _mm256_loadu_ps(pb.add(i + 16)),
                        );
                        acc3 = step(
                            acc3,
                            _mm256_loadu_ps(pa.add(i + 24)),
                            _mm256_loadu_ps(pb.add(i + 24)),
                        );
                        i += 32;
                    }
                    while i + 8 <= n {
                        acc0 = step(acc0, _mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                        i += 8;
                    }
                    let acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
                    let mut sum = hsum(acc);
                    let scalar = $scalar;
                    while i < n {
                        sum += scalar(*a.get_unchecked(i), *b.get_unchecked(i));
                        i += 1;
                    }
                    sum
                }
            };
        }

        kernel!(
            dot,
            |acc: __m256, x: __m256, y: __m256| _mm256_fmadd_ps(x, y, acc),
            |x: f32, y: f32| x * y
        );
        kernel!(
            l2_squared,
            |acc: __m256, x: __m256, y: __m256| {
                let d = _mm256_sub_ps(x, y);
                _mm256_fmadd_ps(d, d, acc)
            },
            |x: f32, y: f32| (x - y) * (x - y)
        );
        kernel!(
            l1,
            |acc: __m256, x: __m256, y: __m256| {
                let sign = _mm256_set1_ps(-0.0);
                _mm256_add_ps(acc, _mm256_andnot_ps(sign, _mm256_sub_ps(x, y)))
            },
            |x: f32, y: f32| (x - y).abs()
        );

        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn cosine_dist(a: &[f32], b: &[f32]) -> f32 {
            1.0 - dot(a, b)
        }

        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn dot_dist(a: &[f32], b: &[f32]) -> f32 {
            -dot(a, b)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn naive(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
            let mut d = 0.0f64;
            let mut l2 = 0.0f64;
            let mut l1 = 0.0f64;
            for (x, y) in a.iter().zip(b) {
                d += (*x as f64) * (*y as f64);
                l2 += ((*x - *y) as f64).powi(2);
                l1 += ((*x - *y) as f64).abs();
            }
            (d as f32, l2 as f32, l1 as f32)
        }

        #[test]
        fn kernels_match_naive_for_every_length() {
            for n in 0..80usize {
                let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.37).collect();
                let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.21).collect();
                let (d, l2, l1v) = naive(&a, &b);
                let tol = 1e-3 * (1.0 + n as f32);
                assert!((dot(&a, &b) - d).abs() < tol, "dot n={n}");
                assert!((l2_squared(&a, &b) - l2).abs() < tol, "l2 n={n}");
                assert!((l1(&a, &b) - l1v).abs() < tol, "l1 n={n}");
                assert!((portable::dot(&a, &b) - d).abs() < tol);
                assert!((portable::l2(&a, &b) - l2).abs() < tol);
                assert!((portable::l1(&a, &b) - l1v).abs() < tol);
                for m in [
                    Metric::Cosine,
                    Metric::Dot,
                    Metric::Euclid,
                    Metric::Manhattan,
                ] {
                    let f = DistFn::for_metric(m);
                    assert!((f.eval(&a, &b) - m.distance(&a, &b)).abs() < tol);
                }
            }
        }
    }
}
