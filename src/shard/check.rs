//! Checking a filter on one stored point, reading only the payload keys the filter names.
//!
//! A filtered search checks the filter on the points it visits, not on the whole shard, so one
//! check must be cheap. A stored payload is JSON text (a segment's `payload.data`, a tail entry's
//! text); parsing all of it into a map costs an allocation per key and value, and RAG payloads
//! carry the document text itself. [`FilterCheck`] parses the top level of the object and builds
//! values only for the keys the filter reads; every other value is skipped without allocating.
//! The filter then runs on that partial payload, which gives the same answer because a condition
//! never looks outside its own key.

use super::filter::Filter;
use super::point::{read_held_payload, Payload, PointId};
use super::state::Found;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// A filter ready to be checked on stored payloads.
pub struct FilterCheck<'a> {
    pub filter: &'a Filter,
    /// Top-level payload keys the filter reads, sorted.
    keys: Vec<String>,
}

impl<'a> FilterCheck<'a> {
    pub fn new(filter: &'a Filter) -> Self {
        let mut keys = Vec::new();
        filter.top_level_keys(&mut keys);
        keys.sort();
        keys.dedup();
        FilterCheck { filter, keys }
    }

    /// Whether the point with this id and stored payload text passes.
    pub fn json(&self, id: &PointId, json: &[u8]) -> bool {
        self.filter.matches(id, &self.project(json))
    }

    /// Whether a live point passes.
    pub fn found(&self, id: &PointId, found: Found<'_>) -> bool {
        match found {
            Found::Table(e) => self.json(id, e.payload.as_bytes()),
            Found::Sealed(seg, i) => self.json(id, seg.payload_json(i)),
        }
    }

    /// The payload restricted to the keys the filter reads. Text that does not parse this way
    /// (damaged, or nested beyond serde_json's limit) goes through the full reader, which logs
    /// damage and reads deep payloads.
    fn project(&self, json: &[u8]) -> Payload {
        project(json, &self.keys)
    }
}

/// The payload text `json` restricted to the top-level `keys` (sorted).
pub fn project(json: &[u8], keys: &[String]) -> Payload {
    if keys.is_empty() {
        return Payload::new();
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    match (Projection { keys }).deserialize(&mut de) {
        Ok(p) if de.end().is_ok() => p,
        _ => read_held_payload(json),
    }
}

/// Reads a JSON object keeping only `keys`.
struct Projection<'k> {
    keys: &'k [String],
}

impl<'de> DeserializeSeed<'de> for Projection<'_> {
    type Value = Payload;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Payload, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Projection<'_> {
    type Value = Payload;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload, A::Error> {
        let mut out = Payload::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if self.keys.binary_search_by(|k| k.as_str().cmp(&key)).is_ok() {
                out.insert(key.into_owned(), map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(filter: Value, payload: Value) -> (bool, bool) {
        let f: Filter = serde_json::from_value(filter).expect("filter parses");
        let text = payload.to_string();
        let full = f.matches(&PointId::Num(1), payload.as_object().expect("object"));
        (
            FilterCheck::new(&f).json(&PointId::Num(1), text.as_bytes()),
            full,
        )
    }

    #[test]
    fn projection_gives_the_full_payloads_answer() {
        let p = json!({"doc": "a long text \"quoted\" {not json}", "city": "Lon\u{e9}don",
                       "tags": ["a", "b"], "shop": {"rating": [3, 5]}, "items": [{"k": "x"}],
                       "esc\"aped": 1, "nil": null, "a.b": 1, "a": {"b": 2}});
        let filters = [
            json!({"must": [{"key": "city", "match": {"value": "Lon\u{e9}don"}}]}),
            json!({"must": [{"key": "shop.rating", "range": {"gte": 5}}]}),
            json!({"must": [{"key": "items[].k", "match": {"value": "x"}}]}),
            json!({"must": [{"nested": {"key": "items", "filter": {"must": [{"key": "k", "match": {"value": "x"}}]}}}]}),
            json!({"must_not": [{"is_empty": {"key": "tags"}}], "should": [{"is_null": {"key": "nil"}}]}),
            json!({"must": [{"is_empty": {"key": "missing"}}]}),
            json!({"must": [{"key": "\"a.b\"", "match": {"value": 1}}]}),
            json!({"must": [{"key": "a.b", "match": {"value": 2}}]}),
            json!({"must": [{"key": "\"a.b\"", "match": {"value": 2}}]}),
            json!({"must": [{"has_id": [1]}]}),
            json!({"must": [{"has_id": [2]}]}),
            json!({"min_should": {"conditions": [{"key": "tags", "match": {"value": "a"}},
                   {"key": "city", "match": {"text": "don"}}], "min_count": 2}}),
        ];
        for f in filters {
            let (projected, full) = check(f.clone(), p.clone());
            assert_eq!(projected, full, "{f}");
        }
        // A quoted key is one top-level key: the projection keeps `a.b`, not `a`.
        let quoted = json!({"must": [{"key": "\"a.b\"", "match": {"value": 1}}]});
        assert_eq!(check(quoted, p.clone()), (true, true));
        let nested = json!({"must": [{"key": "a.b", "match": {"value": 2}}]});
        assert_eq!(check(nested, p), (true, true));
    }

    #[test]
    fn unreadable_text_checks_as_an_empty_payload() {
        let f: Filter =
            serde_json::from_value(json!({"must": [{"is_empty": {"key": "a"}}]})).expect("parses");
        assert!(FilterCheck::new(&f).json(&PointId::Num(1), b"{\"a\": [1"));
    }
}
