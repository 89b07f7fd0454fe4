//! `--int8-quantile q --int8-ab`: one quantized segment searched both ways — on the float vectors
//! (`params.quantization.ignore`) and on the int8 codes — in alternating slices, so that the ratio
//! of the two is the codes' effect and not the machine's drift (see paired.rs for why).
//!
//! At every `ef`, `--rounds` times: a float slice, then an int8 slice, each repeating the query set
//! for `--min-secs`. Rows: the median QPS of each side, every latency, the recall of the first pass.

use crate::paired::merge;
use crate::report::Progress;
use crate::{one_thread_sweep, Row};
use shoal::index::{QuantSearch, Segment};

/// What [`run`] measures on.
pub struct Setup<'a> {
    pub segment: &'a Segment,
    pub queries: &'a [&'a [f32]],
    pub truth: &'a [Vec<u32>],
    pub k: usize,
    pub warmup: usize,
    pub min_secs: f64,
    pub rounds: usize,
    /// How the int8 side searches (rescore, oversampling).
    pub quant: QuantSearch,
}

/// Float and int8 rows (medians) at every `ef`, interleaved.
pub fn run(s: &Setup, efs: &[usize]) -> Vec<Row> {
    let float = QuantSearch {
        ignore: true,
        ..s.quant
    };
    let sides = [("f32 (1 thread)", float), ("int8 (1 thread)", s.quant)];
    let rounds = s.rounds.max(1);
    let mut progress = Progress::new("f32/int8", efs.len() * rounds * 2);
    let mut done = 0;
    let mut rows = Vec::new();
    for &ef in efs {
        let mut runs: [Vec<Row>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (side, (name, how)) in sides.iter().enumerate() {
                let search = |q: &[f32]| {
                    s.segment
                        .search_quantized(q, s.k, ef, *how, |_| true)
                        .into_iter()
                        .map(|x| x.1)
                        .collect()
                };
                let mut row =
                    one_thread_sweep(s.queries, ef, s.warmup, s.min_secs, s.truth, s.k, search);
                row.series = (*name).into();
                runs[side].push(row);
                done += 1;
                progress.set(done);
            }
        }
        for side in runs {
            rows.push(merge(side));
        }
    }
    progress.done();
    rows
}
