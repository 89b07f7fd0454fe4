//! A hand-written reader for the common shape of search and query bodies: a flat object of known
//! keys whose values are a list of numbers, integers, booleans or `null`.
//!
//! A 128-d search body is ~1.4 KB, nearly all of it the vector, and serde_json reads numbers a
//! byte at a time through a general decimal parser: ~5 µs a request on the bench machine, the
//! largest cost of the HTTP path after the kernel. Here fraction digits are read eight at a time.
//!
//! It is a fast path, not a second dialect: whenever it returns a value, serde_json would have
//! returned the same one (the same `f32` bits: a number's digits become a `u64` significand and a
//! power of ten, and the `f64` is computed with the very operations serde_json uses, then cast to
//! `f32` as serde does). Anything else — an unknown or repeated key, an escape in a key, a filter,
//! a named vector, a number with more than 19 significant digits or an exponent past 308, malformed
//! JSON — returns `None`, and the caller parses the body with serde_json as before, with its
//! errors. `tests` checks the agreement on generated bodies.

#[cfg(target_arch = "x86_64")]
mod simd;

use crate::service::models::{
    QueryBatch, QueryInput, QueryPoints, SearchBatch, SearchParams, SearchPoints, SearchVector,
    WithPayload, WithVector,
};

/// The powers of ten an `f64` holds exactly.
const EXACT_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// serde_json's table of powers of ten, `1e0` to `1e308` (each literal's nearest `f64`): the
/// head as constants, the rest computed once.
fn pow10(exp: u32) -> Option<f64> {
    static REST: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    if let Some(&p) = EXACT_POW10.get(exp as usize) {
        return Some(p);
    }
    let rest = REST.get_or_init(|| {
        (0..=308)
            .map(|k| format!("1e{k}").parse().unwrap_or(f64::INFINITY))
            .collect()
    });
    rest.get(exp as usize).copied()
}

