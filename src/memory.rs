//! The node's memory budget: the limit of the memory cgroup it runs in (what Kubernetes enforces
//! for the pod), else the machine's memory, and the sizes derived from it and from the node's
//! CPUs (how large a segment a build may make, how many points the unindexed tail may hold).
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

/// How many bytes of `bytes` (inside a mapping) are resident in memory, by `mincore`.
pub fn resident_bytes(bytes: &[u8]) -> usize {
    #[cfg(target_os = "linux")]
    {
        if bytes.is_empty() {
            return 0;
        }
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let start = (bytes.as_ptr() as usize) & !(page - 1);
        let end = bytes.as_ptr() as usize + bytes.len();
        let pages = (end - start).div_ceil(page);
        let mut vec = vec![0u8; pages];
        // SAFETY: the range covers pages of a live mapping (the slice's), `vec` has one byte per
        // page.
        let rc =
            unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
        if rc != 0 {
            return 0;
        }
        vec.iter().filter(|b| *b & 1 == 1).count() * page
    }
    #[cfg(not(target_os = "linux"))]
    {
        bytes.len()
    }
}

/// Bytes one point costs while a segment of vectors of `dim` is built.
pub fn build_bytes_per_point(dim: usize) -> usize {
    BUILD_BYTES_PER_POINT + BUILD_VECTOR_COPIES * 4 * dim
}

/// Build memory a segment may need per CPU of the node, whatever its memory: 512 MiB.
///
/// Qdrant bounds a segment by CPU, not by memory (its default `max_segment_size` is 256 000 KB
/// of vectors per indexing thread), so that a build takes about as long on a large machine as
/// on a small one. hnsw_rs builds about 3 times slower than hnswlib (docs/benchmarks.md), and at
/// low dimensions its per-point overhead, not the vectors, is most of its work, so the budget
/// here is counted in [`build_bytes_per_point`] rather than in vector bytes: 313 000 points of
/// 64 dimensions, 241 000 of 128 or 73 000 of 768 per build on 2 CPUs.
pub const BUILD_BYTES_PER_CPU: u64 = 512 << 20;

/// A segment holds at least this many points by default, however small the node.
pub const MIN_DEFAULT_SEGMENT_POINTS: usize = 10_000;
/// ... and at most this many, however large.
pub const MAX_DEFAULT_SEGMENT_POINTS: usize = 2_000_000;
/// The tail holds at most this many CPU-sized segments' worth of points (see [`sizing`]).
pub const TAIL_SEGMENTS: usize = 2;

/// How large segments and the unindexed tail grow by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// The most points one build puts in a segment.
    pub max_segment_points: usize,
    /// The most points the in-RAM tail holds before writers wait for builds.
    pub max_tail_points: usize,
    /// The most bytes (vectors and payload text) the tail holds.
    pub max_tail_bytes: usize,
}

/// The default sizes on a node with `limit` bytes of memory and `cpus` CPUs, for vectors of
/// `dim` dimensions (docs/storage.md, *Builds and their memory*):
/// - a segment holds what a build can make within [`BUILD_BYTES_PER_CPU`] per CPU, and within
///   a quarter of the memory (the rest is for the mapped segments, sled, the tail and
///   requests), whichever is smaller, between 10 000 and 2 000 000 points;
/// - the tail holds what fits in a tenth of the memory (at ≈ 400 + 4·dim bytes a point, at
///   least 20 000 points), but no more than [`TAIL_SEGMENTS`] CPU-sized segments, and never
///   less than one segment: on a large machine a fast upload then waits for builds instead of
///   growing a tail that every query scans and that takes minutes to index;
/// - the tail's bytes: a tenth of the memory, at least 16 MiB (a bound on RAM, for payloads).
pub fn sizing(limit: u64, cpus: usize, dim: usize) -> Sizing {
    let per_point = build_bytes_per_point(dim.max(1)) as u64;
    let points = |bytes: u64| {
        (bytes / per_point).clamp(
            MIN_DEFAULT_SEGMENT_POINTS as u64,
            MAX_DEFAULT_SEGMENT_POINTS as u64,
        ) as usize
    };
    let by_cpus = points(BUILD_BYTES_PER_CPU.saturating_mul(cpus.max(1) as u64));
    let max_segment_points = by_cpus.min(points(limit / 4));
    let by_memory = (limit / 10) as usize / (TAIL_BYTES_PER_POINT + 4 * dim.max(1));
    let max_tail_points = by_memory
        .max(20_000)
        .min(TAIL_SEGMENTS * by_cpus)
        .max(max_segment_points);
    Sizing {
        max_segment_points,
        max_tail_points,
        max_tail_bytes: ((limit / 10) as usize).max(16 << 20),
    }
}

