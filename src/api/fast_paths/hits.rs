//! Search answers written as JSON directly rather than through serde's derived `Serialize`.
//!
//! A search answer is ten or so hits of seven fields each; serde_json writes each field's key
//! through its string escaper and each struct through its generic machinery. Here the keys and
//! the punctuation are constant bytes and only the values go through serde_json (so ids, scores,
//! payloads and vectors are written exactly as it writes them): the answer is byte for byte what
//! `serde_json::to_vec` gives for the same value (tested).

use crate::api::response::{enveloped, Started};
use crate::service::budget::Reserved;
use crate::service::models::{QueryResponse, ScoredPointOut};
use axum::response::{IntoResponse, Response};

/// A search route's answer, its hits written by [`WriteHits`], in Qdrant's envelope.
pub struct HitsAnswer<T>(pub Started, pub Reserved<T>);

impl<T: WriteHits> IntoResponse for HitsAnswer<T> {
    fn into_response(self) -> Response {
        let HitsAnswer(started, found) = self;
        enveloped(started, |out| found.write_hits(out))
    }
}

/// A search result the writer knows: its JSON appended to `out`.
pub trait WriteHits {
    fn write_hits(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
}

/// `prefix` (punctuation and a key), then `v` as serde_json writes it.
#[inline(always)]
fn value<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    prefix: &[u8],
    v: &T,
) -> serde_json::Result<()> {
    out.extend_from_slice(prefix);
    serde_json::to_writer(&mut *out, v)
}

/// `items` as a JSON array.
fn array<T: WriteHits>(out: &mut Vec<u8>, items: &[T]) -> serde_json::Result<()> {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item.write_hits(out)?;
    }
    out.push(b']');
    Ok(())
}

impl WriteHits for ScoredPointOut {
    fn write_hits(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        // The fields in the order `ScoredPointOut` declares (and serde writes) them.
        let ScoredPointOut {
            id,
            version,
            score,
            payload,
            vector,
            shard_key,
            order_value,
        } = self;
        value(out, b"{\"id\":", id)?;
        value(out, b",\"version\":", version)?;
        value(out, b",\"score\":", score)?;
        value(out, b",\"payload\":", payload)?;
        value(out, b",\"vector\":", vector)?;
        value(out, b",\"shard_key\":", shard_key)?;
        value(out, b",\"order_value\":", order_value)?;
        out.push(b'}');
        Ok(())
    }
}

impl WriteHits for QueryResponse {
    fn write_hits(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let QueryResponse { points } = self;
        out.extend_from_slice(b"{\"points\":");
        array(out, points)?;
        out.push(b'}');
        Ok(())
    }
}

impl<T: WriteHits> WriteHits for Vec<T> {
    fn write_hits(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        array(out, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::point::{Payload, PointId};

    fn hits(n: u64) -> Vec<ScoredPointOut> {
        let payload: Payload = serde_json::from_str(
            r#"{"city": "Zürich \"quoted\" \u0007", "n": [1, 2.5, null, -0.0, 1e300], "o": {"a": true}}"#,
        )
        .unwrap();
        (0..n)
            .map(|i| ScoredPointOut {
                id: if i % 2 == 0 {
                    PointId::Num(i * 1_000_000_007)
                } else {
                    PointId::Uuid(uuid::Uuid::from_u128(
                        0x5c56c793_69f3_4fbf_87e6_c4bf54c28c26 + u128::from(i),
                    ))
                },
                version: i * 3,
                score: [0.5, -1.25e-7, f32::MAX, -0.0, 1e-45, 3.0][i as usize % 6],
                payload: (i % 2 == 1).then(|| payload.clone()),
                vector: (i > 1).then(|| vec![0.1, -3.0, 1e30, f32::MIN_POSITIVE]),
                shard_key: (i == 3).then(|| serde_json::json!("k")),
                order_value: (i == 4).then(|| serde_json::json!(1.5)),
            })
            .collect()
    }

    fn fast<T: WriteHits>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        v.write_hits(&mut out).unwrap();
        out
    }

    #[test]
    fn written_byte_for_byte_as_serde_json_writes_them() {
        for n in [0, 1, 6, 13] {
            let h = hits(n);
            assert_eq!(fast(&h), serde_json::to_vec(&h).unwrap());
            let q = QueryResponse { points: hits(n) };
            assert_eq!(fast(&q), serde_json::to_vec(&q).unwrap());
            let lists = vec![hits(n), Vec::new(), hits(2)];
            assert_eq!(fast(&lists), serde_json::to_vec(&lists).unwrap());
            let queries: Vec<QueryResponse> = (0..3)
                .map(|k| QueryResponse {
                    points: hits(n + k),
                })
                .collect();
            assert_eq!(fast(&queries), serde_json::to_vec(&queries).unwrap());
        }
    }
}
