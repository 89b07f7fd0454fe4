//! The fast paths held to the crates they stand in for, on generated inputs: whenever the body
//! reader answers, serde_json answers the same (the same value, every `f32` to the bit); where
//! serde_json refuses a body, the reader leaves it to serde_json.

use super::search_body::FastBody;
use crate::service::models::{QueryBatch, QueryPoints, SearchBatch, SearchPoints};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// What the reader made of `body`, checked against serde_json: `true` when the reader answered.
fn agrees<T: FastBody + DeserializeOwned + Debug>(body: &[u8]) -> bool {
    let Some(fast) = T::read(body) else {
        return false;
    };
    match serde_json::from_slice::<T>(body) {
        // Debug writes every f32 in its shortest round-trip form (and -0.0 as such), so equal
        // text is equal bits.
        Ok(slow) => assert_eq!(
            format!("{fast:?}"),
            format!("{slow:?}"),
            "{}",
            String::from_utf8_lossy(body)
        ),
        Err(e) => panic!(
            "the reader accepted what serde_json refuses ({e}): {}",
            String::from_utf8_lossy(body)
        ),
    }
    true
}

/// Each of `bodies` through every request type; how many the reader answered.
fn check_all(bodies: &[Vec<u8>]) -> usize {
    bodies
        .iter()
        .map(|b| {
            usize::from(agrees::<SearchPoints>(b))
                + usize::from(agrees::<Option<SearchPoints>>(b))
                + usize::from(agrees::<QueryPoints>(b))
                + usize::from(agrees::<SearchBatch>(b))
                + usize::from(agrees::<QueryBatch>(b))
        })
        .sum()
}

/// Number texts: the edges of serde_json's number reading and random digit strings, and (second
/// list) numbers as clients write them.
fn numbers(rng: &mut StdRng) -> (Vec<String>, Vec<String>) {
    let mut out: Vec<String> = [
        "0",
        "-0",
        "0.0",
        "-0.0",
        "1",
        "-1",
        "0e0",
        "0E+0",
        "-0e-5",
        "1e0",
        "1E1",
        "1e+1",
        "1e-1",
        "1.5e-05",
        "2.5E+30",
        "3.4028235e38",
        "3.4028236e38",
        "1e39",
        "-1e39",
        "1e308",
        "1e309",
        "-1e309",
        "1.7976931348623157e308",
        "1e-308",
        "1e-320",
        "4.9e-324",
        "1e-400",
        "1e-45",
        "1.4e-45",
        "7e-46",
        "1.1754944e-38",
        "1e-9999",
        "1e10000",
        "0e99999",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999",
        "-9223372036854775808",
        "-9223372036854775809",
        "-18446744073709551615",
        "9007199254740993",
        "16777217",
        "-16777217",
        "0.1",
        "0.30000000000000004",
        "0.000000000000000000001",
        "123456789012345678.9",
        "1234567890123456789.1",
        "0.12345678901234567890123",
        "1.00000000000000000001",
        "00",
        "01",
        "-01",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "1e+",
        "1e-",
        "0x10",
        "NaN",
        "Infinity",
        "-Infinity",
        "1_0",
        "1.5.5",
        "1e5e5",
        "--1",
        "\"1\"",
        "true",
        "null",
        "[]",
        "{}",
    ]
    .map(String::from)
    .to_vec();
    let mut clients = Vec::new();
    for _ in 0..3000 {
        let kind = rng.gen_range(0..7);
        let text = match kind {
            // As serde_json writes an f32 (the benchmark client's body).
            0 => serde_json::to_string(&(rng.gen::<f32>() * 2.0 - 1.0)).unwrap_or_default(),
            // As Python writes an f32 widened to a float (random magnitudes: exponent forms).
            1 => {
                let x = f64::from(f32::from_bits(rng.gen::<u32>() & 0xbfff_ffff));
                if x.is_finite() {
                    format!("{x:?}")
                } else {
                    "0".into()
                }
            }
            2 => format!(
                "{:e}",
                rng.gen::<f64>() * 10f64.powi(rng.gen_range(-50..50))
            ),
            3 => format!("{:E}", f32::from_bits(rng.gen::<u32>() & 0x7f7f_ffff)),
            // Random digit strings of any length, with and without fraction and exponent.
            _ => {
                let digits = |rng: &mut StdRng, n: usize| -> String {
                    (0..n)
                        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
                        .collect()
                };
                let mut t = String::new();
                if rng.gen_bool(0.3) {
                    t.push('-');
                }
                let n = rng.gen_range(1..24);
                t += &digits(rng, n);
                if rng.gen_bool(0.7) {
                    t.push('.');
                    let n = rng.gen_range(0..24);
                    t += &digits(rng, n);
                }
                if rng.gen_bool(0.3) {
                    t.push(['e', 'E'][rng.gen_range(0..2)]);
                    t += ["", "+", "-"][rng.gen_range(0..3)];
                    let n = rng.gen_range(0..5);
                    t += &digits(rng, n);
                }
                t
            }
        };
        if kind < 4 {
            clients.push(text.clone());
        }
        out.push(text);
    }
    (out, clients)
}

