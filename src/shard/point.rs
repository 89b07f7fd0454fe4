//! Point identity and the durable point record.
//!
//! A [`PointId`] is what Qdrant calls an `ExtendedPointId`: an unsigned integer or a UUID. Its
//! canonical bytes (a tag byte, then big-endian integer or the 16 UUID bytes) are the sled key, so
//! sled's byte order is also Qdrant's scroll order: every integer id before every UUID. The same
//! bytes feed the placement hash, which must never change between versions.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use uuid::Uuid;

/// A point's id: an unsigned integer or a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointId {
    Num(u64),
    Uuid(Uuid),
}

const TAG_NUM: u8 = 0;
const TAG_UUID: u8 = 1;

impl PointId {
    /// The canonical bytes: sled key and placement-hash input.
    pub fn to_key(&self) -> Vec<u8> {
        match self {
            PointId::Num(n) => {
                let mut k = Vec::with_capacity(9);
                k.push(TAG_NUM);
                k.extend_from_slice(&n.to_be_bytes());
                k
            }
            PointId::Uuid(u) => {
                let mut k = Vec::with_capacity(17);
                k.push(TAG_UUID);
                k.extend_from_slice(u.as_bytes());
                k
            }
        }
    }

    /// Reads an id as [`fmt::Display`] writes it (a request path, a query parameter): a
    /// number, else a UUID.
    pub fn parse_text(text: &str) -> Result<PointId, String> {
        match text.parse::<u64>() {
            Ok(n) => Ok(PointId::Num(n)),
            Err(_) => PointId::parse_uuid(text),
        }
    }

    fn parse_uuid(text: &str) -> Result<PointId, String> {
        Uuid::parse_str(text)
            .map(PointId::Uuid)
            .map_err(|e| format!("unable to parse UUID {text:?}: {e}"))
    }

    /// Inverse of [`PointId::to_key`]; `None` for bytes no version of shoal writes.
    pub fn from_key(key: &[u8]) -> Option<PointId> {
        match (key.first()?, key.len()) {
            (&TAG_NUM, 9) => Some(PointId::Num(u64::from_be_bytes(key[1..9].try_into().ok()?))),
            (&TAG_UUID, 17) => Some(PointId::Uuid(Uuid::from_slice(&key[1..17]).ok()?)),
            _ => None,
        }
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => write!(f, "{u}"),
        }
    }
}

impl Serialize for PointId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            // Binary formats (bincode on disk and between peers) carry the canonical key bytes.
            return s.serialize_bytes(&self.to_key());
        }
        match self {
            PointId::Num(n) => s.serialize_u64(*n),
            PointId::Uuid(u) => s.collect_str(&u.hyphenated()),
        }
    }
}

