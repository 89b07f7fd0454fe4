//! The `shoal` binary: parse the configuration, set up logging, run the node.

use clap::Parser;
use shoal::config::Config;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` and `mi_option_minimal_purge_size` (their positions in
/// `mi_option_e`, mimalloc.h v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_OPTION_MINIMAL_PURGE_SIZE: libmimalloc_sys::mi_option_t = 44;

fn main() -> std::process::ExitCode {
    // Freed memory goes back to the OS at once. mimalloc purges freed pages only after a delay
    // (1 s) and only when the thread that freed them allocates again, so the hundreds of MB a
    // segment build frees on its (then idle) threads stayed resident: 523 MB of steady RSS after
    // loading 1M x 128 in a 1 GiB pod, against the pod's limit (docs/storage.md).
    // SAFETY: setting an option has no preconditions; unknown options are ignored.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    // ... but in whole huge pages (KiB). mimalloc asks for transparent huge pages for its heap,
    // so every purge of a few KiB split a huge page that the next allocation faulted in and
    // zeroed again: a third of a reopen's CPU went to zeroing huge pages. (Turning huge pages
    // off instead made segment builds ~12 % slower.)
    // SAFETY: as above.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_MINIMAL_PURGE_SIZE, 2048) };
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
