//! Qdrant's filter language: parsing (serde shapes identical to Qdrant's JSON, described for the
//! OpenAPI document by deriving from these very types) and evaluation against one point's id and
//! payload.
//!
//! A [`Filter`] is `must` (all), `should` (at least one, when present), `must_not` (none) and
//! `min_should` (at least `min_count` of its conditions). Conditions test payload fields by key —
//! `a.b` walks nested objects and fans out over arrays, so an array field matches when any element
//! does — or the point id (`has_id`), or nest a whole filter. Keys are Qdrant's key paths, read by
//! the parser `set_payload` uses ([`FieldKey`]): `a."b.c"` names the key `b.c`, `a[0]` one
//! element; a key that is not a key path is refused.
//!
//! Semantics follow Qdrant's condition checker where its documentation is terse (tested below,
//! and against the official client in `tests/compat`):
//! - `match.except` matches when some value of the field is outside the list (a value of another
//!   type counts as outside); a missing, `null` or `[]` field never matches;
//! - `match.text` is a substring test (what Qdrant does without a full-text index);
//! - `range` compares numbers only; a field holding no number never matches;
//! - `is_empty` holds for a missing key, `null`, or `[]` (but not `[null]`); `is_null` for an
//!   explicit `null`;
//! - `should: []` matches nothing; a field condition must name at least one condition.

use super::payload::{KeyPath, PathItem};
use super::payload_index::TextParams;
use super::point::{Payload, PointId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A boolean combination of conditions. An empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(no_recursion)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must: Option<OneOrMany<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub should: Option<OneOrMany<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_not: Option<OneOrMany<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_should: Option<MinShould>,
}

/// Qdrant accepts a clause either as a list or as one bare condition.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(no_recursion)]
pub enum OneOrMany<T> {
    Many(Vec<T>),
    One(Box<T>),
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let parsed = match Value::deserialize(d)? {
            Value::Array(items) => serde_json::from_value(Value::Array(items)).map(OneOrMany::Many),
            one => serde_json::from_value(one).map(|c| OneOrMany::One(Box::new(c))),
        };
        parsed.map_err(D::Error::custom)
    }
}

impl<T> OneOrMany<T> {
    fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            OneOrMany::Many(v) => v,
            OneOrMany::One(b) => std::slice::from_mut(b.as_mut()),
        }
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::Many(v) => v,
            OneOrMany::One(b) => std::slice::from_ref(b.as_ref()),
        }
    }
}

/// A clause's conditions and one more.
fn with_one_more(clause: Option<OneOrMany<Condition>>, c: Condition) -> Vec<Condition> {
    let mut all = match clause {
        Some(OneOrMany::Many(v)) => v,
        Some(OneOrMany::One(one)) => vec![*one],
        None => Vec::new(),
    };
    all.push(c);
    all
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(no_recursion)]
pub struct MinShould {
    pub conditions: Vec<Condition>,
    pub min_count: usize,
}