/// A position in a JSON text.
pub struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Cursor { b, i: 0 }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        self.ws();
        let found = self.b[self.i..].starts_with(word);
        if found {
            self.i += word.len();
        }
        found
    }

    /// Only whitespace is left.
    pub fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    /// A string without escapes (a key), as its raw bytes.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let len = self.b[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        self.i = start + len;
        self.eat(b'"')?;
        Some(&self.b[start..start + len])
    }

    /// An object, each key handed to `field` with the cursor on its value; `field` must consume
    /// the value or fail.
    pub fn object(
        &mut self,
        mut field: impl FnMut(&'a [u8], &mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.plain_string()?;
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
    pub fn array<T>(&mut self, item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.array_with(0, item)
    }

    /// [`Self::array`] into a vector with room for `capacity` elements.
    #[inline(always)]
    fn array_with<T>(
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

    /// `null` as `None`, else the value `read` reads.
    pub fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.literal(b"null") {
            return Some(None);
        }
        read(self).map(Some)
    }

    pub fn bool(&mut self) -> Option<bool> {
        if self.literal(b"true") {
            Some(true)
        } else if self.literal(b"false") {
            Some(false)
        } else {
            None
        }
    }

    /// A non-negative integer (no fraction, no exponent), as serde reads a `usize`.
    pub fn usize(&mut self) -> Option<usize> {
        self.ws();
        let digits = self.b[self.i..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 || digits > 19 || (digits > 1 && self.b[self.i] == b'0') {
            return None;
        }
        let n = self.b[self.i..self.i + digits]
            .iter()
            .fold(0u64, |n, &c| n * 10 + u64::from(c - b'0'));
        self.i += digits;
        if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        usize::try_from(n).ok()
    }

    /// A list of numbers as `f32`s, with room reserved for all of them up front.
    pub fn f32_list(&mut self) -> Option<Vec<f32>> {
        // Clients write eight or more bytes a number with its comma: the text left bounds the count.
        let capacity = self.b.len().saturating_sub(self.i).min(1 << 16) / 8;
        #[cfg(target_arch = "x86_64")]
        if simd::available() {
            // SAFETY: this CPU has SSSE3.
            return unsafe { self.f32_list_ssse3(capacity) };
        }
        self.array_with(capacity, Cursor::f32)
    }

    /// [`Self::f32_list`] with each number tried first by the SSSE3 reader, in one function
    /// compiled for SSSE3 so that the reader inlines into the loop.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "ssse3")]
    fn f32_list_ssse3(&mut self, capacity: usize) -> Option<Vec<f32>> {
        // No whitespace skipped first: a number with whitespace before it is the scalar reader's.
        self.array_with(capacity, |c| match simd::short_decimal(c.b, c.i) {
            Some((x, end)) => {
                c.i = end;
                Some(x)
            }
            None => c.f32(),
        })
    }

    /// A JSON number as serde reads an `f32`: integers through `u64`/`i64`, others through
    /// `f64` (significand × or ÷ a power of ten), then `as f32`.
    pub fn f32(&mut self) -> Option<f32> {
        self.ws();
        if let Some((x, end)) = short_decimal(self.b, self.i) {
            self.i = end;
            return Some(x);
        }
        let neg = self.b.get(self.i) == Some(&b'-');
        self.i += usize::from(neg);
        let mut m = 0u64;
        // Significant digits taken into `m` (leading zeros are not significant).
        let mut sig = 0u32;
        match self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(&mut m, &mut sig),
            _ => return None,
        }
        let mut exp = 0i32;
        let mut integer = true;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let start = self.i;
            self.digits(&mut m, &mut sig);
            let n = self.i - start;
            if n == 0 {
                return None;
            }
            exp -= n as i32;
            integer = false;
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            let eneg = self.b.get(self.i) == Some(&b'-');
            if let Some(b'-' | b'+') = self.b.get(self.i) {
                self.i += 1;
            }
            let start = self.i;
            let mut e = 0i32;
            while let Some(c @ b'0'..=b'9') = self.b.get(self.i) {
                e = e.saturating_mul(10).saturating_add(i32::from(c - b'0'));
                self.i += 1;
            }
            if self.i == start {
                return None;
            }
            exp = exp.saturating_add(if eneg { -e } else { e });
            integer = false;
        }
        if sig > 19 {
            return None;
        }
        if integer {
            // serde_json: a u64; when negative an i64, or an f64 for `-0` and below i64::MIN.
            if !neg {
                return Some(m as f32);
            }
            let negated = (m as i64).wrapping_neg();
            return Some(if negated >= 0 {
                -(m as f64) as f32
            } else {
                negated as f32
            });
        }
        // serde_json: f64 significand times or divided by one power of ten; a product that
        // overflows is its "number out of range".
        let pow = pow10(exp.unsigned_abs())?;
        let f = if exp >= 0 {
            Some(m as f64 * pow).filter(|f| f.is_finite())?
        } else {
            m as f64 / pow
        };
        Some((if neg { -f } else { f }) as f32)
    }

    /// Appends a run of decimal digits to `m`, eight at a time where it can. Past 19 significant
    /// digits `sig` keeps counting (and the caller gives up) while `m` stops growing.
    #[inline(always)]
    fn digits(&mut self, m: &mut u64, sig: &mut u32) {
        if *sig == 0 {
            while self.b.get(self.i) == Some(&b'0') {
                self.i += 1;
            }
        }
        // Eight bytes at a time: the digits among them (up to the first non-digit) at once.
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            let n = leading_digits(word);
            if n == 0 || *sig + n > 19 {
                break;
            }
            *m = *m * TEN_TO[n as usize] + digit_value(word, n);
            *sig += n;
            self.i += n as usize;
            if n < 8 {
                return;
            }
        }
        while let Some(c @ b'0'..=b'9') = self.b.get(self.i) {
            if *sig < 19 {
                *m = *m * 10 + u64::from(c - b'0');
            }
            *sig += 1;
            self.i += 1;
        }
    }
}

/// `TEN_TO[n]` is 10ⁿ, up to the most significant digits serde_json reads into a `u64`.
const TEN_TO: [u64; 19] = {
    let mut p = [1u64; 19];
    let mut k = 1;
    while k < p.len() {
        p[k] = p[k - 1] * 10;
        k += 1;
    }
    p
};

