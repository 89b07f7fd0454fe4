//! Payload indexes: for a field, which internal ids of a sealed segment hold which value.
//!
//! A collection declares indexed fields with Qdrant's schemas (`keyword`, `integer` with
//! `lookup`/`range`, `float`, `bool`, `uuid`, `datetime`, `text`); the shard keeps the set
//! ([`PayloadSchema`]) and every sealed segment holds a [`SegmentIndex`] built from its payload
//! table (by internal id) when the segment is built or opened, or when an index is created.
//! Segments are immutable, so the index never goes stale: a deleted or overlaid entry is
//! still in the postings, and every answer is intersected with the segment's plain entries
//! (live, not overlaid) by the caller. The tail and overlays (the point table) are checked by
//! the filter itself (`search.rs`).
//!
//! An index answers a condition *exactly* — the ids it gives are those [`Filter::matches`]
//! accepts for that condition — so that a filter made only of indexed conditions is never
//! checked against payloads. Conditions it cannot answer exactly are left to the check.
//!
//! Memory, per indexed value of an entry: 4 bytes (postings: keyword, uuid, bool, integer
//! lookup, text tokens), or 16 bytes (numeric: integer range, float, datetime), plus a hash map
//! slot and the text of each distinct value; and one bit per entry (which entries have a value).

