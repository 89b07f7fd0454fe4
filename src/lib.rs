//! shoal: a Qdrant-compatible vector search node built to run as a Kubernetes StatefulSet.
//!
//! The modules follow a request's path: [`api`] (HTTP, Qdrant's JSON) → [`collection`] (routing
//! points to shards) → [`cluster`] (who owns what) → [`shard`] (durable records, segments, search)
//! → [`index`] (HNSW graphs and distance kernels).

pub mod api;
pub mod cluster;
pub mod collection;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod index;
pub mod logging;
pub mod memory;
pub mod node;
pub mod secret;
pub mod server;
pub mod shard;
pub mod store;
