//! The versioned envelope every L2 value travels in.
//!
//! Layout: a magic byte (`0xAC`), a format-version byte, then a postcard [`EnvelopeHeader`], then
//! the payload (possibly lz4-compressed). Decoding never trusts the bytes:
//! anything unexpected is a [`Reject`] — a counted miss, never a panic and
//! never a value of the wrong shape.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::codec::Codec;
use crate::error::CodecError;
use crate::log_position::LogPosition;

/// The envelope format this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// First byte of every envelope: tells our entries from bytes other programs
/// wrote under the prefix.
pub const MAGIC: u8 = 0xAC;

/// Header flag: the payload is lz4-compressed with its size prepended.
pub const FLAG_COMPRESSED: u8 = 0b0000_0001;

/// Everything about an entry except its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeHeader {
    /// [`Codec::id`] of the payload.
    pub codec: u8,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Schema fingerprint of the function that wrote it.
    pub fingerprint: u64,
    /// When the computation finished (Unix ms).
    pub created_at_ms: u64,
    /// Logical expiry (Unix ms); Redis may keep the bytes longer for the
    /// stale-if-error window.
    pub expires_at_ms: u64,
    /// Invalidation-log position when the computation started.
    pub log_position: LogPosition,
    /// Dynamic tags the entry answers to.
    pub tags: Vec<String>,
    /// XXH3-64 of the payload as stored: a flipped or lost byte is a miss,
    /// never a different value (postcard would decode many of them).
    pub checksum: u64,
}

/// Why stored bytes were not used. Each reason is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reject {
    /// Empty, truncated or garbled bytes (including values other programs
    /// wrote under our prefix).
    Corrupt,
    /// Written by a newer (or unknown) envelope format.
    UnknownVersion,
    /// The header names a codec this build does not know.
    UnknownCodec,
    /// Written for another schema of the function.
    FingerprintMismatch,
    /// The payload exceeds the configured size limit.
    TooLarge,
    /// The header is fine but the payload does not decode as the return type.
    Payload,
    /// The entry started computing before an invalidation that concerns it
    /// (or before what this instance could hear of the log).
    Invalidated,
}

impl Reject {
    /// A short, stable name for metrics and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Reject::Corrupt => "corrupt",
            Reject::UnknownVersion => "unknown_version",
            Reject::UnknownCodec => "unknown_codec",
            Reject::FingerprintMismatch => "fingerprint_mismatch",
            Reject::TooLarge => "too_large",
            Reject::Payload => "payload",
            Reject::Invalidated => "invalidated",
        }
    }

    /// Every reason, for tables that list all of them.
    pub const ALL: [Reject; 7] = [
        Reject::Corrupt,
        Reject::UnknownVersion,
        Reject::UnknownCodec,
        Reject::FingerprintMismatch,
        Reject::TooLarge,
        Reject::Payload,
        Reject::Invalidated,
    ];
}

/// Encoding settings that come from the cache's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncodeLimits {
    /// Payloads larger than this are compressed (when that makes them smaller).
    pub(crate) compress_above: usize,
    /// Envelopes larger than this are not stored.
    pub(crate) max_value_bytes: usize,
}

/// Builds an envelope around `value`.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    codec: Codec,
    mut header: EnvelopeHeader,
    limits: EncodeLimits,
) -> Result<Vec<u8>, CodecError> {
    let mut payload = codec.encode(value)?;
    header.codec = codec.id();
    header.flags &= !FLAG_COMPRESSED;
    if payload.len() > limits.compress_above {
        let compressed = lz4_flex::compress_prepend_size(&payload);
        if compressed.len() < payload.len() {
            payload = compressed;
            header.flags |= FLAG_COMPRESSED;
        }
    }
    header.checksum = xxh3_64(&payload);
    let mut out = Vec::with_capacity(
        payload.len() + 48 + header.tags.iter().map(|t| t.len() + 1).sum::<usize>(),
    );
    out.extend_from_slice(&[MAGIC, FORMAT_VERSION]);
    let mut out =
        postcard::to_extend(&header, out).map_err(|e| CodecError::Encode(e.to_string()))?;
    out.extend_from_slice(&payload);
    if out.len() > limits.max_value_bytes {
        return Err(CodecError::TooLarge {
            size: out.len(),
            limit: limits.max_value_bytes,
        });
    }
    Ok(out)
}

