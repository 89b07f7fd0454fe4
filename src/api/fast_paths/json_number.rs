//! JSON numbers read into `f32` exactly as serde_json reads them (without its `float_roundtrip`
//! feature, which shoal does not enable), for the numbers' common shapes.
//!
//! serde_json reads a number's digits into a `u64` significand and a decimal exponent, makes an
//! `f64` of them with one multiplication or division by a power of ten from its table, and
//! `serde`'s `f32` visitor casts that with `as f32` (integers: the `u64` or `i64` cast straight
//! to `f32`). [`read_f32`] does the very same operations in the same order, so the bits agree by
//! construction; a number whose significand would overflow a `u64`, or whose exponent runs past
//! four digits, is left to serde_json (`None`), as is anything that is not a JSON number.
//!
//! Nearly every number of a vector has one shape, `-?d.d+` (Rust clients write an `f32` in up to
//! nine significant digits, Python clients the up to seventeen of the `f64` it widens to), and
//! [`short_decimal`] reads it in one to three word loads with no loop over the digits: ~45
//! instructions a number fewer than the general reader for Rust's shapes, ~57 for Python's
//! (~5 500-7 300 a search request of 128 numbers). Its answers are the general reader's
//! (the tests compare both, and with serde_json, on generated numbers of every length).

use std::sync::LazyLock;

/// serde_json's powers of ten, `1e0` to `1e308`: each the nearest `f64` to its literal, which
/// is what both its table of literals and `str::parse` give.
static POW10: LazyLock<[f64; 309]> = LazyLock::new(|| {
    let mut table = [1.0; 309];
    for (k, p) in table.iter_mut().enumerate() {
        *p = format!("1e{k}").parse().unwrap_or(f64::INFINITY);
    }
    table
});

/// `TEN_TO[n]` is 10ⁿ.
const TEN_TO: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The digits at `b[*i..]` appended to `m`, whose digits so far are counted in `count`; `None`
/// where serde_json's significand would leave `u64` (its overflow check, digit by digit). Eight
/// bytes are looked at a time while the significand cannot overflow (at most 19 digits).
#[inline(always)]
fn digits(b: &[u8], i: &mut usize, m: &mut u64, count: &mut u32) -> Option<()> {
    while let Some(word) = word(b, *i) {
        let (n, values) = leading_digits(word);
        if n == 0 {
            return Some(());
        }
        if *count + n > 19 {
            break;
        }
        *m = *m * TEN_TO[n as usize] + eight_digits(values << (64 - 8 * n));
        *count += n;
        *i += n as usize;
        if n < 8 {
            return Some(());
        }
    }
    while let Some(&c @ b'0'..=b'9') = b.get(*i) {
        *m = m.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        *count += 1;
        *i += 1;
    }
    Some(())
}

/// The number whose eight decimal digits are the bytes of `values` (each 0 to 9, the most
/// significant lowest), in three multiplications.
#[inline(always)]
fn eight_digits(values: u64) -> u64 {
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 0x000F_4240_0000_0064;
    const MUL2: u64 = 0x0000_2710_0000_0001;
    let v = values * 10 + (values >> 8);
    let v1 = (v & MASK).wrapping_mul(MUL1);
    let v2 = ((v >> 16) & MASK).wrapping_mul(MUL2);
    u64::from((v1.wrapping_add(v2) >> 32) as u32)
}

/// The JSON number starting at `b[i]` as serde_json reads it into an `f32`, and where it ends.
/// `None`: not a number, or a shape left to serde_json (whose answer, value or error, stands).
#[inline(always)]
pub fn read_f32(b: &[u8], i: usize) -> Option<(f32, usize)> {
    short_decimal(b, i).or_else(|| general(b, i))
}

/// `1e0` to `1e18`, each exact (so each what serde_json's table holds).
const EXACT_POW10: [f64; 19] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];

