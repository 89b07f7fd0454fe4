//! The decimals of a vector, read sixteen bytes at a time with SSSE3.
//!
//! Nearly every number in a search body has the shape `-?d{1,7}.d+` (Rust clients write an `f32`
//! in up to nine significant digits, Python clients the 16-17 of the `f64` it widens to). The
//! scalar reader ([`super::short_decimal`]) spent ~195 instructions on one: eight-byte words, a
//! branch for each word the digits spill into. Here one load and one compare find the sign, the
//! dot and the end, one byte shuffle (its mask looked up by the two digit counts) right-aligns the
//! digits with the dot taken out, and three multiply-adds fold them into two eight-digit halves;
//! a number longer than fifteen bytes takes a second load to find its end and a third for its
//! fraction's last sixteen digits. There is no branch on the digits.
//!
//! The significand and the fraction's length are the ones the scalar reader finds, and the `f32`
//! is computed from them with the same operations, so the two agree bit for bit (and with
//! serde_json). Anything else — an exponent, more than 19 digits, whitespace before the number,
//! too few bytes left to load — is `None`, for the scalar reader.

use super::{EXACT_POW10, TEN_TO};
use std::arch::x86_64::{
    __m128i, _mm_add_epi8, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cvtsi128_si32,
    _mm_loadu_si128, _mm_madd_epi16, _mm_maddubs_epi16, _mm_min_epu8, _mm_movemask_epi8,
    _mm_packs_epi32, _mm_set1_epi16, _mm_set1_epi32, _mm_set1_epi8, _mm_setr_epi8,
    _mm_shuffle_epi8, _mm_srli_si128, _mm_sub_epi8,
};

/// Integer digits this reader takes (as the scalar reader: up to seven).
const MAX_INT_DIGITS: usize = 7;
/// Fraction digits that fit in sixteen bytes after one integer digit, the dot and the byte that
/// ends the number: the most [`GATHER`] is for.
const MAX_FRACTION_DIGITS: usize = 13;
/// Significant digits serde_json reads into a `u64` (and so this reader).
const MAX_DIGITS: usize = TEN_TO.len();

/// Whether this CPU runs [`short_decimal`] (checked once; the answer is cached by std).
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("ssse3")
}

/// `GATHER[n1][n2]`: the `pshufb` mask that moves the `n1` integer digits (bytes `0..n1`) and
/// the `n2` fraction digits (after the dot at byte `n1`) to the last `n1 + n2` of sixteen lanes,
/// in order; the lanes before them get zero.
static GATHER: [[[u8; 16]; MAX_FRACTION_DIGITS + 1]; MAX_INT_DIGITS + 1] = gather_masks();

const fn gather_masks() -> [[[u8; 16]; MAX_FRACTION_DIGITS + 1]; MAX_INT_DIGITS + 1] {
    let mut masks = [[[0x80u8; 16]; MAX_FRACTION_DIGITS + 1]; MAX_INT_DIGITS + 1];
    let mut n1 = 1;
    while n1 <= MAX_INT_DIGITS {
        let mut n2 = 1;
        while n2 <= MAX_FRACTION_DIGITS && n1 + n2 <= 16 {
            let first_lane = 16 - (n1 + n2);
            let mut k = 0;
            while k < n1 + n2 {
                // The k-th digit sits at byte k before the dot and one byte later after it.
                let byte = if k < n1 { k } else { k + 1 };
                masks[n1][n2][first_lane + k] = byte as u8;
                k += 1;
            }
            n2 += 1;
        }
        n1 += 1;
    }
    masks
}