/// [`sizing`] on this node: its memory limit and the CPUs it may use (the cgroup's CPU quota
/// counts: a pod limited to 2 CPUs sizes for 2).
pub fn default_sizing(dim: usize) -> Sizing {
    sizing(limit_bytes(), cpus(), dim)
}

/// The CPUs this process may run on (its affinity and cgroup quota), at least 1.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Hands the memory a segment build freed back to the OS, once the build is done.
///
/// hnsw_rs inserts on rayon's pool threads, so its point records and neighbour lists are
/// allocated there, and the thread that drops the graph frees them from another thread. mimalloc
/// keeps a page freed that way on its owner's lists until the owner allocates again, which an
/// idle pool thread never does: after the last build of an upload, what that build held stayed
/// resident. In a 1 GiB pod that was ~200 MB of anonymous memory (235 MB after loading 100k ×
/// 128, whatever the collection's size), page cache the mapped segments needed: at 1M × 128 a
/// search then read its vectors back from disk (unfiltered search at 5 QPS after the upload,
/// 284 after a restart; docs/filtered-search.md, *Over REST*). Every pool thread now collects
/// its pages (and the calling thread its own) after each build: a few milliseconds a build.
pub fn release_build_memory() {
    // SAFETY: mi_collect has no preconditions; it only walks the calling thread's heap.
    rayon::broadcast(|_| unsafe { libmimalloc_sys::mi_collect(true) });
    // SAFETY: as above.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Names rayon's global pool, where hnsw_rs inserts while a segment is built, `shoal-build-<i>`
/// (no other work runs there). Unnamed, its threads would take the name of the thread that first
/// used the pool. A pool already started (tests in one process) keeps its names.
pub fn name_build_threads() {
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("shoal-build-{i}"))
        .build_global();
}

/// What one tail point costs in RAM besides its vector: the point-table entry, the tail slot,
/// a small parsed payload (docs/storage.md).
pub const TAIL_BYTES_PER_POINT: usize = 400;

/// sled's page cache by default: [`sled_cache_bytes_for`] the node's memory limit.
pub fn default_sled_cache_bytes() -> u64 {
    sled_cache_bytes_for(limit_bytes())
}

/// The smallest default sled cache, whatever the memory: a few of its leaves and index nodes.
pub const MIN_SLED_CACHE_BYTES: u64 = 4 << 20;
/// The largest default sled cache, however large the node (sled's own default is 1 GB).
pub const MAX_SLED_CACHE_BYTES: u64 = 256 << 20;