/// The number at `b[i..]` if it has the shape clients write vector components in: `-?d+.d+`
/// with one to seven digits before the dot, one to sixteen after it (Rust writes a float32 in up
/// to nine significant digits, Python in the 16-17 of the double it widens it to), at most 19
/// in all, and no exponent; read with 8-byte loads and no branch per digit. `None` (for the
/// general path) for any other shape, or when fewer than eight bytes follow the digits read.
#[inline(always)]
fn short_decimal(b: &[u8], i: usize) -> Option<(f32, usize)> {
    let neg = b.get(i) == Some(&b'-');
    let i = i + usize::from(neg);
    let word = load8(b, i)?;
    let n1 = leading_digits(word);
    // One digit to seven, no leading zero before another digit (JSON forbids `01`), then the
    // dot, which is in the same word.
    if n1 == 0
        || n1 == 8
        || (n1 > 1 && word & 0xFF == u64::from(b'0'))
        || (word >> (8 * n1)) as u8 != b'.'
    {
        return None;
    }
    let dot = i + n1 as usize;
    let fraction = load8(b, dot + 1)?;
    let n2 = leading_digits(fraction);
    if n2 == 0 {
        return None;
    }
    let head = digit_value(word, n1);
    // The significand, the fraction's length, and the byte after it.
    let (m, digits, next) = if n2 < 8 {
        let m = head * TEN_TO[n2 as usize] + digit_value(fraction, n2);
        (m, n2, (fraction >> (8 * n2)) as u8)
    } else {
        let more = load8(b, dot + 9)?;
        let n3 = leading_digits(more);
        // At most 19 digits in all, so the significand fits a u64 as serde_json accumulates it.
        if n1 + 8 + n3 > 19 {
            return None;
        }
        let m = head * TEN_TO[8] + digit_value(fraction, 8);
        let m = if n3 == 0 {
            m
        } else {
            m * TEN_TO[n3 as usize] + digit_value(more, n3)
        };
        let next = if n3 < 8 {
            (more >> (8 * n3)) as u8
        } else {
            b.get(dot + 17).copied().unwrap_or(b' ')
        };
        (m, 8 + n3, next)
    };
    // More than sixteen fraction digits, or an exponent: the general path's.
    if next.is_ascii_digit() || next | 0x20 == b'e' {
        return None;
    }
    // As serde_json: the significand as an f64 (rounded past 2^53, as there), divided by the
    // power of ten of the fraction's length (exact up to 1e22).
    let f = m as f64 / EXACT_POW10[digits as usize];
    Some(((if neg { -f } else { f }) as f32, dot + 1 + digits as usize))
}