/// The eight bytes at `b[i..]` as a little-endian word.
#[inline(always)]
fn word(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// How many of the word's first bytes are digits, and its bytes as digit values (0 to 9 for a
/// digit, the first byte lowest).
#[inline(always)]
fn leading_digits(word: u64) -> (u32, u64) {
    let values = word ^ 0x3030_3030_3030_3030;
    // The high bit of every byte that is not a digit (value 10 or more). A carry out of a byte
    // only starts at a non-digit, so the lowest flagged byte is the first non-digit.
    let non_digits = (values.wrapping_add(0x7676_7676_7676_7676) | values) & 0x8080_8080_8080_8080;
    (non_digits.trailing_zeros() / 8, values)
}

/// The commonest shapes, `-?d.d{1,18}` not followed by an exponent (Rust clients write an `f32`
/// in up to nine significant digits, Python clients the up to seventeen of the `f64` it widens
/// to), read a word of eight bytes at a time with no loop: the significand and the fraction's
/// length are the ones [`general`] finds (at most 19 digits, so no overflow), and the `f32`
/// comes of them through the same operations. The fraction's first word is read at once, so a
/// number within ten bytes of the text's end is [`general`]'s.
#[inline(always)]
fn short_decimal(b: &[u8], i: usize) -> Option<(f32, usize)> {
    let negative = *b.get(i)? == b'-';
    let start = i + usize::from(negative);
    // The integer digit, the point and the fraction's first eight bytes.
    let head: &[u8; 10] = b.get(start..start + 10)?.try_into().ok()?;
    let first = u64::from(head[0].wrapping_sub(b'0'));
    if first > 9 || head[1] != b'.' {
        return None;
    }
    let fraction = u64::from_le_bytes(*head[2..].first_chunk()?);
    let (n1, v1) = leading_digits(fraction);
    let (m, frac) = if n1 < 8 {
        if n1 == 0 {
            return None;
        }
        (
            first * TEN_TO[n1 as usize] + eight_digits(v1 << (64 - 8 * n1)),
            n1,
        )
    } else {
        let high = first * TEN_TO[8] + eight_digits(v1);
        let (n2, v2) = leading_digits(word(b, start + 10)?);
        if n2 < 8 {
            let low = if n2 == 0 {
                0
            } else {
                eight_digits(v2 << (64 - 8 * n2))
            };
            (high * TEN_TO[n2 as usize] + low, 8 + n2)
        } else {
            let high = high * TEN_TO[8] + eight_digits(v2);
            let (n3, v3) = leading_digits(word(b, start + 18)?);
            if n3 > 2 {
                return None;
            }
            let low = if n3 == 0 {
                0
            } else {
                eight_digits(v3 << (64 - 8 * n3))
            };
            (high * TEN_TO[n3 as usize] + low, 16 + n3)
        }
    };
    let end = start + 2 + frac as usize;
    if let Some(b'e' | b'E') = b.get(end) {
        return None;
    }
    let f = m as f64 / EXACT_POW10[frac as usize];
    Some(((if negative { -f } else { f }) as f32, end))
}

/// Every other shape, out of line: kept apart, it leaves the short path's callers (a vector's
/// loop) the registers it would otherwise take.
#[inline(never)]
fn general(b: &[u8], mut i: usize) -> Option<(f32, usize)> {
    let negative = b.get(i) == Some(&b'-');
    i += usize::from(negative);
    let (mut m, mut count) = (0u64, 0u32);
    match b.get(i)? {
        // One leading zero only; `0` followed by a digit is serde_json's "invalid number".
        b'0' => {
            i += 1;
            if b.get(i).is_some_and(u8::is_ascii_digit) {
                return None;
            }
        }
        b'1'..=b'9' => digits(b, &mut i, &mut m, &mut count)?,
        _ => return None,
    }
    let mut exponent = 0i32;
    let mut integer = true;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let before = count;
        digits(b, &mut i, &mut m, &mut count)?;
        let n = count - before;
        if n == 0 {
            return None;
        }
        exponent = -(n as i32);
        integer = false;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        let positive_exp = match b.get(i) {
            Some(b'-') => {
                i += 1;
                false
            }
            Some(b'+') => {
                i += 1;
                true
            }
            _ => true,
        };
        let start = i;
        let mut e = 0i32;
        while let Some(&c @ b'0'..=b'9') = b.get(i) {
            if i - start == 4 {
                return None;
            }
            e = e * 10 + i32::from(c - b'0');
            i += 1;
        }
        if i == start {
            return None;
        }
        exponent += if positive_exp { e } else { -e };
        integer = false;
    }
    if integer {
        // serde_json: a `u64`, or when negative an `i64`, or an `f64` for `-0` and below
        // `i64::MIN`; serde's `f32` visitor casts each.
        if !negative {
            return Some((m as f32, i));
        }
        let negated = (m as i64).wrapping_neg();
        let x = if negated >= 0 {
            -(m as f64) as f32
        } else {
            negated as f32
        };
        return Some((x, i));
    }
    let f = f64_from_parts(m, exponent)?;
    Some(((if negative { -f } else { f }) as f32, i))
}