impl<'de> Deserialize<'de> for PointId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = PointId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a point id: an unsigned integer or a UUID string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PointId, E> {
                Ok(PointId::Num(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PointId, E> {
                u64::try_from(v).map(PointId::Num).map_err(|_| {
                    E::custom(format!(
                        "point id {v} is negative; ids are unsigned integers or UUIDs"
                    ))
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PointId, E> {
                Err(E::custom(format!(
                    "point id {v} is not an integer; ids are unsigned integers or UUIDs"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PointId, E> {
                PointId::parse_uuid(v).map_err(E::custom)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<PointId, E> {
                PointId::from_key(v).ok_or_else(|| E::custom("invalid point id bytes"))
            }
        }
        if d.is_human_readable() {
            d.deserialize_any(IdVisitor)
        } else {
            d.deserialize_bytes(IdVisitor)
        }
    }
}

/// JSON payload of a point: an object of arbitrary values.
pub type Payload = serde_json::Map<String, serde_json::Value>;

/// Reads a payload stored as JSON text (a record's `payload_json`). Never falls back to an
/// empty payload: a payload that cannot be read is an error the caller reports. Payloads are
/// refused beyond 100 levels at the API ([`super::payload::MAX_PAYLOAD_DEPTH`]), well within
/// serde_json's 128; one stored deeper by an older shoal (which lost it as `{}` on restart) is
/// read without the recursion limit, on a thread whose stack has room for it.
pub fn parse_payload(text: &str) -> Result<Payload, String> {
    match serde_json::from_str(text) {
        Ok(payload) => Ok(payload),
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => parse_deep(text),
        Err(e) => Err(format!("unreadable payload: {e}")),
    }
}

/// Reads a payload held by the node (a tail entry's text, a segment's sealed bytes), which was
/// checked when it was written: a failure means the bytes were damaged on disk. It is logged and
/// counted (`shoal_payload_unreadable_total`) and the point is shown without payload, so that one
/// damaged payload does not fail every read that touches it.
pub fn read_held_payload(bytes: &[u8]) -> Payload {
    let parsed = std::str::from_utf8(bytes)
        .map_err(|e| format!("payload is not UTF-8: {e}"))
        .and_then(parse_payload);
    parsed.unwrap_or_else(|e| {
        metrics::counter!("shoal_payload_unreadable_total").increment(1);
        tracing::error!(error = %e, "a stored payload cannot be read (damaged on disk?); the point is shown without it");
        Payload::new()
    })
}

/// Stack for reading a payload nested beyond serde_json's limit: ~100 bytes a level in a
/// release build, several times that in a debug build, for up to a few hundred thousand levels.
const DEEP_PARSE_STACK: usize = 256 << 20;

fn parse_deep(text: &str) -> Result<Payload, String> {
    use serde::Deserialize as _;
    let text = text.to_owned();
    let parse = move || {
        let mut de = serde_json::Deserializer::from_str(&text);
        de.disable_recursion_limit();
        Payload::deserialize(&mut de).and_then(|p| de.end().map(|()| p))
    };
    std::thread::Builder::new()
        .name("deep-payload".into())
        .stack_size(DEEP_PARSE_STACK)
        .spawn(parse)
        .map_err(|e| format!("cannot start a thread to read a deep payload: {e}"))?
        .join()
        .map_err(|_| "reading a deep payload failed".to_string())?
        .map_err(|e| format!("unreadable payload: {e}"))
}

/// One shared empty payload, for answers that show none.
pub fn empty_payload() -> std::sync::Arc<Payload> {
    static EMPTY: std::sync::LazyLock<std::sync::Arc<Payload>> =
        std::sync::LazyLock::new(Default::default);
    std::sync::Arc::clone(&EMPTY)
}

/// What sled stores for a point id. A deleted point stays as a tombstone so that a replica
/// that hears of the delete before the write it supersedes still converges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Version of the last change to this record; a change with a lower version is ignored.
    pub version: u64,
    /// Version at which the vector last changed: the index entry for the point is valid while
    /// this is unchanged, so payload-only updates never force re-indexing.
    pub vector_version: u64,
    /// `None` marks a tombstone.
    pub body: Option<RecordBody>,
}

/// The live contents of a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordBody {
    /// Prepared vector (normalised for Cosine collections, as Qdrant stores it).
    pub vector: Vec<f32>,
    /// Payload as JSON text: bincode cannot carry self-describing JSON values.
    pub payload_json: String,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Bounded like a peer message ([`crate::codec::decode`]): a corrupt record announcing a
    /// huge length is an error, not an allocation that aborts the node while it opens.
    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        crate::codec::decode(bytes).map_err(|e| format!("corrupt point record: {e}"))
    }
}

/// A payload carried as JSON text inside a binary message (`#[serde(with = ...)]`), read with
/// [`parse_payload`]: text that is not a payload fails the message, never becomes `{}`.
pub mod payload_text {
    use super::{parse_payload, Payload};
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(payload: &Arc<Payload>, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(payload.as_ref()).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Payload>, D::Error> {
        let text = String::deserialize(d)?;
        parse_payload(&text).map(Arc::new).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_qdrant_order() {
        let a = PointId::Num(2);
        let b = PointId::Num(300);
        let c = PointId::Uuid(Uuid::nil());
        assert!(a.to_key() < b.to_key() && b.to_key() < c.to_key());
        assert!(a < b && b < c);
        for id in [a, b, c] {
            assert_eq!(PointId::from_key(&id.to_key()), Some(id));
        }
    }

    #[test]
    fn ids_parse_and_print_like_qdrant() {
        let id: PointId = serde_json::from_str("\"936DA01F9ABD4d9d80C702AF85C822A8\"").unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"936da01f-9abd-4d9d-80c7-02af85c822a8\""
        );
        assert!(serde_json::from_str::<PointId>("-1").is_err());
        assert!(serde_json::from_str::<PointId>("1.5").is_err());
        assert!(serde_json::from_str::<PointId>("\"nope\"").is_err());
    }

    #[test]
    fn ids_roundtrip_through_bincode() {
        let ids = vec![
            (PointId::Num(5), 1u64),
            (PointId::Uuid(Uuid::from_u128(77)), 2),
        ];
        let bytes = bincode::serde::encode_to_vec(&ids, bincode::config::standard()).unwrap();
        let (back, _): (Vec<(PointId, u64)>, _) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(back, ids);
    }

    #[test]
    fn record_roundtrip() {
        let r = Record {
            version: 7,
            vector_version: 5,
            body: Some(RecordBody {
                vector: vec![1.0, 2.0],
                payload_json: "{\"a\":1}".into(),
            }),
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        assert!(Record::decode(&[1, 2]).is_err());
    }

    #[test]
    fn a_record_announcing_a_huge_vector_is_refused() {
        // version 7, vector version 5, a body whose vector claims 2^60 floats.
        let mut bytes = vec![7, 5, 1, 253];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(Record::decode(&bytes).is_err());
    }
}
