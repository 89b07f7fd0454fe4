//! Hand-written code that stands where a crate would do the same job, kept only because it makes
//! the HTTP request path measurably faster end to end (the rule: at least 3 %), each piece pinned
//! by tests to the crate's behaviour. Measured on a search of 128 floats answered with ten hits
//! (`scripts/bench-callgrind-ab`, instructions the node spends per request, ~310 000 in all;
//! `scripts/bench-http-ab` for queries per second; figures in `docs/benchmarks.md`):
//!
//! - [`search_body`] (with [`json_number`]): reads search and query bodies, the vector's numbers
//!   itself, every other value and every body it does not recognise through serde_json.
//!   ~15 600 instructions a request against serde_json's ~45 500 (-30 000, ~11 % of the
//!   request).
//!   Tests: `agreement` (generated numbers and bodies, valid, truncated and mutated: the reader
//!   answers exactly what serde_json answers, or leaves the body to it).
//! - [`hits`]: writes the hits of the search routes, keys and punctuation as constant bytes and
//!   values through serde_json. ~8 000 instructions a request against serde's derived
//!   `Serialize` ~19 000 (-11 000, ~3.5 %). Tests: byte for byte what serde_json writes.
//!
//! Together with the request metrics registered once ([`super::gate`]) they took a search
//! request from ~345 000 to ~312 000 instructions when they came back (the reader has become
//! cheaper since); the end-to-end figures are in `docs/benchmarks.md`.
//!
//! Two more pieces of the request path stand where their job is, on the crates' own extension
//! points rather than in their place: the text log line ([`crate::logging::text`], a
//! tracing-subscriber `FormatEvent` and `FormatFields` pinned byte for byte to its default
//! format; ~9 500 instructions a search request fewer, ~3 %), and the request id, span and
//! access line in one axum middleware ([`super::request_id::traced`], in place of three
//! tower-http layers; ~1 800 fewer).

pub mod hits;
pub mod json_number;
pub mod search_body;

#[cfg(test)]
mod agreement;
