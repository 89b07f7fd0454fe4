//! The service layer: the operations of shoal's API, whatever transport carries them.
//!
//! [`Database`] is the one type a transport talks to. Its methods are the API's operations —
//! collections ([`collections`]), points and payloads ([`points`]), searches and queries
//! ([`queries`]), cluster information ([`cluster`]), snapshots ([`snapshots`]) — and each takes a typed request
//! ([`models`], shaped like Qdrant's) and returns a typed result or one typed [`Error`]. The
//! REST API ([`crate::api`]) is a thin adapter over these methods, and a gRPC API would be
//! another: Qdrant's `Collections` and `Points` services map onto the same methods one to one.
//!
//! Everything a request is checked against lives here, in [`validate`] (shapes, bounds, what
//! shoal does not support) and [`budget`] (the memory a read may hold), so that every transport
//! gets the same checks; the collection and shard layers below check what their peers send them
//! as well (vector dimension and norm, payload depth, key paths).
//!
//! Following a search: [`Database::search`] validates it and reserves its memory, then
//! [`Coordinator::search`](crate::cluster::coordinator::Coordinator::search) sends it to one
//! replica of every shard through the [`Replica`](crate::cluster::replica::Replica) seam, where
//! [`LocalReplica`](crate::cluster::local::LocalReplica) runs
//! [`Shard::search`](crate::shard::Shard::search), which walks each segment's HNSW graph
//! ([`crate::index::Segment::search`]). An upsert takes the same way down to
//! [`Shard::commit`](crate::shard::Shard::commit).

pub mod batch;
pub mod budget;
pub mod cluster;
pub mod collections;
pub mod groups;
pub mod indexes;
pub mod models;
pub mod points;
pub mod queries;
pub mod snapshots;
pub mod validate;
mod vector_de;

use crate::cluster::coordinator::Coordinator;
use crate::collection::Collection;
use crate::config::Config;
pub use crate::error::{Error, Result};
use crate::shard::deadline::{CancelOnDrop, Deadline};
use budget::MemoryBudget;
use std::sync::Arc;

/// The Qdrant version whose API shoal answers like: clients check it.
pub const QDRANT_COMPAT_VERSION: &str = "1.20.0";

/// The database as every transport sees it: the API's operations, on this node's collections
/// and, through the coordinator, on the whole cluster's.
pub struct Database {
    coordinator: Arc<Coordinator>,
    config: Config,
    memory: Arc<MemoryBudget>,
}

impl Database {
    pub fn new(coordinator: Arc<Coordinator>, config: Config) -> Database {
        let memory = MemoryBudget::new(
            config.request_memory_budget_bytes,
            config.node_memory_budget_bytes,
        );
        let db = Database {
            coordinator,
            config,
            memory: Arc::new(memory),
        };
        db.clear_snapshot_scratch();
        db
    }

    /// The node's configuration (transports read their own settings from it).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The coordinator below: collections, peers and replicas.
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    /// Whether every local shard is open (readiness).
    pub fn is_ready(&self) -> bool {
        self.coordinator.is_ready()
    }

    /// The collection a request names, directly or by an alias: resolved here, once per request.
    fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        self.coordinator.catalog.resolve(name)
    }

    /// When a read must stop: `--request-timeout-secs` from now, or as soon as the request is
    /// dropped (its transport timed it out, or the client went away), whichever comes first.
    /// A read of `answers` answers with payloads of `c` is also bounded in the payloads it
    /// may hold ([`MemoryBudget::payload_limit`]). Keep the guard for as long as the read runs.
    fn read_deadline(&self, payloads: Option<(&Collection, usize)>) -> (Deadline, CancelOnDrop) {
        let dropped = CancelOnDrop::default();
        let timeout = crate::config::seconds(self.config.request_timeout_secs);
        let limit = payloads
            .and_then(|(c, answers)| (self.memory).payload_limit(c.config.shard_number, answers));
        let deadline =
            (Deadline::after(timeout).or_cancelled(dropped.flag())).with_payload_limit(limit);
        (deadline, dropped)
    }
}