/// Reads only the header (for inspection tools and for checks that need no payload).
///
/// # Errors
///
/// The [`Reject`] reason when the bytes are not an envelope of this format.
pub fn decode_header(bytes: &[u8]) -> Result<(EnvelopeHeader, &[u8]), Reject> {
    let [MAGIC, version, rest @ ..] = bytes else {
        return Err(Reject::Corrupt);
    };
    if *version != FORMAT_VERSION {
        return Err(if *version > FORMAT_VERSION {
            Reject::UnknownVersion
        } else {
            Reject::Corrupt
        });
    }
    let (header, payload): (EnvelopeHeader, &[u8]) =
        postcard::take_from_bytes(rest).map_err(|_| Reject::Corrupt)?;
    if header.flags & !FLAG_COMPRESSED != 0 {
        return Err(Reject::Corrupt);
    }
    Ok((header, payload))
}

/// How many bytes the value in `bytes` takes once decoded, as far as its
/// encoding tells: the payload's size before compression (an lz4 payload
/// carries it) — what L1 weighs an entry by, since it holds the value
/// decoded, not the bytes.
pub(crate) fn plain_size(bytes: &[u8]) -> usize {
    match decode_header(bytes) {
        Ok((header, payload)) if header.flags & FLAG_COMPRESSED != 0 => {
            payload.get(..4).map_or(payload.len(), |p| {
                u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize
            })
        }
        Ok((_, payload)) => payload.len(),
        Err(_) => bytes.len(),
    }
}

/// Decodes an envelope written for the function with `fingerprint`.
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // only L2 holds envelopes
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    fingerprint: u64,
    max_value_bytes: usize,
) -> Result<(EnvelopeHeader, T), Reject> {
    if bytes.len() > max_value_bytes {
        return Err(Reject::TooLarge);
    }
    let (header, payload) = decode_header(bytes)?;
    if header.fingerprint != fingerprint {
        return Err(Reject::FingerprintMismatch);
    }
    if xxh3_64(payload) != header.checksum {
        return Err(Reject::Corrupt);
    }
    let codec = Codec::from_id(header.codec).ok_or(Reject::UnknownCodec)?;
    let value = if header.flags & FLAG_COMPRESSED != 0 {
        // The size prefix is attacker-controlled: check it before lz4
        // allocates that many bytes.
        let declared = payload
            .get(..4)
            .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize)
            .ok_or(Reject::Corrupt)?;
        if declared > max_value_bytes {
            return Err(Reject::TooLarge);
        }
        let plain = lz4_flex::decompress_size_prepended(payload).map_err(|_| Reject::Corrupt)?;
        codec.decode(&plain)
    } else {
        codec.decode(payload)
    }
    .map_err(|_| Reject::Payload)?;
    Ok((header, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: EncodeLimits = EncodeLimits {
        compress_above: 256,
        max_value_bytes: 1 << 20,
    };

    pub(super) fn header() -> EnvelopeHeader {
        EnvelopeHeader {
            codec: 0,
            flags: 0,
            fingerprint: 0xfeed,
            created_at_ms: 1,
            expires_at_ms: 2,
            log_position: LogPosition { ms: 3, seq: 4 },
            tags: vec!["tenant.7".into()],
            checksum: 0,
        }
    }

    #[test]
    fn round_trip_small_and_compressed() {
        for codec in [Codec::Postcard, Codec::Json] {
            for value in ["short".to_string(), "y".repeat(10_000)] {
                let bytes = encode(&value, codec, header(), LIMITS).unwrap();
                let (h, back): (_, String) =
                    decode(&bytes, 0xfeed, LIMITS.max_value_bytes).unwrap();
                assert_eq!(back, value);
                assert_eq!(h.tags, vec!["tenant.7".to_string()]);
                assert_eq!(h.flags & FLAG_COMPRESSED != 0, value.len() > 256);
            }
        }
    }

    #[test]
    fn every_kind_of_bad_input_is_a_reason_not_a_panic() {
        let good = encode(&"v".to_string(), Codec::Postcard, header(), LIMITS).unwrap();
        assert_eq!(
            decode::<String>(&[], 0xfeed, 1 << 20).unwrap_err(),
            Reject::Corrupt
        );
        assert_eq!(
            decode::<String>(&good, 0xbeef, 1 << 20).unwrap_err(),
            Reject::FingerprintMismatch
        );
        let mut future = good.clone();
        future[1] = FORMAT_VERSION + 1;
        assert_eq!(
            decode::<String>(&future, 0xfeed, 1 << 20).unwrap_err(),
            Reject::UnknownVersion
        );
        assert_eq!(
            decode::<u64>(&good, 0xfeed, 1 << 20).unwrap_err(),
            Reject::Payload
        );
        assert_eq!(
            decode::<String>(&good, 0xfeed, 4).unwrap_err(),
            Reject::TooLarge
        );
        for cut in 1..good.len() {
            assert!(
                decode::<String>(&good[..cut], 0xfeed, 1 << 20).is_err(),
                "cut at {cut}"
            );
        }
        assert!(
            decode::<String>(b"{\"json\": \"from another program\"}", 0xfeed, 1 << 20).is_err()
        );
    }

    #[test]
    fn the_plain_size_is_the_size_before_compression() {
        let small = encode(&"v".to_string(), Codec::Postcard, header(), LIMITS).unwrap();
        assert_eq!(plain_size(&small), 2);
        let big = encode(&"y".repeat(10_000), Codec::Postcard, header(), LIMITS).unwrap();
        assert!(big.len() < 1_000, "compressed");
        assert_eq!(plain_size(&big), 10_002);
    }

    #[test]
    fn oversize_values_are_refused_at_write() {
        let limits = EncodeLimits {
            compress_above: usize::MAX,
            max_value_bytes: 64,
        };
        let err = encode(&"z".repeat(100), Codec::Postcard, header(), limits).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { limit: 64, .. }));
    }

    #[test]
    fn hostile_compressed_size_prefix_does_not_allocate() {
        let mut h = header();
        h.flags = FLAG_COMPRESSED;
        let mut hostile = u32::MAX.to_le_bytes().to_vec();
        hostile.extend_from_slice(&[0; 8]);
        h.checksum = xxh3_64(&hostile);
        let mut bytes = vec![MAGIC, FORMAT_VERSION];
        let mut bytes = {
            bytes = postcard::to_extend(&h, bytes).unwrap();
            bytes
        };
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(
            decode::<String>(&bytes, 0xfeed, 1 << 20).unwrap_err(),
            Reject::TooLarge
        );
    }
}

