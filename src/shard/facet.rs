//! What payload indexes enable beyond filtering: exact facet counts (Qdrant's
//! `POST /collections/{c}/facet`, on a keyword, integer, bool or uuid index) and scroll ordered by
//! a field (Qdrant's `order_by`, on an integer-with-range, float or datetime index).
//!
//! Both read the sealed segments through their indexes (never parsing a sealed payload unless a
//! filter needs it) and the point table (tail and overlays) from its payloads. A shard answers
//! for its own points; the collection merges shards.

use super::check::{project, FilterCheck};
use super::filter::{values_at, Filter};
use super::payload::KeyPath;
use super::payload_index::{datetime_micros, definitions_on, FieldSchema, FieldType};
use super::point::{Payload, PointId};
use super::state::ShardState;
use super::{PointView, Shard, ShardError};
use serde_json::Value;
use std::collections::HashMap;

/// Which way `order_by` walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

/// The field a facet or `order_by` reads: its key path, and the index definition (as the
/// schema names it) serving it.
struct IndexedField {
    path: KeyPath,
    definition: String,
    schema: FieldSchema,
}

impl Shard {
    /// The index on `key` (a key path, matched to the definitions by path, as filters are), if
    /// its type is one of `types`; else the error Qdrant gives.
    fn indexed_field(
        &self,
        key: &str,
        types: &[FieldType],
        what: &str,
    ) -> Result<IndexedField, ShardError> {
        let path = KeyPath::parse(key).map_err(ShardError::Invalid)?;
        let schema = self.payload_schema();
        let found = definitions_on(&schema, &path).find(|(_, f)| types.contains(&f.data_type));
        match found {
            Some((definition, f)) => Ok(IndexedField {
                path,
                definition: definition.clone(),
                schema: f.clone(),
            }),
            None => Err(ShardError::Invalid(format!(
                "Bad request: Index required but not found for \"{key}\" of one of the following types: [{}]. Help: Create an index for this key or use a different {what}.",
                types
                    .iter()
                    .map(|t| format!("{t:?}").to_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// How many live points (passing `filter`) hold each value of `key`: a point counts once
    /// per distinct value. Exact.
    pub fn facet(
        &self,
        key: &str,
        filter: Option<&Filter>,
    ) -> Result<Vec<(Value, usize)>, ShardError> {
        let kinds = [
            FieldType::Keyword,
            FieldType::Integer,
            FieldType::Bool,
            FieldType::Uuid,
        ];
        let field = self.indexed_field(key, &kinds, "key")?;
        let (kind, path) = (field.schema.data_type, &field.path);
        let filter = filter.map(|f| self.prepare_filter(f));
        let check = filter.as_deref().map(FilterCheck::new);
        let state = self.state.read();
        let mut counts: HashMap<String, (Value, usize)> = HashMap::new();
        let mut add = |v: &Value, n: usize| {
            if n > 0 {
                counts
                    .entry(v.to_string())
                    .or_insert_with(|| (v.clone(), 0))
                    .1 += n;
            }
        };
        for seg in &state.segments {
            let index = seg.payload_index();
            let passes = |i: u32| seg.plain_and_passes(i, check.as_ref());
            match index.fields.get(&field.definition) {
                Some(f) => f.for_each_value(|v, ids| {
                    add(&v, ids.iter().filter(|&&i| passes(i)).count());
                }),
                None => {
                    // Being built (a new segment): read the values from the payloads.
                    let top = std::slice::from_ref(&path.first);
                    for i in (0..seg.len() as u32).filter(|&i| passes(i)) {
                        for v in distinct(values_at(&project(seg.payload_json(i), top), path), kind)
                        {
                            add(&v, 1);
                        }
                    }
                }
            }
        }
        for (_, payload) in table_payloads(&state, check.as_ref(), path) {
            for v in distinct(values_at(&payload, path), kind) {
                add(&v, 1);
            }
        }
        Ok(counts.into_values().collect())
    }

    /// Up to `limit` live points passing `filter`, ordered by their values of `key` (a point
    /// with several values comes once per value, as in Qdrant), from `start_from` on; ties in
    /// id order. Returns each point with the value it was ordered by.
    pub fn scroll_ordered(
        &self,
        key: &str,
        direction: Direction,
        start_from: Option<f64>,
        limit: usize,
        filter: Option<&Filter>,
        with_vector: bool,
    ) -> Result<Vec<(f64, PointView)>, ShardError> {
        let kinds = [FieldType::Integer, FieldType::Float, FieldType::Datetime];
        let field = self.indexed_field(key, &kinds, "order_by key")?;
        let (kind, path) = (field.schema.data_type, &field.path);
        if kind == FieldType::Integer && !field.schema.flag("range", true) {
            return Err(ShardError::Invalid(format!(
                "Bad request: the integer index of \"{key}\" has range disabled: order_by needs it"
            )));
        }
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
            let passes = |i: u32| seg.plain_and_passes(i, check.as_ref());
            // Up to `limit` from each segment, and the rest of a run of equal values (ties are
            // ordered by id across segments).
            let mut taken = 0;
            let mut last = f64::NAN;
            let mut take = |x: f64, i: u32| {
                if taken >= limit && x != last {
                    return true;
                }
                if in_range(x) && passes(i) {
                    found.push((x, seg.point_id(i)));
                    taken += 1;
                    last = x;
                }
                false
            };
            match index.fields.get(&field.definition) {
                Some(f) => f.walk_numbers(direction == Direction::Desc, &mut take),
                None => {
                    let top = std::slice::from_ref(&path.first);
                    for i in 0..seg.len() as u32 {
                        for x in numbers(values_at(&project(seg.payload_json(i), top), path), kind)
                        {
                            take(x, i);
                        }
                    }
                }
            }
        }
        for (id, payload) in table_payloads(&state, check.as_ref(), path) {
            for x in numbers(values_at(&payload, path), kind) {
                if in_range(x) {
                    found.push((x, id));
                }
            }
        }
        found.sort_by(|a, b| match direction {
            Direction::Asc => a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)),
            Direction::Desc => b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)),
        });
        found.truncate(limit);
        Ok(found
            .into_iter()
            .filter_map(|(x, id)| {
                let f = state.find(&id)?;
                Some((x, self.view(&state, &id, f, with_vector, true)))
            })
            .collect())
    }
}

/// The point table's entries (tail and overlays) passing the filter, each with its payload
/// restricted to `key`'s top level.
fn table_payloads<'s>(
    state: &'s ShardState,
    check: Option<&'s FilterCheck>,
    key: &KeyPath,
) -> impl Iterator<Item = (PointId, Payload)> + 's {
    let top = [key.first.clone()];
    state.points.iter().filter_map(move |(id, e)| {
        let json = e.payload.as_bytes();
        check
            .is_none_or(|c| c.json(id, json))
            .then(|| (*id, project(json, &top)))
    })
}

/// The distinct values of a facet field's kind among `values`.
fn distinct(values: Vec<&Value>, kind: FieldType) -> Vec<Value> {
    let mut out: Vec<Value> = values
        .into_iter()
        .filter(|v| match kind {
            FieldType::Keyword => v.is_string(),
            FieldType::Uuid => v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()),
            FieldType::Bool => v.is_boolean(),
            _ => v.as_i64().is_some(),
        })
        .cloned()
        .collect();
    out.sort_by_key(|v| v.to_string());
    out.dedup();
    out
}

/// The numbers an order_by field orders by among `values`.
fn numbers(values: Vec<&Value>, kind: FieldType) -> Vec<f64> {
    values
        .into_iter()
        .filter_map(|v| match kind {
            FieldType::Datetime => v.as_str().and_then(datetime_micros),
            _ => v.as_f64(),
        })
        .collect()
}
