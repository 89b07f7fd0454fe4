//! Starting and stopping a node: work out who it is, open the data dir, serve the public API and
//! (in cluster mode only) the peer API, run the background optimizer, the peer probes and
//! anti-entropy, and on SIGTERM stop accepting, finish in-flight requests and flush everything
//! to disk.

use crate::api::{self, service_routes::Metrics};
use crate::cluster::coordinator::Coordinator;
use crate::cluster::discovery::Discovery;
use crate::cluster::identity::Identity;
use crate::cluster::membership::{KubeApi, SizeSource};
use crate::cluster::{peer_api, rebalance, recovery, sync, Cluster, PeerToken};
use crate::collection::catalog::Catalog;
use crate::config::Config;
use crate::index::BuildCancelled;
use crate::service::Database;
use anyhow::Context;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    // Secure by default: a cluster never runs with an open peer port.
    let token = PeerToken::new(
        config.cluster_token.as_deref(),
        config.cluster_token_accept.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
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
        Cluster::new(identity, discovery, size, token)?,
        Some(Arc::new(source)),
    ))
}

/// Everything a running node needs, bound and opened.
pub struct Started {
    /// The service layer, and through it the coordinator below.
    pub db: Arc<Database>,
    pub public: tokio::net::TcpListener,
    /// The peer port, in cluster mode only: a single node has no peers to serve.
    pub peer: Option<tokio::net::TcpListener>,
}

/// Opens the node's data and binds its listeners; fails with one clear message if any fails.
pub async fn start(config: Config) -> anyhow::Result<Started> {
    // Before a shard's open can rebuild a segment and so start the pool.
    crate::memory::name_build_threads();
    let (cluster, size_source) = cluster(&config).await?;
    tracing::info!(
        memory_limit_mb = crate::memory::limit_bytes() >> 20,
        cpus = crate::memory::cpus(),
        sled_cache_mb = config.sled_cache_bytes() >> 20,
        "memory budget"
    );
    let catalog = tokio::task::block_in_place(|| {
        Catalog::open(
            &config.data_dir,
            config.disk_reserve_bytes,
            config.sled_cache_bytes(),
            |c| cluster.local_shards(c),
        )
    })
    .with_context(|| format!("cannot open data dir {}", config.data_dir.display()))?;
    catalog
        .store()
        .set_reopen_after(config.sled_reopen_after_mb << 20);
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
    let peer = if cluster.is_single() {
        None
    } else {
        let bound = tokio::net::TcpListener::bind(peer_addr)
            .await
            .with_context(|| format!("cannot listen for peers on {peer_addr}"))?;
        Some(bound)
    };
    Metrics::install();
    let coordinator = Arc::new(Coordinator::new(
        catalog,
        cluster,
        size_source,
        config.max_request_bytes,
    ));
    // Every local shard is open: readiness never waits on another pod.
    coordinator.set_ready(true);
    let db = Arc::new(Database::new(coordinator, config));
    Ok(Started { db, public, peer })
}