/// The number at `b[i..]` if it is `-?d{1,7}.d+` with at most 19 digits (no leading zero
/// before another digit, no exponent) and ends within the thirty-two bytes from `i`, with sixteen
/// bytes readable from `i` (thirty-two for a number longer than fifteen bytes): its value as
/// serde_json reads an `f32`, and the index of the byte after it. The sign is read from the same
/// sixteen bytes as the digits, so that one load follows from the last number's end.
#[inline]
#[target_feature(enable = "ssse3")]
pub fn short_decimal(b: &[u8], i: usize) -> Option<(f32, usize)> {
    let window: &[u8; 16] = b.get(i..i + 16)?.try_into().ok()?;
    let values = digit_values(window);
    let window_digits = digit_mask(values);
    let sign = usize::from(window[0] == b'-');
    // Bit k: byte `sign + k` is a digit; the bits shifted in are zeros, so counts stop there.
    let is_digit = window_digits >> sign;
    let n1 = (!is_digit).trailing_zeros() as usize;
    let dot = sign + n1;
    if n1 == 0 || n1 > MAX_INT_DIGITS || window[dot] != b'.' || (n1 > 1 && window[sign] == b'0') {
        return None;
    }
    let n2 = (!(is_digit >> (n1 + 1))).trailing_zeros() as usize;
    let (m, n2, len) = if dot + 1 + n2 < 16 {
        if n2 == 0 || n2 > MAX_FRACTION_DIGITS {
            return None;
        }
        // SAFETY: a `[u8; 16]` is sixteen readable bytes.
        let gather = unsafe { _mm_loadu_si128(GATHER[n1][n2].as_ptr().cast::<__m128i>()) };
        // Past a sign every index moves up one; the zeroing lanes' 0x80 stays 0x81, still zero.
        let gather = _mm_add_epi8(gather, _mm_set1_epi8(sign as i8));
        let m = sixteen_digits(_mm_shuffle_epi8(values, gather));
        (m, n2, dot + 1 + n2)
    } else {
        long_decimal(b, i, sign, window_digits, n1)?
    };
    if b.get(i + len)? | 0x20 == b'e' {
        return None;
    }
    // As serde_json (and the scalar reader): the significand as an f64 divided by the power of
    // ten of the fraction's length, then cast.
    let f = m as f64 / EXACT_POW10[n2];
    Some(((if sign == 1 { -f } else { f }) as f32, i + len))
}

/// A number whose fraction runs past the first sixteen bytes (Python clients write an `f32`
/// widened to `f64`, 16-17 significant digits): the end found in the next sixteen bytes, the
/// integer digits read as a word, the last sixteen bytes of the fraction loaded where they end
/// (the bytes before the fraction zeroed when it is shorter) and the one to three fraction digits
/// before those read one by one. The significand, the fraction's length and the number's length
/// from `i`.
#[inline]
#[target_feature(enable = "ssse3")]
fn long_decimal(
    b: &[u8],
    i: usize,
    sign: usize,
    window_digits: u32,
    n1: usize,
) -> Option<(u64, usize, usize)> {
    let next: &[u8; 16] = b.get(i + 16..i + 32)?.try_into().ok()?;
    let is_digit =
        (u64::from(window_digits) | u64::from(digit_mask(digit_values(next))) << 16) >> sign;
    let n2 = (!(is_digit >> (n1 + 1))).trailing_zeros() as usize;
    let start = i + sign;
    let len = n1 + 1 + n2;
    // As serde_json, at most 19 significant digits in a u64; beyond, the general path's.
    if sign + len >= 32 || n1 + n2 > MAX_DIGITS {
        return None;
    }
    let tail: &[u8; 16] = b.get(start + len - 16..start + len)?.try_into().ok()?;
    // Lanes `0..16 - n2` hold the dot, integer digits or sign when the fraction is shorter.
    let fraction_lanes = _mm_cmpgt_epi8(
        _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm_set1_epi8(15 - n2 as i8),
    );
    let low = sixteen_digits(_mm_and_si128(digit_values(tail), fraction_lanes));
    let above = b
        .get(start + n1 + 1..(start + len).saturating_sub(16).max(start + n1 + 1))?
        .iter()
        .fold(0, |v, &d| v * 10 + u64::from(d - b'0'));
    let integer = super::digit_value(super::load8(b, start)?, n1 as u32);
    let fraction = above * TEN_TO[16] + low;
    Some((integer * TEN_TO[n2] + fraction, n2, sign + len))
}

/// Each byte minus `'0'`: a digit's value, and above 9 (as an unsigned byte) for any other byte.
#[inline]
#[target_feature(enable = "ssse3")]
fn digit_values(bytes: &[u8; 16]) -> __m128i {
    // SAFETY: `bytes` is sixteen readable bytes; the load takes any alignment.
    let raw = unsafe { _mm_loadu_si128(bytes.as_ptr().cast::<__m128i>()) };
    _mm_sub_epi8(raw, _mm_set1_epi8(b'0' as i8))
}

