//! Payload operations: Qdrant's key paths, setting and deleting at a path, and the limits that
//! keep every payload readable.
//!
//! A key path is Qdrant's `JsonPath`: a first key, then any of `.key`, `."quoted key"`, `[3]`
//! (one array element) and `[]` (every element). A bare key is letters, digits, `_` and `-`
//! (Unicode letters included); anything else (`.`, spaces, brackets, an empty key) must be
//! quoted. Setting at a path follows Qdrant: missing objects are created on the way, a value of
//! another type is replaced by an object (or by an array for `[]` and `[n]`), `[n]` past the end
//! sets nothing, and `[]` sets inside every element; the payload is merged at the end.
//!
//! **Limits.** A payload may nest at most [`MAX_PAYLOAD_DEPTH`] levels (objects and arrays,
//! counting the payload object itself), so a key path has at most `MAX_PAYLOAD_DEPTH - 1`
//! items. Deeper payloads are refused with a 400 before anything is written: serde_json (and
//! Qdrant's own JSON parser, which is serde_json) reads at most 128 nested levels, and every
//! payload travels inside a few more (request and response bodies, peer messages), so 100
//! leaves each of those room while being deeper than any real payload. Qdrant itself accepts
//! up to 124 levels in an upsert body; shoal refuses 101-124. Before these limits a 200-item
//! key path was accepted and its payload then failed to parse on restart (and read back as
//! `{}`), and a 20 000-item one overflowed the stack: every walk below is a loop over an
//! explicit stack, never a recursion over the path or the payload.

use super::point::Payload;
use super::PayloadOp;
use serde_json::{Map, Value};

/// The deepest a payload may nest, counting the payload object itself (see the module doc).
pub const MAX_PAYLOAD_DEPTH: usize = 100;
/// The most items a key path may have: one level is the payload object merged at its end.
pub const MAX_KEY_PATH_ITEMS: usize = MAX_PAYLOAD_DEPTH - 1;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathItem {
    Key(String),
    Index(usize),
    /// `[]`: every element of an array.
    Each,
}

/// A parsed key path: a first key, then the steps after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPath {
    pub first: String,
    pub rest: Vec<PathItem>,
}

