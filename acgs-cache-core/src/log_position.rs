//! Positions in the invalidation log.

use serde::{Deserialize, Serialize};

/// A position in the invalidation log, ordered like Redis stream ids
/// (`{ms}-{seq}`). Every entry records the position its computation started
/// at, so a reader can reject values computed before a matching invalidation.
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
}

impl std::fmt::Display for LogPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}