/// One condition. As in Qdrant's JSON the keys present decide the kind; parsing looks at them
/// first so that an error names the part that was wrong instead of "no variant matched".
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(no_recursion)]
pub enum Condition {
    Field(FieldCondition),
    IsEmpty {
        is_empty: KeyRef,
    },
    IsNull {
        is_null: KeyRef,
    },
    /// Sorted (as parsed): a point's id is looked up by binary search.
    HasId {
        has_id: Vec<PointId>,
    },
    Nested {
        nested: NestedCondition,
    },
    Filter(Filter),
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(d)?;
        let Some(obj) = value.as_object() else {
            return Err(D::Error::custom(format!(
                "a filter condition must be an object, got {value}"
            )));
        };
        let has = |k: &str| obj.contains_key(k);
        let parsed = if has("key") {
            let field: FieldCondition = serde_json::from_value(value)
                .map_err(|e| D::Error::custom(format!("invalid filter condition: {e}")))?;
            if !field.has_condition() {
                return Err(D::Error::custom(format!(
                    "field condition on {:?}: at least one field condition must be specified (match, range, values_count, is_empty, is_null)",
                    field.key
                )));
            }
            Ok(Condition::Field(field))
        } else if has("has_id") {
            serde_json::from_value::<HasIdBody>(value).map(|b| Condition::HasId {
                has_id: sorted_ids(b.has_id),
            })
        } else if has("is_empty") {
            serde_json::from_value::<IsEmptyBody>(value).map(|b| Condition::IsEmpty {
                is_empty: b.is_empty,
            })
        } else if has("is_null") {
            serde_json::from_value::<IsNullBody>(value)
                .map(|b| Condition::IsNull { is_null: b.is_null })
        } else if has("nested") {
            serde_json::from_value::<NestedBody>(value)
                .map(|b| Condition::Nested { nested: b.nested })
        } else if obj
            .keys()
            .all(|k| ["must", "should", "must_not", "min_should"].contains(&k.as_str()))
        {
            serde_json::from_value(value).map(Condition::Filter)
        } else {
            let keys: Vec<&String> = obj.keys().collect();
            return Err(D::Error::custom(format!(
                "unknown filter condition with keys {keys:?}: expected `key` (field condition), `has_id`, `is_empty`, `is_null`, `nested`, or a nested filter"
            )));
        };
        parsed.map_err(|e| D::Error::custom(format!("invalid filter condition: {e}")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HasIdBody {
    has_id: Vec<PointId>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IsEmptyBody {
    is_empty: KeyRef,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IsNullBody {
    is_null: KeyRef,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NestedBody {
    nested: NestedCondition,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyRef {
    /// A key path, e.g. `a.b`, `a."b.c"`, `a[0]`.
    #[schema(value_type = String)]
    pub key: FieldKey,
}

/// `{"nested": {"key": "items", "filter": …}}`: the filter must hold for one element of the array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(no_recursion)]
pub struct NestedCondition {
    /// A key path, e.g. `a.b`, `a."b.c"`, `a[0]`.
    #[schema(value_type = String)]
    pub key: FieldKey,
    pub filter: Filter,
}

/// A payload key as a filter names it: Qdrant's key path syntax, the one `set_payload` reads
/// ([`KeyPath`]: `a.b`, `a."b.c"`, `a[0]`, `a[]`), parsed once when the filter is read. A key
/// that is not a key path is refused (Qdrant refuses it too) rather than matching nothing.
/// It travels as the text it was sent as.
#[derive(Clone, PartialEq)]
pub struct FieldKey {
    text: String,
    path: KeyPath,
}

impl FieldKey {
    pub fn parse(text: &str) -> Result<FieldKey, String> {
        Ok(FieldKey {
            text: text.to_string(),
            path: KeyPath::parse(text)?,
        })
    }

    /// The parsed path: what every reader of the key (the check, the payload indexes, the
    /// planner) goes by. Two keys naming the same path (`a.b`, `"a".b`) are the same field.
    pub fn path(&self) -> &KeyPath {
        &self.path
    }

    /// The key as the client wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for FieldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.text, f)
    }
}

impl Serialize for FieldKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for FieldKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        FieldKey::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldCondition {
    /// A key path, e.g. `a.b`, `a."b.c"`, `a[0]`.
    #[schema(value_type = String)]
    pub key: FieldKey,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<Match>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_count: Option<ValuesCount>,
    // Accepted so that clients sending explicit nulls for unused kinds still parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_bounding_box: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_radius: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_polygon: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_empty: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_null: Option<bool>,
}

/// A keyword, integer or boolean: what `match.value` compares with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MatchValue {
    Bool(bool),
    Int(i64),
    Keyword(String),
}

/// The values of `match.any` and `match.except`: a set, kept sorted so that a point's value is
/// looked up by binary search (~17 comparisons among 100 000 values, instead of 100 000).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ValueSet(Vec<MatchValue>);

impl From<Vec<MatchValue>> for ValueSet {
    fn from(mut values: Vec<MatchValue>) -> ValueSet {
        values.sort_by(MatchValue::order);
        values.dedup();
        ValueSet(values)
    }
}

impl<'de> Deserialize<'de> for ValueSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<MatchValue>::deserialize(d).map(ValueSet::from)
    }
}

impl std::ops::Deref for ValueSet {
    type Target = [MatchValue];
    fn deref(&self) -> &[MatchValue] {
        &self.0
    }
}

impl ValueSet {
    /// Whether a payload value equals one of the set (as [`MatchValue`] compares).
    pub fn contains(&self, v: &Value) -> bool {
        let probe = match v {
            Value::Bool(b) => MatchValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => MatchValue::Int(i),
                None => return false,
            },
            Value::String(s) => {
                return (self.0)
                    .binary_search_by(|m| match m {
                        MatchValue::Keyword(k) => k.as_str().cmp(s.as_str()),
                        other => other.rank().cmp(&2),
                    })
                    .is_ok();
            }
            _ => return false,
        };
        self.0.binary_search_by(|m| m.order(&probe)).is_ok()
    }
}

fn sorted_ids(mut ids: Vec<PointId>) -> Vec<PointId> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Match {
    Value {
        value: MatchValue,
    },
    Text {
        text: String,
    },
    Any {
        #[schema(value_type = Vec<MatchValue>)]
        any: ValueSet,
    },
    Except {
        #[serde(rename = "except")]
        #[schema(value_type = Vec<MatchValue>)]
        except: ValueSet,
    },
    /// `match.text` on a field with a full-text index (never parsed: the shard rewrites `Text`
    /// into it): every token of the query is among the value's tokens.
    #[serde(skip)]
    Tokens {
        tokens: Vec<String>,
        params: TextParams,
    },
}

/// A `range` condition's bounds: numbers, or RFC 3339 date-times (Qdrant's `DatetimeRange`),
/// held here as µs since the epoch. A date-time range compares the field's values read as
/// date-times (strings); a numeric one its numbers.
#[derive(Debug, Clone, Default, PartialEq, utoipa::ToSchema)]
pub struct Range {
    /// A number, or an RFC 3339 date-time.
    #[schema(value_type = Option<f64>)]
    pub lt: Option<f64>,
    #[schema(value_type = Option<f64>)]
    pub gt: Option<f64>,
    #[schema(value_type = Option<f64>)]
    pub gte: Option<f64>,
    #[schema(value_type = Option<f64>)]
    pub lte: Option<f64>,
    /// The bounds as sent (`lt`, `gt`, `gte`, `lte`) when they are date-times: the range
    /// travels to peers as the client wrote it.
    #[schema(ignore)]
    pub datetime: Option<Box<[Option<String>; 4]>>,
}

/// A bound as JSON writes it.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Bound {
    Number(f64),
    Datetime(String),
}

/// A range as JSON writes it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lt: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gt: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gte: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lte: Option<Bound>,
}