fn is_bare(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

impl KeyPath {
    /// Parses Qdrant's key path syntax; an error says what is wrong and where.
    pub fn parse(text: &str) -> Result<KeyPath, String> {
        let fail = |at: usize, what: &str| {
            Err(format!(
                "invalid key path {text:?} at byte {at}: {what} (bare keys are letters, digits, _ and -; quote others: a.\"b.c\"; arrays: a[0], a[])"
            ))
        };
        let mut rest = Vec::new();
        let (first, mut at) = match key_at(text) {
            Ok(k) => k,
            Err(what) => return fail(0, what),
        };
        while at < text.len() {
            if rest.len() + 1 >= MAX_KEY_PATH_ITEMS {
                return Err(format!(
                    "key path {}… has more than {MAX_KEY_PATH_ITEMS} items: a payload nests at most {MAX_PAYLOAD_DEPTH} levels",
                    prefix(text, 40)
                ));
            }
            let tail = &text[at..];
            if let Some(after) = tail.strip_prefix('.') {
                match key_at(after) {
                    Ok((key, used)) => {
                        rest.push(PathItem::Key(key));
                        at += 1 + used;
                    }
                    Err(what) => return fail(at + 1, what),
                }
            } else if tail.starts_with("[]") {
                rest.push(PathItem::Each);
                at += 2;
            } else if let Some(after) = tail.strip_prefix('[') {
                let digits = after.bytes().take_while(u8::is_ascii_digit).count();
                if digits == 0 || !after[digits..].starts_with(']') {
                    return fail(at, "expected [n] or []");
                }
                match after[..digits].parse::<usize>() {
                    Ok(i) => rest.push(PathItem::Index(i)),
                    Err(_) => return fail(at + 1, "array index too large"),
                }
                at += digits + 2;
            } else {
                return fail(at, "expected . [n] or [] after a key");
            }
        }
        Ok(KeyPath { first, rest })
    }

    /// Items in the path, the first key included.
    pub fn len(&self) -> usize {
        1 + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A bare or quoted key at the start of `s`, and the bytes it took.
fn key_at(s: &str) -> Result<(String, usize), &'static str> {
    if let Some(quoted) = s.strip_prefix('"') {
        let end = quoted
            .find(['"', '\\'])
            .ok_or("a quoted key has no closing quote")?;
        if quoted[end..].starts_with('\\') {
            return Err("a quoted key cannot hold a backslash");
        }
        return Ok((quoted[..end].to_string(), end + 2));
    }
    let len: usize = s
        .chars()
        .take_while(|c| is_bare(*c))
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return Err("expected a key");
    }
    Ok((s[..len].to_string(), len))
}

fn prefix(s: &str, chars: usize) -> &str {
    match s.char_indices().nth(chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// How deep a value nests: 0 for a scalar, 1 for `{}` or `[1]`, and so on. A loop, not a
/// recursion, so any value can be measured.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, above)) = stack.pop() {
        match v {
            Value::Object(map) => stack.extend(map.values().map(|c| (c, above + 1))),
            Value::Array(items) => stack.extend(items.iter().map(|c| (c, above + 1))),
            _ => {
                deepest = deepest.max(above);
                continue;
            }
        }
        deepest = deepest.max(above + 1);
    }
    deepest
}

/// How deep a payload nests, the payload object counting as 1.
pub fn payload_depth(payload: &Payload) -> usize {
    1 + payload.values().map(depth).max().unwrap_or(0)
}

/// Refuses a payload deeper than [`MAX_PAYLOAD_DEPTH`].
pub fn check_payload(payload: &Payload) -> Result<(), String> {
    let d = payload_depth(payload);
    if d > MAX_PAYLOAD_DEPTH {
        return Err(format!(
            "the payload nests {d} levels deep; at most {MAX_PAYLOAD_DEPTH} are allowed"
        ));
    }
    Ok(())
}

impl PayloadOp {
    /// Checks the operation before it is applied anywhere: its key paths parse, and no payload
    /// it can produce nests deeper than [`MAX_PAYLOAD_DEPTH`] (a path's items plus the depth of
    /// the payload merged at its end, whatever the point held).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            PayloadOp::Set { payload, key: None } | PayloadOp::Overwrite(payload) => {
                check_payload(payload)
            }
            PayloadOp::Set {
                payload,
                key: Some(key),
            } => {
                let path = KeyPath::parse(key)?;
                let d = path.len() + payload_depth(payload);
                if d > MAX_PAYLOAD_DEPTH {
                    return Err(format!(
                        "setting this payload ({} levels) at key {} ({} items) would nest the point's payload {d} levels deep; at most {MAX_PAYLOAD_DEPTH} are allowed",
                        payload_depth(payload),
                        prefix(key, 40),
                        path.len()
                    ));
                }
                Ok(())
            }
            PayloadOp::DeleteKeys(keys) => {
                keys.iter().try_for_each(|k| KeyPath::parse(k).map(drop))
            }
            PayloadOp::Clear => Ok(()),
        }
    }
}

/// Applies one payload operation to a payload in place. Key paths were checked by
/// [`PayloadOp::validate`]; one that does not parse changes nothing.
pub fn apply_payload_op(payload: &mut Payload, op: &PayloadOp) {
    match op {
        PayloadOp::Set { payload: add, key } => match key.as_deref().map(KeyPath::parse) {
            None => merge(payload, add),
            Some(Ok(path)) => set_at(payload, &path, add),
            Some(Err(e)) => tracing::debug!(error = %e, "payload key path skipped"),
        },
        PayloadOp::Overwrite(new) => *payload = new.clone(),
        PayloadOp::DeleteKeys(keys) => {
            for path in keys.iter().filter_map(|k| KeyPath::parse(k).ok()) {
                remove_at(payload, &path);
            }
        }
        PayloadOp::Clear => payload.clear(),
    }
}

/// The merge at the end of a set: each key of `add` replaces the one in `dest` (a `null` is
/// stored as `null`, as shoal always did and its compatibility suite expects).
fn merge(dest: &mut Payload, add: &Payload) {
    dest.extend(add.iter().map(|(k, v)| (k.clone(), v.clone())));
}

/// Sets `add` at `path` (see the module doc for the rules), walking with a work list so that
/// `[]` can fan out over every element.
fn set_at(payload: &mut Payload, path: &KeyPath, add: &Payload) {
    let first = payload.entry(path.first.clone()).or_insert(Value::Null);
    let mut work: Vec<(&mut Value, usize)> = vec![(first, 0)];
    while let Some((dest, step)) = work.pop() {
        let Some(item) = path.rest.get(step) else {
            merge(object(dest), add);
            continue;
        };
        match item {
            PathItem::Key(k) => {
                let slot = object(dest).entry(k.clone()).or_insert(Value::Null);
                work.push((slot, step + 1));
            }
            PathItem::Index(i) => {
                if let Some(slot) = array(dest).get_mut(*i) {
                    work.push((slot, step + 1));
                }
            }
            PathItem::Each => work.extend(array(dest).iter_mut().map(|v| (v, step + 1))),
        }
    }
}