#[test]
fn numbers_are_read_to_the_bit_as_serde_json_reads_them() {
    let mut rng = StdRng::seed_from_u64(18);
    let (numbers, clients) = numbers(&mut rng);
    for (i, n) in numbers.iter().enumerate() {
        let next = &numbers[(i * 7919 + 1) % numbers.len()];
        let bodies = [
            format!(r#"{{"vector":[{n}],"limit":1}}"#),
            format!(r#"{{"vector":[{n},{next}, {n}],"limit":3,"score_threshold":{n}}}"#),
            format!(r#"{{"query":[{n},{next}],"limit":3,"score_threshold":{next}}}"#),
        ];
        for body in bodies {
            agrees::<SearchPoints>(body.as_bytes());
            agrees::<QueryPoints>(body.as_bytes());
        }
    }
    // The shapes clients write are the reader's, not serde_json's.
    let common = [
        "0.12345678",
        "-1.5e-5",
        "3",
        "-0.0",
        "1e-40",
        "2.5E+30",
        "-0",
    ];
    for n in clients.iter().map(String::as_str).chain(common) {
        let body = format!(r#"{{"vector":[{n}, {n}],"limit":1}}"#);
        assert!(agrees::<SearchPoints>(body.as_bytes()), "{body}");
    }
}

/// Bodies of every field and shape the routes take, valid and not.
fn bodies() -> Vec<String> {
    let vector = "[0.5, -1, 2.5e-3,\n\t3]";
    let deep = |n: usize| format!("{}{}", "{\"must\":[".repeat(n), "]}".repeat(n));
    let mut out: Vec<String> = vec![
        format!(r#"{{"vector":{vector},"limit":10}}"#),
        format!(r#"{{"vector":{vector},"limit":10,"params":{{"hnsw_ef":32}}}}"#),
        format!(r#" {{ "limit" : 10 , "vector" : {vector} }} "#),
        format!(
            r#"{{"vector":{vector},"limit":5,"offset":2,"with_payload":true,"with_vector":false,"score_threshold":0.25}}"#
        ),
        format!(r#"{{"vector":{vector},"limit":5,"offset":null,"score_threshold":null}}"#),
        format!(r#"{{"vector":{vector},"limit":5,"with_payload":["a","b.c"]}}"#),
        format!(r#"{{"vector":{vector},"limit":5,"with_payload":{{"exclude":["a"]}}}}"#),
        format!(r#"{{"vector":{vector},"limit":5,"with_payload":"a"}}"#),
        format!(r#"{{"vector":{vector},"limit":5,"with_vector":["", "x"]}}"#),
        format!(r#"{{"vector":{vector},"limit":5,"with_vector":1}}"#),
        format!(
            r#"{{"vector":{vector},"limit":5,"filter":{{"must":[{{"key":"city","match":{{"value":"Zürich \"\u00e9\" \ud83d\ude00"}}}}]}}}}"#
        ),
        format!(
            r#"{{"vector":{vector},"limit":5,"filter":{{"must":[{{"key":"n","range":{{"gte":1e2,"lt":-0.0}}}}]}}}}"#
        ),
        format!(r#"{{"vector":{vector},"limit":5,"filter":{{"bogus":1}}}}"#),
        format!(r#"{{"vector":{vector},"limit":5,"filter":null}}"#),
        format!(r#"{{"vector":{vector},"limit":5,"filter":{}}}"#, deep(20)),
        format!(r#"{{"vector":{vector},"limit":5,"filter":{}}}"#, deep(63)),
        format!(r#"{{"vector":{vector},"limit":5,"filter":{}}}"#, deep(64)),
        format!(r#"{{"vector":{vector},"limit":5,"filter":{}}}"#, deep(70)),
        format!(
            r#"{{"vector":{vector},"limit":5,"params":{{"hnsw_ef":64,"exact":true,"quantization":{{"rescore":false}}}}}}"#
        ),
        format!(r#"{{"vector":{vector},"limit":5,"params":{{"hnsw_ef":-1}}}}"#),
        format!(r#"{{"vector":{vector},"limit":5,"params":{{"hnsw_ef":1,"hnsw_ef":2}}}}"#),
        format!(r#"{{"vector":{{"name":"image","vector":{vector}}},"limit":3}}"#),
        format!(r#"{{"vector":{{"name":"","vector":[1,2]}},"limit":3}}"#),
        format!(r#"{{"vector":{vector},"limit":10,"vector":[1]}}"#),
        format!(r#"{{"vector":{vector},"limit":10,"limit":3}}"#),
        format!(r#"{{"vector":{vector},"limit":10,"colour":"red"}}"#),
        format!(r#"{{"vector":{vector},"limit":10,"\u006cimit":3}}"#),
        format!(r#"{{"vect\u006fr":{vector},"limit":10}}"#),
        format!(r#"{{"vector":{vector},"limit":10,"with_payload":tru}}"#),
        format!(r#"{{"vector":{vector},"limit":10,"with_payload":truex}}"#),
        format!(r#"{{"vector":{vector},"limit":10.0}}"#),
        format!(r#"{{"vector":{vector},"limit":1e1}}"#),
        format!(r#"{{"vector":{vector},"limit":-1}}"#),
        format!(r#"{{"vector":{vector},"limit":010}}"#),
        format!(r#"{{"vector":{vector},"limit":"10"}}"#),
        format!(r#"{{"vector":{vector},"limit":null}}"#),
        format!(r#"{{"vector":{vector},"limit":18446744073709551615}}"#),
        format!(r#"{{"vector":{vector},"limit":99999999999999999999}}"#),
        format!(r#"{{"vector":{vector}}}"#),
        r#"{"limit":10}"#.into(),
        r#"{"vector":null,"limit":10}"#.into(),
        r#"{"vector":[],"limit":10}"#.into(),
        r#"{"vector":[1,],"limit":10}"#.into(),
        r#"{"vector":[1 2],"limit":10}"#.into(),
        r#"{"vector":[1,"2"],"limit":10}"#.into(),
        r#"{"vector":[[1]],"limit":10}"#.into(),
        r#"{"vector":[1],"limit":10,}"#.into(),
        r#"{"vector":[1],"limit":10}}"#.into(),
        r#"{"vector":[1],"limit":10} x"#.into(),
        r#"{"vector":[1],"limit":10} {}"#.into(),
        "{\"vector\":[1],\"limit\":10}\u{a0}".into(),
        "{\"vector\":[1],\x0c\"limit\":10}".into(),
        "{\"vector\":[1],\"limit\":10,\"x\u{1}\":1}".into(),
        "{\"vec\ttor\":[1],\"limit\":10}".into(),
        r#"[[1,2],null,null,3]"#.into(),
        r#"null"#.into(),
        "".into(),
        "  \n".into(),
        "{}".into(),
        "{".into(),
        "[".into(),
        r#"{"query":[1,2,3]}"#.into(),
        r#"{"query":{"nearest":[1,2]},"limit":2,"using":"","with_payload":false}"#.into(),
        r#"{"query":7,"limit":2}"#.into(),
        r#"{"query":"5c56c793-69f3-4fbf-87e6-c4bf54c28c26","limit":2}"#.into(),
        r#"{"query":"not-a-uuid"}"#.into(),
        r#"{"query":{"recommend":{"positive":[1]}},"prefetch":[{"query":[1]}]}"#.into(),
        r#"{"query":[1],"lookup_from":{"collection":"x"},"offset":3}"#.into(),
        r#"{"query":null,"limit":null}"#.into(),
        r#"{"query":[1],"query":[2]}"#.into(),
        r#"{"searches":[{"vector":[1,2],"limit":1},{"vector":[3],"limit":2,"with_payload":true}]}"#
            .into(),
        r#"{"searches":[{"query":[1,2]},{"query":{"nearest":[3]},"limit":2}]}"#.into(),
        r#"{"searches":[]}"#.into(),
        r#"{"searches":[],"searches":[]}"#.into(),
        r#"{"searches":[{"vector":[1],"limit":1}],"other":1}"#.into(),
        r#"{"searches":null}"#.into(),
    ];
    // Every body again with each of its prefixes cut off: truncated input of every kind.
    let cut: Vec<String> = out
        .iter()
        .take(12)
        .flat_map(|b| {
            b.char_indices()
                .map(|(i, _)| b[..i].to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    out.extend(cut);
    out
}

#[test]
fn bodies_are_read_as_serde_json_reads_them_or_left_to_it() {
    let bodies: Vec<Vec<u8>> = bodies().into_iter().map(String::into_bytes).collect();
    let answered = check_all(&bodies);
    assert!(answered > 40, "the reader answered only {answered} bodies");
    // Invalid UTF-8 inside a string and in a key.
    let mut raw = br#"{"vector":[1],"limit":1,"with_payload":["#.to_vec();
    raw.extend_from_slice(b"\"\xff\"]}");
    check_all(&[raw, b"{\"vector\":[1],\"limit\":1,\"\xff\":1}".to_vec()]);
}

#[test]
fn mutated_bodies_are_read_as_serde_json_reads_them_or_left_to_it() {
    let mut rng = StdRng::seed_from_u64(1818);
    let originals: Vec<Vec<u8>> = bodies()
        .into_iter()
        .take(30)
        .map(String::into_bytes)
        .collect();
    let alphabet = b" \t\n\r{}[]:,\"\\-+.eE0123456789aeflnrstu";
    let mut mutated = Vec::new();
    for _ in 0..20_000 {
        let mut b = originals[rng.gen_range(0..originals.len())].clone();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..=b.len());
            let c = alphabet[rng.gen_range(0..alphabet.len())];
            match rng.gen_range(0..3) {
                0 if at < b.len() => b[at] = c,
                1 if at < b.len() => {
                    b.remove(at);
                }
                _ => b.insert(at, c),
            }
        }
        mutated.push(b);
    }
    check_all(&mutated);
}
