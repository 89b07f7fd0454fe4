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
use super::deadline::{Checkpoints, Deadline, Stopped};
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

/// What one distinct value costs a facet besides its text: its entry in the shard's counts (the
/// value's 32 bytes, its count, the hash table's slack), its copy in the reply and its entry in
/// the coordinator's merge, each about a third of this.
pub const FACET_VALUE_BYTES: usize = 64;

impl FacetValue {
    /// What counting this value holds ([`FACET_VALUE_BYTES`] and its text).
    pub fn held_bytes(&self) -> usize {
        FACET_VALUE_BYTES
            + match self {
                FacetValue::Keyword(s) => s.len(),
                _ => 0,
            }
    }
}

/// A facet's counts in one shard, which stop growing at the share of the request's memory one
/// shard's answer may hold (the payload limit of its [`Deadline`]).
struct Tally<'a> {
    counts: HashMap<FacetValue, usize>,
    held: usize,
    field: &'a IndexedKey,
    limits: &'a Deadline,
    too_large: Option<Stopped>,
}

impl Tally<'_> {
    /// Counts `n` more points holding `v`; a value that would take the counts over the limit
    /// stops the facet.
    fn add(&mut self, v: FacetValue, n: usize) {
        if n == 0 || self.too_large.is_some() {
            return;
        }
        match self.counts.entry(v) {
            std::collections::hash_map::Entry::Occupied(mut e) => *e.get_mut() += n,
            std::collections::hash_map::Entry::Vacant(e) => {
                self.held += e.key().held_bytes();
                if let Some(limit) = self.limits.over_limit(self.held) {
                    self.too_large = Some(Stopped::TooLarge(format!(
                        "the distinct values of `{}` this facet counts take more than {:.1} MB in one shard, the most one shard may answer (--request-memory-budget-bytes): add a filter that leaves fewer points, or facet a field with fewer distinct values",
                        self.field.key(),
                        limit as f64 / 1e6
                    )));
                    return;
                }
                e.insert(n);
            }
        }
    }
}

impl Shard {
    /// How many live points (passing `filter`) hold each value of the field: a point counts
    /// once per distinct value. Exact.
    pub fn facet(&self, field: &IndexedKey, filter: Option<&Filter>) -> Vec<(FacetValue, usize)> {
        (self.facet_within(field, filter, &Deadline::default())).unwrap_or_default()
    }

