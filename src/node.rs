//! The node: everything one `shoal` process holds, shared by the public API, the peer API and
//! the background tasks.

use crate::api::service::Metrics;
use crate::cluster::membership::SizeSource;
use crate::cluster::Cluster;
use crate::collection::catalog::Catalog;
use crate::config::Config;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct Node {
    pub config: Config,
    pub catalog: Catalog,
    pub cluster: Cluster,
    /// Set once every local shard is open; `/readyz` reports it.
    pub ready: AtomicBool,
    pub metrics: Metrics,
    /// Where the cluster size comes from, in cluster mode.
    pub size_source: Option<Arc<SizeSource>>,
    /// What read requests in flight may hold in memory.
    pub memory: crate::api::budget::MemoryBudget,
}

impl Node {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn size_source(&self) -> Option<Arc<SizeSource>> {
        self.size_source.clone()
    }
}
