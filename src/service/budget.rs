//! Memory a read request may hold, estimated before it runs and enforced twice: one request may
//! hold at most `--request-memory-budget-bytes` (a 400 that says what to lower), and all requests
//! in flight together at most `--node-memory-budget-bytes` (a 503: retry later). Both answers
//! come before any of the memory is spent; the memory stays reserved until the answer is
//! written ([`Reserved`]).
//!
//! What a search holds grows with the hits it returns: every shard's `limit + offset` best hits
//! (with their vectors and payloads when asked for), merged, converted and written as JSON. A
//! hit costs [`HIT_BYTES`] for its structures and answer text, plus [`VECTOR_FLOAT_BYTES`] per
//! float when vectors are returned (two copies as `f32` and up to ~16 bytes of JSON text), plus
//! [`PAYLOAD_BYTES`] when payloads are (a payload's size is not known before reading it; this
//! is a generous typical one: the copy made for the answer and its JSON). The beam of the
//! search adds ~32 bytes per `ef`. Measured: `limit` 10 000 with vectors on 256-d points held
//! ~62 MB per search; the estimate gives 64 MB. A batch holds the sum of its searches, because
//! every answer is kept until the response is written. Scroll and retrieve are estimated the
//! same way per point returned.
//!
//! The defaults suit a 1 GiB pod: 64 MiB per request (one such 10 000-hit search passes, a batch
//! of twenty does not), 256 MiB for everything in flight.
//!
//! Payloads are estimated at [`PAYLOAD_BYTES`] before the read, and bounded during it: each
//! shard refuses to answer more stored payload than its share of the request's budget
//! ([`MemoryBudget::payload_limit`]), looking at the payloads' stored sizes before reading any,
//! so that 200 points of 1 MB each are a 400, not 1 GB of answer.

