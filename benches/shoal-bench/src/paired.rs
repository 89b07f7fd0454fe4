//! `--url` together with `--segment`: the node's own graph searched in process and over HTTP,
//! interleaved, so that the ratio of the two is the HTTP path's cost and nothing else.
//!
//! The bench machine is a shared VM whose speed drifts by ±10 % within minutes — as much as the
//! effect being measured. One in-process sweep and one HTTP sweep minutes apart then compare two
//! different machines. Here every (`ef`, concurrency) alternates the two in short slices
//! (`--min-secs` each), `--rounds` times, and reports the median of each side; the per-round
//! ratios go to the JSON (`pairs`) so their spread is visible. A slow minute slows both halves
//! of a pair.
//!
//! The in-process half runs on a thread pinned to `--local-cpu` (the core the node is pinned to,
//! idle while the in-process half runs), the HTTP half on the calling thread's CPUs.

use crate::data::{self, Matrix};
use crate::http::Target;
use crate::report::Progress;
use crate::{one_thread_sweep, NodeSegment, Row};
use anyhow::{anyhow, bail, Result};
use serde_json::json;

/// What [`run`] measures on.
pub struct Setup<'a> {
    pub segment: &'a NodeSegment,
    pub queries: &'a Matrix,
    pub truth: &'a [Vec<u32>],
    pub k: usize,
    pub warmup: usize,
    pub min_secs: f64,
    pub rounds: usize,
    pub local_cpu: Option<usize>,
    pub spin: bool,
    pub query_batch: usize,
}

/// Both sides at every `ef` for every concurrency: the rows (medians) and the per-round pairs.
pub fn run(
    s: &Setup,
    target: &Target,
    rt: &tokio::runtime::Runtime,
    efs: &[usize],
    concurrency: &[usize],
) -> Result<(Vec<Row>, serde_json::Value)> {
    let qs: Vec<&[f32]> = s.queries.data.chunks_exact(s.queries.dim).collect();
    let rounds = s.rounds.max(1);
    let mut rows = Vec::new();
    let mut pairs = Vec::new();
    let mut progress = Progress::new("paired", efs.len() * concurrency.len() * rounds);
    let mut done = 0;
    for &ef in efs {
        let mut local: Vec<Row> = Vec::new();
        for &c in concurrency {
            let mut remote: Vec<Row> = Vec::new();
            for _ in 0..rounds {
                let search = |q: &[f32]| s.segment.search(q, s.k, ef);
                local.push(on_cpu(s.local_cpu, || {
                    one_thread_sweep(&qs, ef, s.warmup, s.min_secs, s.truth, s.k, search)
                })?);
                let r = rt.block_on(target.sweep(
                    s.queries,
                    s.k,
                    ef,
                    c,
                    s.min_secs,
                    s.spin,
                    s.query_batch,
                ))?;
                remote.push(Row {
                    ef,
                    series: crate::http_series(c, s.query_batch),
                    recall: data::recall(&r.ids, s.truth, s.k),
                    qps: r.qps,
                    lat: r.lat_us,
                });
                done += 1;
                progress.set(done);
            }
            let this_c = &local[local.len() - remote.len()..];
            let ratios: Vec<f64> = this_c
                .iter()
                .zip(&remote)
                .map(|(l, r)| r.qps / l.qps)
                .collect();
            pairs.push(json!({"ef": ef, "series": remote[0].series,
                "in_process_qps": this_c.iter().map(|r| r.qps).collect::<Vec<_>>(),
                "http_qps": remote.iter().map(|r| r.qps).collect::<Vec<_>>(),
                "ratios": ratios, "median_ratio": median(ratios.clone())}));
            rows.push(merge(remote));
        }
        rows.push(merge(local));
    }
    progress.done();
    Ok((rows, json!(pairs)))
}

/// One row from several measurements of the same series and `ef`: the median QPS, the first
/// measurement's recall (the search is deterministic), every latency.
pub(crate) fn merge(mut runs: Vec<Row>) -> Row {
    let qps = median(runs.iter().map(|r| r.qps).collect());
    let mut first = runs.remove(0);
    for r in runs {
        first.lat.extend(r.lat);
    }
    first.lat.sort_by(f64::total_cmp);
    first.qps = qps;
    first
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `f` on a thread of its own, pinned to `cpu` when one is given.
fn on_cpu<T: Send>(cpu: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Some(cpu) = cpu {
                    pin_current_thread(cpu)?;
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow!("the in-process half panicked"))?
    })
}

/// Moves the calling thread to `cpu` alone.
fn pin_current_thread(cpu: usize) -> Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        bail!("--local-cpu {cpu} is past the largest CPU number");
    }
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only read and
    // write the set passed to them, whose size is given.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        bail!(
            "pinning the in-process half to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
