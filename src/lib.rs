//! shoal: a Qdrant-compatible vector search node built to run as a Kubernetes StatefulSet.
//!
//! The modules follow a request's path, each layer using only the ones below it:
//! [`api`] (HTTP and Qdrant's JSON: a thin adapter) → [`service`] (the API's operations,
//! validated, whatever the transport) → [`cluster`] (the coordinator: which replicas, local or
//! on peers, serve a request) → [`collection`] and [`shard`] (collections, durable records,
//! segments, search) → [`index`] (HNSW graphs and distance kernels).
//!
//! Beside them: [`server`] starts and stops a node and wires the layers together; [`config`],
//! [`error`], [`codec`], [`store`], [`fsutil`], [`secret`] and [`logging`] serve every layer.

pub mod api;
pub mod cluster;
pub mod codec;
pub mod collection;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod index;
pub mod listener;
pub mod logging;
pub mod memory;
pub mod secret;
pub mod server;
pub mod service;
pub mod shard;
pub mod store;