use crate::collection::{Collection, SearchRequest};
use crate::error::{Error, Result};
use serde::{Serialize, Serializer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Structures and JSON text of one hit or point, without its vector and payload.
pub const HIT_BYTES: usize = 200;
/// One returned vector element: an `f32` in the point read and in the answer, and its text.
pub const VECTOR_FLOAT_BYTES: usize = 24;
/// One returned payload (see the module doc).
pub const PAYLOAD_BYTES: usize = 512;
/// One candidate of a search's beam.
const BEAM_BYTES: usize = 32;
/// What a payload read for an answer holds, in multiples of its stored size: the parsed value
/// (its strings, maps and vectors) and its text in the answer, with room for the small values
/// whose parsed form outweighs their text.
const PAYLOAD_COPIES: usize = 4;

/// The two budgets and what requests in flight hold of the node's.
#[derive(Debug)]
pub struct MemoryBudget {
    per_request: usize,
    node: usize,
    held: AtomicUsize,
}

/// Memory granted to one request; dropping it returns the memory to the node's budget.
#[derive(Debug)]
pub struct Grant {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A result and the memory reserved for it, released when the result is dropped (once the
/// transport has written its answer). Serializes as the result itself.
#[derive(Debug)]
pub struct Reserved<T> {
    pub value: T,
    _grant: Grant,
}

impl<T> std::ops::Deref for Reserved<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Serialize> Serialize for Reserved<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

fn mb(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn limit(bytes: u64) -> usize {
    match bytes {
        0 => usize::MAX,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

impl MemoryBudget {
    /// Budgets in bytes; 0 means no limit.
    pub fn new(per_request: u64, node: u64) -> MemoryBudget {
        MemoryBudget {
            per_request: limit(per_request),
            node: limit(node),
            held: AtomicUsize::new(0),
        }
    }

    /// The most one request may hold.
    pub fn per_request(&self) -> usize {
        self.per_request.min(self.node)
    }

    /// Grants `bytes` to a request, or refuses it: a 400 when it is over what any one request
    /// may hold, a 503 when the requests in flight hold too much of the node's budget now.
    pub fn reserve(self: &Arc<Self>, bytes: usize, what: &str) -> Result<Grant> {
        self.reserve_more(bytes, bytes, what)
    }

    /// Grants `bytes` more to a request that will hold `total` with them.
    fn reserve_more(self: &Arc<Self>, total: usize, bytes: usize, what: &str) -> Result<Grant> {
        let cap = self.per_request();
        if total > cap {
            metrics::counter!("shoal_http_rejected_total", "reason" => "request_memory")
                .increment(1);
            let flag = if self.per_request <= self.node {
                "--request-memory-budget-bytes"
            } else {
                "--node-memory-budget-bytes"
            };
            return Err(Error::BadRequest(format!(
                "{what} would hold about {} in memory; one request may hold at most {} ({flag}): lower limit or offset, leave out vectors or payloads, or split the batch",
                mb(total),
                mb(cap)
            )));
        }
        let before = self.held.fetch_add(bytes, Ordering::AcqRel);
        let grant = Grant {
            budget: Arc::clone(self),
            bytes,
        };
        if before.saturating_add(bytes) > self.node {
            metrics::counter!("shoal_http_rejected_total", "reason" => "node_memory").increment(1);
            return Err(Error::Unavailable(format!(
                "requests in flight already hold about {} of the {} this node allows them (--node-memory-budget-bytes); retry later",
                mb(before),
                mb(self.node)
            )));
        }
        Ok(grant)
    }
}

impl MemoryBudget {
    /// The most stored payload bytes one shard's answer may carry in a read of `answers`
    /// answers from `shards` shards each, so that their payloads together stay within what one
    /// request may hold (`None` without a per-request budget). Payloads' sizes are not known
    /// before the read: this bound is checked on their stored sizes as the shards read them.
    pub fn payload_limit(&self, shards: u32, answers: usize) -> Option<usize> {
        if self.per_request == usize::MAX {
            return None;
        }
        let parts = PAYLOAD_COPIES
            .saturating_mul(shards.max(1) as usize)
            .saturating_mul(answers.max(1));
        Some(self.per_request / parts)
    }
}

impl Grant {
    /// Grows the grant by `bytes` a read turned out to hold (a facet's distinct values, known
    /// only once the shards answered), refused as [`MemoryBudget::reserve`] refuses; a refused
    /// grant keeps what it had.
    pub fn grow(&mut self, bytes: usize, what: &str) -> Result<()> {
        let total = self.bytes.saturating_add(bytes);
        let mut more = self.budget.reserve_more(total, bytes, what)?;
        self.bytes += std::mem::take(&mut more.bytes);
        Ok(())
    }

    /// The result this memory was reserved for, holding the reservation until it is dropped.
    pub fn hold<T>(self, value: T) -> Reserved<T> {
        Reserved {
            value,
            _grant: self,
        }
    }
}

/// What returning `count` points of `dim` floats costs, with vectors and payloads as asked.
pub fn points_bytes(count: usize, dim: usize, with_vector: bool, with_payload: bool) -> usize {
    let per_point = HIT_BYTES
        + if with_vector {
            dim.saturating_mul(VECTOR_FLOAT_BYTES)
        } else {
            0
        }
        + if with_payload { PAYLOAD_BYTES } else { 0 };
    count.saturating_mul(per_point)
}

/// What one search holds at its peak (see the module doc).
pub fn search_bytes(c: &Collection, req: &SearchRequest) -> usize {
    let k = req.offset.saturating_add(req.limit);
    let ef = req.hnsw_ef.unwrap_or(c.config.hnsw.ef_construct).max(k);
    let shards = c.config.shard_number.max(1) as usize;
    let hits = points_bytes(
        k.saturating_mul(shards),
        c.config.size,
        req.with_vector,
        req.with_payload,
    );
    hits.saturating_add(ef.saturating_mul(BEAM_BYTES))
        .saturating_add(c.config.size * 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_add_up_and_are_returned() {
        let b = Arc::new(MemoryBudget::new(100, 150));
        let first = b.reserve(100, "a").unwrap();
        assert!(matches!(b.reserve(101, "b"), Err(Error::BadRequest(_))));
        assert!(matches!(b.reserve(60, "c"), Err(Error::Unavailable(_))));
        let second = b.reserve(50, "d").unwrap().hold(vec![1u8]);
        assert_eq!(serde_json::to_string(&second).unwrap(), "[1]");
        drop((first, second));
        assert_eq!(b.held.load(Ordering::Acquire), 0);
        let mut growing = b.reserve(40, "f").unwrap();
        growing.grow(60, "f").unwrap();
        assert!(
            matches!(growing.grow(1, "f"), Err(Error::BadRequest(_))),
            "over the request's cap"
        );
        assert_eq!(
            b.held.load(Ordering::Acquire),
            100,
            "a refused growth keeps what it had"
        );
        drop(growing);
        assert_eq!(b.held.load(Ordering::Acquire), 0);
        let unlimited = Arc::new(MemoryBudget::new(0, 0));
        assert!(unlimited.reserve(usize::MAX / 2, "e").is_ok());
    }

    #[test]
    fn payloads_share_the_request_budget() {
        let b = MemoryBudget::new(64 << 20, 256 << 20);
        assert_eq!(b.payload_limit(1, 1), Some(16 << 20));
        assert_eq!(b.payload_limit(4, 2), Some(2 << 20));
        assert_eq!(b.payload_limit(0, 0), Some(16 << 20));
        assert_eq!(MemoryBudget::new(0, 0).payload_limit(3, 1), None);
    }

    #[test]
    fn the_issues_search_is_estimated_near_what_it_held() {
        // limit 10 000 with vectors on 256-d points: ~62 MB measured.
        let bytes = points_bytes(10_000, 256, true, false);
        assert!((55_000_000..70_000_000).contains(&bytes), "{bytes}");
    }
}
