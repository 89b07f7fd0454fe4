//! The node's memory budget: the limit of the memory cgroup it runs in (what Kubernetes enforces
//! for the pod), else the machine's memory, and the sizes derived from it.
//!
//! cgroup v1 publishes the limit in `memory.limit_in_bytes` (and, counting every ancestor,
//! `hierarchical_memory_limit` in `memory.stat`); v2 in `memory.max` of the process's group and
//! of each ancestor. The group is read from `/proc/self/cgroup`; inside a container the group's
//! own directory is usually the root of the mount, so both the full path and the root are tried.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What a build needs per point besides the vectors (hnsw_rs's point record and neighbour lists
/// of `Arc`s behind locks, our extraction buffers, the flat graph before it is written).
/// Measured (docs/storage.md): peak RSS grows by 4.5 KB a point at 128 dimensions and 15.4 KB at
/// 768, i.e. about 2.3 KB plus 4.3 copies of the vector; rounded up.
pub const BUILD_BYTES_PER_POINT: usize = 2_400;
/// Copies of each vector alive during a build: the build's input, hnsw_rs's own, the flat copy
/// written to the file, and that file's pages as the segment is reopened.
pub const BUILD_VECTOR_COPIES: usize = 4;

/// The memory limit of this process: its cgroup's (v1 or v2), else the machine's total, else
/// 1 GiB.
pub fn limit_bytes() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|s| cgroup_limit(&s, Path::new("/sys/fs/cgroup")));
        cgroup.or_else(mem_total).unwrap_or(1 << 30)
    })
}

/// The smallest limit set for the process's memory cgroup (v1 or v2), if any.
pub fn cgroup_limit(proc_self_cgroup: &str, root: &Path) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut consider = |v: Option<u64>| {
        if let Some(v) = v.filter(|v| *v > 0 && *v < (1u64 << 60)) {
            best = Some(best.map_or(v, |b| b.min(v)));
        }
    };
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            for dir in [root.join("memory").join(rel), root.join("memory")] {
                consider(read_u64(&dir.join("memory.limit_in_bytes")));
                consider(
                    std::fs::read_to_string(dir.join("memory.stat"))
                        .ok()
                        .and_then(|s| {
                            s.lines()
                                .find_map(|l| l.strip_prefix("hierarchical_memory_limit "))
                                .and_then(|v| v.trim().parse().ok())
                        }),
                );
            }
        } else if controllers.is_empty() {
            // cgroup v2: this group and each ancestor may set memory.max.
            let mut dir: PathBuf = root.join(rel);
            loop {
                consider(read_u64(&dir.join("memory.max")));
                if dir == root || !dir.pop() {
                    break;
                }
            }
            consider(read_u64(&root.join("unified").join(rel).join("memory.max")));
        }
    }
    best
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn mem_total() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// This process's resident set (`VmRSS`), 0 where unknown.
pub fn process_resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Bytes one point costs while a segment of vectors of `dim` is built.
pub fn build_bytes_per_point(dim: usize) -> usize {
    BUILD_BYTES_PER_POINT + BUILD_VECTOR_COPIES * 4 * dim
}

/// The largest segment a build may make by default: what fits in a quarter of the node's
/// memory (the rest is for the mapped segments, sled, the tail and requests), between 10 000
/// and 2 000 000 points.
pub fn default_max_segment_points(dim: usize) -> usize {
    let budget = (limit_bytes() / 4) as usize;
    (budget / build_bytes_per_point(dim.max(1))).clamp(10_000, 2_000_000)
}

/// What one tail point costs in RAM besides its vector: the point-table entry, the tail slot,
/// a small parsed payload (docs/storage.md).
pub const TAIL_BYTES_PER_POINT: usize = 400;

/// The most points the unindexed tail holds by default: a tenth of the node's memory.
pub fn default_max_tail_points(dim: usize) -> usize {
    ((limit_bytes() / 10) as usize / (TAIL_BYTES_PER_POINT + 4 * dim.max(1))).max(20_000)
}

/// The most bytes (vectors and payload text) the tail holds by default: the same tenth of the
/// node's memory, at least 16 MiB.
pub fn default_max_tail_bytes() -> usize {
    ((limit_bytes() / 10) as usize).max(16 << 20)
}

/// sled's page cache by default: a thirty-second of the node's memory, between 16 MiB and
/// 256 MiB (sled's own default is 1 GB, all of a small pod; and sled's memory beyond its cache
/// grows with the write rate).
pub fn default_sled_cache_bytes() -> u64 {
    (limit_bytes() / 32).clamp(16 << 20, 256 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1_and_v2_limits() {
        let root = tempfile::tempdir().unwrap();
        let v1 = root.path().join("memory/pod/c");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "1073741824\n").unwrap();
        assert_eq!(
            cgroup_limit("4:memory:/pod/c\n", root.path()),
            Some(1 << 30)
        );
        // Unlimited v1 (a huge number) is no limit.
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(cgroup_limit("4:memory:/pod/c\n", root.path()), None);
        let v2 = root.path().join("kubepods/pod1");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        std::fs::write(root.path().join("kubepods/memory.max"), "536870912\n").unwrap();
        assert_eq!(
            cgroup_limit("0::/kubepods/pod1\n", root.path()),
            Some(512 << 20)
        );
        assert!(default_max_segment_points(128) >= 10_000);
    }
}