/// The object `v` is, after replacing anything else by `{}`.
fn object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(map) => map,
        _ => unreachable!("just made an object"),
    }
}

/// The array `v` is, after replacing anything else by `[]`.
fn array(v: &mut Value) -> &mut Vec<Value> {
    if !v.is_array() {
        *v = Value::Array(Vec::new());
    }
    match v {
        Value::Array(items) => items,
        _ => unreachable!("just made an array"),
    }
}

/// Qdrant's `with_payload: {"include": [paths]}` (or a list of paths): only what the paths
/// reach, in the payload's own structure (`nested.a` gives `{"nested": {"a": …}}`, `arr[].a`
/// keeps `a` of every element). Paths that reach nothing add nothing.
pub fn payload_only(payload: &Payload, paths: &[KeyPath]) -> Payload {
    let mut out = Payload::new();
    for path in paths {
        let Some(value) = payload.get(&path.first) else {
            continue;
        };
        if let Some(part) = project(value, &path.rest) {
            match out.get_mut(&path.first) {
                Some(held) => merge_deep(held, part),
                None => {
                    out.insert(path.first.clone(), part);
                }
            }
        }
    }
    out
}

/// Qdrant's `with_payload: {"exclude": [paths]}`: the payload without what the paths reach.
pub fn payload_without(payload: &Payload, paths: &[KeyPath]) -> Payload {
    let mut out = payload.clone();
    for path in paths {
        remove_at(&mut out, path);
    }
    out
}

/// The part of `value` that `rest` reaches, shaped like `value`. Recursion over the path, which
/// has at most [`MAX_KEY_PATH_ITEMS`] items.
fn project(value: &Value, rest: &[PathItem]) -> Option<Value> {
    let Some((item, after)) = rest.split_first() else {
        return Some(value.clone());
    };
    match (item, value) {
        (PathItem::Key(k), Value::Object(map)) => {
            let part = project(map.get(k)?, after)?;
            Some(Value::Object(Map::from_iter([(k.clone(), part)])))
        }
        (PathItem::Index(i), Value::Array(items)) => {
            Some(Value::Array(vec![project(items.get(*i)?, after)?]))
        }
        (PathItem::Each, Value::Array(items)) => Some(Value::Array(
            items.iter().filter_map(|v| project(v, after)).collect(),
        )),
        _ => None,
    }
}

/// Joins two projections of the same value: objects key by key, arrays of the same length
/// element by element (`arr[].a` and `arr[].b`); anything else keeps the later one.
fn merge_deep(into: &mut Value, part: Value) {
    match (into, part) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(held) => merge_deep(held, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (held, v) in a.iter_mut().zip(b) {
                merge_deep(held, v);
            }
        }
        (into, part) => *into = part,
    }
}

/// Removes what `path` names: a key, one element (`[n]`) or every element (`[]`, leaving `[]`);
/// a path through something of another type removes nothing.
fn remove_at(payload: &mut Payload, path: &KeyPath) {
    let Some((last, steps)) = path.rest.split_last() else {
        payload.remove(&path.first);
        return;
    };
    let Some(first) = payload.get_mut(&path.first) else {
        return;
    };
    // Every value the path reaches before its last item.
    let mut reached: Vec<(&mut Value, usize)> = vec![(first, 0)];
    let mut parents = Vec::new();
    while let Some((v, step)) = reached.pop() {
        let Some(item) = steps.get(step) else {
            parents.push(v);
            continue;
        };
        match (item, v) {
            (PathItem::Key(k), Value::Object(map)) => {
                reached.extend(map.get_mut(k).map(|c| (c, step + 1)))
            }
            (PathItem::Index(i), Value::Array(items)) => {
                reached.extend(items.get_mut(*i).map(|c| (c, step + 1)))
            }
            (PathItem::Each, Value::Array(items)) => {
                reached.extend(items.iter_mut().map(|c| (c, step + 1)))
            }
            _ => {}
        }
    }
    for parent in parents {
        match (last, parent) {
            (PathItem::Key(k), Value::Object(map)) => {
                map.remove(k);
            }
            (PathItem::Index(i), Value::Array(items)) if *i < items.len() => {
                items.remove(*i);
            }
            (PathItem::Each, Value::Array(items)) => items.clear(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
