//! The `shoal` binary: parse the configuration, set up logging, run the node.

use clap::Parser;
use shoal::config::Config;
use tracing_subscriber::EnvFilter;

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,hnsw_rs=warn,sled=warn"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if format.eq_ignore_ascii_case("json") {
        // Each line carries the current span (`request` with its request_id, method and path).
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    init_logging(&config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
    match runtime.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("shoal cannot start: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
