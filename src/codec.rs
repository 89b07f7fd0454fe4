//! How shoal encodes what it stores and what nodes send each other: bincode, bounded when read,
//! with JSON text for the self-describing values (payloads, filters, plans) bincode cannot carry.
//!
//! bincode allocates a string or list as long as its announced length before it reads the
//! bytes: a message or record announcing an exabyte would abort the process. [`decode`] refuses
//! any claim beyond [`DECODE_LIMIT`]; a real message or record claims no more than its own size.
//!
//! Peer messages have versions ([`crate::cluster::protocol::PROTOCOL_VERSION`]): to talk with a
//! node of the previous release, a message is written and read in that release's shapes with
//! [`encode_as`] and [`decode_as`]. The few types whose shape changed ask [`shape_version`]
//! which shape to use while they are (de)serialized; everything else has one shape.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Most bytes one message's or record's strings and lists may claim.
pub const DECODE_LIMIT: usize = 1 << 32;

/// bincode's standard encoding.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain data structures (integers, floats, strings, JSON text) always encode.
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap_or_default()
}

/// Reads what [`encode`] wrote, refusing claims beyond [`DECODE_LIMIT`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    bincode::serde::decode_from_slice(bytes, config)
        .map(|(v, _)| v)
        .map_err(|e| e.to_string())
}

thread_local! {
    /// The shape version of the message this thread is (de)serializing; `None`: the newest.
    static SHAPE: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with [`shape_version`] saying `version` (serde calls are synchronous: the setting
/// covers exactly the one message `f` encodes or decodes).
fn with_shape<R>(version: u32, f: impl FnOnce() -> R) -> R {
    let before = SHAPE.replace(Some(version));
    let result = f();
    SHAPE.set(before);
    result
}

/// [`encode`] in the shapes of protocol `version`.
pub fn encode_as<T: Serialize>(version: u32, value: &T) -> Vec<u8> {
    with_shape(version, || encode(value))
}

/// [`decode`] of a message in the shapes of protocol `version`.
pub fn decode_as<T: DeserializeOwned>(version: u32, bytes: &[u8]) -> Result<T, String> {
    with_shape(version, || decode(bytes))
}

/// The protocol version whose shapes the message being (de)serialized on this thread has:
/// `None` for the newest (and for everything not inside [`encode_as`] / [`decode_as`]).
pub fn shape_version() -> Option<u32> {
    SHAPE.get()
}

/// A field carried as JSON text inside a binary message: `#[serde(with = "codec::json_text")]`.
/// Text that is not the field's JSON fails the whole message.
///
/// The text may nest up to [`json_text::MAX_DEPTH`] levels, checked by a byte scan before
/// parsing: a client's body nests at most 127 levels (serde_json's limit) and a message wraps
/// what it carries from it in a few more (a plan wraps a filter in three), so serde_json's own
/// limit refused what the client was allowed to send — a `set_payload` with a deep filter
/// answered 503 through any node that had to ask a peer.
pub mod json_text {
    use serde::de::{DeserializeOwned, Error};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// How deep JSON inside a message may nest.
    pub const MAX_DEPTH: usize = 136;

    /// Parses `text`, refusing it unread when it nests deeper than [`MAX_DEPTH`].
    pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, String> {
        let depth = depth(text);
        if depth > MAX_DEPTH {
            return Err(format!(
                "bad JSON: it nests {depth} levels, more than {MAX_DEPTH}"
            ));
        }
        // Bounded by the check above instead of by serde_json's limit.
        let mut de = serde_json::Deserializer::from_str(text);
        de.disable_recursion_limit();
        T::deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| format!("bad JSON: {e}"))
    }

    /// How deeply JSON text nests objects and arrays, read byte by byte without parsing it.
    pub fn depth(text: &str) -> usize {
        let (mut depth, mut deepest) = (0usize, 0usize);
        let (mut in_string, mut escaped) = (false, false);
        for b in text.bytes() {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        deepest
    }

    pub fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(value).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(D::Error::custom)
    }

    /// An optional field: absent, or JSON text.
    pub mod option {
        use super::*;

        pub fn serialize<T: Serialize, S: Serializer>(
            value: &Option<T>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let text = value
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(serde::ser::Error::custom)?;
            text.serialize(s)
        }

        pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<T>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| parse(&text).map_err(D::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Carrier {
        #[serde(with = "json_text")]
        value: serde_json::Value,
        #[serde(with = "json_text::option")]
        maybe: Option<serde_json::Value>,
    }

    #[test]
    fn json_fields_travel_as_text_and_bad_text_fails() {
        let c = Carrier {
            value: serde_json::json!({"a": [1, null]}),
            maybe: None,
        };
        let bytes = encode(&c);
        // The same bytes as a struct of plain strings.
        assert_eq!(bytes, encode(&(r#"{"a":[1,null]}"#, None::<String>)));
        assert_eq!(decode::<Carrier>(&bytes).unwrap(), c);
        assert!(decode::<Carrier>(&encode(&("{not json", None::<String>))).is_err());
        assert!(decode::<Carrier>(&encode(&("1", Some("[")))).is_err());
    }

    #[test]
    fn a_huge_announced_length_is_an_error_not_an_abort() {
        // A string announcing 2^60 bytes (bincode varint: 253, then a u64).
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode::<String>(&bytes).is_err());
        assert!(decode::<Vec<f32>>(&bytes).is_err());
    }
}
