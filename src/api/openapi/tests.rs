//! The OpenAPI document against the real types: every schema a route refers to exists, the filter
//! language is described by its own types, and each hand-written schema accepts what the real
//! type reads and nothing it refuses.

use super::*;
use crate::service::models::{QueryInput, VectorsConfig};
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn document() -> Value {
    serde_json::from_slice(&render(&super::super::api().1)).expect("JSON")
}

fn schema_json<T: PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).expect("schema JSON")
}

/// Every `$ref` anywhere in a JSON value.
fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.insert(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_schema_referred_to_is_in_the_document() {
    let doc = document();
    let mut found = BTreeSet::new();
    refs(&doc, &mut found);
    assert!(found.len() > 20, "{found:?}");
    for r in found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .expect("a component");
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} is referred to but not described"
        );
    }
}

#[test]
fn the_filter_is_described_by_its_own_types() {
    use crate::shard::filter::{FieldCondition, Filter};
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    // Every key the real type writes (all of them set) is a property of its schema, and the
    // schema has no other: the schema is derived from the type.
    let field: FieldCondition = serde_json::from_value(json!({
        "key": "a", "match": {"value": 1}, "range": {"gt": 1.0}, "values_count": {"lt": 3},
        "geo_bounding_box": {}, "geo_radius": {}, "geo_polygon": {}, "is_empty": true, "is_null": false,
    }))
    .expect("a field condition");
    let written: BTreeSet<String> = serde_json::to_value(&field)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let described: BTreeSet<String> = schemas["FieldCondition"]["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    assert_eq!(written, described);
    let filter = schemas["Filter"]["properties"]
        .as_object()
        .expect("properties");
    let keys: BTreeSet<&str> = filter.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["must", "should", "must_not", "min_should"])
    );
    let parsed: Filter = serde_json::from_value(json!({"must": {"has_id": [1]}})).unwrap();
    assert!(parsed.pinned_ids().is_some());
}

#[test]
fn the_distance_schema_lists_exactly_the_metrics() {
    // A new metric fails to compile here until it is listed.
    let all = |m: Metric| match m {
        Metric::Cosine | Metric::Dot | Metric::Euclid | Metric::Manhattan => m,
    };
    let real: BTreeSet<String> = [
        Metric::Cosine,
        Metric::Dot,
        Metric::Euclid,
        Metric::Manhattan,
    ]
    .map(|m| {
        serde_json::to_value(all(m))
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    })
    .into_iter()
    .collect();
    let listed: BTreeSet<String> = schema_json::<Metric>()["enum"]
        .as_array()
        .expect("an enum")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(real, listed);
    for name in &listed {
        assert!(
            serde_json::from_value::<Metric>(json!(name)).is_ok(),
            "{name}"
        );
    }
    assert!(serde_json::from_value::<Metric>(json!("Cosinus")).is_err());
}

#[test]
fn the_point_id_schema_is_what_ids_parse_from() {
    let schema = schema_json::<PointId>();
    let kinds: Vec<&str> = schema["oneOf"]
        .as_array()
        .expect("oneOf")
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["integer", "string"]);
    assert_eq!(schema["oneOf"][0]["minimum"], 0);
    assert_eq!(schema["oneOf"][1]["format"], "uuid");
    for ok in [
        json!(0),
        json!(u64::MAX),
        json!("5c56c793-69f3-4fbf-87e6-c4bf54c28c26"),
    ] {
        assert!(
            serde_json::from_value::<PointId>(ok.clone()).is_ok(),
            "{ok}"
        );
    }
    for bad in [
        json!(-1),
        json!(1.5),
        json!("nope"),
        json!(null),
        json!([1]),
    ] {
        assert!(
            serde_json::from_value::<PointId>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn the_hand_written_request_schemas_describe_what_parses() {
    // VectorsConfig: one `VectorParams`, or names mapped to them.
    let schema = schema_json::<VectorsConfig>();
    let branches = schema["oneOf"].as_array().expect("oneOf");
    assert_eq!(branches[0]["$ref"], "#/components/schemas/VectorParams");
    assert_eq!(
        branches[1]["additionalProperties"]["$ref"],
        "#/components/schemas/VectorParams"
    );
    let single: VectorsConfig =
        serde_json::from_value(json!({"size": 4, "distance": "Dot"})).unwrap();
    assert!(matches!(single, VectorsConfig::Single(_)));
    let named: VectorsConfig =
        serde_json::from_value(json!({"image": {"size": 4, "distance": "Dot"}})).unwrap();
    assert!(matches!(named, VectorsConfig::Named(_)));

    // QueryInput: a vector, a point id, or `{"nearest": …}`; anything else is read (to be
    // refused with a clear message) but not described.
    let schema = schema_json::<QueryInput>();
    assert_eq!(schema["oneOf"].as_array().expect("oneOf").len(), 3);
    let read = |v: Value| serde_json::from_value::<QueryInput>(v).unwrap();
    assert!(matches!(read(json!([1.0, 2.0])), QueryInput::Vector(_)));
    assert!(matches!(read(json!(7)), QueryInput::Id(_)));
    assert!(matches!(
        read(json!({"nearest": [1.0]})),
        QueryInput::Nearest { .. }
    ));
    assert!(matches!(
        read(json!({"nearest": 7})),
        QueryInput::Nearest { .. }
    ));
    assert!(matches!(
        read(json!({"recommend": {}})),
        QueryInput::Other(_)
    ));
}
