//! Positions in the invalidation log.

use serde::{Deserialize, Serialize};

/// Bits of a packed position that hold the sequence part.
const SEQ_BITS: u32 = 20;
const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;

/// A position in the invalidation log, ordered like Redis stream ids
/// (`{ms}-{seq}`). Every entry records the position its computation started
/// at, so a reader can reject values computed before a matching invalidation.
///
/// ```
/// use acgs_cache_core::Cache;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let first = cache.invalidate("tenant.acme").await?;
/// let second = cache.invalidate("tenant.acme").await?;
/// assert!(second > first); // positions are ordered
/// assert!(cache.log_position() >= second); // this instance has applied it
/// # Ok(()) }
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct LogPosition {
    /// Milliseconds part of the stream id.
    pub ms: u64,
    /// Sequence part of the stream id.
    pub seq: u64,
}

impl LogPosition {
    /// The position before any event.
    pub const ORIGIN: LogPosition = LogPosition { ms: 0, seq: 0 };

    /// Parses a Redis stream id (`1700000000000-3`).
    ///
    /// ```
    /// use acgs_cache_core::LogPosition;
    /// let position = LogPosition::parse("1764500000000-3").unwrap(); // a Redis stream id
    /// assert_eq!((position.ms, position.seq), (1_764_500_000_000, 3));
    /// assert_eq!(LogPosition::parse("not-an-id"), None);
    /// ```
    #[must_use]
    pub fn parse(id: &str) -> Option<LogPosition> {
        let (ms, seq) = id.split_once('-')?;
        Some(LogPosition {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// One `u64`, ordered as the position is, so it fits an atomic. More than
    /// a million events within one millisecond share the last sequence value,
    /// which only makes rejection more conservative.
    #[must_use]
    pub(crate) const fn packed(self) -> u64 {
        let seq = if self.seq > MAX_SEQ {
            MAX_SEQ
        } else {
            self.seq
        };
        (self.ms << SEQ_BITS) | seq
    }

    pub(crate) const fn from_packed(packed: u64) -> LogPosition {
        LogPosition {
            ms: packed >> SEQ_BITS,
            seq: packed & MAX_SEQ,
        }
    }
}

impl std::fmt::Display for LogPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

// Tombstones (L2 only): what an entry invalidation writes over an entry.

/// First byte of a tombstone: the value an entry invalidation writes over
/// the entry's L2 key (then its position, fixed-width, so scripts compare
/// positions as strings).
pub(crate) const TOMBSTONE_MAGIC: u8 = 0xAD;

/// A position as scripts compare it: `{ms:020}-{seq:020}`.
pub(crate) fn position_arg(position: LogPosition) -> String {
    format!("{:020}-{:020}", position.ms, position.seq)
}

/// A tombstone for an entry invalidated at `position`.
pub(crate) fn tombstone(position: LogPosition) -> Vec<u8> {
    let mut bytes = vec![TOMBSTONE_MAGIC];
    bytes.extend_from_slice(position_arg(position).as_bytes());
    bytes
}

/// A tombstone no write passes: on a cluster, written before the
/// invalidation record (whose position is not known yet) and replaced by
/// the real one after it.
pub(crate) fn tombstone_everything() -> Vec<u8> {
    tombstone(LogPosition {
        ms: 99_999_999_999_999_999,
        seq: 99_999_999_999_999_999,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_order_and_round_trips() {
        let ids = [
            "0-0",
            "0-1",
            "1-0",
            "1700000000000-0",
            "1700000000000-7",
            "1700000000001-0",
        ];
        let packed: Vec<u64> = ids
            .iter()
            .map(|i| LogPosition::parse(i).unwrap().packed())
            .collect();
        assert!(packed.windows(2).all(|w| w[0] < w[1]), "{packed:?}");
        for id in ids {
            let p = LogPosition::parse(id).unwrap();
            assert_eq!(LogPosition::from_packed(p.packed()), p);
            assert_eq!(p.to_string(), id);
        }
        assert_eq!(LogPosition::parse("nope"), None);
    }
}