/// Serves until SIGTERM or Ctrl-C, then drains and flushes. A stop cancels a running index
/// build at once (it starts again after the restart), waits at most
/// [`api::serve::DRAIN_LIMIT`] for requests in flight, and flushes: well within Kubernetes'
/// 30 s grace period.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Before anything can report ready, so that no stop signal finds the default handler.
    let shutdown = shutdown_signal();
    let Started { db, public, peer } = start(config).await?;
    let node = Arc::clone(db.coordinator());
    let config = db.config();
    let peer_listen = peer.as_ref().map(|_| config.peer_addr().to_string());
    tracing::info!(listen = %config.listen, peer = peer_listen.as_deref().unwrap_or("closed (single-node mode)"), data_dir = %config.data_dir.display(), "shoal is serving");
    let stopping = Arc::new(AtomicBool::new(false));
    let optimizer = spawn_optimizer(
        Arc::clone(&node),
        config.indexing_threshold,
        Arc::clone(&stopping),
    )?;
    let mut background = Vec::new();
    if let Some(source) = node.size_source() {
        background.push(tokio::spawn(rebalance::run(Arc::clone(&node), source)));
    }
    if let Some(peer) = peer {
        let app = peer_api::router(Arc::clone(&node));
        // The same accept path and read timeouts as the public port; stopped with the node.
        let serve = crate::listener::serve(
            peer,
            crate::listener::Timeouts::from_config(config),
            move |_| Ok(app.clone()),
            std::future::pending(),
        );
        let watching = Arc::clone(&node);
        background.extend([
            tokio::spawn(serve),
            tokio::spawn(async move { watching.cluster.watch_peers().await }),
            tokio::spawn(sync::run(Arc::clone(&node), SYNC_INTERVAL)),
            tokio::spawn(recovery::run(Arc::clone(&node))),
        ]);
        // A thawed node must not answer from replicas that missed writes while it stood still.
        node.cluster.behind.stall.start()?;
    }
    let stop = {
        let stopping = Arc::clone(&stopping);
        async move {
            shutdown.await;
            stopping.store(true, Ordering::Release);
        }
    };
    api::serve::serve(public, api::router(Arc::clone(&db)), config, stop).await;
    node.set_ready(false);
    for task in background {
        task.abort();
    }
    // The optimizer sees the flag between shards; a build in progress stops at its next chunk.
    match tokio::task::spawn_blocking(move || optimizer.join()).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => tracing::warn!("the optimizer thread panicked"),
        Err(e) => tracing::warn!(error = %e, "cannot wait for the optimizer thread"),
    }
    let flushing = Arc::clone(&node);
    let flushed = tokio::task::spawn_blocking(move || flushing.catalog.flush()).await?;
    if let Err(e) = flushed {
        // A full disk: what was acknowledged with wait=true is on disk already; only writes
        // acknowledged without it since the last flush can be lost.
        let at_risk = node.catalog.store().unflushed();
        anyhow::ensure!(
            at_risk == 0,
            "cannot flush {at_risk} write(s) acknowledged without wait=true: {e}"
        );
        tracing::warn!(error = %e, "the final flush failed, but every acknowledged write was already on disk");
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Disk bytes a build of the shard's unindexed points will write, generously: the segment file's
/// vectors, links (up to 3m a point at 4 bytes, plus upper layers), ids, versions and offsets.
fn build_bytes(shard: &crate::shard::Shard) -> u64 {
    let (points, indexed, _) = shard.stats();
    let per_point = 4 * shard.config().dim + 60 * shard.config().hnsw.m + 64;
    (points.saturating_sub(indexed) as u64).saturating_mul(per_point as u64)
}

/// How long a shard whose build failed waits before the next try: doubling from
/// [`OPTIMIZER_INTERVAL`] up to this, so that a failing build (a full disk) does not retry in a
/// loop.
const MAX_BUILD_BACKOFF: Duration = Duration::from_secs(300);

/// The wait before a shard's next build try: doubling since its last failure.
fn next_backoff(
    backoff: &HashMap<(String, u32), (Duration, Instant)>,
    key: &(String, u32),
) -> Duration {
    backoff
        .get(key)
        .map_or(OPTIMIZER_INTERVAL, |(last, _)| *last * 2)
        .min(MAX_BUILD_BACKOFF)
}

/// The optimizer thread's name (what `/proc/<pid>/task/*/comm` shows).
pub const OPTIMIZER_THREAD: &str = "shoal-optimizer";

/// Starts the optimizer on a thread of its own that lives as long as the node: every segment
/// build and the store's upkeep run there, one after the other.
///
/// Not on tokio's blocking pool, for the memory's sake: a pool thread exits after 10 s idle, and
/// mimalloc then abandons its pages, which the few long-lived blocks a build leaves (a segment's
/// heap parts, sled's pages) keep resident for good (≈ 33 MB after a 100k upload; docs/storage.md,
/// *What a node holds after an upload*). One thread that stays reuses its free pages for the next
/// build, and collects them after each ([`crate::memory::release_build_memory`]).
fn spawn_optimizer(
    node: Arc<Coordinator>,
    threshold: usize,
    stopping: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(OPTIMIZER_THREAD.into())
        .spawn(move || optimize_forever(&node, threshold, &stopping))
        .context("cannot start the optimizer thread")
}

/// Builds segments in the background, one shard at a time, so searches keep the other core.
/// Returns once `stopping` is set, after the build in progress (if any) has given up.
fn optimize_forever(node: &Coordinator, threshold: usize, stopping: &AtomicBool) {
    let mut backoff: HashMap<(String, u32), (Duration, Instant)> = HashMap::new();
    while !stopping.load(Ordering::Acquire) {
        std::thread::sleep(OPTIMIZER_INTERVAL);
        node.catalog.store().maintain();
        for collection in node.catalog.all() {
            for (shard_id, shard) in collection.local_shards() {
                if stopping.load(Ordering::Acquire) {
                    return;
                }
                let key = (collection.name.clone(), shard_id);
                if backoff
                    .get(&key)
                    .is_some_and(|(_, until)| Instant::now() < *until)
                {
                    continue;
                }
                // A build must not eat into the disk reserve the writes keep free.
                if let Err(e) = node.catalog.store().has_room(build_bytes(&shard)) {
                    let (points, indexed, _) = shard.stats();
                    if points.saturating_sub(indexed) >= threshold.max(1) {
                        let wait = next_backoff(&backoff, &key);
                        tracing::warn!(collection = %collection.name, shard = shard_id, error = %e, retry_in_secs = wait.as_secs_f64(), "index build postponed");
                        backoff.insert(key, (wait, Instant::now() + wait));
                        continue;
                    }
                }
                // A build that panics is a failed build: the thread goes on with the others.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    shard.optimize_cancellable(threshold, stopping)
                }));
                let failure = match result {
                    Ok(Ok(Some(report))) => {
                        metrics::histogram!("shoal_index_build_seconds").record(report.seconds);
                        None
                    }
                    Ok(Ok(None)) => None,
                    Ok(Err(e)) if e.is::<BuildCancelled>() => {
                        tracing::info!(collection = %collection.name, shard = shard_id, "index build cancelled: the node is stopping; it starts again after the restart");
                        return;
                    }
                    Ok(Err(e)) => Some(format!("{e:#}")),
                    Err(panic) => Some(format!(
                        "the build panicked: {}",
                        crate::error::panic_text(panic.as_ref())
                    )),
                };
                match failure {
                    None => {
                        backoff.remove(&key);
                    }
                    Some(error) => {
                        let wait = next_backoff(&backoff, &key);
                        tracing::error!(collection = %collection.name, shard = shard_id, %error, retry_in_secs = wait.as_secs_f64(), "segment build failed");
                        backoff.insert(key, (wait, Instant::now() + wait));
                    }
                }
            }
        }
    }
}

