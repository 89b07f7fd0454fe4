//! Deserializers for the request shapes that are "a list or an object": a vector or named vectors,
//! a query vector or a point id or `{"nearest": …}`.
//!
//! `#[serde(untagged)]` would parse these by first copying the whole value into serde's generic
//! `Content` tree (one allocation per number) and then trying each variant in turn. Vectors are
//! most of a search or upsert body, so that copy was the largest cost of parsing a query. Here
//! the first JSON token decides the variant and the numbers go straight into their `Vec<f32>`.

use super::models::{BatchVectors, NearestInput, QueryInput, SearchVector, VectorInput};
use crate::shard::point::PointId;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer, StrDeserializer};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// Visits an array as `S` or an object as `M`, then maps either into `R`.
struct SeqOrMap<S, M, R> {
    expecting: &'static str,
    seq: fn(S) -> R,
    map: fn(M) -> R,
    _types: PhantomData<(S, M)>,
}

impl<'de, S: Deserialize<'de>, M: Deserialize<'de>, R> Visitor<'de> for SeqOrMap<S, M, R> {
    type Value = R;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<R, A::Error> {
        S::deserialize(SeqAccessDeserializer::new(seq)).map(self.seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<R, A::Error> {
        M::deserialize(MapAccessDeserializer::new(map)).map(self.map)
    }
}

fn seq_or_map<'de, D, S, M, R>(
    d: D,
    expecting: &'static str,
    seq: fn(S) -> R,
    map: fn(M) -> R,
) -> Result<R, D::Error>
where
    D: Deserializer<'de>,
    S: Deserialize<'de>,
    M: Deserialize<'de>,
{
    d.deserialize_any(SeqOrMap {
        expecting,
        seq,
        map,
        _types: PhantomData,
    })
}

impl<'de> Deserialize<'de> for VectorInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        seq_or_map(
            d,
            "a vector (list of numbers) or an object of named vectors",
            VectorInput::Dense,
            VectorInput::Named,
        )
    }
}

impl<'de> Deserialize<'de> for BatchVectors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        seq_or_map(
            d,
            "a list of vectors or an object of named vector lists",
            BatchVectors::Dense,
            BatchVectors::Named,
        )
    }
}

/// The named form of the search API's `vector`.
#[derive(serde::Deserialize)]
struct NamedSearchVector {
    name: String,
    vector: Vec<f32>,
}

impl<'de> Deserialize<'de> for SearchVector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        seq_or_map(
            d,
            "a vector (list of numbers) or {\"name\": …, \"vector\": […]}",
            SearchVector::Dense,
            |n: NamedSearchVector| SearchVector::Named {
                name: n.name,
                vector: n.vector,
            },
        )
    }
}

/// A point id given where a vector could also be: numbers and strings.
fn point_id<E: de::Error>(v: Result<u64, &str>) -> Result<PointId, E> {
    match v {
        Ok(n) => Ok(PointId::Num(n)),
        Err(s) => PointId::deserialize(StrDeserializer::<E>::new(s)),
    }
}

struct NearestVisitor;

impl<'de> Visitor<'de> for NearestVisitor {
    type Value = NearestInput;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a vector, an object of named vectors, or a point id")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<NearestInput, A::Error> {
        Vec::deserialize(SeqAccessDeserializer::new(seq)).map(NearestInput::Vector)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NearestInput, A::Error> {
        BTreeMap::deserialize(MapAccessDeserializer::new(map)).map(NearestInput::Named)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NearestInput, E> {
        point_id(Ok(v)).map(NearestInput::Id)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NearestInput, E> {
        point_id(Err(v)).map(NearestInput::Id)
    }
}

impl<'de> Deserialize<'de> for NearestInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NearestVisitor)
    }
}

struct QueryVisitor;

impl<'de> Visitor<'de> for QueryVisitor {
    type Value = QueryInput;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a query: a vector, a point id, or an object such as {\"nearest\": …}")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<QueryInput, A::Error> {
        Vec::deserialize(SeqAccessDeserializer::new(seq)).map(QueryInput::Vector)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<QueryInput, E> {
        point_id(Ok(v)).map(QueryInput::Id)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<QueryInput, E> {
        point_id(Err(v)).map(QueryInput::Id)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<QueryInput, E> {
        Ok(QueryInput::Other(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<QueryInput, E> {
        Ok(QueryInput::Other(v.into()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<QueryInput, E> {
        Ok(QueryInput::Other(v.into()))
    }
    /// `{"nearest": …}` alone is a nearest query; any other key (a recommend, fusion or mmr
    /// query, say) is kept whole so the handler can name it in its refusal.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<QueryInput, A::Error> {
        let mut nearest = None;
        let mut others = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "nearest" && nearest.is_none() {
                nearest = Some(map.next_value::<NearestInput>()?);
            } else {
                others.insert(key, map.next_value::<Value>()?);
            }
        }
        match nearest {
            Some(nearest) if others.is_empty() => Ok(QueryInput::Nearest { nearest }),
            Some(_) => {
                others.insert("nearest".into(), Value::String("…".into()));
                Ok(QueryInput::Other(Value::Object(others)))
            }
            None => Ok(QueryInput::Other(Value::Object(others))),
        }
    }
}

impl<'de> Deserialize<'de> for QueryInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QueryVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(json: &str) -> QueryInput {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn query_shapes() {
        assert!(matches!(query("[1, 2.5]"), QueryInput::Vector(v) if v == [1.0, 2.5]));
        assert!(matches!(query("7"), QueryInput::Id(PointId::Num(7))));
        let uuid = "\"5c56c793-69f3-4fbf-87e6-c4bf54c28c26\"";
        assert!(matches!(query(uuid), QueryInput::Id(PointId::Uuid(_))));
        assert!(matches!(
            query(r#"{"nearest": [0.5]}"#),
            QueryInput::Nearest { nearest: NearestInput::Vector(v) } if v == [0.5]
        ));
        assert!(matches!(
            query(r#"{"nearest": {"": [0.5]}}"#),
            QueryInput::Nearest { nearest: NearestInput::Named(m) } if m[""] == [0.5]
        ));
        assert!(matches!(
            query(r#"{"nearest": 3}"#),
            QueryInput::Nearest {
                nearest: NearestInput::Id(PointId::Num(3))
            }
        ));
        assert!(
            matches!(query(r#"{"recommend": {}}"#), QueryInput::Other(v) if v.get("recommend").is_some())
        );
        assert!(matches!(
            query(r#"{"nearest": [1], "mmr": {}}"#),
            QueryInput::Other(v) if v.get("mmr").is_some()
        ));
        assert!(matches!(query("-1"), QueryInput::Other(_)));
        assert!(matches!(query("1.5"), QueryInput::Other(_)));
    }

    #[test]
    fn bad_shapes_are_errors() {
        for bad in ["\"not-a-uuid\"", "[1, \"x\"]", r#"{"nearest": "x"}"#] {
            assert!(serde_json::from_str::<QueryInput>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<VectorInput>("3").is_err());
        assert!(matches!(
            serde_json::from_str::<VectorInput>(r#"{"": [1]}"#).unwrap(),
            VectorInput::Named(_)
        ));
        assert!(matches!(
            serde_json::from_str::<BatchVectors>("[[1], [2]]").unwrap(),
            BatchVectors::Dense(v) if v.len() == 2
        ));
        assert!(matches!(
            serde_json::from_str::<SearchVector>(r#"{"name": "a", "vector": [1]}"#).unwrap(),
            SearchVector::Named { name, .. } if name == "a"
        ));
    }
}
