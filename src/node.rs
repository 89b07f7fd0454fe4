//! The node: everything one `shoal` process holds, shared by the public API, the peer API and
//! the background tasks.

use crate::api::service::Metrics;
use crate::cluster::Cluster;
use crate::collection::catalog::Catalog;
use crate::config::Config;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Node {
    pub config: Config,
    pub catalog: Catalog,
    pub cluster: Cluster,
    /// Set once every local shard is open; `/readyz` reports it.
    pub ready: AtomicBool,
    pub metrics: Metrics,
}

impl Node {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
