//! Payload codecs: postcard by default, JSON per function.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::CodecError;

/// How a value's payload is encoded inside the envelope.
///
/// ```
/// use acgs_cache_core::{Cache, CacheMap, Codec};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// // JSON: readable in `redis-cli`, tolerant of added optional fields.
/// let rules: CacheMap<u64, String> = CacheMap::builder("rules").codec(Codec::Json).build(&cache)?;
/// rules.insert(&1, "deny".into()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Codec {
    /// postcard: compact, fast, not self-describing (the schema fingerprint
    /// guards against decoding old bytes as a new type).
    #[default]
    Postcard,
    /// serde_json: larger and slower, readable with `redis-cli`, tolerant of
    /// added optional fields.
    Json,
}

impl Codec {
    /// The codec's id in the envelope header.
    ///
    /// ```
    /// use acgs_cache_core::Codec;
    /// assert_eq!(Codec::from_id(Codec::Json.id()), Some(Codec::Json));
    /// ```
    #[must_use]
    pub const fn id(self) -> u8 {
        match self {
            Codec::Postcard => 0,
            Codec::Json => 1,
        }
    }

    /// The codec with envelope id `id`, if known.
    ///
    /// ```
    /// use acgs_cache_core::Codec;
    /// assert_eq!(Codec::from_id(Codec::Postcard.id()), Some(Codec::Postcard));
    /// assert_eq!(Codec::from_id(255), None); // a codec this build does not know: a counted miss
    /// ```
    #[must_use]
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Codec::Postcard),
            1 => Some(Codec::Json),
            _ => None,
        }
    }

    /// Encodes `value` at the end of `out` (the envelope's buffer: one
    /// allocation per entry rather than a payload copied into it).
    pub(crate) fn encode_into<T: Serialize + ?Sized>(
        self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match self {
            Codec::Postcard => postcard::to_io(value, out)
                .map(drop)
                .map_err(|e| CodecError::Encode(e.to_string())),
            Codec::Json => {
                serde_json::to_writer(out, value).map_err(|e| CodecError::Encode(e.to_string()))
            }
        }
    }

    /// Decodes a whole payload: trailing bytes are an error, since postcard
    /// would otherwise accept a longer, different value's prefix.
    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            Codec::Postcard => match postcard::take_from_bytes(bytes) {
                Ok((value, [])) => Ok(value),
                Ok((_, rest)) => Err(CodecError::Decode(format!("{} trailing bytes", rest.len()))),
                Err(e) => Err(CodecError::Decode(e.to_string())),
            },
            Codec::Json => {
                serde_json::from_slice(bytes).map_err(|e| CodecError::Decode(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        for codec in [Codec::Postcard, Codec::Json] {
            let mut bytes = Vec::new();
            codec.encode_into(&(7u32, "seven"), &mut bytes).unwrap();
            let back: (u32, String) = codec.decode(&bytes).unwrap();
            assert_eq!(back, (7, "seven".to_string()));
            assert_eq!(Codec::from_id(codec.id()), Some(codec));
        }
        let mut bytes = Vec::new();
        Codec::Postcard.encode_into(&7u32, &mut bytes).unwrap();
        bytes.push(0);
        assert!(Codec::Postcard.decode::<u32>(&bytes).is_err());
    }
}
