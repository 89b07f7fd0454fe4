//! Progress line, percentiles, process memory, machine facts.

use std::io::Write;
use std::time::Instant;

/// A one-line progress indicator on stderr (redrawn at most 5 times a second).
pub struct Progress {
    what: String,
    total: usize,
    start: Instant,
    last: Instant,
    shown: usize,
}

impl Progress {
    pub fn new(what: &str, total: usize) -> Progress {
        let now = Instant::now();
        Progress {
            what: what.to_string(),
            total,
            start: now,
            last: now,
            shown: usize::MAX,
        }
    }
    pub fn set(&mut self, done: usize) {
        if (self.last.elapsed().as_millis() >= 200 || done == self.total) && done != self.shown {
            self.last = Instant::now();
            self.shown = done;
            let frac = done as f64 / self.total.max(1) as f64;
            let bar: String = (0..30)
                .map(|i| if (i as f64) < frac * 30.0 { '#' } else { '.' })
                .collect();
            eprint!(
                "\r[{}] [{bar}] {done}/{} {:.1} s   ",
                self.what,
                self.total,
                self.start.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
    }
    pub fn done(&mut self) {
        self.set(self.total);
        eprintln!();
    }
}

/// `p`-quantile of an ascending slice (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A field of /proc/<pid>/status in bytes (VmHWM = peak resident set, VmRSS = now).
pub fn proc_status_bytes(pid: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(it) = std::fs::read_dir(dir) else {
        return 0;
    };
    it.filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "loadavg_at_start": load.trim(),
        "simd": shoal::index::distance::kernels::simd_level(),
    })
}