impl<'de> Deserialize<'de> for Range {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let json = RangeJson::deserialize(d)?;
        let bounds = [json.lt, json.gt, json.gte, json.lte];
        let datetime = bounds.iter().any(|b| matches!(b, Some(Bound::Datetime(_))));
        let mut values = [None; 4];
        let mut texts: [Option<String>; 4] = Default::default();
        for (i, bound) in bounds.into_iter().enumerate() {
            values[i] = match bound {
                None => None,
                Some(Bound::Number(_)) if datetime => {
                    return Err(D::Error::custom(
                        "a range's bounds are all numbers or all RFC 3339 date-times",
                    ))
                }
                Some(Bound::Number(x)) => Some(x),
                Some(Bound::Datetime(text)) => {
                    let micros = super::payload_index::datetime_micros(&text).ok_or_else(|| {
                        D::Error::custom(format!(
                            "{text:?} is not an RFC 3339 date-time (e.g. 2024-01-31T10:00:00Z)"
                        ))
                    })?;
                    texts[i] = Some(text);
                    Some(micros)
                }
            };
        }
        let [lt, gt, gte, lte] = values;
        Ok(Range {
            lt,
            gt,
            gte,
            lte,
            datetime: datetime.then(|| Box::new(texts)),
        })
    }
}

impl Serialize for Range {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bound = |i: usize, x: Option<f64>| match &self.datetime {
            Some(texts) => texts[i].clone().map(Bound::Datetime),
            None => x.map(Bound::Number),
        };
        RangeJson {
            lt: bound(0, self.lt),
            gt: bound(1, self.gt),
            gte: bound(2, self.gte),
            lte: bound(3, self.lte),
        }
        .serialize(s)
    }
}

impl Range {
    pub(crate) fn holds(&self, x: f64) -> bool {
        self.lt.is_none_or(|b| x < b)
            && self.gt.is_none_or(|b| x > b)
            && self.lte.is_none_or(|b| x <= b)
            && self.gte.is_none_or(|b| x >= b)
    }

    /// Whether the bounds are date-times.
    pub fn is_datetime(&self) -> bool {
        self.datetime.is_some()
    }

