//! The `shoal` binary: parse the configuration, set up logging, run the node.

use clap::Parser;
use shoal::config::Config;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` and `mi_option_allow_thp` (their positions in
/// `mi_option_e`, mimalloc.h v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

fn main() -> std::process::ExitCode {
    // Freed memory goes back to the OS at once. mimalloc purges freed pages only after a delay
    // (1 s) and only when the thread that freed them allocates again, so the hundreds of MB a
    // segment build frees on its (then idle) threads stayed resident: 523 MB of steady RSS after
    // loading 1M x 128 in a 1 GiB pod, against the pod's limit (docs/storage.md).
    // SAFETY: setting an option has no preconditions; unknown options are ignored.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    // ... and in small pages: no transparent huge pages for the heap. A purge at once returns
    // freed memory in 64 KiB pieces (mimalloc's minimal purge size applies to delayed purges
    // only), and a huge page with a piece returned stays whole, charged to the pod's memory
    // cgroup, on the kernel's queue of huge pages to split, which pressure inside the cgroup did
    // not drain. After a 100k x 128 upload in a 1 GiB pod the cgroup held 348 MiB of anonymous
    // pages for the 143 MiB the node had mapped (116 for 116 without huge pages); after 1M x 128,
    // 366 for 186, and the page cache left could not hold the segments: searches read their
    // vectors from disk until a restart (docs/storage.md, *What a node holds after an upload*).
    // Huge pages also cost zeroing: a third of a reopen's CPU once went to huge pages faulted in
    // again after a purged piece. What builds lose without them is measured in docs/storage.md.
    // mimalloc reads that option when it starts, before `main`, and had then advised its first
    // arena (1 GiB of address space, most of the heap) for huge pages already: the process opts
    // out itself, as mimalloc does when the option comes from the environment
    // (MIMALLOC_ALLOW_THP=0), and later arenas are not advised.
    // SAFETY: setting an option has no preconditions; prctl takes plain integers.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0);
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let config = Config::parse();
    let _log = shoal::logging::init(&config.log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.workers {
        builder.worker_threads(n as usize);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let work = async move {
        match config.command {
            Some(shoal::config::Command::Handoff { .. }) => shoal::server::handoff(config).await,
            None => shoal::server::run(config).await,
        }
    };
    let outcome = runtime.block_on(work);
    // Blocking tasks still running (a peer sync's read, say) are not waited for: dropping the
    // runtime would, and a stop must end within the pod's grace period.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("shoal cannot start: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
