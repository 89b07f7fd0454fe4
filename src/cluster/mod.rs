//! Everything a node knows about the cluster it belongs to. For now: where a point lives
//! ([`placement`]). Identity, discovery and peer traffic build on it.

pub mod placement;
