//! Starting and stopping a node: work out who it is, open the data dir, serve the public API and
//! the peer API, run the background optimizer and anti-entropy, and on SIGTERM stop accepting,
//! finish in-flight requests and flush everything to disk.

use crate::api::{self, service::Metrics};
use crate::cluster::discovery::Discovery;
use crate::cluster::identity::Identity;
use crate::cluster::membership::{KubeApi, SizeSource};
use crate::cluster::{peer_api, rebalance, sync, Cluster};
use crate::collection::catalog::Catalog;
use crate::config::Config;
use crate::node::Node;
use anyhow::Context;
use axum::serve::ListenerExt;
use axum::ServiceExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the optimizer looks for tails to index and segments to merge.
const OPTIMIZER_INTERVAL: Duration = Duration::from_millis(500);
/// How often a node compares its catalog and replicas with its peers.
const SYNC_INTERVAL: Duration = Duration::from_secs(5);

/// This pod's hostname: `--hostname`, else the kernel's.
fn hostname(config: &Config) -> String {
    config.hostname.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default()
    })
}

/// The cluster this node belongs to, from its hostname, the Service and the cluster size.
async fn cluster(config: &Config) -> anyhow::Result<(Cluster, Option<Arc<SizeSource>>)> {
    let Some(service) = config.service.clone() else {
        return Ok((Cluster::single(), None));
    };
    let identity = Identity::from_hostname(&hostname(config))
        .map_err(|e| anyhow::anyhow!("{e} (--service is set)"))?;
    let source = match (config.cluster_size, config.kube_api_url()) {
        (Some(n), _) => SizeSource::Fixed(n),
        (None, Some(url)) => SizeSource::Kubernetes(KubeApi::new(&url, &config.namespace, &identity.statefulset)?),
        (None, None) => anyhow::bail!(
            "--service is set but the cluster size is unknown: set --cluster-size (SHOAL_CLUSTER_SIZE) or run with a service account that can read the StatefulSet"
        ),
    };
    let size = source
        .current()
        .await
        .context("cannot read the cluster size")?;
    let discovery = Discovery::new(
        identity.clone(),
        service,
        config.peer_addr().port(),
        config.dns_server,
    )?;
    tracing::info!(%identity, size, "joining the cluster");
    Ok((
        Cluster::new(identity, discovery, size, config.cluster_token.clone())?,
        Some(Arc::new(source)),
    ))
}

/// Everything a running node needs, bound and opened.
pub struct Started {
    pub node: Arc<Node>,
    pub public: tokio::net::TcpListener,
    pub peer: tokio::net::TcpListener,
}

/// Opens the node's data and binds its listeners; fails with one clear message if any fails.
pub async fn start(config: Config) -> anyhow::Result<Started> {
    let (cluster, size_source) = cluster(&config).await?;
    tracing::info!(
        memory_limit_mb = crate::memory::limit_bytes() >> 20,
        sled_cache_mb = config.sled_cache_bytes() >> 20,
        "memory budget"
    );
    let catalog = tokio::task::block_in_place(|| {
        Catalog::open(&config.data_dir, config.sled_cache_bytes(), |c| {
            cluster.local_shards(c)
        })
    })
    .with_context(|| format!("cannot open data dir {}", config.data_dir.display()))?;
    if !cluster.is_single() {
        // Replicas may have missed writes while this node was down: they serve reads again
        // once they caught up with their peers (see cluster::rebalance).
        for c in catalog.all() {
            for (shard, _) in c.local_shards() {
                c.mark_syncing(shard);
            }
        }
    }
    let public = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let peer_addr = config.peer_addr();
    let peer = tokio::net::TcpListener::bind(peer_addr)
        .await
        .with_context(|| format!("cannot listen for peers on {peer_addr}"))?;
    let node = Arc::new(Node {
        config,
        catalog,
        cluster,
        ready: Default::default(),
        metrics: Metrics::install(),
        size_source,
    });
    // Every local shard is open: readiness never waits on another pod.
    node.ready.store(true, Ordering::Release);
    Ok(Started { node, public, peer })
}

/// Serves until SIGTERM or Ctrl-C, then drains and flushes.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let Started { node, public, peer } = start(config).await?;
    tracing::info!(listen = %node.config.listen, peer = %node.config.peer_addr(), data_dir = %node.config.data_dir.display(), "shoal is serving");
    let mut background = vec![
        tokio::spawn(optimize_forever(Arc::clone(&node))),
        tokio::spawn(sync::run(Arc::clone(&node), SYNC_INTERVAL)),
    ];
    if let Some(source) = node.size_source() {
        background.push(tokio::spawn(rebalance::run(Arc::clone(&node), source)));
    }
    let peer_server = tokio::spawn({
        let app = peer_api::router(Arc::clone(&node));
        async move { axum::serve(peer, app).await }
    });
    // No Nagle delay on answers: a response hyper writes in more than one piece (a large or
    // streamed body) must not wait for the client's ACK of the first.
    let public = public.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(public, api::router(Arc::clone(&node)).into_make_service())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    node.ready.store(false, Ordering::Release);
    for task in background {
        task.abort();
    }
    peer_server.abort();
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
            for (_, shard) in collection.local_shards() {
                let result = tokio::task::spawn_blocking(move || shard.optimize(threshold)).await;
                match result {
                    Ok(Ok(Some(report))) => {
                        metrics::histogram!("shoal_index_build_seconds").record(report.seconds);
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(collection = %collection.name, error = %e, "segment build failed")
                    }
                    Err(e) => {
                        tracing::error!(collection = %collection.name, error = %e, "segment build task failed")
                    }
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

/// `shoal handoff`: asks the node in this pod (on its peer port) to hand off if it is leaving.
pub async fn handoff(config: Config) -> anyhow::Result<()> {
    use crate::cluster::protocol::{self, HandoffReport, PROTOCOL_HEADER, PROTOCOL_VERSION};
    let mut addr = config.peer_addr();
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut request = reqwest::Client::new().post(format!("http://{addr}/peer/v1/handoff"));
    if let Some(token) = &config.cluster_token {
        request = request.header(protocol::TOKEN_HEADER, token.as_str());
    }
    let resp = request
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
        .timeout(Duration::from_secs(24 * 3600))
        .send()
        .await
        .with_context(|| format!("cannot reach the node on {addr}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    anyhow::ensure!(
        status.is_success(),
        "hand-off failed: {}",
        String::from_utf8_lossy(&bytes)
    );
    let report: HandoffReport = protocol::decode(&bytes).map_err(anyhow::Error::msg)?;
    if report.leaving {
        tracing::info!(
            replicas = report.replicas_handed_off,
            cluster_size = report.cluster_size,
            "hand-off complete"
        );
    } else {
        tracing::info!(
            cluster_size = report.cluster_size,
            "not a scale-down: nothing to hand off"
        );
    }
    Ok(())
}
