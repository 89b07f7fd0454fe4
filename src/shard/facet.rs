//! What payload indexes enable beyond filtering: exact facet counts (Qdrant's
//! `POST /collections/{c}/facet`, on a keyword, integer, bool or uuid index) and scroll ordered by
//! a field (Qdrant's `order_by`, on an integer-with-range, float or datetime index).
//!
//! Which requests may ask for them is the collection's business (its schema is what Qdrant
//! checks, and the service layer refuses what Qdrant refuses); a shard answers exactly whatever
//! its own indexes are. It reads a sealed segment through its index on the field (never parsing
//! a payload unless a filter needs it), and reads the payloads where a segment has no such index
//! yet (one being built, or a replica whose schema is a moment behind the collection's), then
//! the point table (tail and overlays). A shard answers for its own points; the coordinator
//! merges shards.

use super::check::{project, FilterCheck};
use super::deadline::{Deadline, Stopped};
use super::filter::{values_at, Filter};
use super::payload::KeyPath;
use super::payload_index::{datetime_micros, FieldIndex, FieldSchema, FieldType, SegmentIndex};
use super::point::PointId;
use super::sealed::SealedSegment;
use super::state::ShardState;
use super::{PointView, Shard};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Which way `order_by` walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

/// The field a facet or `order_by` reads: a key path (as the client wrote it, checked when
/// made and when read from a peer) and the type of the collection's index on it, which says
/// what values count (a keyword facet counts strings, an integer one integers).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "(String, FieldType)", into = "(String, FieldType)")]
pub struct IndexedKey {
    key: String,
    path: KeyPath,
    kind: FieldType,
}

impl IndexedKey {
    pub fn new(key: &str, kind: FieldType) -> Result<IndexedKey, String> {
        Ok(IndexedKey {
            key: key.to_string(),
            path: KeyPath::parse(key)?,
            kind,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn kind(&self) -> FieldType {
        self.kind
    }
}

impl TryFrom<(String, FieldType)> for IndexedKey {
    type Error = String;
    fn try_from((key, kind): (String, FieldType)) -> Result<Self, String> {
        IndexedKey::new(&key, kind)
    }
}

impl From<IndexedKey> for (String, FieldType) {
    fn from(k: IndexedKey) -> Self {
        (k.key, k.kind)
    }
}

/// A value a facet counts. The variant order is Qdrant's order among equal counts: strings
/// (keywords, uuids), then integers, then booleans.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FacetValue {
    Keyword(String),
    Int(i64),
    Bool(bool),
}

impl FacetValue {
    /// The value as a facet on a `kind` index counts it, if it does: a uuid in its canonical
    /// form (lowercase, hyphenated), as Qdrant reports it.
    fn of(v: &Value, kind: FieldType) -> Option<FacetValue> {
        match kind {
            FieldType::Keyword => v.as_str().map(|s| FacetValue::Keyword(s.to_string())),
            FieldType::Uuid => v
                .as_str()
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .map(|u| FacetValue::Keyword(u.to_string())),
            FieldType::Bool => v.as_bool().map(FacetValue::Bool),
            FieldType::Integer => v.as_i64().map(FacetValue::Int),
            _ => None,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            FacetValue::Keyword(s) => Value::from(s.as_str()),
            FacetValue::Int(n) => Value::from(*n),
            FacetValue::Bool(b) => Value::Bool(*b),
        }
    }
}

/// Whether an index can serve a facet (its values are listed: not an integer index without
/// `lookup`) or `order_by` (its values are sorted: not an integer index without `range`).
pub fn serves_facet(schema: &FieldSchema) -> bool {
    schema.data_type != FieldType::Integer || schema.flag("lookup", true)
}

pub fn serves_order_by(schema: &FieldSchema) -> bool {
    schema.data_type != FieldType::Integer || schema.flag("range", true)
}

/// A segment's declared index on `field` (its path and type) that `serves` the read.
fn index_on<'i>(
    index: &'i SegmentIndex,
    field: &IndexedKey,
    serves: fn(&FieldSchema) -> bool,
) -> Option<&'i Arc<FieldIndex>> {
    let mut on: Vec<(&String, &Arc<FieldIndex>)> = index
        .fields
        .iter()
        .filter(|(_, f)| *f.path() == field.path && f.schema().data_type == field.kind)
        .filter(|(_, f)| serves(f.schema()))
        .collect();
    on.sort_by_key(|(k, _)| *k);
    on.first().map(|(_, f)| *f)
}

/// The values at `path` in a stored payload (reading only its top-level key).
fn stored_values(json: &[u8], path: &KeyPath) -> Vec<Value> {
    let top = std::slice::from_ref(&path.first);
    values_at(&project(json, top), path)
        .into_iter()
        .cloned()
        .collect()
}

impl Shard {
    /// How many live points (passing `filter`) hold each value of the field: a point counts
    /// once per distinct value. Exact.
    pub fn facet(&self, field: &IndexedKey, filter: Option<&Filter>) -> Vec<(FacetValue, usize)> {
        let filter = filter.map(|f| self.prepare_filter(f));
        let check = filter.as_deref().map(FilterCheck::new);
        let state = self.state.read();
        let mut counts: HashMap<FacetValue, usize> = HashMap::new();
        let mut add = |v: FacetValue, n: usize| {
            if n > 0 {
                *counts.entry(v).or_insert(0) += n;
            }
        };
        for seg in &state.segments {
            let index = seg.payload_index();
            let passes = |i: u32| seg.plain_and_passes(i, check.as_ref());
            match index_on(&index, field, serves_facet) {
                Some(f) => f.for_each_value(|v, ids| {
                    if let Some(v) = FacetValue::of(&v, field.kind) {
                        add(v, ids.iter().filter(|&&i| passes(i)).count());
                    }
                }),
                None => {
                    for i in (0..seg.len() as u32).filter(|&i| passes(i)) {
                        for v in distinct(&stored_values(seg.payload_json(i), &field.path), field) {
                            add(v, 1);
                        }
                    }
                }
            }
        }
        for (_, values) in table_values(&state, check.as_ref(), &field.path) {
            for v in distinct(&values, field) {
                add(v, 1);
            }
        }
        counts.into_iter().collect()
    }