/// serde_json's `f64_from_parts` (its default, not `float_roundtrip`): `None` where it answers
/// "number out of range".
#[inline(always)]
fn f64_from_parts(significand: u64, mut exponent: i32) -> Option<f64> {
    let mut f = significand as f64;
    loop {
        match POW10.get(exponent.unsigned_abs() as usize) {
            Some(&pow) => {
                if exponent >= 0 {
                    f *= pow;
                    if f.is_infinite() {
                        return None;
                    }
                } else {
                    f /= pow;
                }
                return Some(f);
            }
            None => {
                if f == 0.0 {
                    return Some(f);
                }
                if exponent >= 0 {
                    return None;
                }
                f /= 1e308;
                exponent += 308;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_eight_at_a_time_are_digits_one_at_a_time() {
        let texts = [
            "0",
            "7",
            "12345678",
            "123456789",
            "1234567890123456789",
            "12345678901234567890",
            "99999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "00000001",
            "1234567.",
            "12345678e",
            "123/",
            "123:",
            "9\u{0}",
            "1234567890123456789012345678",
        ];
        for text in texts {
            let padded = format!("{text}        ");
            let b = padded.as_bytes();
            let (mut i, mut m, mut count) = (0, 0u64, 0u32);
            let fast = digits(b, &mut i, &mut m, &mut count).map(|()| (m, i));
            let (mut j, mut slow) = (0, Some(0u64));
            while let (Some(&c @ b'0'..=b'9'), Some(v)) = (b.get(j), slow) {
                slow = v
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(c - b'0')));
                j += 1;
            }
            assert_eq!(fast, slow.map(|v| (v, j)), "{text}");
        }
    }

    /// What serde_json reads from the start of `b`: the number before the first byte that
    /// cannot continue it.
    fn serde_reads(b: &[u8], end: usize) -> Option<u32> {
        serde_json::from_slice::<f32>(&b[..end])
            .ok()
            .map(f32::to_bits)
    }

    #[test]
    fn short_decimals_read_as_the_general_reader_and_serde_json_read_them() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut texts = vec![
            "0.0",
            "-0.0",
            "0.5",
            "9.999999999999999999",
            "9.9999999999999999999",
            "0.1234567",
            "0.12345678",
            "0.123456789",
            "-9.123456789012345678",
            "1.0e5",
            "1.5E-3",
            "1.",
            "-.5",
            "01.5",
            "0.00000000000000000001",
            "5.000000000000000000",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        for _ in 0..40_000 {
            let x = f32::from_bits(next() as u32);
            let unit = (next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            if x.is_finite() {
                texts.push(format!("{x}"));
                texts.push(format!("{}", f64::from(x)));
            }
            texts.push(format!("{unit}"));
            texts.push(format!("{}", f64::from(unit)));
            let digits = (next() % 21) as usize;
            texts.push(format!("{:.*}", digits, f64::from(unit) * 9.99));
        }
        let mut short = 0;
        for text in &texts {
            // What may follow a number in a body, and bytes that would continue one.
            for after in [
                ",",
                "]",
                "}",
                " ,",
                "e5,",
                "E-2]",
                ".5,",
                "0000000000000000000000,",
            ] {
                let padded = format!("{text}{after}        ");
                let b = padded.as_bytes();
                let general = general(b, 0).map(|(x, end)| (x.to_bits(), end));
                if let Some((x, end)) = short_decimal(b, 0) {
                    short += 1;
                    assert_eq!(Some((x.to_bits(), end)), general, "{padded}");
                }
                if let Some((x, end)) = read_f32(b, 0) {
                    assert_eq!(Some(x.to_bits()), serde_reads(b, end), "{padded}");
                    assert_eq!(Some((x.to_bits(), end)), general, "{padded}");
                }
            }
        }
        assert!(short > texts.len() * 3, "the short path read {short}");
    }

    #[test]
    fn the_table_is_serde_jsons() {
        // A few entries serde_json writes as literals, including the inexact ones.
        assert_eq!(POW10[0], 1e0);
        assert_eq!(POW10[22], 1e22);
        assert_eq!(POW10[23], 1e23);
        assert_eq!(POW10[200], 1e200);
        assert_eq!(POW10[308], 1e308);
    }
}