    /// [`Shard::facet`], stopping at `limits`' deadline ([`Stopped::Expired`]) and before its
    /// distinct values take more than `limits`' payload limit ([`Stopped::TooLarge`]).
    pub fn facet_within(
        &self,
        field: &IndexedKey,
        filter: Option<&Filter>,
        limits: &Deadline,
    ) -> Result<Vec<(FacetValue, usize)>, Stopped> {
        let filter = filter.map(|f| self.prepare_filter(f));
        let check = filter.as_deref().map(FilterCheck::new);
        let scanned = limits.checkpoints_weighted(filter.as_deref().map_or(1, |f| f.size()));
        let state = self.state.read();
        let mut tally = Tally {
            counts: HashMap::new(),
            held: 0,
            field,
            limits,
            too_large: None,
        };
        for seg in &state.segments {
            let index = seg.payload_index();
            let passes = |i: u32| scanned.tick() && seg.plain_and_passes(i, check.as_ref());
            match index_on(&index, field, serves_facet) {
                Some(f) => f.for_each_value(|v, ids| {
                    if tally.too_large.is_some() || !scanned.tick() {
                        return;
                    }
                    if let Some(v) = FacetValue::of(&v, field.kind) {
                        tally.add(v, ids.iter().filter(|&&i| passes(i)).count());
                    }
                }),
                None => {
                    for i in (0..seg.len() as u32).filter(|&i| passes(i)) {
                        for v in distinct(&stored_values(seg.payload_json(i), &field.path), field) {
                            tally.add(v, 1);
                        }
                    }
                }
            }
            scanned.result()?;
            if let Some(stop) = tally.too_large.take() {
                return Err(stop);
            }
        }
        for (_, values) in table_values(&state, check.as_ref(), &field.path, &scanned) {
            for v in distinct(&values, field) {
                tally.add(v, 1);
            }
        }
        scanned.result()?;
        match tally.too_large {
            Some(stop) => Err(stop),
            None => Ok(tally.counts.into_iter().collect()),
        }
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
        let scanned = limits.checkpoints();
        for (id, values) in table_values(&state, check.as_ref(), &field.path, &scanned) {
            for x in numbers(&values, field.kind).filter(|&x| in_range(x)) {
                found.push((x, id));
            }
        }
        scanned.result()?;
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
/// `path`, until `scanned` says the deadline passed.
fn table_values<'s>(
    state: &'s ShardState,
    check: Option<&'s FilterCheck>,
    path: &'s KeyPath,
    scanned: &'s Checkpoints<'s>,
) -> impl Iterator<Item = (PointId, Vec<Value>)> + 's {
    let entries = state.points.iter().take_while(|_| scanned.tick());
    entries.filter_map(move |(id, e)| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{HnswParams, Metric};
    use crate::shard::payload_index::{FieldSchema, PayloadSchema};
    use crate::shard::version::VersionClock;
    use crate::shard::{Change, ShardConfig};
    use serde_json::json;
    use std::time::Duration;

    /// A shard of 7000 points, each with its own keyword `kw` (`v0000`...) and `k % 10` in
    /// `ten`: 2000 sealed in an indexed segment, 5000 in the tail.
    fn shard() -> (tempfile::TempDir, Shard) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::Store::from_db(sled::Config::new().temporary(true).open().unwrap());
        let config = ShardConfig::new(2, Metric::Euclid, HnswParams::default());
        let shard = Shard::open(
            &store,
            "f",
            dir.path(),
            config,
            Arc::new(VersionClock::default()),
        )
        .unwrap();
        let schema: PayloadSchema = ["kw", "ten"]
            .into_iter()
            .map(|k| {
                (
                    k.to_string(),
                    FieldSchema::parse(&json!("keyword")).unwrap(),
                )
            })
            .collect();
        shard.set_payload_schema(schema);
        let points = |range: std::ops::Range<u64>| {
            range
                .map(|i| {
                    let payload = json!({"kw": format!("v{i:04}"), "ten": format!("t{}", i % 10)});
                    let payload = payload.as_object().cloned().unwrap_or_default();
                    Change::upsert(PointId::Num(i), 1, vec![i as f32, 0.0], payload)
                })
                .collect()
        };
        shard.commit(points(0..2000), false).unwrap();
        while shard.optimize(1).unwrap().is_some() {}
        shard.commit(points(2000..7000), false).unwrap();
        (dir, shard)
    }

    fn key(k: &str) -> IndexedKey {
        IndexedKey::new(k, FieldType::Keyword).unwrap()
    }

    #[test]
    fn a_facet_stops_before_its_values_outgrow_the_limit_and_at_the_deadline() {
        let (_dir, shard) = shard();
        // 7000 distinct values of 5 bytes: 7000 x 69 bytes held.
        let held = 7000 * (FACET_VALUE_BYTES + 5);
        let within = Deadline::default().with_payload_limit(Some(held));
        let counts = shard.facet_within(&key("kw"), None, &within).unwrap();
        assert_eq!(counts.len(), 7000);
        assert!(counts.iter().all(|(_, n)| *n == 1));
        // One value fewer than the facet holds: refused, naming the field and the flag.
        let under = Deadline::default().with_payload_limit(Some(held - 1));
        match shard.facet_within(&key("kw"), None, &under) {
            Err(Stopped::TooLarge(m)) => {
                assert!(
                    m.contains("`kw`") && m.contains("--request-memory-budget-bytes"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Few distinct values fit where many do not.
        let ten = shard.facet_within(&key("ten"), None, &under).unwrap();
        assert_eq!(ten.len(), 10);
        assert!(ten.iter().all(|(_, n)| *n == 700));
        // Over 4096 points looked at: the deadline is looked at on the way.
        let passed = Deadline::after(Some(Duration::ZERO));
        assert_eq!(
            shard.facet_within(&key("kw"), None, &passed).unwrap_err(),
            Stopped::Expired
        );
    }
}
