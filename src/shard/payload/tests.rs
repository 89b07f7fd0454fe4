//! Key paths and payload operations: fixed cases from Qdrant's semantics, then properties over
//! a deterministic generator (seeded, so a failure replays): paths print and parse back, the
//! iterative set and delete agree with a plain recursive reading of the rules, the depth bound
//! holds, and nothing recurses over a long path.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

fn obj(v: Value) -> Payload {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn set(p: Value, key: Option<&str>, add: Value) -> Value {
    let mut p = obj(p);
    let op = PayloadOp::Set {
        payload: obj(add),
        key: key.map(str::to_string),
    };
    op.validate().unwrap();
    apply_payload_op(&mut p, &op);
    Value::Object(p)
}

fn delete(p: Value, keys: &[&str]) -> Value {
    let mut p = obj(p);
    let op = PayloadOp::DeleteKeys(keys.iter().map(|k| k.to_string()).collect());
    op.validate().unwrap();
    apply_payload_op(&mut p, &op);
    Value::Object(p)
}

#[test]
fn parses_qdrant_key_paths() {
    let p = KeyPath::parse("foo[1][50].bar-baz[].\"qux[.]quux\"").unwrap();
    assert_eq!(p.first, "foo");
    assert_eq!(
        p.rest,
        vec![
            PathItem::Index(1),
            PathItem::Index(50),
            PathItem::Key("bar-baz".into()),
            PathItem::Each,
            PathItem::Key("qux[.]quux".into()),
        ]
    );
    assert_eq!(
        KeyPath::parse("café.prix").unwrap().rest,
        vec![PathItem::Key("prix".into())]
    );
    assert_eq!(KeyPath::parse("\"\".\"a b\"").unwrap().first, "");
    for bad in [
        "", ".", "a.", "a..b", ".a", "a b", "a[", "a[x]", "a[-1]", "[0]", "a\"b\"", "\"a",
        "\"a\\b\"", "a]",
    ] {
        assert!(KeyPath::parse(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn sets_like_qdrant() {
    let base =
        json!({"a": {"b": [{"c": 1}, {"c": 2}, {"d": {"e": 3}}]}, "f": 3, "g": ["g0", "g1"]});
    assert_eq!(set(base.clone(), None, json!({"c": 5}))["c"], 5);
    assert_eq!(
        set(base.clone(), Some("a"), json!({"b": 5}))["a"],
        json!({"b": 5})
    );
    assert_eq!(
        set(base.clone(), Some("a.b[1]"), json!({"c": 5}))["a"]["b"][1],
        json!({"c": 5})
    );
    // Past the end of an array: nothing is set.
    assert_eq!(set(base.clone(), Some("a.b[7]"), json!({"c": 5})), base);
    // Every element.
    assert_eq!(
        set(base.clone(), Some("a.b[]"), json!({"z": 0}))["a"]["b"],
        json!([{"c": 1, "z": 0}, {"c": 2, "z": 0}, {"d": {"e": 3}, "z": 0}])
    );
    // Missing objects are created, scalars replaced.
    assert_eq!(
        set(json!({}), Some("k1.k2"), json!({"c": 1})),
        json!({"k1": {"k2": {"c": 1}}})
    );
    assert_eq!(
        set(json!({"a": 10}), Some("a.b.c"), json!({"x": 1})),
        json!({"a": {"b": {"c": {"x": 1}}}})
    );
    assert_eq!(
        set(json!({}), Some("k1.k2[].k3"), json!({"c": 1})),
        json!({"k1": {"k2": []}})
    );
    assert_eq!(
        set(json!({}), Some("k1.k2[3]"), json!({"c": 1})),
        json!({"k1": {"k2": []}})
    );
    // A null is stored as null.
    assert_eq!(
        set(json!({"a": 1, "b": 2}), None, json!({"a": null})),
        json!({"a": null, "b": 2})
    );
}

#[test]
fn deletes_like_qdrant() {
    let base = json!({"a": {"b": [{"c": 1, "x": 0}, {"c": 2}], "k": 1}, "f": [1, 2, 3]});
    assert_eq!(
        delete(base.clone(), &["a.k"]),
        json!({"a": {"b": [{"c": 1, "x": 0}, {"c": 2}]}, "f": [1, 2, 3]})
    );
    assert_eq!(
        delete(base.clone(), &["a.b[].c"])["a"]["b"],
        json!([{"x": 0}, {}])
    );
    assert_eq!(
        delete(base.clone(), &["a.b[0]"])["a"]["b"],
        json!([{"c": 2}])
    );
    assert_eq!(delete(base.clone(), &["f[]"])["f"], json!([]));
    assert_eq!(
        delete(base.clone(), &["f[9]", "nope", "a.k.deeper", "f.x"]),
        base
    );
    assert_eq!(
        delete(json!({"a.b": 1, "a": {"b": 2}}), &["\"a.b\""]),
        json!({"a": {"b": 2}})
    );
}

#[test]
fn long_paths_are_refused_without_recursion() {
    let long = vec!["k"; 20_000].join(".");
    let err = KeyPath::parse(&long).unwrap_err();
    assert!(err.contains("more than 99 items"), "{err}");
    let op = PayloadOp::DeleteKeys(vec![long.clone()]);
    assert!(op.validate().is_err());
    let op = PayloadOp::Set {
        payload: obj(json!({"v": 1})),
        key: Some(long),
    };
    assert!(op.validate().is_err());
    // 200 items, the depth that used to read back as {} after a restart.
    let op = PayloadOp::Set {
        payload: obj(json!({"v": 1})),
        key: Some(vec!["k"; 200].join(".")),
    };
    assert!(op.validate().is_err());
}

#[test]
fn the_deepest_accepted_payload_reads_back() {
    // 99 items and a flat payload: 100 levels, the most allowed.
    let key = vec!["k"; MAX_KEY_PATH_ITEMS].join(".");
    let op = PayloadOp::Set {
        payload: obj(json!({"v": 1})),
        key: Some(key.clone()),
    };
    op.validate().unwrap();
    let mut p = obj(json!({"other": true}));
    apply_payload_op(&mut p, &op);
    assert_eq!(payload_depth(&p), MAX_PAYLOAD_DEPTH);
    let text = Value::Object(p.clone()).to_string();
    assert_eq!(crate::shard::point::parse_payload(&text).unwrap(), p);
    // One level more is refused, either way it is reached.
    let op = PayloadOp::Set {
        payload: obj(json!({"v": {}})),
        key: Some(key),
    };
    assert!(op.validate().is_err());
    let mut deep = json!({});
    for _ in 0..MAX_PAYLOAD_DEPTH {
        deep = json!({ "k": deep });
    }
    assert_eq!(payload_depth(&obj(deep.clone())), MAX_PAYLOAD_DEPTH + 1);
    assert!(check_payload(&obj(deep)).is_err());
}

#[test]
fn payloads_deeper_than_serde_json_reads_are_read_not_emptied() {
    // What an older shoal could store: 300 levels. serde_json alone refuses it.
    let text = format!("{}1{}", "{\"k\":".repeat(300), "}".repeat(300));
    assert!(serde_json::from_str::<Payload>(&text).is_err());
    let p = crate::shard::point::parse_payload(&text).unwrap();
    assert_eq!(payload_depth(&p), 300);
    assert!(crate::shard::point::parse_payload("{\"a\":").is_err());
    assert!(crate::shard::point::parse_payload("[1]").is_err());
}

// ---------- properties ----------

/// Keys drawn from a small alphabet so that paths meet the payload's keys, with odd ones mixed
/// in: dots, brackets, spaces, the empty key, Unicode.
const KEYS: &[&str] = &[
    "a", "b", "c", "a.b", "[]", "x y", "", "é", "日本", "-_", "0",
];

fn key(rng: &mut StdRng) -> String {
    KEYS[rng.gen_range(0..KEYS.len())].to_string()
}

fn value(rng: &mut StdRng, depth: usize) -> Value {
    match rng.gen_range(0..if depth == 0 { 3 } else { 6 }) {
        0 => Value::Null,
        1 => json!(rng.gen_range(0..5)),
        2 => json!("s"),
        3 | 4 => Value::Object(
            (0..rng.gen_range(0..4))
                .map(|_| (key(rng), value(rng, depth - 1)))
                .collect(),
        ),
        _ => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| value(rng, depth - 1))
                .collect(),
        ),
    }
}

fn payload(rng: &mut StdRng, depth: usize) -> Payload {
    (0..rng.gen_range(0..4))
        .map(|_| (key(rng), value(rng, depth)))
        .collect()
}

fn path(rng: &mut StdRng, max_rest: usize) -> KeyPath {
    let rest = (0..rng.gen_range(0..=max_rest))
        .map(|_| match rng.gen_range(0..5) {
            0 => PathItem::Index(rng.gen_range(0..3)),
            1 => PathItem::Each,
            _ => PathItem::Key(key(rng)),
        })
        .collect();
    KeyPath {
        first: key(rng),
        rest,
    }
}

/// Qdrant's text form of a path: bare keys where possible, quoted otherwise.
fn render(p: &KeyPath) -> String {
    let k = |s: &str| {
        if !s.is_empty() && s.chars().all(is_bare) {
            s.to_string()
        } else {
            format!("\"{s}\"")
        }
    };
    let mut out = k(&p.first);
    for item in &p.rest {
        match item {
            PathItem::Key(s) => out += &format!(".{}", k(s)),
            PathItem::Index(i) => out += &format!("[{i}]"),
            PathItem::Each => out += "[]",
        }
    }
    out
}

/// The rules read plainly, recursively: the reference the loops are checked against.
fn model_set(dest: &mut Value, rest: &[PathItem], add: &Payload) {
    match rest.split_first() {
        None => merge(object(dest), add),
        Some((PathItem::Key(k), tail)) => model_set(
            object(dest).entry(k.clone()).or_insert(Value::Null),
            tail,
            add,
        ),
        Some((PathItem::Index(i), tail)) => {
            if let Some(v) = array(dest).get_mut(*i) {
                model_set(v, tail, add)
            }
        }
        Some((PathItem::Each, tail)) => {
            for v in array(dest) {
                model_set(v, tail, add)
            }
        }
    }
}

fn model_remove(v: &mut Value, rest: &[PathItem]) {
    let Some((head, tail)) = rest.split_first() else {
        return;
    };
    if tail.is_empty() {
        match (head, v) {
            (PathItem::Key(k), Value::Object(m)) => {
                m.remove(k);
            }
            (PathItem::Index(i), Value::Array(a)) if *i < a.len() => {
                a.remove(*i);
            }
            (PathItem::Each, Value::Array(a)) => a.clear(),
            _ => {}
        }
        return;
    }
    match (head, v) {
        (PathItem::Key(k), Value::Object(m)) => {
            if let Some(c) = m.get_mut(k) {
                model_remove(c, tail)
            }
        }
        (PathItem::Index(i), Value::Array(a)) => {
            if let Some(c) = a.get_mut(*i) {
                model_remove(c, tail)
            }
        }
        (PathItem::Each, Value::Array(a)) => a.iter_mut().for_each(|c| model_remove(c, tail)),
        _ => {}
    }
}

#[test]
fn property_paths_print_and_parse_back() {
    let mut rng = StdRng::seed_from_u64(16);
    for _ in 0..5_000 {
        let p = path(&mut rng, 8);
        assert_eq!(
            KeyPath::parse(&render(&p)).as_ref(),
            Ok(&p),
            "{}",
            render(&p)
        );
    }
}

#[test]
fn property_set_and_delete_follow_the_rules() {
    let mut rng = StdRng::seed_from_u64(17);
    for case in 0..5_000 {
        let start = payload(&mut rng, 3);
        let p = path(&mut rng, 4);
        let text = render(&p);
        let add = payload(&mut rng, 2);

        let mut got = start.clone();
        let op = PayloadOp::Set {
            payload: add.clone(),
            key: Some(text.clone()),
        };
        op.validate().unwrap();
        apply_payload_op(&mut got, &op);
        let mut want = Value::Object(start.clone());
        model_set(
            object(&mut want)
                .entry(p.first.clone())
                .or_insert(Value::Null),
            &p.rest,
            &add,
        );
        assert_eq!(
            Value::Object(got.clone()),
            want,
            "case {case}: set at {text}"
        );
        let bound = payload_depth(&start).max(p.len() + payload_depth(&add));
        assert!(
            payload_depth(&got) <= bound,
            "case {case}: depth bound at {text}"
        );

        let mut removed = got.clone();
        apply_payload_op(&mut removed, &PayloadOp::DeleteKeys(vec![text.clone()]));
        let mut want = Value::Object(got);
        let mut full = vec![PathItem::Key(p.first.clone())];
        full.extend(p.rest.iter().cloned());
        model_remove(&mut want, &full);
        assert_eq!(
            Value::Object(removed),
            want,
            "case {case}: delete at {text}"
        );
    }
}

#[test]
fn property_overwrite_and_clear() {
    let mut rng = StdRng::seed_from_u64(18);
    for _ in 0..1_000 {
        let mut p = payload(&mut rng, 3);
        let new = payload(&mut rng, 3);
        apply_payload_op(&mut p, &PayloadOp::Overwrite(new.clone()));
        assert_eq!(p, new);
        apply_payload_op(&mut p, &PayloadOp::Clear);
        assert!(p.is_empty());
    }
}

#[test]
fn include_and_exclude_follow_key_paths() {
    let p: Payload = serde_json::from_value(serde_json::json!({
        "a": 1,
        "nested": {"a": 2, "b": {"c": 3, "d": 4}},
        "arr": [{"x": 1, "y": 2}, {"x": 3}, 5],
        "dotted.key": 6
    }))
    .unwrap();
    let paths =
        |ps: &[&str]| -> Vec<KeyPath> { ps.iter().map(|t| KeyPath::parse(t).unwrap()).collect() };
    let only = |ps: &[&str]| Value::Object(payload_only(&p, &paths(ps)));
    let without = |ps: &[&str]| Value::Object(payload_without(&p, &paths(ps)));
    assert_eq!(only(&["nested.a"]), serde_json::json!({"nested": {"a": 2}}));
    assert_eq!(
        only(&["nested.a", "nested.b.d", "a"]),
        serde_json::json!({"a": 1, "nested": {"a": 2, "b": {"d": 4}}})
    );
    assert_eq!(
        only(&["arr[].x"]),
        serde_json::json!({"arr": [{"x": 1}, {"x": 3}]})
    );
    assert_eq!(only(&["arr[0].y"]), serde_json::json!({"arr": [{"y": 2}]}));
    assert_eq!(
        only(&["\"dotted.key\"", "missing", "a.b"]),
        serde_json::json!({"dotted.key": 6})
    );
    assert_eq!(
        without(&["nested.b.c", "arr", "dotted.key"]),
        serde_json::json!({"a": 1, "nested": {"a": 2, "b": {"d": 4}}, "dotted.key": 6}),
        "an unquoted dotted name is a path, as in Qdrant"
    );
    assert_eq!(
        without(&["\"dotted.key\"", "nested"]),
        serde_json::json!({"a": 1, "arr": [{"x": 1, "y": 2}, {"x": 3}, 5]})
    );
}