/// sled's page cache for a node with `limit` bytes of memory: a 128th of it, between
/// [`MIN_SLED_CACHE_BYTES`] and [`MAX_SLED_CACHE_BYTES`] (8 MiB in a 1 GiB pod).
///
/// The cache holds records as they were written (vector, version, payload text): the node keeps
/// its points in the point table and its segments, and reads the records tree back only when it
/// opens a shard or rebuilds one, so what sled caches is mostly the last records written, and it
/// keeps them after the upload (its cache evicts only when it is used again). sled also counts a
/// page at its size in the log, not at its size in memory: a cache configured at 32 MiB held
/// ≈ 50–60 MB of the heap after an upload (docs/storage.md, *What a node holds after an upload*).
/// In a 1 GiB pod whose mapped segments need every megabyte of page cache, a small cache is
/// worth more than the few writes it speeds up.
pub fn sled_cache_bytes_for(limit: u64) -> u64 {
    (limit / 128).clamp(MIN_SLED_CACHE_BYTES, MAX_SLED_CACHE_BYTES)
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
    }

    const GIB: u64 = 1 << 30;

    /// A large machine's memory no longer sizes its segments: its CPUs do, as in Qdrant, so a
    /// million points of 64 dimensions uploaded to an unlimited node on 2 CPUs (this project's
    /// machine: 24 GiB) become at least four segments of ≈ 313 000 points, not one of 1.8M.
    #[test]
    fn an_unlimited_node_sizes_segments_by_its_cpus() {
        let node = sizing(24 * GIB, 2, 64);
        assert_eq!(node.max_segment_points, 313_592);
        assert!(1_000_000usize.div_ceil(node.max_segment_points) >= 4);
        // The tail follows the segments: two of them, not a tenth of 24 GiB (3.9M points).
        assert_eq!(node.max_tail_points, 2 * node.max_segment_points);
        // Four times the memory changes no point bound; twice the CPUs double them.
        let more_memory = sizing(96 * GIB, 2, 64);
        assert_eq!(
            (more_memory.max_segment_points, more_memory.max_tail_points),
            (node.max_segment_points, node.max_tail_points)
        );
        let more_cpus = sizing(24 * GIB, 4, 64);
        assert_eq!(more_cpus.max_segment_points, 627_185); // (2 GiB / 3 424 B)
        assert_eq!(more_cpus.max_tail_points, 2 * more_cpus.max_segment_points);
        // Larger vectors, fewer points (the bytes a build holds per point).
        assert_eq!(sizing(24 * GIB, 2, 128).max_segment_points, 241_398);
        assert_eq!(sizing(24 * GIB, 2, 768).max_segment_points, 73_103);
        // The ceiling.
        assert_eq!(sizing(1 << 40, 64, 1).max_segment_points, 2_000_000);
    }

    /// Where memory is the smaller bound (a pod), it still sizes segments and tail as before:
    /// a quarter of the limit for a build, a tenth for the tail.
    #[test]
    fn a_small_pod_sizes_segments_by_its_memory() {
        let pod = sizing(GIB, 2, 128);
        assert_eq!(pod.max_segment_points, (GIB / 4 / 4448) as usize); // 60 349
        assert_eq!(pod.max_tail_points, (GIB / 10) as usize / (400 + 512)); // 117 734
        assert_eq!(pod.max_tail_bytes, (GIB / 10) as usize);
        // More CPUs do not let a build outgrow the pod's memory.
        assert_eq!(sizing(GIB, 16, 128), pod);
        // A tiny pod: the floors (and the tail never smaller than a segment).
        let tiny = sizing(64 << 20, 2, 768);
        assert_eq!(tiny.max_segment_points, 10_000);
        assert_eq!(tiny.max_tail_points, 20_000);
        assert_eq!(tiny.max_tail_bytes, 16 << 20);
        assert!(default_sizing(128).max_segment_points >= 10_000);
    }

    /// sled's default cache follows the memory limit: a 128th of it, 8 MiB in the 1 GiB pod,
    /// with a floor for tiny pods and a ceiling for large machines.
    #[test]
    fn the_sled_cache_is_a_share_of_the_memory_limit() {
        assert_eq!(sled_cache_bytes_for(GIB), 8 << 20);
        assert_eq!(sled_cache_bytes_for(4 * GIB), 32 << 20);
        assert_eq!(sled_cache_bytes_for(256 << 20), MIN_SLED_CACHE_BYTES);
        assert_eq!(sled_cache_bytes_for(0), MIN_SLED_CACHE_BYTES);
        assert_eq!(sled_cache_bytes_for(24 * GIB), 192 << 20);
        assert_eq!(sled_cache_bytes_for(1 << 40), MAX_SLED_CACHE_BYTES);
        let default = default_sled_cache_bytes();
        assert!((MIN_SLED_CACHE_BYTES..=MAX_SLED_CACHE_BYTES).contains(&default));
        assert_eq!(default, sled_cache_bytes_for(limit_bytes()));
    }
}
