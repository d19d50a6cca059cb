//! The versioned envelope every L2 value travels in.
//!
//! Layout (format 3, all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0 | magic `0xAC` |
//! | 1 | format version (3) |
//! | 2 | codec id |
//! | 3 | flags |
//! | 4..12 | schema fingerprint |
//! | 12..20 | created at (Unix ms) |
//! | 20..28 | expires at (Unix ms) |
//! | 28..36, 36..44 | log position (ms, sequence) |
//! | 44..52 | XXH3-64 of the payload as stored |
//! | 52..60 | the entry's key: the low 64 bits of its key digest |
//! | 60..62 | number of tags, then each tag: length (u16) and UTF-8 bytes |
//! | rest | the payload (possibly lz4-compressed, its size prepended) |
//!
//! Fixed-width fields are read in place: a hit reads its header without
//! varint decoding or allocation. The key field binds the value to the
//! entry it was written for: bytes copied, restored or misrouted under
//! another key of the same function pass every other check, and are a
//! `wrong_key` miss instead of another argument's value.
//!
//! Only format 3 is read. Entries of formats 1 and 2 (earlier builds, which
//! did not bind the key) are `unknown_version` misses, recomputed and
//! overwritten, and builds that know only those count format 3 entries the
//! same way: during a rolling upgrade the two kinds of instance miss each
//! other's entries, and neither ever serves the other's as a value.
//!
//! Decoding never trusts the bytes: anything unexpected is a [`Reject`] — a
//! counted miss, never a panic and never a value of the wrong shape.

use std::borrow::Cow;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::error::CodecError;
use crate::format::codec::Codec;
use crate::log_position::LogPosition;

/// The envelope format this build writes, and the only one it reads.
pub const FORMAT_VERSION: u8 = 3;

/// Bytes before the tags.
const FIXED: usize = 62;

/// First byte of every envelope: tells our entries from bytes other programs
/// wrote under the prefix.
pub const MAGIC: u8 = 0xAC;

/// Header flag: the payload is lz4-compressed with its size prepended.
pub const FLAG_COMPRESSED: u8 = 0b0000_0001;

/// Everything about an entry except its payload.
///
/// ```
/// use acgs_cache_core::decode_header;
/// // What `acgs-cache inspect` shows of a stored entry; garbage is refused.
/// assert!(decode_header(&[0u8; 4]).is_err());
/// ```
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
    /// The low 64 bits of the entry's key digest: a value read under any
    /// other key is a `wrong_key` miss.
    pub key: u64,
    /// Dynamic tags the entry answers to.
    pub tags: Vec<String>,
    /// XXH3-64 of the payload as stored: a flipped or lost byte is a miss,
    /// never a different value (postcard would decode many of them).
    pub checksum: u64,
}

/// Why stored bytes were not used. Each reason is counted separately.
///
/// ```
/// use acgs_cache_core::{decode_header, Reject};
/// // Bytes that are not an envelope: a counted miss, never a value.
/// assert!(matches!(decode_header(b"not an envelope"), Err(Reject::Corrupt)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reject {
    /// Empty, truncated or garbled bytes (including values other programs
    /// wrote under our prefix).
    Corrupt,
    /// Written in another envelope format: a newer one, or one older than
    /// format 3 (which did not bind the entry's key).
    UnknownVersion,
    /// The header names a codec this build does not know.
    UnknownCodec,
    /// Written for another schema of the function.
    FingerprintMismatch,
    /// The payload exceeds the configured size limit.
    TooLarge,
    /// The header is fine but the payload does not decode as the return type.
    Payload,
    /// Written for another key of the function: bytes copied, restored or
    /// misrouted under this one.
    WrongKey,
    /// The entry started computing before an invalidation that concerns it
    /// (or before what this instance could hear of the log).
    Invalidated,
}