/// The eight bytes at `b[i..]` as a little-endian word, if there are eight.
#[inline(always)]
fn load8(b: &[u8], i: usize) -> Option<u64> {
    let chunk: [u8; 8] = b.get(i..i + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// How many of the eight bytes of `word` (first byte lowest) are ASCII digits before the first
/// byte that is not.
#[inline(always)]
fn leading_digits(word: u64) -> u32 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // A byte is a digit when its high nibble is 3 and its low nibble is at most 9.
    let high = (word & (ONES * 0xF0)) ^ (ONES * 0x30);
    let low = (word.wrapping_add(ONES * 0x06)) & (ONES * 0xF0) ^ (ONES * 0x30);
    let not_digit = (high | low) & (ONES * 0xF0);
    not_digit.trailing_zeros() / 8
}

/// The number the first `n` (1 to 8) bytes of `word` spell, all of them ASCII digits (the first
/// byte most significant).
#[inline(always)]
fn digit_value(word: u64, n: u32) -> u64 {
    // Bytes past the digits may borrow in the subtraction, but a borrow only moves toward
    // later bytes, and those are shifted out; the zeros shifted in are leading zeros.
    let v = word.wrapping_sub(0x3030_3030_3030_3030) << (8 * (8 - n));
    let v = (v * 10 + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v * 100 + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    (v * 10_000 + (v >> 32)) & 0xFFFF_FFFF
}

/// Sets a field seen for the first time; a repeated key (serde's "duplicate field") fails.
fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

/// The fields search and query bodies share, as their common shape has them.
#[derive(Default)]
struct Common {
    params: Option<Option<SearchParams>>,
    limit: Option<Option<usize>>,
    offset: Option<Option<usize>>,
    with_payload: Option<Option<WithPayload>>,
    with_vector: Option<Option<WithVector>>,
    score_threshold: Option<Option<f32>>,
    filter: Option<Option<()>>,
}

impl Common {
    /// Reads `key`'s value if it is one of the shared fields in its common shape.
    fn field(&mut self, key: &[u8], c: &mut Cursor) -> Option<()> {
        match key {
            b"params" => once(&mut self.params, c.nullable(search_params)),
            b"limit" => once(&mut self.limit, c.nullable(Cursor::usize)),
            b"offset" => once(&mut self.offset, c.nullable(Cursor::usize)),
            b"with_payload" => once(
                &mut self.with_payload,
                c.nullable(|c| c.bool().map(WithPayload::All)),
            ),
            b"with_vector" => once(
                &mut self.with_vector,
                c.nullable(|c| c.bool().map(WithVector::All)),
            ),
            b"score_threshold" => once(&mut self.score_threshold, c.nullable(Cursor::f32)),
            // Only an absent filter: filters go through serde.
            b"filter" => once(&mut self.filter, c.nullable(|_| None::<()>)),
            _ => None,
        }
    }
}

fn search_params(c: &mut Cursor) -> Option<SearchParams> {
    let (mut hnsw_ef, mut exact) = (None, None);
    c.object(|key, c| match key {
        b"hnsw_ef" => once(&mut hnsw_ef, c.nullable(Cursor::usize)),
        b"exact" => once(&mut exact, c.nullable(Cursor::bool)),
        _ => None,
    })?;
    Some(SearchParams {
        hnsw_ef: hnsw_ef.flatten(),
        exact: exact.flatten(),
    })
}

/// A body of the older search API: `{"vector": [...], "limit": n, ...}`.
fn search_points(c: &mut Cursor) -> Option<SearchPoints> {
    let (mut vector, mut common) = (None, Common::default());
    c.object(|key, c| match key {
        b"vector" => once(&mut vector, c.f32_list()),
        _ => common.field(key, c),
    })?;
    Some(SearchPoints {
        vector: SearchVector::Dense(vector?),
        filter: None,
        params: common.params.flatten(),
        limit: common.limit.flatten()?,
        offset: common.offset.flatten(),
        with_payload: common.with_payload.flatten(),
        with_vector: common.with_vector.flatten(),
        score_threshold: common.score_threshold.flatten(),
    })
}

/// A body of the Query API with a plain vector: `{"query": [...], "limit": n, ...}`.
fn query_points(c: &mut Cursor) -> Option<QueryPoints> {
    let (mut query, mut common) = (None, Common::default());
    let (mut using, mut prefetch, mut lookup_from) = (None, None::<Option<()>>, None::<Option<()>>);
    c.object(|key, c| match key {
        b"query" => once(
            &mut query,
            c.nullable(|c| c.f32_list().map(QueryInput::Vector)),
        ),
        b"using" => once(&mut using, c.nullable(|c| c.plain_string().and_then(utf8))),
        // Their only common shape is `null`; anything else goes through serde.
        b"prefetch" => once(&mut prefetch, c.nullable(|_| None::<()>)),
        b"lookup_from" => once(&mut lookup_from, c.nullable(|_| None::<()>)),
        _ => common.field(key, c),
    })?;
    Some(QueryPoints {
        query: query.flatten(),
        prefetch: None,
        using: using.flatten(),
        filter: None,
        params: common.params.flatten(),
        score_threshold: common.score_threshold.flatten(),
        limit: common.limit.flatten(),
        offset: common.offset.flatten(),
        with_payload: common.with_payload.flatten(),
        with_vector: common.with_vector.flatten(),
        lookup_from: None,
    })
}

/// A string without escapes as a `String`; bytes that are not UTF-8 are left to serde's error.
fn utf8(b: &[u8]) -> Option<String> {
    std::str::from_utf8(b).ok().map(str::to_owned)
}

/// `{"searches": [body, ...]}`.
fn batch<T>(c: &mut Cursor, item: fn(&mut Cursor) -> Option<T>) -> Option<Vec<T>> {
    let mut searches = None;
    c.object(|key, c| match key {
        b"searches" => once(&mut searches, c.array(item)),
        _ => None,
    })?;
    searches
}

/// Request bodies with a fast path. `fast` returns `None` for anything outside the common shape.
pub trait FastParse: Sized {
    fn fast(body: &[u8]) -> Option<Self>;
}

/// Reads a whole body with `read`, which must leave only whitespace.
fn whole<T>(body: &[u8], read: impl FnOnce(&mut Cursor) -> Option<T>) -> Option<T> {
    let mut c = Cursor::new(body);
    let value = read(&mut c)?;
    c.end()?;
    Some(value)
}

impl FastParse for Option<SearchPoints> {
    fn fast(body: &[u8]) -> Option<Self> {
        whole(body, search_points).map(Some)
    }
}

impl FastParse for QueryPoints {
    fn fast(body: &[u8]) -> Option<Self> {
        whole(body, query_points)
    }
}

impl FastParse for SearchBatch {
    fn fast(body: &[u8]) -> Option<Self> {
        whole(body, |c| batch(c, search_points)).map(|searches| SearchBatch { searches })
    }
}

impl FastParse for QueryBatch {
    fn fast(body: &[u8]) -> Option<Self> {
        whole(body, |c| batch(c, query_points)).map(|searches| QueryBatch { searches })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde::de::DeserializeOwned;
    use std::fmt::Debug;

    /// The fast reading of `text` as one number, if it has one.
    fn fast_f32(text: &str) -> Option<f32> {
        whole(text.as_bytes(), |c| c.f32())
    }

    /// Where the fast path answers, serde answers the same bits. The number is read alone and as
    /// the first of a list, where eight-byte loads past it succeed (as they do in a body), and
    /// of a longer list, where sixteen-byte loads do too (the SSSE3 reader's).
    fn agrees_f32(text: &str) -> bool {
        let first = |list: String| whole(list.as_bytes(), |c| c.f32_list()).map(|v| v[0]);
        let listed = [
            first(format!("[{text},1,2,3,4,5]")),
            first(format!("[{text},1,2,3,4,5,6,7,8,9,10,11,12]")),
        ];
        let Some(fast) = fast_f32(text) else {
            assert_eq!(listed, [None, None], "{text} read in a list but not alone");
            return false;
        };
        let serde: f32 = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("fast path accepted {text:?}, serde refused: {e}"));
        assert_eq!(fast.to_bits(), serde.to_bits(), "{text}");
        for in_list in listed {
            assert_eq!(
                in_list.map(f32::to_bits),
                Some(serde.to_bits()),
                "{text} in a list"
            );
        }
        true
    }

    fn random_digits(rng: &mut StdRng, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
            .collect()
    }

    #[test]
    fn numbers_read_as_serde_reads_them() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let x = f32::from_bits(rng.gen());
            if !x.is_finite() {
                continue;
            }
            // What Rust clients send (shortest f32) and what Python sends (f32 widened to f64):
            // both are the common shape and must take the fast path.
            for text in [
                serde_json::to_string(&x).unwrap_or_default(),
                format!("{:?}", x as f64),
            ] {
                assert!(agrees_f32(&text), "{text}");
            }
            let y: f32 = rng.gen_range(-10.0..10.0);
            assert!(agrees_f32(&serde_json::to_string(&y).unwrap_or_default()));
            assert!(agrees_f32(&format!("{:?}", y as f64)));
        }
        // Made-up texts: long and short digit runs, leading zeros, exponents of every form.
        for _ in 0..20_000 {
            let int = match rng.gen_range(0..4) {
                0 => "0".to_string(),
                _ => {
                    let n = rng.gen_range(0..12);
                    format!("{}{}", rng.gen_range(1..10), random_digits(&mut rng, n))
                }
            };
            let mut text = format!("{}{int}", if rng.gen() { "-" } else { "" });
            if rng.gen() {
                let zeros = "0".repeat(rng.gen_range(0..6));
                let n = rng.gen_range(1..22);
                text += &format!(".{zeros}{}", random_digits(&mut rng, n));
            }
            if rng.gen_bool(0.3) {
                let e = ["e", "E"][rng.gen_range(0..2)];
                let sign = ["", "+", "-"][rng.gen_range(0..3)];
                text += &format!("{e}{sign}{}", rng.gen_range(0..40));
            }
            agrees_f32(&text);
        }
        for text in [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1e5",
            "1E+5",
            "2.5e-3",
            "12345678901234567",
            "1.0000000000000000001",
        ] {
            agrees_f32(text);
        }
        for bad in [
            "", "-", "01", "1.", ".5", "+1", "1e", "1e+", "--1", "1.5.2", "0x10", "NaN", "1 2",
        ] {
            assert_eq!(fast_f32(bad), None, "{bad}");
        }
        // Beyond the fast path's reach: left to serde.
        for slow in ["1e-330", "123456789012345678901", "1.5e400"] {
            assert_eq!(fast_f32(slow), None, "{slow}");
        }
    }

    /// Where the fast path answers, serde answers the same (compared by their `Debug`).
    fn agrees<T: FastParse + DeserializeOwned + Debug>(body: &str) -> bool {
        let Some(fast) = T::fast(body.as_bytes()) else {
            return false;
        };
        let serde: T = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("fast path accepted {body}, serde refused: {e}"));
        assert_eq!(format!("{fast:?}"), format!("{serde:?}"), "{body}");
        true
    }

    fn random_body(rng: &mut StdRng, vector_key: &str) -> String {
        let ws = |rng: &mut StdRng| [" ", "", "\n", "\t", ""][rng.gen_range(0..5)];
        let vector: Vec<String> = (0..rng.gen_range(0..20))
            .map(|_| {
                let x: f32 = rng.gen_range(-2.0..2.0);
                if rng.gen() {
                    format!("{x}")
                } else {
                    format!("{:?}", x as f64)
                }
            })
            .collect();
        let vector = format!("[{}]", vector.join(&format!(",{}", ws(rng))));
        let bool_or_null = |rng: &mut StdRng| ["true", "false", "null"][rng.gen_range(0..3)];
        let mut fields = vec![
            format!("\"{vector_key}\":{}{vector}", ws(rng)),
            format!("\"limit\": {}", rng.gen_range(0..100)),
            format!("\"offset\": {}", ["0", "5", "null"][rng.gen_range(0..3)]),
            format!("\"with_payload\": {}", bool_or_null(rng)),
            format!("\"with_vector\": {}", bool_or_null(rng)),
            format!(
                "\"score_threshold\": {}",
                ["0.5", "-1", "null", "1e-3"][rng.gen_range(0..4)]
            ),
            format!(
                "\"params\": {}",
                [
                    "{\"hnsw_ef\": 64}",
                    "{\"exact\": true, \"hnsw_ef\": null}",
                    "{}",
                    "null"
                ][rng.gen_range(0..4)]
            ),
            "\"filter\": null".to_string(),
        ];
        // Sometimes what only serde reads: a filter, an unknown or repeated key, bad JSON.
        let odd = [
            "\"filter\": {\"must\": []}",
            "\"unknown\": 1",
            "\"limit\": 3",
            "\"with_payload\": [\"a\"]",
            "\"params\": {\"hnsw_ef\": 1.5}",
            "\"vector\": {\"name\": \"\", \"vector\": [1]}",
            "\"v\\u0065ctor\": [1]",
            "\"limit\": -1",
            "\"limit\": 01",
            "\"using\": \"\"",
            "\"prefetch\": null",
            "\"query\": 7",
        ];
        if rng.gen_bool(0.3) {
            fields.push(odd[rng.gen_range(0..odd.len())].to_string());
        }
        let keep = rng.gen_range(1..=fields.len());
        for i in (1..fields.len()).rev() {
            fields.swap(i, rng.gen_range(0..=i));
        }
        // The vector key (first before shuffling) may be dropped: serde then refuses or
        // defaults, the fast path must not differ.
        fields.truncate(keep);
        let mut body = format!("{{{}{}}}", ws(rng), fields.join(&format!(",{}", ws(rng))));
        if rng.gen_bool(0.05) {
            body.insert(
                rng.gen_range(0..body.len()),
                [',', ']', '}', '"', ' '][rng.gen_range(0..5)],
            );
        }
        body
    }

    #[test]
    fn bodies_read_as_serde_reads_them() {
        let mut rng = StdRng::seed_from_u64(11);
        let (mut fast_search, mut fast_query) = (0, 0);
        for _ in 0..5_000 {
            fast_search += agrees::<Option<SearchPoints>>(&random_body(&mut rng, "vector")) as u32;
            fast_query += agrees::<QueryPoints>(&random_body(&mut rng, "query")) as u32;
            let items: Vec<String> = (0..rng.gen_range(0..4))
                .map(|_| random_body(&mut rng, "vector"))
                .collect();
            agrees::<SearchBatch>(&format!("{{\"searches\": [{}]}}", items.join(",")));
            let items: Vec<String> = (0..rng.gen_range(0..4))
                .map(|_| random_body(&mut rng, "query"))
                .collect();
            agrees::<QueryBatch>(&format!("{{\"searches\":[{}]}}", items.join(", ")));
        }
        // Most generated bodies have the common shape: the comparison above was not vacuous.
        assert!(
            fast_search > 500 && fast_query > 500,
            "{fast_search} {fast_query}"
        );
    }

    #[test]
    fn the_common_shapes_take_the_fast_path() {
        // shoal-bench's body, and the shape qdrant-client's query_points sends.
        assert!(agrees::<Option<SearchPoints>>(
            r#"{"vector":[0.25,-1.5e-3,3],"limit":10,"params":{"hnsw_ef":32}}"#
        ));
        assert!(agrees::<QueryPoints>(
            r#"{"query": [0.10000000149011612, 2.0], "using": null, "filter": null, "params": {"hnsw_ef": 64, "exact": false}, "limit": 10, "offset": null, "with_payload": true, "with_vector": false, "score_threshold": null, "prefetch": null, "lookup_from": null}"#
        ));
        assert!(agrees::<SearchBatch>(
            r#"{"searches": [{"vector": [1], "limit": 1}, {"vector": [2], "limit": 2}]}"#
        ));
        assert!(agrees::<QueryBatch>(r#"{"searches": []}"#));
    }

    #[test]
    fn digit_words() {
        for text in ["00000000", "12345678", "99999999", "10203040"] {
            let word = u64::from_le_bytes(text.as_bytes().try_into().unwrap());
            assert_eq!(leading_digits(word), 8);
            assert_eq!(digit_value(word, 8), text.parse::<u64>().unwrap());
        }
        for (text, n) in [
            ("1234567,", 7),
            ("/1234567", 0),
            ("12:45678", 2),
            ("1]", 1),
            ("099e-5,1", 3),
        ] {
            let mut bytes = [b' '; 8];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            let word = u64::from_le_bytes(bytes);
            assert_eq!(leading_digits(word), n, "{text}");
            if n > 0 {
                assert_eq!(
                    digit_value(word, n),
                    text[..n as usize].parse::<u64>().unwrap()
                );
            }
        }
    }

    #[test]
    fn short_decimals_cover_rust_and_python_floats() {
        // (text, its length if the word-wise reader takes it, else None for the general path)
        for (text, len) in [
            ("9.330677", Some(8)),            // Rust's shortest float32
            ("0.10116947", Some(10)),         // eight fraction digits
            ("0.7748751044273376", Some(18)), // Python's repr of the widened float32
            ("-7.3602294921875", Some(16)),
            ("-12.3456789012345678", Some(20)), // 19 digits in all: still exact in a u64
            ("123.45678901234567", Some(18)),
            ("1234.5678901234567", Some(18)),
            ("1234.5678901234567890", None), // 20 digits
            ("0.12345678901234567", None),   // 17 fraction digits
            ("1.5e-3", None),
            ("1.23456789e-3", None),
            ("12345678.5", None), // eight digits before the dot
        ] {
            let padded = format!("{text},0,0,0,0,0");
            let got = short_decimal(padded.as_bytes(), 0);
            assert_eq!(got.map(|(_, end)| end), len, "{text}");
            if let Some((x, _)) = got {
                let serde: f32 = serde_json::from_str(text).unwrap();
                assert_eq!(x.to_bits(), serde.to_bits(), "{text}");
            }
        }
    }
}
