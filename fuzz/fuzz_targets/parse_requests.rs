//! Arbitrary bytes into every JSON request body the public API parses, and into the filter
//! language; a filter that parses is also evaluated against a few payloads. Nothing may panic:
//! parse errors are fine (they become 400s), panics are bugs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use shoal::service::models::*;
use shoal::shard::filter::Filter;
use shoal::shard::point::{Payload, PointId};

fn parse<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
    serde_json::from_slice::<T>(data).ok()
}

fn payloads() -> Vec<Payload> {
    let samples = [
        json!({}),
        json!({"a": 1, "b": "x", "c": [1, 2.5, "y", null], "d": {"e": [{"f": true}]}}),
        json!({"a": null, "b": [], "c": {"d": {"e": -3}}, "tags": ["x", "y"]}),
    ];
    samples.into_iter().filter_map(|v| match v {
        Value::Object(m) => Some(m),
        _ => None,
    }).collect()
}

fuzz_target!(|data: &[u8]| {
    let _ = parse::<CreateCollection>(data);
    let _ = parse::<UpsertPoints>(data);
    let _ = parse::<PointsSelector>(data);
    let _ = parse::<SetPayload>(data);
    let _ = parse::<DeletePayload>(data);
    let _ = parse::<RetrievePoints>(data);
    let _ = parse::<ScrollPoints>(data);
    let _ = parse::<CountPoints>(data);
    let _ = parse::<QueryBatch>(data);
    let _ = parse::<SearchBatch>(data);
    let _ = parse::<Option<SearchPoints>>(data);
    let _ = parse::<PointId>(data);
    if let Some(q) = parse::<QueryPoints>(data) {
        let _ = format!("{q:?}");
    }
    if let Some(filter) = parse::<Filter>(data) {
        for p in payloads() {
            let _ = filter.matches(&PointId::Num(7), &p);
        }
        // What a filter serializes to must parse again.
        if let Ok(text) = serde_json::to_vec(&filter) {
            let again: Result<Filter, _> = serde_json::from_slice(&text);
            assert!(again.is_ok(), "a serialized filter does not parse again: {}", String::from_utf8_lossy(&text));
        }
    }
});
