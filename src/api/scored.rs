//! Search hits as JSON, written directly rather than through serde's struct serializer.
//!
//! A search answer is ten or so `ScoredPoint`s of seven fields each; serde_json writes every key
//! through its string escaper and every struct through its generic machinery, ~10k instructions
//! an answer. Here the keys and punctuation are constant bytes and only the values go through
//! serde_json (so numbers, ids, payloads and vectors are written exactly as serde writes them).
//! The output is byte for byte what `serde_json::to_vec` gives for the same value (tested).

use crate::service::models::ScoredPointOut;

/// The JSON of `hits` (an array of `ScoredPoint`), appended to `out`.
pub fn write_hits(out: &mut Vec<u8>, hits: &[ScoredPointOut]) -> serde_json::Result<()> {
    out.push(b'[');
    for (i, hit) in hits.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        value(out, b"{\"id\":", &hit.id)?;
        value(out, b",\"version\":", &hit.version)?;
        value(out, b",\"score\":", &hit.score)?;
        value(out, b",\"payload\":", &hit.payload)?;
        value(out, b",\"vector\":", &hit.vector)?;
        value(out, b",\"shard_key\":", &hit.shard_key)?;
        value(out, b",\"order_value\":", &hit.order_value)?;
        out.push(b'}');
    }
    out.push(b']');
    Ok(())
}

/// `prefix` (punctuation and a key), then `v` as serde_json writes it.
fn value<T: serde::Serialize>(out: &mut Vec<u8>, prefix: &[u8], v: &T) -> serde_json::Result<()> {
    out.extend_from_slice(prefix);
    serde_json::to_writer(&mut *out, v)
}

/// The `result` of the four search routes, as JSON text.
#[derive(Clone, Copy)]
pub enum Shape {
    /// `/points/search`: the hits.
    Hits,
    /// `/points/query`: `{"points": hits}`.
    Points,
}

impl Shape {
    fn write(self, out: &mut Vec<u8>, hits: &[ScoredPointOut]) -> serde_json::Result<()> {
        match self {
            Shape::Hits => write_hits(out, hits),
            Shape::Points => {
                out.extend_from_slice(b"{\"points\":");
                write_hits(out, hits)?;
                out.push(b'}');
                Ok(())
            }
        }
    }
}

/// The `result` of one search: `hits` in `shape`.
pub fn single(hits: &[ScoredPointOut], shape: Shape) -> serde_json::Result<Vec<u8>> {
    // Room for a typical answer (ten hits without payloads are ~1.3 KB) in one allocation.
    let mut out = Vec::with_capacity(2048);
    shape.write(&mut out, hits)?;
    Ok(out)
}

/// The `result` of a batch: an array with one `shape` per list of hits.
pub fn batch(lists: &[&[ScoredPointOut]], shape: Shape) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(2048 * lists.len().max(1));
    out.push(b'[');
    for (i, hits) in lists.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        shape.write(&mut out, hits)?;
    }
    out.push(b']');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::models::QueryResponse;
    use crate::shard::point::{Payload, PointId};

    fn hits() -> Vec<ScoredPointOut> {
        let payload: Payload = serde_json::from_str(
            r#"{"city": "Zürich \"quoted\"", "n": [1, 2.5, null], "o": {"a": true}}"#,
        )
        .unwrap();
        (0..4u64)
            .map(|i| ScoredPointOut {
                id: if i % 2 == 0 {
                    PointId::Num(i * 1_000_000_007)
                } else {
                    PointId::Uuid(uuid::Uuid::from_u128(
                        0x5c56c793_69f3_4fbf_87e6_c4bf54c28c26 + u128::from(i),
                    ))
                },
                version: i * 3,
                score: [0.5, -1.25e-7, f32::MAX, f32::NAN][i as usize],
                payload: (i % 2 == 1).then(|| payload.clone()),
                vector: (i > 1).then(|| vec![0.1, -3.0, 1e30]),
                shard_key: None,
                order_value: None,
            })
            .collect()
    }

    fn queries(lists: Vec<Vec<ScoredPointOut>>) -> Vec<QueryResponse> {
        lists
            .into_iter()
            .map(|points| QueryResponse { points })
            .collect()
    }

    #[test]
    fn written_as_serde_writes_them() {
        let h = hits();
        assert_eq!(
            single(&h, Shape::Hits).unwrap(),
            serde_json::to_vec(&h).unwrap()
        );
        let q = QueryResponse { points: hits() };
        assert_eq!(
            single(&h, Shape::Points).unwrap(),
            serde_json::to_vec(&q).unwrap()
        );
        assert_eq!(single(&[], Shape::Points).unwrap(), b"{\"points\":[]}");
        let lists = vec![hits(), Vec::new(), hits()];
        let slices: Vec<&[ScoredPointOut]> = lists.iter().map(Vec::as_slice).collect();
        assert_eq!(
            batch(&slices, Shape::Hits).unwrap(),
            serde_json::to_vec(&lists).unwrap()
        );
        let q = queries(vec![hits(), Vec::new(), hits()]);
        assert_eq!(
            batch(&slices, Shape::Points).unwrap(),
            serde_json::to_vec(&q).unwrap()
        );
        assert_eq!(batch(&[], Shape::Hits).unwrap(), b"[]");
    }
}
