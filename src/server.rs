//! Starting and stopping a node: open the data dir, serve the API, run the background optimizer,
//! and on SIGTERM stop accepting, finish in-flight requests and flush everything to disk.

use crate::api::{self, service::Metrics, Node};
use crate::collection::catalog::Catalog;
use crate::config::Config;
use anyhow::Context;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the optimizer looks for tails to index and segments to merge.
const OPTIMIZER_INTERVAL: Duration = Duration::from_millis(500);

/// Opens the node's data and binds its listener; fails with one clear message if either fails.
pub async fn start(config: Config) -> anyhow::Result<(Arc<Node>, tokio::net::TcpListener)> {
    let data_dir = config.data_dir.clone();
    let catalog = tokio::task::spawn_blocking(move || Catalog::open(&data_dir))
        .await?
        .with_context(|| format!("cannot open data dir {}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let node = Arc::new(Node { config, catalog, ready: Default::default(), metrics: Metrics::install() });
    node.ready.store(true, Ordering::Release);
    Ok((node, listener))
}

/// Serves until SIGTERM or Ctrl-C, then drains and flushes.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (node, listener) = start(config).await?;
    tracing::info!(listen = %node.config.listen, data_dir = %node.config.data_dir.display(), "shoal is serving");
    let optimizer = tokio::spawn(optimize_forever(Arc::clone(&node)));
    axum::serve(listener, api::router(Arc::clone(&node))).with_graceful_shutdown(shutdown_signal()).await?;
    optimizer.abort();
    node.ready.store(false, Ordering::Release);
    let flushing = Arc::clone(&node);
    tokio::task::spawn_blocking(move || flushing.catalog.flush()).await??;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Builds segments in the background, one shard at a time, so searches keep the other core.
async fn optimize_forever(node: Arc<Node>) {
    let threshold = node.config.indexing_threshold;
    loop {
        tokio::time::sleep(OPTIMIZER_INTERVAL).await;
        for collection in node.catalog.all() {
            for shard in collection.shards().to_vec() {
                let result = tokio::task::spawn_blocking(move || shard.optimize(threshold)).await;
                match result {
                    Ok(Ok(Some(report))) => {
                        metrics::histogram!("shoal_index_build_seconds").record(report.seconds);
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => tracing::error!(collection = %collection.name, error = %e, "segment build failed"),
                    Err(e) => tracing::error!(collection = %collection.name, error = %e, "segment build task failed"),
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: draining requests");
}