impl Reject {
    /// A short, stable name for metrics and logs.
    ///
    /// ```
    /// assert_eq!(acgs_cache_core::Reject::WrongKey.as_str(), "wrong_key"); // the `rejected` label
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Reject::Corrupt => "corrupt",
            Reject::UnknownVersion => "unknown_version",
            Reject::UnknownCodec => "unknown_codec",
            Reject::FingerprintMismatch => "fingerprint_mismatch",
            Reject::TooLarge => "too_large",
            Reject::Payload => "payload",
            Reject::WrongKey => "wrong_key",
            Reject::Invalidated => "invalidated",
        }
    }

    /// Every reason, for tables that list all of them.
    pub const ALL: [Reject; 8] = [
        Reject::Corrupt,
        Reject::UnknownVersion,
        Reject::UnknownCodec,
        Reject::FingerprintMismatch,
        Reject::TooLarge,
        Reject::Payload,
        Reject::Invalidated,
        Reject::WrongKey,
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

/// An encoded envelope, with its payload's size before compression: what
/// L1 weighs the decoded value by (see [`Opened::plain_size`]).
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) bytes: Vec<u8>,
    pub(crate) plain_size: usize,
}

/// Where the payload's checksum sits in the header.
const CHECKSUM_AT: usize = 44;

/// Builds an envelope around `value`: the header, then the payload encoded
/// straight after it in the same buffer, its checksum filled in last.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    codec: Codec,
    header: EnvelopeHeader,
    limits: EncodeLimits,
) -> Result<Sealed, CodecError> {
    let tag_count = u16::try_from(header.tags.len())
        .map_err(|_| CodecError::Encode(format!("{} tags: at most 65,535", header.tags.len())))?;
    let tag_bytes: usize = header.tags.iter().map(|t| 2 + t.len()).sum();
    // Room for a small payload: larger ones grow the buffer as they encode.
    let mut out = Vec::with_capacity(FIXED + tag_bytes + 128);
    let flags = header.flags & !FLAG_COMPRESSED;
    out.extend_from_slice(&[MAGIC, FORMAT_VERSION, codec.id(), flags]);
    for field in [
        header.fingerprint,
        header.created_at_ms,
        header.expires_at_ms,
        header.log_position.ms,
        header.log_position.seq,
        0, // the checksum, once the payload is there
        header.key,
    ] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&tag_count.to_le_bytes());
    for tag in &header.tags {
        let len = u16::try_from(tag.len()).map_err(|_| {
            CodecError::Encode(format!("a tag of {} bytes: at most 65,535", tag.len()))
        })?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
    }
    let payload_at = out.len();
    codec.encode_into(value, &mut out)?;
    let plain_size = out.len() - payload_at;
    if plain_size > limits.compress_above {
        let compressed = lz4_flex::compress_prepend_size(&out[payload_at..]);
        if compressed.len() < plain_size {
            out.truncate(payload_at);
            out.extend_from_slice(&compressed);
            out[3] |= FLAG_COMPRESSED;
        }
    }
    if out.len() > limits.max_value_bytes {
        return Err(CodecError::TooLarge {
            size: out.len(),
            limit: limits.max_value_bytes,
        });
    }
    let checksum = xxh3_64(&out[payload_at..]);
    out[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&checksum.to_le_bytes());
    Ok(Sealed {
        bytes: out,
        plain_size,
    })
}

/// An envelope's header read in place, and its payload.
#[derive(Debug)]
pub(crate) struct Opened<'a> {
    pub(crate) codec: u8,
    pub(crate) flags: u8,
    pub(crate) fingerprint: u64,
    pub(crate) created_at_ms: u64,
    pub(crate) expires_at_ms: u64,
    pub(crate) log_position: LogPosition,
    pub(crate) checksum: u64,
    pub(crate) key: u64,
    /// Borrowed from the bytes.
    pub(crate) tags: Vec<Cow<'a, str>>,
    pub(crate) payload: &'a [u8],
}

impl Opened<'_> {
    /// How many bytes the value takes once decoded, as far as its encoding
    /// tells: the payload's size before compression (an lz4 payload carries
    /// it) — what L1 weighs an entry by, since it holds the value decoded.
    pub(crate) fn plain_size(&self) -> usize {
        if self.flags & FLAG_COMPRESSED != 0 {
            self.declared_size().unwrap_or(self.payload.len())
        } else {
            self.payload.len()
        }
    }

    /// The size an lz4 payload declares (attacker-controlled).
    fn declared_size(&self) -> Option<usize> {
        let prefix: [u8; 4] = self.payload.get(..4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(prefix)).ok()
    }

    fn into_header(self) -> EnvelopeHeader {
        EnvelopeHeader {
            codec: self.codec,
            flags: self.flags,
            fingerprint: self.fingerprint,
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            log_position: self.log_position,
            key: self.key,
            tags: self.tags.into_iter().map(Cow::into_owned).collect(),
            checksum: self.checksum,
        }
    }
}