    /// The value a payload value has for this range: its number, or for a date-time range the
    /// date-time a string holds.
    pub(crate) fn value_of(&self, v: &Value) -> Option<f64> {
        if self.is_datetime() {
            v.as_str().and_then(super::payload_index::datetime_micros)
        } else {
            v.as_f64()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValuesCount {
    pub lt: Option<usize>,
    pub gt: Option<usize>,
    pub gte: Option<usize>,
    pub lte: Option<usize>,
}

impl Filter {
    /// This filter (or none: everything) with one more `must` condition.
    pub fn and_must(filter: Option<Filter>, c: Condition) -> Filter {
        let mut f = filter.unwrap_or_default();
        f.must = Some(OneOrMany::Many(with_one_more(f.must.take(), c)));
        f
    }

    /// This filter (or none: everything) with one more `must_not` condition.
    pub fn and_must_not(filter: Option<Filter>, c: Condition) -> Filter {
        let mut f = filter.unwrap_or_default();
        f.must_not = Some(OneOrMany::Many(with_one_more(f.must_not.take(), c)));
        f
    }

    /// Whether the point with this id and payload passes the filter.
    pub fn matches(&self, id: &PointId, payload: &Payload) -> bool {
        let holds = |c: &Condition| c.matches(id, payload);
        if let Some(must) = &self.must {
            if !must.as_slice().iter().all(holds) {
                return false;
            }
        }
        if let Some(must_not) = &self.must_not {
            if must_not.as_slice().iter().any(holds) {
                return false;
            }
        }
        if let Some(should) = &self.should {
            if !should.as_slice().iter().any(holds) {
                return false;
            }
        }
        if let Some(min) = &self.min_should {
            if min.conditions.iter().filter(|c| holds(c)).count() < min.min_count {
                return false;
            }
        }
        true
    }

    /// Adds the top-level payload keys this filter reads (`a` for `a.b` or `a[].b`, `a.b` for
    /// `"a.b"`): a condition never looks outside its key, so the rest of a payload can go
    /// unread.
    pub fn top_level_keys(&self, out: &mut Vec<String>) {
        for c in self.conditions() {
            let key = match c {
                Condition::Field(f) => &f.key,
                Condition::IsEmpty { is_empty: k } | Condition::IsNull { is_null: k } => &k.key,
                Condition::Nested { nested } => &nested.key,
                Condition::HasId { .. } => continue,
                Condition::Filter(f) => {
                    f.top_level_keys(out);
                    continue;
                }
            };
            out.push(key.path.first.clone());
        }
    }

    /// Turns `match.text` on the fields `text_index` names (by key path) into token matches
    /// (see `payload_index::with_text_indexes`). Nested filters' keys are relative: left alone.
    pub(crate) fn rewrite_text(&mut self, text_index: &dyn Fn(&KeyPath) -> Option<TextParams>) {
        let clauses = [&mut self.must, &mut self.should, &mut self.must_not];
        let conditions = clauses
            .into_iter()
            .flatten()
            .flat_map(|c| c.as_mut_slice().iter_mut())
            .chain(
                self.min_should
                    .iter_mut()
                    .flat_map(|m| m.conditions.iter_mut()),
            );
        for c in conditions {
            match c {
                Condition::Field(f) => {
                    if let (Some(Match::Text { text }), Some(params)) =
                        (&f.matches, text_index(&f.key.path))
                    {
                        let tokens = params.tokens(text);
                        f.matches = Some(Match::Tokens { tokens, params });
                    }
                }
                Condition::Filter(inner) => inner.rewrite_text(text_index),
                _ => {}
            }
        }
    }

    /// The same filter with the value conditions of a `should` or `must_not` list on one key
    /// merged into one `match.any` (`should: [{key: k, match: {value: 1}}, {key: k, match:
    /// {value: 2}}]` is `{key: k, match: {any: [1, 2]}}`; in `must_not`, none of them holding is
    /// the same as no value of the merged set holding), also in nested clauses. A client's list
    /// of 100 000 alternatives then costs one set lookup per point instead of 100 000 checks.
    /// `None` when there is nothing to merge.
    pub fn with_merged_alternatives(&self) -> Option<Filter> {
        if !self.has_alternatives_to_merge() {
            return None;
        }
        let mut merged = self.clone();
        merged.merge_alternatives();
        Some(merged)
    }

    /// Every condition of every clause (`must`, `should`, `must_not`, `min_should`), not
    /// descending into nested filters.
    fn conditions(&self) -> impl Iterator<Item = &Condition> {
        let clauses = [&self.must, &self.should, &self.must_not];
        (clauses.into_iter().flatten())
            .flat_map(|c| c.as_slice())
            .chain(self.min_should.iter().flat_map(|m| &m.conditions))
    }

    /// How many conditions the filter holds, nested ones included: what checking it on a
    /// point costs, about.
    pub fn size(&self) -> usize {
        self.conditions()
            .map(|c| match c {
                Condition::Filter(f) => 1 + f.size(),
                Condition::Nested { nested } => 1 + nested.filter.size(),
                _ => 1,
            })
            .sum()
    }

    fn has_alternatives_to_merge(&self) -> bool {
        let lists = [&self.should, &self.must_not];
        let mergeable = |c: &&Condition| mergeable_value(c).is_some();
        lists.into_iter().flatten().any(|l| {
            let l = l.as_slice();
            l.iter().filter(mergeable).count() > 1
                || l.iter().any(|c| match c {
                    Condition::Filter(f) => f.has_alternatives_to_merge(),
                    _ => false,
                })
        }) || (self.must.iter())
            .flat_map(|l| l.as_slice())
            .any(|c| matches!(c, Condition::Filter(f) if f.has_alternatives_to_merge()))
    }

    fn merge_alternatives(&mut self) {
        for list in [&mut self.should, &mut self.must_not].into_iter().flatten() {
            if let OneOrMany::Many(conditions) = list {
                merge_values_by_key(conditions);
            }
        }
        let clauses = [&mut self.must, &mut self.should, &mut self.must_not];
        for c in clauses.into_iter().flatten() {
            for c in c.as_mut_slice() {
                if let Condition::Filter(f) = c {
                    f.merge_alternatives();
                }
            }
        }
    }

    /// Ids a filter can only match, when it pins them with a top-level `must` `has_id`.
    pub fn pinned_ids(&self) -> Option<&[PointId]> {
        self.must.as_ref()?.as_slice().iter().find_map(|c| match c {
            Condition::HasId { has_id } => Some(has_id.as_slice()),
            _ => None,
        })
    }
}

/// The key and values of a condition that only matches values (`match.value`, `match.any`).
fn mergeable_value(c: &Condition) -> Option<(&str, &[MatchValue])> {
    let Condition::Field(f) = c else {
        return None;
    };
    if f.has_condition_besides_match() {
        return None;
    }
    match &f.matches {
        Some(Match::Value { value }) => Some((f.key.text(), std::slice::from_ref(value))),
        Some(Match::Any { any }) => Some((f.key.text(), any)),
        _ => None,
    }
}

/// Replaces the value conditions on one key (as written) by one `match.any` of their values,
/// at the place of the first; other conditions stay as they are, in order.
fn merge_values_by_key(conditions: &mut Vec<Condition>) {
    let mut values: std::collections::HashMap<String, (usize, Vec<MatchValue>)> =
        Default::default();
    for (i, c) in conditions.iter().enumerate() {
        if let Some((key, vs)) = mergeable_value(c) {
            let group = values.entry(key.to_string()).or_insert((i, Vec::new()));
            group.1.extend_from_slice(vs);
        }
    }
    let mut at = 0;
    conditions.retain_mut(|c| {
        let i = at;
        at += 1;
        let Some((key, _)) = mergeable_value(c) else {
            return true;
        };
        let Some((first, vs)) = values.get_mut(key) else {
            return true;
        };
        if *first != i {
            return false;
        }
        if let Condition::Field(f) = c {
            f.matches = Some(Match::Any {
                any: ValueSet::from(std::mem::take(vs)),
            });
        }
        true
    });
}

impl Condition {
    fn matches(&self, id: &PointId, payload: &Payload) -> bool {
        match self {
            Condition::Field(f) => f.matches(payload),
            Condition::IsEmpty { is_empty } => is_empty_at(payload, &is_empty.key.path),
            Condition::IsNull { is_null } => raw_at(payload, &is_null.key.path)
                .iter()
                .any(|v| v.is_null()),
            Condition::HasId { has_id } => has_id.binary_search(id).is_ok(),
            Condition::Nested { nested } => {
                raw_at(payload, &nested.key.path).iter().any(|v| match v {
                    Value::Array(items) => items
                        .iter()
                        .any(|item| nested_matches(&nested.filter, id, item)),
                    other => nested_matches(&nested.filter, id, other),
                })
            }
            Condition::Filter(f) => f.matches(id, payload),
        }
    }
}

fn nested_matches(filter: &Filter, id: &PointId, item: &Value) -> bool {
    match item {
        Value::Object(obj) => filter.matches(id, obj),
        _ => false,
    }
}

/// Qdrant's emptiness: no value at the key, or only `null`s and `[]`s.
fn is_empty_at(payload: &Payload, key: &KeyPath) -> bool {
    raw_at(payload, key)
        .iter()
        .all(|v| v.is_null() || v.as_array().is_some_and(|a| a.is_empty()))
}

impl FieldCondition {
    fn has_condition(&self) -> bool {
        self.matches.is_some() || self.has_condition_besides_match()
    }

    fn has_condition_besides_match(&self) -> bool {
        self.range.is_some()
            || self.values_count.is_some()
            || self.geo_bounding_box.is_some()
            || self.geo_radius.is_some()
            || self.geo_polygon.is_some()
            || self.is_empty.is_some()
            || self.is_null.is_some()
    }

    fn matches(&self, payload: &Payload) -> bool {
        let values = values_at(payload, &self.key.path);
        if let Some(m) = &self.matches {
            if !m.matches(&values) {
                return false;
            }
        }
        if let Some(r) = &self.range {
            if !values
                .iter()
                .filter_map(|v| r.value_of(v))
                .any(|x| r.holds(x))
            {
                return false;
            }
        }
        if let Some(c) = &self.values_count {
            let n = values.iter().filter(|v| !v.is_null()).count();
            let ok = c.lt.is_none_or(|b| n < b)
                && c.gt.is_none_or(|b| n > b)
                && c.lte.is_none_or(|b| n <= b)
                && c.gte.is_none_or(|b| n >= b);
            if !ok {
                return false;
            }
        }
        if let Some(want_empty) = self.is_empty {
            if is_empty_at(payload, &self.key.path) != want_empty {
                return false;
            }
        }
        if let Some(want_null) = self.is_null {
            if raw_at(payload, &self.key.path).iter().any(|v| v.is_null()) != want_null {
                return false;
            }
        }
        true
    }
}

impl MatchValue {
    fn rank(&self) -> u8 {
        match self {
            MatchValue::Bool(_) => 0,
            MatchValue::Int(_) => 1,
            MatchValue::Keyword(_) => 2,
        }
    }

    /// A total order: booleans, then integers, then keywords.
    fn order(&self, other: &MatchValue) -> std::cmp::Ordering {
        match (self, other) {
            (MatchValue::Bool(a), MatchValue::Bool(b)) => a.cmp(b),
            (MatchValue::Int(a), MatchValue::Int(b)) => a.cmp(b),
            (MatchValue::Keyword(a), MatchValue::Keyword(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    fn equals(&self, v: &Value) -> bool {
        match (self, v) {
            (MatchValue::Bool(b), Value::Bool(x)) => b == x,
            (MatchValue::Int(i), Value::Number(n)) => n.as_i64() == Some(*i),
            (MatchValue::Keyword(s), Value::String(x)) => s == x,
            _ => false,
        }
    }
}

impl Match {
    fn matches(&self, values: &[&Value]) -> bool {
        match self {
            Match::Value { value } => values.iter().any(|v| value.equals(v)),
            Match::Any { any } => values.iter().any(|v| any.contains(v)),
            Match::Except { except } => values
                .iter()
                .filter(|v| !v.is_null())
                .any(|v| !except.contains(v)),
            Match::Text { text } => values
                .iter()
                .any(|v| v.as_str().is_some_and(|s| s.contains(text.as_str()))),
            Match::Tokens { tokens, params } => {
                !tokens.is_empty()
                    && values.iter().any(|v| {
                        v.as_str().is_some_and(|s| {
                            let have = params.tokens(s);
                            tokens.iter().all(|t| have.binary_search(t).is_ok())
                        })
                    })
            }
        }
    }
}

/// The values at a key path, with arrays flattened: `{"a":[{"b":1},{"b":[2,3]}]}` at `a.b`
/// gives 1, 2, 3. A key steps into every object of an array it meets (`a.b` and `a[].b` are
/// the same), `[n]` takes one element of an array, and a trailing `[]` changes nothing. The
/// payload indexes, facets and `order_by` read fields with it too, so that they see exactly
/// the values a filter sees.
pub fn values_at<'a>(payload: &'a Payload, key: &KeyPath) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for v in raw_at(payload, key) {
        match v {
            Value::Array(items) => out.extend(items.iter()),
            other => out.push(other),
        }
    }
    out
}

/// The values at a key without flattening the last level.
fn raw_at<'a>(payload: &'a Payload, key: &KeyPath) -> Vec<&'a Value> {
    let KeyPath { first, rest } = key;
    let mut current: Vec<&Value> = payload.get(first).into_iter().collect();
    let last = rest.len();
    for (i, item) in rest.iter().enumerate() {
        let mut next = Vec::new();
        for v in current {
            match (item, v) {
                (PathItem::Key(k), Value::Object(o)) => next.extend(o.get(k)),
                (PathItem::Key(k), Value::Array(items)) => next.extend(
                    items
                        .iter()
                        .filter_map(|i| i.as_object())
                        .filter_map(|o| o.get(k)),
                ),
                (PathItem::Index(n), Value::Array(items)) => next.extend(items.get(*n)),
                // `[]` before a key steps into every element (as a key alone does); at the end
                // it leaves the array whole, as the key without it would.
                (PathItem::Each, Value::Array(items)) if i + 1 < last => next.extend(items),
                (PathItem::Each, other) => next.push(other),
                _ => {}
            }
        }
        current = next;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> Payload {
        v.as_object().cloned().unwrap_or_default()
    }

    fn check(filter: Value, p: Value) -> bool {
        let f: Filter = serde_json::from_value(filter).expect("filter parses");
        f.matches(&PointId::Num(1), &payload(p))
    }

    #[test]
    fn match_value_any_except_text() {
        let p = json!({"city": "London", "tags": ["a", "b"], "n": 3, "ok": true});
        assert!(check(
            json!({"must": [{"key": "city", "match": {"value": "London"}}]}),
            p.clone()
        ));
        assert!(!check(
            json!({"must": [{"key": "city", "match": {"value": "Berlin"}}]}),
            p.clone()
        ));
        assert!(check(
            json!({"must": [{"key": "tags", "match": {"value": "b"}}]}),
            p.clone()
        ));
        assert!(check(
            json!({"must": [{"key": "n", "match": {"any": [1, 3]}}]}),
            p.clone()
        ));
        assert!(check(
            json!({"must": [{"key": "ok", "match": {"value": true}}]}),
            p.clone()
        ));
        assert!(!check(
            json!({"must": [{"key": "city", "match": {"except": ["London"]}}]}),
            p.clone()
        ));
        assert!(!check(
            json!({"must": [{"key": "missing", "match": {"except": ["x"]}}]}),
            p.clone()
        ));
        assert!(check(
            json!({"must": [{"key": "tags", "match": {"except": ["a"]}}]}),
            p.clone()
        ));
        assert!(!check(
            json!({"must": [{"key": "tags", "match": {"except": ["a", "b"]}}]}),
            p.clone()
        ));
        assert!(check(
            json!({"must": [{"key": "ok", "match": {"except": ["x"]}}]}),
            p.clone()
        ));
        assert!(check(
            json!({"must": [{"key": "city", "match": {"text": "ondo"}}]}),
            p.clone()
        ));
    }

    #[test]
    fn datetime_ranges_compare_date_times_and_travel_as_sent() {
        let range = |r: Value| json!({"must": [{"key": "at", "range": r}]});
        let jan = |d: u32| json!({"at": format!("2024-01-{d:02}T12:00:00Z")});
        let r = range(json!({"gte": "2024-01-10", "lt": "2024-01-15T13:00:00+01:00"}));
        for (p, pass) in [
            (jan(9), false),
            (jan(10), true),
            (jan(15), false),
            (json!({"at": "2024-01-15T11:59:59Z"}), true),
            (json!({"at": ["2023-12-31", "2024-01-12"]}), true),
            (json!({"at": 1705000000}), false),
            (json!({"at": "not a date"}), false),
        ] {
            assert_eq!(check(r.clone(), p.clone()), pass, "{p}");
        }
        // Serialized as sent (a peer reads it back the same), numbers as numbers.
        let f: Filter = serde_json::from_value(r.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&f).unwrap()["must"][0]["range"],
            r["must"][0]["range"]
        );
        let n = range(json!({"gt": 1.5}));
        let f: Filter = serde_json::from_value(n.clone()).unwrap();
        assert_eq!(serde_json::to_value(&f).unwrap(), n);
        assert!(check(n, json!({"at": 2})));
        for bad in [
            json!({"gt": "yesterday"}),
            json!({"gt": 1, "lt": "2024-01-01"}),
            json!({"gt": true}),
        ] {
            assert!(
                serde_json::from_value::<Filter>(range(bad.clone())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn value_sets_and_id_lists_answer_as_lists_do() {
        let values = json!([3, "b", true, -7, "a", 3, "", false]);
        let set: ValueSet = serde_json::from_value(values.clone()).unwrap();
        let list: Vec<MatchValue> = serde_json::from_value(values).unwrap();
        assert_eq!(set.len(), 7, "sorted and deduplicated");
        for v in [
            json!(3),
            json!(-7),
            json!(4),
            json!(3.0),
            json!(3.5),
            json!("a"),
            json!("b"),
            json!(""),
            json!("c"),
            json!(true),
            json!(false),
            json!(null),
            json!([3]),
        ] {
            let linear = list.iter().any(|m| m.equals(&v));
            assert_eq!(set.contains(&v), linear, "{v}");
        }
        let f: Filter =
            serde_json::from_value(json!({"must": [{"has_id": [9, 2, 5, 2]}]})).unwrap();
        for (id, pass) in [(2, true), (5, true), (9, true), (3, false)] {
            assert_eq!(f.matches(&PointId::Num(id), &Payload::new()), pass, "{id}");
        }
    }

    #[test]
    fn merged_alternatives_match_as_the_filter_does() {
        let value = |k: &str, v: Value| json!({"key": k, "match": {"value": v}});
        let filters = [
            json!({"should": [value("a", json!(1)), value("a", json!(2)), value("b", json!("x")),
                              {"key": "a", "match": {"any": [5, 6]}}, {"key": "a", "range": {"gt": 10}}]}),
            json!({"must_not": [value("a", json!(1)), value("a", json!(6))]}),
            json!({"must": [{"should": [value("b", json!("x")), value("b", json!("y"))]}]}),
        ];
        let payloads = [
            json!({"a": 1}),
            json!({"a": 2}),
            json!({"a": 6}),
            json!({"a": 11}),
            json!({"a": [3, 5]}),
            json!({"b": "x"}),
            json!({"b": "y"}),
            json!({"a": [2, 9], "b": "z"}),
            json!({}),
        ];
        for f in filters {
            let filter: Filter = serde_json::from_value(f.clone()).unwrap();
            let merged = filter
                .with_merged_alternatives()
                .expect("something to merge");
            assert!(merged.size() < filter.size(), "{f}");
            for p in &payloads {
                let p = payload(p.clone());
                let id = PointId::Num(1);
                assert_eq!(
                    merged.matches(&id, &p),
                    filter.matches(&id, &p),
                    "{f} on {p:?}"
                );
            }
        }
        for nothing in [
            json!({"must": [value("a", json!(1)), value("a", json!(2))]}),
            json!({"should": [value("a", json!(1)), {"key": "a", "match": {"value": 2}, "values_count": {"gt": 1}}]}),
        ] {
            let f: Filter = serde_json::from_value(nothing.clone()).unwrap();
            assert!(f.with_merged_alternatives().is_none(), "{nothing}");
        }
    }

    #[test]
    fn clauses_and_min_should() {
        let p = json!({"a": 1, "b": 2});
        let a1 = json!({"key": "a", "match": {"value": 1}});
        let b3 = json!({"key": "b", "match": {"value": 3}});
        assert!(check(
            json!({"should": [a1.clone(), b3.clone()]}),
            p.clone()
        ));
        assert!(!check(json!({"must_not": [a1.clone()]}), p.clone()));
        assert!(!check(
            json!({"min_should": {"conditions": [a1.clone(), b3.clone()], "min_count": 2}}),
            p.clone()
        ));
        assert!(check(json!({"must": a1.clone()}), p.clone()));
        assert!(check(json!({}), p.clone()));
        assert!(!check(json!({"should": []}), p.clone()));
        assert!(check(json!({"must": [{"should": [b3, a1]}]}), p));
    }

    #[test]
    fn range_nested_keys_and_emptiness() {
        let p = json!({"price": 10.5, "shop": {"rating": [3, 5]}, "nil": null, "empty": []});
        assert!(check(
            json!({"must": [{"key": "price", "range": {"gte": 10, "lt": 11}}]}),
            p.clone()
        ));
        assert!(!check(
            json!({"must": [{"key": "price", "range": {"gt": 10.5}}]}),
            p.clone()
        ));
        assert!(check(
            json!({"must": [{"key": "shop.rating", "range": {"gte": 5}}]}),
            p.clone()
        ));
        assert!(check(
            json!({"must": [{"is_empty": {"key": "nil"}}]}),
            p.clone()
        ));
        assert!(check(
            json!({"must": [{"is_empty": {"key": "empty"}}]}),
            p.clone()
        ));
        assert!(check(
            json!({"must": [{"is_empty": {"key": "nope"}}]}),
            p.clone()
        ));
        assert!(!check(
            json!({"must": [{"is_empty": {"key": "price"}}]}),
            p.clone()
        ));
        assert!(!check(
            json!({"must": [{"is_empty": {"key": "nulls"}}]}),
            json!({"nulls": [null]})
        ));
        assert!(check(
            json!({"must": [{"is_null": {"key": "nil"}}]}),
            p.clone()
        ));
        assert!(!check(
            json!({"must": [{"is_null": {"key": "nope"}}]}),
            p.clone()
        ));
        assert!(check(json!({"must": [{"has_id": [1, 2]}]}), p.clone()));
        assert!(!check(json!({"must_not": [{"has_id": [1]}]}), p));
    }

    #[test]
    fn nested_arrays_of_objects() {
        let p = json!({"items": [{"k": "x", "v": 1}, {"k": "y", "v": 2}]});
        assert!(check(
            json!({"must": [{"key": "items[].k", "match": {"value": "y"}}]}),
            p.clone()
        ));
        let nested = json!({"must": [{"nested": {"key": "items", "filter": {"must": [
            {"key": "k", "match": {"value": "x"}}, {"key": "v", "match": {"value": 2}}]}}}]});
        assert!(!check(nested, p));
    }

    #[test]
    fn keys_are_qdrant_key_paths() {
        // Qdrant's key syntax, as set_payload reads it: a quoted key is one key whatever it
        // holds, [n] one element of an array. Keys were split at every dot, so a quoted key,
        // an index or an empty key silently matched nothing.
        let p = json!({"a.b": 1, "a": {"b": 2, "c.d": 3}, "x": [{"y": 1}, {"y": 2}],
                       "x[0]": 4, "": 5, " ": 6, "日本": {"語": 7}, "n": [10, 20]});
        let holds = |key: &str, value: i64| {
            check(
                json!({"must": [{"key": key, "match": {"value": value}}]}),
                p.clone(),
            )
        };
        assert!(holds("\"a.b\"", 1));
        assert!(holds("a.b", 2));
        assert!(holds("a.\"c.d\"", 3));
        assert!(holds("x[1].y", 2) && !holds("x[0].y", 2) && holds("x[0].y", 1));
        assert!(holds("x[].y", 2) && holds("x.y", 2));
        assert!(holds("\"x[0]\"", 4));
        assert!(holds("\"\"", 5) && holds("\" \"", 6));
        assert!(holds("日本.語", 7));
        assert!(holds("n[1]", 20) && !holds("n[1]", 10) && !holds("n[2]", 20));
        assert!(holds("n[]", 10) && holds("n", 10));
        assert!(check(
            json!({"must": [{"is_empty": {"key": "x[5]"}}]}),
            p.clone()
        ));
        let null_at_quoted = json!({"must": [{"is_null": {"key": "\"a.b\""}}]});
        assert!(check(null_at_quoted.clone(), json!({"a.b": null})));
        assert!(!check(null_at_quoted, json!({"a": {"b": null}})));
        // What is not a key path is refused, as Qdrant refuses it, instead of matching nothing.
        for bad in ["a..b", "a b", "[0]", "a[", ".a", "a.", "\"open", "a[x]", ""] {
            for cond in [
                json!({"key": bad, "match": {"value": 1}}),
                json!({"is_empty": {"key": bad}}),
                json!({"is_null": {"key": bad}}),
                json!({"nested": {"key": bad, "filter": {}}}),
            ] {
                let e = serde_json::from_value::<Filter>(json!({"must": [cond]}));
                assert!(e.is_err(), "{bad:?} was accepted");
            }
        }
        // A key keeps its text on the wire (filters travel to peers as JSON).
        let f: Filter =
            serde_json::from_value(json!({"must": [{"key": "a.\"c.d\"", "match": {"value": 3}}]}))
                .unwrap();
        let again: Filter = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(f, again);
        assert!(serde_json::to_string(&f)
            .unwrap()
            .contains(r#""key":"a.\"c.d\"""#));
    }

    #[test]
    fn malformed_filters_are_rejected() {
        assert!(serde_json::from_value::<Filter>(
            json!({"must": [{"key": "a", "match": {"nope": 1}}]})
        )
        .is_err());
        assert!(serde_json::from_value::<Filter>(json!({"mustt": []})).is_err());
        assert!(
            serde_json::from_value::<Filter>(json!({"must": [{"has_id": ["not-a-uuid"]}]}))
                .is_err()
        );
        let e = serde_json::from_value::<Filter>(json!({"must": [{"key": "a"}]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least one field condition"), "{e}");
        let e = serde_json::from_value::<Filter>(json!({"must": [{"kye": "a"}]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("kye"), "{e}");
    }
}
