//! Command line and environment (PRODUCT.md §1). Every flag has an environment variable, so the
//! StatefulSet can configure a node from a ConfigMap and the downward API.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A duration flag in seconds: `None` when 0 (or not a number), meaning no limit.
pub fn seconds(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)))
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "shoal",
    version,
    about = "A Qdrant-compatible vector search node, one per StatefulSet pod"
)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Where everything durable lives (the PVC mount in Kubernetes).
    #[arg(long, env = "SHOAL_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Public REST API address (Qdrant-compatible).
    #[arg(long, env = "SHOAL_LISTEN", default_value = "0.0.0.0:6333")]
    pub listen: SocketAddr,

    /// Node-to-node address [default: the --listen IP, port 6335].
    #[arg(long, env = "SHOAL_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,

    /// This pod's name, `<statefulset>-<ordinal>` [default: the OS hostname].
    #[arg(long, env = "SHOAL_HOSTNAME")]
    pub hostname: Option<String>,

    /// Headless Service FQDN, e.g. shoal-headless.default.svc.cluster.local [default: single-node mode].
    #[arg(long, env = "SHOAL_SERVICE")]
    pub service: Option<String>,

    /// Replica count when it cannot be read from Kubernetes.
    #[arg(long, env = "SHOAL_CLUSTER_SIZE")]
    pub cluster_size: Option<u32>,

    /// Namespace of this pod's StatefulSet (for the Kubernetes API).
    #[arg(long, env = "SHOAL_NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// Kubernetes API server to read `spec.replicas` from [default: https://kubernetes.default.svc
    /// when a service account is mounted].
    #[arg(long, env = "SHOAL_KUBE_API")]
    pub kube_api: Option<String>,

    /// A DNS server (IP:PORT) to ask instead of the system resolver (tests).
    #[arg(long, env = "SHOAL_DNS_SERVER")]
    pub dns_server: Option<SocketAddr>,

    /// Require this key on the public API (`api-key` header or `Authorization: Bearer`).
    #[arg(long, env = "SHOAL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Shared secret every node of a cluster sends and requires on the peer port (from a
    /// Kubernetes Secret; at least 16 characters, e.g. `openssl rand -hex 32`). Required with
    /// --service; a single node opens no peer port.
    #[arg(long, env = "SHOAL_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,

    /// One more token the peer port accepts (but does not send), to rotate the cluster token
    /// without downtime (see deploy/README.md).
    #[arg(long, env = "SHOAL_CLUSTER_TOKEN_ACCEPT", hide_env_values = true)]
    pub cluster_token_accept: Option<String>,

    /// A key that may only read.
    #[arg(long, env = "SHOAL_READ_ONLY_API_KEY", hide_env_values = true)]
    pub read_only_api_key: Option<String>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "SHOAL_MAX_REQUEST_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_request_bytes: usize,

    /// Largest snapshot file a recovery accepts, uploaded or downloaded from a URL, in bytes
    /// (beyond it an upload is refused with a 413, a download from a URL with a 400).
    #[arg(long, env = "SHOAL_MAX_SNAPSHOT_BYTES", default_value_t = 64 * 1024 * 1024 * 1024)]
    pub max_snapshot_bytes: u64,

    /// Threads serving requests and searches (default: the CPUs this process may use, which
    /// follows the container's CPU limit). Index builds run on their own threads.
    #[arg(long, env = "SHOAL_WORKERS", value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: Option<u32>,

    /// Requests served at once on the public API (probes and /metrics excepted); more get a 503.
    #[arg(long, env = "SHOAL_MAX_CONCURRENT_REQUESTS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,

    /// Seconds a public API request may take before it is answered with a 504 (fractions allowed;
    /// 0 disables). A search that overruns stops; a write that times out may still be applied.
    #[arg(long, env = "SHOAL_REQUEST_TIMEOUT_SECS", default_value_t = 60.0)]
    pub request_timeout_secs: f64,

    /// Seconds a client may take to send a request's headers (and that an idle keep-alive
    /// connection stays open); slower connections are closed (0 disables).
    #[arg(long, env = "SHOAL_HEADER_READ_TIMEOUT_SECS", default_value_t = 10.0)]
    pub header_read_timeout_secs: f64,

    /// Seconds a client may take to send a request's body once its handler reads it; slower
    /// bodies get a 408 and the connection is closed (0 disables).
    #[arg(long, env = "SHOAL_BODY_READ_TIMEOUT_SECS", default_value_t = 30.0)]
    pub body_read_timeout_secs: f64,

    /// Connections one client (source IP) may hold open on the public port; further ones get a
    /// 503 and are closed (0: no limit). Behind a proxy every client shares its IP: raise it.
    #[arg(long, env = "SHOAL_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    pub max_connections_per_client: u32,

    /// Requests one client (source IP) may have in flight; more get a 503 at once, so that one
    /// client never takes every slot of --max-concurrent-requests [default: half of it; 0: no
    /// limit].
    #[arg(long, env = "SHOAL_MAX_REQUESTS_PER_CLIENT")]
    pub max_requests_per_client: Option<u32>,

    /// Memory one read request may hold (its hits, vectors and payloads, estimated before it
    /// runs); larger requests get a 400 (0: no limit).
    #[arg(long, env = "SHOAL_REQUEST_MEMORY_BUDGET_BYTES", default_value_t = 64 << 20)]
    pub request_memory_budget_bytes: u64,

    /// Memory all read requests in flight may hold together; a request that would go over gets
    /// a 503 at once (0: no limit).
    #[arg(long, env = "SHOAL_NODE_MEMORY_BUDGET_BYTES", default_value_t = 256 << 20)]
    pub node_memory_budget_bytes: u64,

    /// Bytes kept free on the data volume: a write that would leave less gets a 503 (reads go
    /// on; writes resume once space is freed), and index builds wait. A ballast file of a quarter
    /// of it (1-16 MiB) lets the node open on a full volume (0: no reserve, no ballast).
    #[arg(long, env = "SHOAL_DISK_RESERVE_BYTES", default_value_t = 64 << 20)]
    pub disk_reserve_bytes: u64,

    /// Points one upsert request may carry; larger batches get a 400.
    #[arg(long, env = "SHOAL_MAX_BATCH_POINTS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batch_points: u64,

    /// Unindexed points a shard holds before they are built into an HNSW segment (once writes
    /// stop for a few seconds, a tail of 256 or more points, or 1 MiB of vectors and payloads,
    /// is built anyway); 0 disables indexing.
    #[arg(long, env = "SHOAL_INDEXING_THRESHOLD", default_value_t = 20_000)]
    pub indexing_threshold: usize,

    /// sled's page cache in MiB [default: a 128th of the memory limit (the cgroup's, else the
    /// machine's), between 4 and 256: 8 in a 1 GiB pod].
    #[arg(long, env = "SHOAL_SLED_CACHE_MB", value_parser = clap::value_parser!(u64).range(1..))]
    pub sled_cache_mb: Option<u64>,

    /// Reopen the record store (sled) once about this many MiB were written since it opened and
    /// writes have been quiet for 3 s, or whatever the writes once twice as much was: sled
    /// writes a snapshot only when it opens, so this bounds the log a restart replays. 0: never.
    #[arg(long, env = "SHOAL_SLED_REOPEN_AFTER_MB", default_value_t = 64)]
    pub sled_reopen_after_mb: u64,

    /// `shard_number` of new collections that do not set one [default: 1 on a single node].
    #[arg(long, env = "SHOAL_DEFAULT_SHARD_NUMBER")]
    pub default_shard_number: Option<u32>,

    /// `replication_factor` of new collections that do not set one.
    #[arg(long, env = "SHOAL_DEFAULT_REPLICATION_FACTOR", default_value_t = 1)]
    pub default_replication_factor: u32,

    /// Log format: `text` or `json`.
    #[arg(long, env = "SHOAL_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Scale-down hand-off, for the pod's preStop hook: asks the node running in this pod to push
    /// every shard replica it holds to its new owners if its ordinal is beyond the StatefulSet's
    /// `spec.replicas`; returns at once when the pod is only restarting.
    Handoff {
        /// Wait until the hand-off has finished (the hook's default behaviour).
        #[arg(long)]
        wait: bool,
    },
}

impl Config {
    /// sled's cache capacity in bytes.
    pub fn sled_cache_bytes(&self) -> u64 {
        self.sled_cache_mb
            .map(|mb| mb << 20)
            .unwrap_or_else(crate::memory::default_sled_cache_bytes)
    }

    /// Where to reach the Kubernetes API, if anywhere.
    pub fn kube_api_url(&self) -> Option<String> {
        self.kube_api.clone().or_else(|| {
            std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token")
                .exists()
                .then(|| "https://kubernetes.default.svc".to_string())
        })
    }

    /// The peer address: `--peer-listen`, or the public IP on port 6335.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_listen
            .unwrap_or_else(|| SocketAddr::new(self.listen.ip(), 6335))
    }
}
