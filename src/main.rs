//! The `shoal` binary: parse the configuration, set up logging, run the node.

use clap::Parser;
use shoal::config::Config;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
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