/// Bit `k` set when byte `k` is a digit, from [`digit_values`].
#[inline]
#[target_feature(enable = "ssse3")]
fn digit_mask(values: __m128i) -> u32 {
    let digits = _mm_cmpeq_epi8(_mm_min_epu8(values, _mm_set1_epi8(9)), values);
    _mm_movemask_epi8(digits) as u32
}

/// The number sixteen digit values spell, the first most significant.
#[inline]
#[target_feature(enable = "ssse3")]
fn sixteen_digits(values: __m128i) -> u64 {
    // Pairs of digits (×10, ×1), then pairs of pairs (×100, ×1): four 4-digit numbers.
    let pairs = _mm_maddubs_epi16(values, _mm_set1_epi16(0x010A));
    let quads = _mm_madd_epi16(pairs, _mm_set1_epi32(0x0001_0064));
    // Each fits an i16 (at most 9999); then (×10000, ×1): the high and low eight digits.
    let eights = _mm_madd_epi16(_mm_packs_epi32(quads, quads), _mm_set1_epi32(0x0001_2710));
    let high = _mm_cvtsi128_si32(eights) as u32;
    let low = _mm_cvtsi128_si32(_mm_srli_si128::<4>(eights)) as u32;
    u64::from(high) * 100_000_000 + u64::from(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reading of `text` followed by enough bytes for both sixteen-byte loads.
    fn read(text: &str) -> Option<(f32, usize)> {
        // Negated too: the sign shifts every byte of the number by one.
        if !text.starts_with('-') && !text.is_empty() {
            let negated = read_alone(&format!("-{text}"));
            let read = read_alone(text);
            assert_eq!(
                negated.map(|(x, end)| ((-x).to_bits(), end - 1)),
                read.map(|(x, end)| (x.to_bits(), end)),
                "-{text}"
            );
        }
        read_alone(text)
    }

    fn read_alone(text: &str) -> Option<(f32, usize)> {
        let padded = format!("{text},{}", "0".repeat(32));
        assert!(available(), "the test machine has SSSE3");
        // SAFETY: checked just above.
        unsafe { short_decimal(padded.as_bytes(), 0) }
    }

    #[test]
    fn reads_rust_and_python_floats_as_serde_does() {
        for text in [
            "0.5",
            "-0.125",
            "1234567.25",
            "0.0000000000001",
            "-3.1415927",
            "9.9999999999999",
            "0.1",
            "-2.7182817",
            // Past the first sixteen bytes: Python's f64 text of an f32, and other lengths.
            "0.12345678359270096",
            "-2.7182817459106445",
            "1.2345678901234567",
            "12.345678901234567",
            "123.4567890123456",
            "1234567.123456789012",
            "0.000000000000000001",
            "9.999999999999999999",
        ] {
            let (x, end) = read(text).unwrap_or_else(|| panic!("{text}"));
            let serde: f32 = serde_json::from_str(text).expect("a JSON number");
            assert_eq!(x.to_bits(), serde.to_bits(), "{text}");
            assert_eq!(end, text.len(), "{text}");
        }
    }

    #[test]
    fn leaves_every_other_shape_to_the_scalar_reader() {
        for text in [
            "1",
            "-1",
            ".5",
            "-.5",
            "1.",
            "01.5",
            "-00.5",
            "1.5e3",
            "1.5E-3",
            "0.12345678359270096e-5",
            "12345678.5",
            "0.1234567890123456789",
            "0.000000000000000000000000000001",
            "x",
            "-",
            "",
        ] {
            assert_eq!(read(text), None, "{text}");
        }
    }

    #[test]
    fn reads_only_as_far_as_the_body_goes() {
        assert!(available());
        // SAFETY: checked just above.
        unsafe {
            assert_eq!(short_decimal(b"-0.5,0000000000", 0), None);
            assert!(short_decimal(b"-0.5,00000000000", 0).is_some());
            for long in [
                &b"0.12345678359270096,000000000000"[..],
                &b"-0.1234567835927009,000000000000"[..],
            ] {
                assert_eq!(short_decimal(&long[..31], 0), None);
                assert!(short_decimal(long, 0).is_some());
            }
        }
    }
}
