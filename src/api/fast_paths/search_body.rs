//! A reader for search and query bodies (`/points/search`, `/points/query` and their batches)
//! that reads the vector's numbers itself and leaves everything else to serde.
//!
//! A search body is nearly all vector: 128 numbers are ~1.3 KB of a ~1.4 KB body, and serde_json
//! reads them a byte at a time through its generic sequence and number machinery. Here the
//! object's keys, the vector, `limit`, `offset`, `score_threshold` and boolean `with_payload` /
//! `with_vector` are read directly; every other value (a filter, `params`, a named vector, a
//! payload selector, a query by id, …) is handed to serde_json as it stands in the body, so it is
//! read by the very `Deserialize` code it always was.
//!
//! It is a fast path, not a second dialect: whenever it answers, serde_json would have answered
//! the same (numbers: [`super::json_number`]). Anything it does not recognise — a key it does not
//! know or sees twice, an escape in a key, a number of another shape, a value serde refuses,
//! nesting deep enough that serde_json's depth limit could tell the two apart, malformed JSON —
//! answers `None`, and the caller reads the whole body with serde_json as before, with its
//! errors. The tests hold it to serde_json on generated bodies.

use super::json_number::read_f32;
use crate::service::models::{
    QueryBatch, QueryInput, QueryPoints, SearchBatch, SearchParams, SearchPoints, SearchVector,
    WithPayload, WithVector,
};
use crate::shard::filter::Filter;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A request body the fast path can read.
pub trait FastBody: Sized {
    /// The body, or `None` to have serde_json read it.
    fn read(body: &[u8]) -> Option<Self>;
}

/// Nesting a value handed to serde may have without reaching serde_json's depth limit (128
/// levels) either way it is read: whole, or on its own.
const SAFE_DEPTH: usize = 100;

/// A position in a JSON text.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// Skips JSON whitespace (the four bytes serde_json skips), then the next byte.
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// `word` (after whitespace), consumed if it is there.
    fn literal(&mut self, word: &[u8]) -> bool {
        self.peek();
        let found = self.b[self.i..].starts_with(word);
        if found {
            self.i += word.len();
        }
        found
    }

    /// Nothing but whitespace is left (serde_json's `from_slice` requires it).
    fn end(mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    /// A key without escapes or control characters, as its bytes.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let len = self.b[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        // The closing quote itself: a control character stops the scan too, and is serde's.
        if self.b[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        Some(&self.b[start..start + len])
    }

    /// An object, each key handed to `field` with the cursor on its value; `field` consumes the
    /// value or fails.
    fn object(&mut self, mut field: impl FnMut(&'a [u8], &mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.key()?;
            self.eat(b':')?;
            field(key, self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array, each element read by `item`.
    fn array<T>(
        &mut self,
        capacity: usize,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        self.eat(b'[')?;
        let mut out = Vec::with_capacity(capacity);
        if self.eat(b']').is_some() {
            return Some(out);
        }
        loop {
            out.push(item(self)?);
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(out);
                }
                _ => return None,
            }
        }
    }

    fn f32(&mut self) -> Option<f32> {
        self.peek();
        let (x, end) = read_f32(self.b, self.i)?;
        self.i = end;
        Some(x)
    }

    /// A list of numbers, with room for all of them reserved up front (clients write a number
    /// and its comma in eight bytes or more, so the text left bounds the count).
    ///
    /// Its own loop rather than [`Cursor::array`] with [`Cursor::f32`]: a vector is a body's
    /// bulk, and in one loop the position stays in a register, the commonest shape of a number
    /// ([`read_f32`]'s short path) is read inline, and the byte right after a number is tried as
    /// the comma before any whitespace is skipped (with the short path's one word less, 163 ->
    /// 104 instructions a number, `docs/benchmarks.md`).
    fn f32_list(&mut self) -> Option<Vec<f32>> {
        let capacity = (self.b.len() - self.i).min(1 << 19) / 8;
        self.eat(b'[')?;
        let mut out = Vec::with_capacity(capacity);
        if self.eat(b']').is_some() {
            return Some(out);
        }
        let (b, mut i) = (self.b, self.i);
        loop {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
                i += 1;
            }
            let (x, end) = read_f32(b, i)?;
            out.push(x);
            i = end;
            let mut next = b.get(i);
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = next {
                i += 1;
                next = b.get(i);
            }
            match next? {
                b',' => i += 1,
                b']' => {
                    self.i = i + 1;
                    return Some(out);
                }
                _ => return None,
            }
        }
    }

    /// A non-negative integer as serde reads a `usize`: digits only, no leading zero.
    fn usize(&mut self) -> Option<usize> {
        self.peek();
        let digits = self.b[self.i..].iter().take_while(|c| c.is_ascii_digit());
        let n = digits.count();
        if n == 0 || n > 19 || (n > 1 && self.b[self.i] == b'0') {
            return None;
        }
        let value = self.b[self.i..self.i + n]
            .iter()
            .fold(0u64, |v, &c| v * 10 + u64::from(c - b'0'));
        self.i += n;
        if let Some(b'.' | b'e' | b'E') = self.b.get(self.i) {
            return None;
        }
        usize::try_from(value).ok()
    }

    fn bool(&mut self) -> Option<bool> {
        if self.literal(b"true") {
            Some(true)
        } else if self.literal(b"false") {
            Some(false)
        } else {
            None
        }
    }

    /// `null` as `None`, else what `read` reads.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.literal(b"null") {
            return Some(None);
        }
        read(self).map(Some)
    }

    /// The value here read by serde_json, with the `Deserialize` code a whole-body read runs
    /// for it. Nested deeper than [`SAFE_DEPTH`]: `None`.
    fn serde<T: DeserializeOwned>(&mut self) -> Option<T> {
        let rest = &self.b[self.i..];
        let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
        let value = values.next()?.ok()?;
        let used = values.byte_offset();
        if depth(&rest[..used]) > SAFE_DEPTH {
            return None;
        }
        self.i += used;
        Some(value)
    }
}