/// Property tests: `PROPTEST_CASES=1000000 cargo test --release -p acgs-cache-core envelope::properties`
/// runs the million-case check; the default count keeps CI fast.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: EncodeLimits = EncodeLimits {
        compress_above: 64,
        max_value_bytes: 1 << 20,
    };
    type Value = (String, Vec<u32>, Option<i64>, bool);

    fn config() -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(2_000);
        ProptestConfig {
            cases,
            ..ProptestConfig::default()
        }
    }

    fn header_of(tags: Vec<String>) -> EnvelopeHeader {
        EnvelopeHeader {
            tags,
            ..super::tests::header()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn round_trips(value: Value, json: bool, tags in proptest::collection::vec("[a-z.]{1,12}", 0..4)) {
            let codec = if json { Codec::Json } else { Codec::Postcard };
            let bytes = encode(&value, codec, header_of(tags.clone()), LIMITS).unwrap();
            let (header, back): (_, Value) = decode(&bytes, 0xfeed, LIMITS.max_value_bytes).unwrap();
            prop_assert_eq!(back, value);
            prop_assert_eq!(header.tags, tags);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Value>(&bytes, 0xfeed, LIMITS.max_value_bytes);
            let _ = decode_header(&bytes);
        }

        /// A damaged envelope (bytes changed, cut or appended anywhere) decodes
        /// to the original value or not at all — never to another value.
        #[test]
        fn damage_is_a_miss_never_a_wrong_value(
            value: Value,
            json: bool,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        ) {
            let codec = if json { Codec::Json } else { Codec::Postcard };
            let mut bytes = encode(&value, codec, header_of(vec!["t.1".into()]), LIMITS).unwrap();
            for (at, byte, kind) in edits {
                match kind {
                    0 if !bytes.is_empty() => { let i = at.index(bytes.len()); bytes[i] ^= byte | 1; }
                    1 if !bytes.is_empty() => { let i = at.index(bytes.len()); bytes.truncate(i); }
                    _ => bytes.push(byte),
                }
            }
            if let Ok((_, decoded)) = decode::<Value>(&bytes, 0xfeed, LIMITS.max_value_bytes) {
                prop_assert_eq!(decoded, value);
            }
        }
    }
}