use super::check::project;
use super::filter::{values_at, Condition, FieldCondition, Filter, Match, MatchValue, Range};
use super::payload::KeyPath;
use super::sealed::SealedSegment;
use super::state::LiveBits;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A field's index type (Qdrant's `PayloadSchemaType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Keyword,
    Integer,
    Float,
    Bool,
    Uuid,
    Datetime,
    Text,
}

/// How a field is indexed: its type and, when the client sent the object form, its params as
/// sent (reported back in `payload_schema`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSchema {
    pub data_type: FieldType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Map<String, Value>>,
}

impl FieldType {
    /// Whether an index of this type holds `v` (a uuid index only well-formed UUIDs, a datetime
    /// index only RFC 3339 date-times, ...): what `payload_schema`'s `points` counts, whether the
    /// point's segment has the index built yet or not.
    pub fn holds(self, v: &Value) -> bool {
        match (self, v) {
            (FieldType::Keyword | FieldType::Text, Value::String(_)) => true,
            (FieldType::Uuid, Value::String(s)) => uuid::Uuid::parse_str(s).is_ok(),
            (FieldType::Datetime, Value::String(s)) => datetime_micros(s).is_some(),
            (FieldType::Bool, Value::Bool(_)) => true,
            (FieldType::Integer | FieldType::Float, Value::Number(_)) => true,
            _ => false,
        }
    }
}

/// Indexed fields by key, as the client wrote it (Qdrant's key path syntax: `a.b`, `"a.b"`,
/// `a[].b`). What a key names is its parsed [`KeyPath`]: a filter condition is served by the
/// index whose path equals the condition's, however either was written ([`field_path`]).
pub type PayloadSchema = BTreeMap<String, FieldSchema>;

/// The key path an index definition names. Definitions are checked when they are made
/// (`Catalog::create_payload_index`, and a peer's catalog entry), so this fails only on a
/// definition no node accepted.
pub fn field_path(field: &str) -> Result<KeyPath, String> {
    KeyPath::parse(field).map_err(|e| format!("invalid payload index field name: {e}"))
}

/// The index definitions of `schema` on `path`, in key order.
pub fn definitions_on<'s>(
    schema: &'s PayloadSchema,
    path: &KeyPath,
) -> impl Iterator<Item = (&'s String, &'s FieldSchema)> {
    let path = path.clone();
    schema
        .iter()
        .filter(move |(k, _)| field_path(k).is_ok_and(|p| p == path))
}

/// Full-text tokenization (Qdrant's `text` index params).
#[derive(Debug, Clone, PartialEq)]
pub struct TextParams {
    /// `whitespace` splits on whitespace only; `word` (the default) on anything not
    /// alphanumeric.
    pub whitespace: bool,
    pub lowercase: bool,
    pub min_token_len: Option<usize>,
    pub max_token_len: Option<usize>,
}

impl TextParams {
    /// The distinct tokens of a text.
    pub fn tokens(&self, text: &str) -> Vec<String> {
        let split: Box<dyn Iterator<Item = &str>> = if self.whitespace {
            Box::new(text.split_whitespace())
        } else {
            Box::new(text.split(|c: char| !c.is_alphanumeric()))
        };
        let mut out: Vec<String> = split
            .filter(|t| !t.is_empty())
            .filter(|t| {
                let n = t.chars().count();
                self.min_token_len.is_none_or(|m| n >= m)
                    && self.max_token_len.is_none_or(|m| n <= m)
            })
            .map(|t| {
                if self.lowercase {
                    t.to_lowercase()
                } else {
                    t.to_string()
                }
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl FieldSchema {
    /// Reads Qdrant's `field_schema`: a type name, or `{"type": …, params…}`.
    pub fn parse(v: &Value) -> Result<FieldSchema, String> {
        let bad = |m: String| Err(format!("invalid field_schema: {m}"));
        let (data_type, params) = match v {
            Value::String(_) => (v.clone(), None),
            Value::Object(o) => match o.get("type") {
                Some(t) => (t.clone(), Some(o.clone())),
                None => return bad("the object form needs a \"type\"".into()),
            },
            other => return bad(format!("expected a type name or an object, got {other}")),
        };
        let data_type: FieldType = match serde_json::from_value(data_type.clone()) {
            Ok(t) => t,
            Err(_) => {
                return bad(format!(
                    "unknown type {data_type} (keyword, integer, float, bool, uuid, datetime or text; geo is not supported)"
                ))
            }
        };
        let schema = FieldSchema { data_type, params };
        let allowed: &[&str] = match data_type {
            FieldType::Keyword => &["is_tenant", "on_disk"],
            FieldType::Integer => &["lookup", "range", "is_principal", "on_disk"],
            FieldType::Float | FieldType::Datetime => &["is_principal", "on_disk"],
            FieldType::Uuid => &["is_tenant", "on_disk"],
            FieldType::Bool => &["on_disk"],
            FieldType::Text => &[
                "tokenizer",
                "lowercase",
                "min_token_len",
                "max_token_len",
                "on_disk",
                "phrase_matching",
            ],
        };
        for (k, value) in schema.params.iter().flatten() {
            if k == "type" || value.is_null() {
                continue;
            }
            if !allowed.contains(&k.as_str()) {
                return bad(format!("unknown parameter {k:?} for a {data_type:?} index"));
            }
            let ok = match k.as_str() {
                "tokenizer" => matches!(value.as_str(), Some("word" | "whitespace")),
                "min_token_len" | "max_token_len" => value.as_u64().is_some(),
                _ => value.is_boolean(),
            };
            if !ok {
                return bad(format!(
                    "bad value {value} for {k:?}{}",
                    if k == "tokenizer" {
                        " (word or whitespace; prefix and multilingual are not supported)"
                    } else {
                        ""
                    }
                ));
            }
        }
        if data_type == FieldType::Integer
            && !schema.flag("lookup", true)
            && !schema.flag("range", true)
        {
            return bad("an integer index needs lookup or range".into());
        }
        Ok(schema)
    }

    /// Checks a schema that did not come through [`FieldSchema::parse`] (a peer's catalog).
    pub fn check(&self) -> Result<(), String> {
        let parsed = match &self.params {
            Some(p) => FieldSchema::parse(&Value::Object(p.clone()))?,
            None => return Ok(()),
        };
        if parsed.data_type != self.data_type {
            return Err("invalid field_schema: its type and params disagree".into());
        }
        Ok(())
    }

    /// A boolean parameter (`lookup`, `range`, `lowercase`), or its default.
    pub fn flag(&self, name: &str, default: bool) -> bool {
        self.params
            .as_ref()
            .and_then(|p| p.get(name))
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// The tokenization of a `text` index.
    pub fn text(&self) -> Option<TextParams> {
        (self.data_type == FieldType::Text).then(|| {
            let p = self.params.as_ref();
            let num = |k: &str| {
                p.and_then(|p| p.get(k))
                    .and_then(Value::as_u64)
                    .map(|n| n as usize)
            };
            TextParams {
                whitespace: p.and_then(|p| p.get("tokenizer")).and_then(Value::as_str)
                    == Some("whitespace"),
                lowercase: self.flag("lowercase", true),
                min_token_len: num("min_token_len"),
                max_token_len: num("max_token_len"),
            }
        })
    }
}

/// One field's index in one segment.
pub struct FieldIndex {
    schema: FieldSchema,
    /// The field's key path: conditions are matched to the index by it.
    path: KeyPath,
    /// Value → sorted internal ids (keyword, uuid, bool as "true"/"false", text tokens).
    postings: HashMap<String, Vec<u32>>,
    /// Integer lookup: value → sorted internal ids.
    ints: HashMap<i64, Vec<u32>>,
    /// Numeric values (integer range, float, datetime as µs since the epoch), sorted.
    numbers: Vec<(f64, u32)>,
    /// Entries with at least one indexed value.
    has_value: LiveBits,
    bytes: usize,
}

/// The payload indexes of one segment, by field key as the schema writes it.
#[derive(Default)]
pub struct SegmentIndex {
    pub fields: HashMap<String, Arc<FieldIndex>>,
    /// Columns for filtered key paths without a declared index, built on first use (see
    /// [`SegmentIndex::candidates`]), at most [`MAX_IMPLICIT`] per segment.
    implicit: Mutex<HashMap<(KeyPath, FieldType), Arc<FieldIndex>>>,
}

/// The most implicit columns a segment keeps: beyond, conditions on further unindexed keys are
/// checked on the payloads.
const MAX_IMPLICIT: usize = 8;

impl SegmentIndex {
    pub fn new(fields: HashMap<String, Arc<FieldIndex>>) -> SegmentIndex {
        SegmentIndex {
            fields,
            implicit: Mutex::new(HashMap::new()),
        }
    }
}

impl FieldIndex {
    /// Indexes the field at `path` over every entry of `seg`.
    pub fn build(seg: &SealedSegment, path: &KeyPath, schema: &FieldSchema) -> FieldIndex {
        let n = seg.len();
        let mut index = FieldIndex {
            schema: schema.clone(),
            path: path.clone(),
            postings: HashMap::new(),
            ints: HashMap::new(),
            numbers: Vec::new(),
            has_value: LiveBits::new(n),
            bytes: n.div_ceil(8),
        };
        let top = [path.first.clone()];
        let text = schema.text();
        let lookup = schema.flag("lookup", true);
        let range = schema.flag("range", true);
        for i in 0..n as u32 {
            let payload = project(seg.payload_json(i), &top);
            let mut any = false;
            for v in values_at(&payload, path) {
                any |= index.add(i, v, text.as_ref(), lookup, range);
            }
            index.has_value.set(i, any);
        }
        index
            .numbers
            .sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        index.bytes += index.numbers.len() * 16
            + index
                .postings
                .iter()
                .map(|(k, ids)| k.len() + 48 + ids.len() * 4)
                .sum::<usize>()
            + index
                .ints
                .values()
                .map(|ids| 40 + ids.len() * 4)
                .sum::<usize>();
        index
    }

    /// Adds one value of entry `i`; whether it was indexed.
    fn add(
        &mut self,
        i: u32,
        v: &Value,
        text: Option<&TextParams>,
        lookup: bool,
        range: bool,
    ) -> bool {
        let mut post = |k: String| {
            let ids = self.postings.entry(k).or_default();
            if ids.last() != Some(&i) {
                ids.push(i);
            }
        };
        if !self.schema.data_type.holds(v) {
            return false;
        }
        match (self.schema.data_type, v) {
            (FieldType::Keyword, Value::String(s)) => post(s.clone()),
            (FieldType::Uuid, Value::String(s)) if uuid::Uuid::parse_str(s).is_ok() => {
                post(s.clone())
            }
            (FieldType::Bool, Value::Bool(b)) => post(b.to_string()),
            (FieldType::Text, Value::String(s)) => {
                let tokens = text.map(|t| t.tokens(s)).unwrap_or_default();
                tokens.into_iter().for_each(post);
            }
            (FieldType::Integer, Value::Number(x)) => {
                if let (true, Some(n)) = (lookup, x.as_i64()) {
                    let ids = self.ints.entry(n).or_default();
                    if ids.last() != Some(&i) {
                        ids.push(i);
                    }
                }
                if let (true, Some(f)) = (range, x.as_f64()) {
                    self.numbers.push((f, i));
                }
            }
            (FieldType::Float, Value::Number(x)) => self.numbers.extend(x.as_f64().map(|f| (f, i))),
            (FieldType::Datetime, Value::String(s)) => match datetime_micros(s) {
                Some(t) => self.numbers.push((t, i)),
                None => return false,
            },
            _ => return false,
        }
        true
    }

    pub fn schema(&self) -> &FieldSchema {
        &self.schema
    }

    pub fn path(&self) -> &KeyPath {
        &self.path
    }

    /// Calls `f` with every value of a keyword, uuid, bool or integer (`lookup`) index and the
    /// entries holding it.
    pub fn for_each_value(&self, mut f: impl FnMut(Value, &[u32])) {
        for (k, ids) in &self.postings {
            let v = match self.schema.data_type {
                FieldType::Bool => Value::Bool(k == "true"),
                FieldType::Text => continue,
                _ => Value::String(k.clone()),
            };
            f(v, ids);
        }
        for (n, ids) in &self.ints {
            f(Value::from(*n), ids);
        }
    }

    /// Walks the (value, entry) pairs of a numeric index in value order (entry order among
    /// equal values), descending when asked, until `f` says stop.
    pub fn walk_numbers(&self, descending: bool, f: &mut impl FnMut(f64, u32) -> bool) {
        if descending {
            for &(x, i) in self.numbers.iter().rev() {
                if f(x, i) {
                    return;
                }
            }
        } else {
            for &(x, i) in &self.numbers {
                if f(x, i) {
                    return;
                }
            }
        }
    }

    /// Heap bytes of this index.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries of the segment that hold a value (live or not).
    pub fn has_value(&self, i: u32) -> bool {
        self.has_value.get(i)
    }

    /// The entries matching `cond` on this field, when this index answers it exactly.
    fn answer(&self, cond: &FieldCondition, out: &mut IdSet) -> bool {
        let only_match = cond.range.is_none() && !other_kinds(cond);
        let only_range = cond.matches.is_none() && !other_kinds(cond);
        let t = self.schema.data_type;
        if let (true, Some(m)) = (only_match, &cond.matches) {
            let values: Vec<&MatchValue> = match m {
                Match::Value { value } => vec![value],
                Match::Any { any } => any.iter().collect(),
                Match::Tokens { tokens, .. } if t == FieldType::Text => {
                    return self.all_tokens(tokens, out);
                }
                _ => return false,
            };
            for v in &values {
                let ids = match (t, v) {
                    (FieldType::Keyword, MatchValue::Keyword(s)) => self.postings.get(s.as_str()),
                    // A uuid index holds only the values that are uuids: a match on anything
                    // else is checked on the payloads, as without the index.
                    (FieldType::Uuid, MatchValue::Keyword(s))
                        if uuid::Uuid::parse_str(s).is_ok() =>
                    {
                        self.postings.get(s.as_str())
                    }
                    (FieldType::Bool, MatchValue::Bool(b)) => {
                        self.postings.get(if *b { "true" } else { "false" })
                    }
                    (FieldType::Integer, MatchValue::Int(n))
                        if self.schema.flag("lookup", true) =>
                    {
                        self.ints.get(n)
                    }
                    _ => return false,
                };
                out.extend(ids.map_or(&[][..], Vec::as_slice));
            }
            return true;
        }
        if let (true, Some(r)) = (only_range, &cond.range) {
            let serves = if r.is_datetime() {
                t == FieldType::Datetime
            } else {
                matches!(t, FieldType::Float)
                    || (t == FieldType::Integer && self.schema.flag("range", true))
            };
            if !serves {
                return false;
            }
            self.range(r, out);
            return true;
        }
        false
    }

    fn range(&self, r: &Range, out: &mut IdSet) {
        let lo = self.numbers.partition_point(|(x, _)| {
            r.gt.is_some_and(|b| *x <= b) || r.gte.is_some_and(|b| *x < b)
        });
        let hi = self
            .numbers
            .partition_point(|(x, _)| r.lt.is_none_or(|b| *x < b) && r.lte.is_none_or(|b| *x <= b));
        for &(x, i) in self.numbers.get(lo..hi.max(lo)).unwrap_or(&[]) {
            if r.holds(x) {
                out.insert(i);
            }
        }
    }

    /// Entries holding every token (Qdrant's full-text match); no token matches nothing.
    fn all_tokens(&self, tokens: &[String], out: &mut IdSet) -> bool {
        let mut lists: Vec<&[u32]> = Vec::with_capacity(tokens.len());
        for t in tokens {
            match self.postings.get(t.as_str()) {
                Some(ids) => lists.push(ids),
                None => return true,
            }
        }
        lists.sort_by_key(|l| l.len());
        let Some((first, rest)) = lists.split_first() else {
            return true;
        };
        for &i in *first {
            if rest.iter().all(|l| l.binary_search(&i).is_ok()) {
                out.insert(i);
            }
        }
        true
    }
}

/// Whether a field condition uses kinds the indexes never answer.
fn other_kinds(c: &FieldCondition) -> bool {
    c.values_count.is_some()
        || c.is_empty.is_some()
        || c.is_null.is_some()
        || c.geo_bounding_box.is_some()
        || c.geo_radius.is_some()
        || c.geo_polygon.is_some()
}

/// An RFC 3339 date-time (or a date) as µs since the epoch: `YYYY-MM-DD`, optionally followed
/// by `T` or a space, `HH:MM[:SS[.frac]]` and `Z` or an offset `±HH:MM`; a time without zone is
/// UTC (as Qdrant reads it).
pub fn datetime_micros(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse::<i64>().ok() };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = 0f64;
    let mut offset = 0i64;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 16 || b[13] != b':' {
            return None;
        }
        let (h, mi) = (num(11..13)?, num(14..16)?);
        let mut rest = &s[16..];
        let mut sec = 0f64;
        if let Some(r) = rest.strip_prefix(':') {
            let end = r
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(r.len());
            sec = r[..end].parse().ok()?;
            rest = &r[end..];
        }
        match rest {
            "" | "Z" | "z" => {}
            o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
                let oh: i64 = o[1..3].parse().ok()?;
                let om: i64 = o[4..6].parse().ok()?;
                offset = (oh * 3600 + om * 60) * if o.starts_with('-') { -1 } else { 1 };
            }
            _ => return None,
        }
        secs = (h * 3600 + mi * 60 - offset) as f64 + sec;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days as f64 * 86_400.0 + secs) * 1e6)
}

/// A set of internal ids of one segment, as a bitset with a count.
pub struct IdSet {
    words: Vec<u64>,
    count: usize,
}

impl IdSet {
    pub fn new(n: usize) -> IdSet {
        IdSet {
            words: vec![0; n.div_ceil(64)],
            count: 0,
        }
    }
    pub fn insert(&mut self, i: u32) {
        if let Some(w) = self.words.get_mut(i as usize / 64) {
            let bit = 1u64 << (i % 64);
            if *w & bit == 0 {
                *w |= bit;
                self.count += 1;
            }
        }
    }
    fn extend(&mut self, ids: &[u32]) {
        ids.iter().for_each(|&i| self.insert(i));
    }
    #[inline]
    pub fn contains(&self, i: u32) -> bool {
        self.words
            .get(i as usize / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    pub fn len(&self) -> usize {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Every id below `n`.
    pub fn full(n: usize) -> IdSet {
        let mut words = vec![u64::MAX; n.div_ceil(64)];
        if let Some(last) = words.last_mut().filter(|_| n % 64 != 0) {
            *last = (1u64 << (n % 64)) - 1;
        }
        IdSet { words, count: n }
    }
    fn combine(&mut self, other: &IdSet, op: impl Fn(u64, u64) -> u64) {
        let mut count = 0;
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a = op(*a, *b);
            count += a.count_ones() as usize;
        }
        self.count = count;
    }
    fn intersect(&mut self, other: &IdSet) {
        self.combine(other, |a, b| a & b);
    }
    fn union(&mut self, other: &IdSet) {
        self.combine(other, |a, b| a | b);
    }
    fn subtract(&mut self, other: &IdSet) {
        self.combine(other, |a, b| a & !b);
    }
    /// The ids in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(k, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = w.trailing_zeros();
                    w &= w - 1;
                    k as u32 * 64 + b
                })
            })
        })
    }
}

/// What the indexes of one segment say about a filter.
pub struct Candidates {
    /// A superset of the segment's entries that pass (live or not).
    pub ids: IdSet,
    /// Whether `ids` is exactly the set passing (for plain entries): the filter is then never
    /// checked against payloads.
    pub exact: bool,
}

impl SegmentIndex {
    /// The candidates the indexes give for `filter` in a segment: every clause whose conditions
    /// the indexes answer narrows them — `must` by intersection, `should` by the union of its
    /// conditions (when the indexes answer all of them), `must_not` by removing what its
    /// exactly answered conditions select — and a condition that is itself a filter by the
    /// same rules. So `should: [c]`, `must_not: [c]` and `must: [{should: …}]` plan like
    /// `must: [c]` instead of checking payloads on every entry a walk visits. `None` when no
    /// clause narrows anything (the planner then samples).
    pub fn candidates(&self, filter: &Filter, seg: &SealedSegment) -> Option<Candidates> {
        let (ids, exact) = self.narrow(filter, seg)?;
        Some(Candidates { ids, exact })
    }

    /// [`SegmentIndex::candidates`] as a pair: a superset of the entries passing `filter`, and
    /// whether it is exactly that set.
    fn narrow(&self, filter: &Filter, seg: &SealedSegment) -> Option<(IdSet, bool)> {
        let n = seg.len();
        let mut set: Option<IdSet> = None;
        let mut exact = filter.min_should.is_none();
        let narrow = |s: IdSet, set: &mut Option<IdSet>| match set {
            Some(acc) => acc.intersect(&s),
            None => *set = Some(s),
        };
        for c in filter.must.iter().flat_map(|m| m.as_slice()) {
            match self.condition(c, seg) {
                Some((s, e)) => {
                    exact &= e;
                    narrow(s, &mut set);
                }
                None => exact = false,
            }
        }
        if let Some(should) = &filter.should {
            let mut union = IdSet::new(n);
            let mut all = true;
            for c in should.as_slice() {
                match self.condition(c, seg) {
                    Some((s, e)) => {
                        exact &= e;
                        union.union(&s);
                    }
                    None => {
                        all = false;
                        break;
                    }
                }
            }
            if all {
                narrow(union, &mut set);
            } else {
                exact = false;
            }
        }
        if let Some(must_not) = &filter.must_not {
            let mut excluded: Option<IdSet> = None;
            for c in must_not.as_slice() {
                match self.condition(c, seg) {
                    Some((s, true)) => match &mut excluded {
                        Some(x) => x.union(&s),
                        None => excluded = Some(s),
                    },
                    _ => exact = false,
                }
            }
            if let Some(x) = excluded {
                let mut kept = set.take().unwrap_or_else(|| IdSet::full(n));
                kept.subtract(&x);
                set = Some(kept);
            }
        }
        set.map(|ids| (ids, exact))
    }

    /// What the indexes say about one condition: a superset of the entries passing it and
    /// whether it is exact, or `None` when they say nothing.
    fn condition(&self, c: &Condition, seg: &SealedSegment) -> Option<(IdSet, bool)> {
        match c {
            Condition::Field(f) => self.indexes_for(f, seg).into_iter().find_map(|idx| {
                let mut s = IdSet::new(seg.len());
                idx.answer(f, &mut s).then_some((s, true))
            }),
            Condition::Filter(inner) => self.narrow(inner, seg),
            _ => None,
        }
    }

    /// The indexes that may serve a condition: the declared ones on its key path (compared
    /// parsed: `"a.b"` is the top-level key `a.b`, not `b` inside `a`), or else an implicit
    /// column of the type the condition needs — keyword, integer, bool for `match`, float for
    /// `range` — built from the segment's payloads the first time a filter names the path. Checking an unindexed
    /// field on the payload costs ≈ 0.35 µs a point (a JSON walk), so a filtered walk that
    /// looks at thousands of points is tens of times slower than an unfiltered one; a column
    /// makes the check a bit test, for ≈ 4 bytes a point (16 for numbers) and one pass over
    /// the segment's payloads, once (docs/filtered-search.md).
    fn indexes_for(&self, f: &FieldCondition, seg: &SealedSegment) -> Vec<Arc<FieldIndex>> {
        let path = f.key.path();
        let mut declared: Vec<(&String, &Arc<FieldIndex>)> = self
            .fields
            .iter()
            .filter(|(_, i)| i.path == *path)
            .collect();
        if !declared.is_empty() {
            declared.sort_by_key(|(k, _)| *k);
            return declared.into_iter().map(|(_, i)| Arc::clone(i)).collect();
        }
        self.implicit_for(f, path, seg).into_iter().collect()
    }

    fn implicit_for(
        &self,
        f: &FieldCondition,
        path: &KeyPath,
        seg: &SealedSegment,
    ) -> Option<Arc<FieldIndex>> {
        let kind = match (&f.matches, &f.range) {
            (Some(Match::Value { value }), None) => value_type(value),
            (Some(Match::Any { any }), None) => {
                let first = value_type(any.first()?);
                any.iter()
                    .all(|v| value_type(v) == first)
                    .then_some(first)?
            }
            (None, Some(r)) if r.is_datetime() => FieldType::Datetime,
            (None, Some(_)) => FieldType::Float,
            _ => return None,
        };
        let mut implicit = self.implicit.lock();
        let key = (path.clone(), kind);
        if let Some(idx) = implicit.get(&key) {
            return Some(Arc::clone(idx));
        }
        if implicit.len() >= MAX_IMPLICIT {
            return None;
        }
        let schema = FieldSchema {
            data_type: kind,
            params: None,
        };
        let idx = Arc::new(FieldIndex::build(seg, path, &schema));
        implicit.insert(key, Arc::clone(&idx));
        Some(idx)
    }

    pub fn bytes(&self) -> usize {
        let implicit: usize = self.implicit.lock().values().map(|f| f.bytes()).sum();
        implicit + self.fields.values().map(|f| f.bytes()).sum::<usize>()
    }
}

/// The index type answering a `match` on this value.
fn value_type(v: &MatchValue) -> FieldType {
    match v {
        MatchValue::Bool(_) => FieldType::Bool,
        MatchValue::Int(_) => FieldType::Integer,
        MatchValue::Keyword(_) => FieldType::Keyword,
    }
}

/// A copy of `filter` in which `match.text` on a field with a full-text index tests tokens
/// (Qdrant's semantics with the index) instead of substrings.
pub fn with_text_indexes(filter: &Filter, schema: &PayloadSchema) -> Filter {
    let texts: Vec<(KeyPath, TextParams)> = schema
        .iter()
        .filter_map(|(k, s)| Some((field_path(k).ok()?, s.text()?)))
        .collect();
    if texts.is_empty() {
        return filter.clone();
    }
    let mut f = filter.clone();
    f.rewrite_text(&|path| {
        texts
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, t)| t.clone())
    });
    f
}