/// The deepest nesting of arrays and objects in valid JSON `text` (bounded by half its length,
/// so short texts are not scanned).
fn depth(text: &[u8]) -> usize {
    if text.len() / 2 <= SAFE_DEPTH {
        return 0;
    }
    let (mut deepest, mut open, mut in_string, mut escaped) = (0, 0usize, false, false);
    for &c in text {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') | (false, _, b'"') => in_string = !in_string,
            (false, _, b'[' | b'{') => {
                open += 1;
                deepest = deepest.max(open);
            }
            (false, _, b']' | b'}') => open = open.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Keys seen in one object: a key seen twice is serde's "duplicate field" (left to it).
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn first(&mut self, field: u32) -> Option<()> {
        let bit = 1 << field;
        let first = self.0 & bit == 0;
        self.0 |= bit;
        first.then_some(())
    }

    /// One of the keys in `mask` was seen.
    fn any(&self, mask: u32) -> bool {
        self.0 & mask != 0
    }
}

/// `with_payload`: `true`/`false` read here, a list of keys or a selector by serde.
fn with_payload(c: &mut Cursor) -> Option<Option<WithPayload>> {
    match c.peek()? {
        b't' | b'f' => c.bool().map(|b| Some(WithPayload::All(b))),
        _ => c.serde(),
    }
}

fn with_vector(c: &mut Cursor) -> Option<Option<WithVector>> {
    match c.peek()? {
        b't' | b'f' => c.bool().map(|b| Some(WithVector::All(b))),
        _ => c.serde(),
    }
}

/// Every key of a search body and of a query body, read by one match: most are shared, and each
/// body type takes its own from here ([`search_points`], [`query_points`]).
#[derive(Default)]
struct Fields {
    seen: Seen,
    vector: Option<SearchVector>,
    query: Option<QueryInput>,
    limit: Option<usize>,
    filter: Option<Filter>,
    params: Option<SearchParams>,
    offset: Option<usize>,
    with_payload: Option<WithPayload>,
    with_vector: Option<WithVector>,
    score_threshold: Option<f32>,
    using: Option<String>,
    prefetch: Option<Value>,
    lookup_from: Option<Value>,
}

/// The keys of one body type only, as [`Seen`] numbers them.
const SEARCH_ONLY: u32 = 1 << 0;
const QUERY_ONLY: u32 = 0b1111 << 8;

fn fields(c: &mut Cursor) -> Option<Fields> {
    let mut f = Fields::default();
    c.object(|key, c| {
        let number = match key {
            b"vector" => {
                f.vector = Some(match c.peek()? {
                    b'[' => SearchVector::Dense(c.f32_list()?),
                    _ => c.serde()?,
                });
                0
            }
            // Nullable: a search body's `limit` must be a number, which `search_points` asks.
            b"limit" => {
                f.limit = c.nullable(Cursor::usize)?;
                1
            }
            b"filter" => {
                f.filter = c.serde()?;
                2
            }
            b"params" => {
                f.params = c.serde()?;
                3
            }
            b"offset" => {
                f.offset = c.nullable(Cursor::usize)?;
                4
            }
            b"with_payload" => {
                f.with_payload = with_payload(c)?;
                5
            }
            b"with_vector" => {
                f.with_vector = with_vector(c)?;
                6
            }
            b"score_threshold" => {
                f.score_threshold = c.nullable(Cursor::f32)?;
                7
            }
            b"query" => {
                f.query = match c.peek()? {
                    b'[' => Some(QueryInput::Vector(c.f32_list()?)),
                    _ => c.serde()?,
                };
                8
            }
            b"using" => {
                f.using = c.serde()?;
                9
            }
            b"prefetch" => {
                f.prefetch = c.serde()?;
                10
            }
            b"lookup_from" => {
                f.lookup_from = c.serde()?;
                11
            }
            _ => return None,
        };
        f.seen.first(number)
    })?;
    Some(f)
}

fn search_points(c: &mut Cursor) -> Option<SearchPoints> {
    let f = fields(c)?;
    if f.seen.any(QUERY_ONLY) {
        return None;
    }
    Some(SearchPoints {
        vector: f.vector?,
        limit: f.limit?,
        filter: f.filter,
        params: f.params,
        offset: f.offset,
        with_payload: f.with_payload,
        with_vector: f.with_vector,
        score_threshold: f.score_threshold,
    })
}

fn query_points(c: &mut Cursor) -> Option<QueryPoints> {
    let f = fields(c)?;
    if f.seen.any(SEARCH_ONLY) {
        return None;
    }
    Some(QueryPoints {
        query: f.query,
        prefetch: f.prefetch,
        using: f.using,
        filter: f.filter,
        params: f.params,
        score_threshold: f.score_threshold,
        limit: f.limit,
        offset: f.offset,
        with_payload: f.with_payload,
        with_vector: f.with_vector,
        lookup_from: f.lookup_from,
    })
}

/// `{"searches": [item, …]}`.
fn batch<T>(c: &mut Cursor, item: fn(&mut Cursor) -> Option<T>) -> Option<Vec<T>> {
    let mut searches = None;
    c.object(|key, c| {
        if key != b"searches" || searches.is_some() {
            return None;
        }
        searches = Some(c.array(0, item)?);
        Some(())
    })?;
    searches
}

/// Reads a whole body with `read`: it must start with an object and end after it.
fn whole<T>(body: &[u8], read: impl FnOnce(&mut Cursor) -> Option<T>) -> Option<T> {
    let mut c = Cursor { b: body, i: 0 };
    // Anything but an object (an empty body, which some routes read as their default; the
    // array form serde accepts for a struct) is serde_json's.
    if c.peek()? != b'{' {
        return None;
    }
    let value = read(&mut c)?;
    c.end()?;
    Some(value)
}

impl FastBody for SearchPoints {
    fn read(body: &[u8]) -> Option<Self> {
        whole(body, search_points)
    }
}

impl FastBody for Option<SearchPoints> {
    fn read(body: &[u8]) -> Option<Self> {
        whole(body, search_points).map(Some)
    }
}

impl FastBody for QueryPoints {
    fn read(body: &[u8]) -> Option<Self> {
        whole(body, query_points)
    }
}

impl FastBody for SearchBatch {
    fn read(body: &[u8]) -> Option<Self> {
        whole(body, |c| batch(c, search_points)).map(|searches| SearchBatch { searches })
    }
}

impl FastBody for QueryBatch {
    fn read(body: &[u8]) -> Option<Self> {
        whole(body, |c| batch(c, query_points)).map(|searches| QueryBatch { searches })
    }
}