/// SIGTERM (Kubernetes' stop) or Ctrl-C. The handlers are installed when this is made, not when
/// it is first awaited: the serve loop first polls its stop future after its first accept, and
/// a SIGTERM that came before the handler existed killed the process outright (seen in tests
/// that stop a node right after it answered `/readyz`).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    #[cfg(unix)]
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: std::io::Result<tokio::signal::unix::Signal>,
                        name: &'static str| async move {
                match signal {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for {name}");
                        std::future::pending::<()>().await
                    }
                }
            };
            tokio::select! {
                _ = wait(term, "SIGTERM") => {},
                _ = wait(interrupt, "SIGINT") => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested: draining requests");
    }
}

/// `shoal handoff`: asks the node in this pod (on its peer port) to hand off if it is leaving.
/// A single node has no peers to hand anything to and no peer port: without `--service` the
/// hand-off is a no-op that says so (when no token is given, or the port is closed).
pub async fn handoff(config: Config) -> anyhow::Result<()> {
    use crate::cluster::protocol::{self, HandoffReport, PROTOCOL_HEADER, PROTOCOL_VERSION};
    let single = config.service.is_none();
    let nothing_to_do = || {
        tracing::info!("single-node mode (no --service): nothing to hand off");
        Ok(())
    };
    if single && config.cluster_token.is_none() {
        return nothing_to_do();
    }
    let token = PeerToken::new(
        config.cluster_token.as_deref(),
        config.cluster_token_accept.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let mut addr = config.peer_addr();
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let sent = reqwest::Client::new()
        .post(format!("http://{addr}/peer/v1/handoff"))
        .header(protocol::TOKEN_HEADER, token.sent())
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
        .timeout(Duration::from_secs(24 * 3600))
        .send()
        .await;
    let resp = match sent {
        Err(e) if single && e.is_connect() => return nothing_to_do(),
        other => other.with_context(|| format!("cannot reach the node on {addr}"))?,
    };
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