    /// Up to `limit` live points passing `filter`, ordered by their values of the field (a
    /// point with several values comes once per value, as in Qdrant), from `start_from` on;
    /// ties in id order. Returns each point with the value it was ordered by.
    pub fn scroll_ordered(
        &self,
        field: &IndexedKey,
        direction: Direction,
        start_from: Option<f64>,
        limit: usize,
        filter: Option<&Filter>,
        with_vector: bool,
    ) -> Vec<(f64, PointView)> {
        let whole = Deadline::default();
        let page = (field, direction, start_from, limit);
        (self.scroll_ordered_within(page, filter, with_vector, &whole)).unwrap_or_default()
    }

    /// [`Shard::scroll_ordered`] of `(field, direction, start_from, limit)`, refusing an answer
    /// whose payloads are over `limits`' payload limit.
    pub fn scroll_ordered_within(
        &self,
        (field, direction, start_from, limit): (&IndexedKey, Direction, Option<f64>, usize),
        filter: Option<&Filter>,
        with_vector: bool,
        limits: &Deadline,
    ) -> Result<Vec<(f64, PointView)>, Stopped> {
        let filter = filter.map(|f| self.prepare_filter(f));
        let check = filter.as_deref().map(FilterCheck::new);
        let state = self.state.read();
        let in_range = |x: f64| match (direction, start_from) {
            (_, None) => true,
            (Direction::Asc, Some(s)) => x >= s,
            (Direction::Desc, Some(s)) => x <= s,
        };
        let mut found: Vec<(f64, PointId)> = Vec::new();
        for seg in &state.segments {
            let index = seg.payload_index();
            // Up to `limit` from each segment, and the rest of a run of equal values (ties are
            // ordered by id across segments).
            let mut taken = 0;
            let mut last = f64::NAN;
            let mut take = |x: f64, i: u32| {
                if taken >= limit && x != last {
                    return true;
                }
                if in_range(x) && seg.plain_and_passes(i, check.as_ref()) {
                    found.push((x, seg.point_id(i)));
                    taken += 1;
                    last = x;
                }
                false
            };
            match index_on(&index, field, serves_order_by) {
                Some(f) => f.walk_numbers(direction == Direction::Desc, &mut take),
                None => {
                    let mut all = segment_numbers(seg, field);
                    sort_values(&mut all, direction, |&(x, i)| (x, seg.point_id(i)));
                    for (x, i) in all {
                        if take(x, i) {
                            break;
                        }
                    }
                }
            }
        }
        for (id, values) in table_values(&state, check.as_ref(), &field.path) {
            for x in numbers(&values, field.kind).filter(|&x| in_range(x)) {
                found.push((x, id));
            }
        }
        sort_values(&mut found, direction, |&(x, id)| (x, id));
        found.truncate(limit);
        self.views_of(&state, found, with_vector, true, limits)
    }
}

/// Orders items by their value in `direction`, ties by point id (`key` gives both): the order
/// of an ordered scroll, in a shard and across shards.
pub fn sort_values<T>(items: &mut [T], direction: Direction, key: impl Fn(&T) -> (f64, PointId)) {
    items.sort_by(|a, b| {
        let ((x, i), (y, j)) = (key(a), key(b));
        match direction {
            Direction::Asc => x.total_cmp(&y),
            Direction::Desc => y.total_cmp(&x),
        }
        .then(i.cmp(&j))
    });
}

/// Every (value, entry) of a segment without an index on the field, from its payloads.
fn segment_numbers(seg: &SealedSegment, field: &IndexedKey) -> Vec<(f64, u32)> {
    (0..seg.len() as u32)
        .flat_map(|i| {
            let values = stored_values(seg.payload_json(i), &field.path);
            numbers(&values, field.kind)
                .map(move |x| (x, i))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The point table's entries (tail and overlays) passing the filter, each with its values at
/// `path`.
fn table_values<'s>(
    state: &'s ShardState,
    check: Option<&'s FilterCheck>,
    path: &'s KeyPath,
) -> impl Iterator<Item = (PointId, Vec<Value>)> + 's {
    state.points.iter().filter_map(move |(id, e)| {
        let json = e.payload.as_bytes();
        check
            .is_none_or(|c| c.json(id, json))
            .then(|| (*id, stored_values(json, path)))
    })
}

/// The distinct values a facet on `field` counts among `values`.
fn distinct(values: &[Value], field: &IndexedKey) -> BTreeSet<FacetValue> {
    values
        .iter()
        .filter_map(|v| FacetValue::of(v, field.kind))
        .collect()
}

/// The numbers an order_by field orders by among `values`.
fn numbers(values: &[Value], kind: FieldType) -> impl Iterator<Item = f64> + '_ {
    values.iter().filter_map(move |v| match kind {
        FieldType::Datetime => v.as_str().and_then(datetime_micros),
        FieldType::Integer | FieldType::Float => v.as_f64(),
        _ => None,
    })
}