/// Reads the header of an envelope.
pub(crate) fn open(bytes: &[u8]) -> Result<Opened<'_>, Reject> {
    let opened = match bytes {
        [MAGIC, FORMAT_VERSION, ..] => open_fixed(bytes).ok_or(Reject::Corrupt)?,
        [MAGIC, _, ..] => return Err(Reject::UnknownVersion),
        _ => return Err(Reject::Corrupt),
    };
    if opened.flags & !FLAG_COMPRESSED != 0 {
        return Err(Reject::Corrupt);
    }
    Ok(opened)
}

fn open_fixed(bytes: &[u8]) -> Option<Opened<'_>> {
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    let u16_at = |at: usize| -> Option<usize> {
        Some(usize::from(u16::from_le_bytes(
            bytes.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    let count = u16_at(FIXED - 2)?;
    let mut tags = Vec::new();
    let mut at = FIXED;
    for _ in 0..count {
        let len = u16_at(at)?;
        let tag = bytes.get(at + 2..at + 2 + len)?;
        tags.push(Cow::Borrowed(std::str::from_utf8(tag).ok()?));
        at += 2 + len;
    }
    Some(Opened {
        codec: bytes[2],
        flags: bytes[3],
        fingerprint: u64_at(4)?,
        created_at_ms: u64_at(12)?,
        expires_at_ms: u64_at(20)?,
        log_position: LogPosition {
            ms: u64_at(28)?,
            seq: u64_at(36)?,
        },
        checksum: u64_at(44)?,
        key: u64_at(52)?,
        tags,
        payload: bytes.get(at..)?,
    })
}

/// Reads only the header (for inspection tools and for checks that need
/// no payload).
///
/// # Errors
///
/// The [`Reject`] reason when the bytes are not an envelope of a format
/// this build reads.
///
/// ```
/// use acgs_cache_core::{decode_header, Reject};
/// assert_eq!(decode_header(b"").unwrap_err(), Reject::Corrupt);
/// ```
pub fn decode_header(bytes: &[u8]) -> Result<(EnvelopeHeader, &[u8]), Reject> {
    let opened = open(bytes)?;
    let payload = opened.payload;
    Ok((opened.into_header(), payload))
}

/// Decodes an envelope written for the function with `fingerprint`, under
/// the key whose digest's low 64 bits are `key`.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    fingerprint: u64,
    key: u64,
    max_value_bytes: usize,
) -> Result<(Opened<'_>, T), Reject> {
    if bytes.len() > max_value_bytes {
        return Err(Reject::TooLarge);
    }
    let opened = open(bytes)?;
    if opened.fingerprint != fingerprint {
        return Err(Reject::FingerprintMismatch);
    }
    if opened.key != key {
        return Err(Reject::WrongKey);
    }
    if xxh3_64(opened.payload) != opened.checksum {
        return Err(Reject::Corrupt);
    }
    let codec = Codec::from_id(opened.codec).ok_or(Reject::UnknownCodec)?;
    let value = if opened.flags & FLAG_COMPRESSED != 0 {
        // The size prefix is attacker-controlled: check it before lz4
        // allocates that many bytes.
        let declared = opened.declared_size().ok_or(Reject::Corrupt)?;
        if declared > max_value_bytes {
            return Err(Reject::TooLarge);
        }
        let plain =
            lz4_flex::decompress_size_prepended(opened.payload).map_err(|_| Reject::Corrupt)?;
        codec.decode(&plain)
    } else {
        codec.decode(opened.payload)
    }
    .map_err(|_| Reject::Payload)?;
    Ok((opened, value))
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
            key: KEY,
            tags: vec!["tenant.7".into()],
            checksum: 0,
        }
    }

    /// The key the test envelopes are written for.
    pub(super) const KEY: u64 = 0x5eed_0000_0000_0007;

    /// The layout, byte for byte, written out independently of `encode`:
    /// the format-3 header, the tag, then the payload, with the payload's
    /// XXH3 at byte 44 (the payload is encoded in the envelope's own buffer,
    /// and the checksum filled in after it).
    #[test]
    fn the_layout_is_pinned_byte_for_byte() {
        let value = "short".to_string();
        let payload = postcard::to_allocvec(&value).unwrap();
        let mut expected = vec![MAGIC, FORMAT_VERSION, Codec::Postcard.id(), 0];
        for field in [0xfeed, 1, 2, 3, 4, xxh3_64(&payload), KEY] {
            expected.extend_from_slice(&u64::to_le_bytes(field));
        }
        expected.extend_from_slice(&1u16.to_le_bytes());
        expected.extend_from_slice(&8u16.to_le_bytes());
        expected.extend_from_slice(b"tenant.7");
        expected.extend_from_slice(&payload);
        let sealed = encode(&value, Codec::Postcard, header(), LIMITS).unwrap();
        assert_eq!(sealed.bytes, expected);
        assert_eq!(sealed.plain_size, payload.len());
        // JSON the same way, with its own payload.
        let json = serde_json::to_vec(&value).unwrap();
        let sealed = encode(&value, Codec::Json, header(), LIMITS).unwrap();
        assert_eq!(&sealed.bytes[FIXED + 10..], json.as_slice());
        assert_eq!(sealed.bytes[44..52], xxh3_64(&json).to_le_bytes());
    }

    #[test]
    fn round_trip_small_and_compressed() {
        for codec in [Codec::Postcard, Codec::Json] {
            for value in ["short".to_string(), "y".repeat(10_000)] {
                let bytes = encode(&value, codec, header(), LIMITS).unwrap().bytes;
                let (h, back): (_, String) =
                    decode(&bytes, 0xfeed, KEY, LIMITS.max_value_bytes).unwrap();
                assert_eq!(back, value);
                assert_eq!(h.tags, vec!["tenant.7".to_string()]);
                assert_eq!(h.flags & FLAG_COMPRESSED != 0, value.len() > 256);
            }
        }
    }

    #[test]
    fn every_kind_of_bad_input_is_a_reason_not_a_panic() {
        let good = encode(&"v".to_string(), Codec::Postcard, header(), LIMITS)
            .unwrap()
            .bytes;
        assert_eq!(
            decode::<String>(&[], 0xfeed, KEY, 1 << 20).unwrap_err(),
            Reject::Corrupt
        );
        assert_eq!(
            decode::<String>(&good, 0xbeef, KEY, 1 << 20).unwrap_err(),
            Reject::FingerprintMismatch
        );
        let mut future = good.clone();
        future[1] = FORMAT_VERSION + 1;
        assert_eq!(
            decode::<String>(&future, 0xfeed, KEY, 1 << 20).unwrap_err(),
            Reject::UnknownVersion
        );
        assert_eq!(
            decode::<u64>(&good, 0xfeed, KEY, 1 << 20).unwrap_err(),
            Reject::Payload
        );
        // The same bytes read under another key of the function.
        assert_eq!(
            decode::<String>(&good, 0xfeed, KEY ^ 1, 1 << 20).unwrap_err(),
            Reject::WrongKey
        );
        assert_eq!(
            decode::<String>(&good, 0xfeed, KEY, 4).unwrap_err(),
            Reject::TooLarge
        );
        for cut in 1..good.len() {
            assert!(
                decode::<String>(&good[..cut], 0xfeed, KEY, 1 << 20).is_err(),
                "cut at {cut}"
            );
        }
        assert!(decode::<String>(
            b"{\"json\": \"from another program\"}",
            0xfeed,
            KEY,
            1 << 20
        )
        .is_err());
    }

    #[test]
    fn the_plain_size_is_the_size_before_compression() {
        let small = encode(&"v".to_string(), Codec::Postcard, header(), LIMITS).unwrap();
        assert_eq!(small.plain_size, 2);
        assert_eq!(open(&small.bytes).unwrap().plain_size(), 2);
        let big = encode(&"y".repeat(10_000), Codec::Postcard, header(), LIMITS).unwrap();
        assert!(big.bytes.len() < 1_000, "compressed");
        assert_eq!(big.plain_size, 10_002);
        assert_eq!(open(&big.bytes).unwrap().plain_size(), 10_002);
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
        // The header is fine, the payload declares 4 GiB. Postcard writes
        // `()` as no bytes: this is the header alone.
        let mut bytes = encode(&(), Codec::Postcard, h, LIMITS).unwrap().bytes;
        bytes[3] = FLAG_COMPRESSED;
        bytes[44..52].copy_from_slice(&xxh3_64(&hostile).to_le_bytes());
        bytes.extend_from_slice(&hostile);
        assert_eq!(
            decode::<String>(&bytes, 0xfeed, KEY, 1 << 20).unwrap_err(),
            Reject::TooLarge
        );
    }

    /// What format 1 wrote: a postcard header after magic and version.
    fn encode_v1(value: &str, mut header: EnvelopeHeader) -> Vec<u8> {
        let payload = postcard::to_allocvec(value).unwrap();
        header.checksum = xxh3_64(&payload);
        let mut bytes = postcard::to_extend(&header, vec![MAGIC, 1]).unwrap();
        bytes.extend_from_slice(&payload);
        bytes
    }

    #[test]
    fn entries_of_earlier_formats_are_misses_never_values() {
        // Format 1 (a postcard header) and format 2 (format 3 without the
        // key field) were written by builds that did not bind the key.
        let v1 = encode_v1("from an earlier build", header());
        let mut v2 = encode(&"earlier".to_string(), Codec::Postcard, header(), LIMITS)
            .unwrap()
            .bytes;
        v2[1] = 2;
        v2.drain(52..60);
        for old in [v1, v2] {
            assert_eq!(
                decode::<String>(&old, 0xfeed, KEY, 1 << 20).unwrap_err(),
                Reject::UnknownVersion
            );
            assert_eq!(decode_header(&old).unwrap_err(), Reject::UnknownVersion);
        }
    }

    #[test]
    fn format_3_fields_sit_at_fixed_offsets() {
        let bytes = encode(&"v".to_string(), Codec::Json, header(), LIMITS)
            .unwrap()
            .bytes;
        assert_eq!(&bytes[..4], &[MAGIC, 3, Codec::Json.id(), 0]);
        assert_eq!(bytes[4..12], 0xfeed_u64.to_le_bytes());
        assert_eq!(bytes[20..28], 2u64.to_le_bytes()); // expires
        assert_eq!(bytes[28..36], 3u64.to_le_bytes()); // log ms
        assert_eq!(bytes[52..60], KEY.to_le_bytes()); // the key
        assert_eq!(bytes[60..62], 1u16.to_le_bytes()); // one tag
        assert_eq!(&bytes[62..64], &8u16.to_le_bytes());
        assert_eq!(&bytes[64..72], b"tenant.7");
        assert_eq!(&bytes[72..], b"\"v\"");
        assert_eq!(decode_header(&bytes).unwrap().0.key, KEY);
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
            let bytes = encode(&value, codec, header_of(tags.clone()), LIMITS).unwrap().bytes;
            let (header, back): (_, Value) = decode(&bytes, 0xfeed, super::tests::KEY, LIMITS.max_value_bytes).unwrap();
            prop_assert_eq!(back, value);
            prop_assert_eq!(header.tags, tags);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Value>(&bytes, 0xfeed, super::tests::KEY, LIMITS.max_value_bytes);
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
            let mut bytes = encode(&value, codec, header_of(vec!["t.1".into()]), LIMITS).unwrap().bytes;
            for (at, byte, kind) in edits {
                match kind {
                    0 if !bytes.is_empty() => { let i = at.index(bytes.len()); bytes[i] ^= byte | 1; }
                    1 if !bytes.is_empty() => { let i = at.index(bytes.len()); bytes.truncate(i); }
                    _ => bytes.push(byte),
                }
            }
            if let Ok((_, decoded)) = decode::<Value>(&bytes, 0xfeed, super::tests::KEY, LIMITS.max_value_bytes) {
                prop_assert_eq!(decoded, value);
            }
        }
    }
}
