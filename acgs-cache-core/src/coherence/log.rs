//! The invalidation log in Redis: a stream whose server-assigned ids are the
//! positions every entry is compared with, and the scripts that keep it
//! trustworthy.
//!
//! **Generations.** The stream can vanish and come back (a restart without
//! persistence, eviction, `DEL`, `FLUSHALL`) or move to another server (a
//! Sentinel failover, a cluster node that returns empty); a new stream's ids
//! may even repeat the old one's. Every write goes through a script that
//! marks each *generation* of the log with a consumer group
//! `epoch:{random}:{replication id of the server}` (groups live and die with
//! the stream) and starts it with `XSETID` past everything the old
//! generation and the writer had seen. A reader that finds another epoch —
//! or an epoch of another server than the one answering — knows the log
//! broke: it rejects every entry stamped before the new generation. A fresh
//! instance rejects entries stamped before the current generation began.
//!
//! **Knowing nothing was missed.** Each record names its generation and
//! the record before it, so a reader checks a batch it read against its
//! cursor without another round trip; a read that returns nothing is
//! checked with the generation script instead. Either way the read then
//! renews the instance's lease (`lease.rs`).
//!
//! **Catch-up without the whole log.** Name, tag and function invalidations
//! are also written into a hash (`…:{invalidation}:state`, one field per
//! name); single-entry invalidations are not, since each also writes a
//! tombstone over its entry's L2 key. An instance that starts, or that lost
//! the log for longer than it can read back, loads that hash and the stream's
//! last id in one atomic script (and clears its L1) instead of reading every
//! record: its start costs one round trip whatever the log holds. The stream
//! itself is capped (`MAXLEN ~`).
//!
//! **Writes that cannot undo an invalidation.** A miss stores its entry with
//! a script that refuses to overwrite a tombstone newer than the
//! computation's start.

use std::time::{Duration, SystemTime};

use crate::coherence::state::Record;
use crate::log_position::LogPosition;

/// The log's keys. Both carry the hash tag `{invalidation}`: on a cluster
/// they share a slot, so one script reaches both.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the scripts read them
pub(crate) struct LogKeys {
    pub(crate) stream: String,
    pub(crate) state: String,
}

impl LogKeys {
    pub(crate) fn new(prefix: &str) -> Self {
        LogKeys {
            stream: format!("{prefix}:{{invalidation}}:log"),
            state: format!("{prefix}:{{invalidation}}:state"),
        }
    }
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What an append needs besides the record.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the scripts read them
pub(crate) struct AppendSettings {
    /// The most records the stream keeps (`MAXLEN ~`).
    pub(crate) max_len: usize,
    /// How long tombstones hold (the invalidation window).
    pub(crate) tombstone_for: Duration,
    /// Replicas that must acknowledge, and how long to wait for them.
    pub(crate) confirm: Option<(u32, Duration)>,
}

/// The log's state as one script read it.
pub(crate) struct Synced {
    /// The generation (`epoch:{random}:{replication id}`).
    pub(crate) epoch: String,
    /// Where the generation started.
    pub(crate) start: LogPosition,
    /// The stream's last id.
    pub(crate) last: LogPosition,
    /// The oldest record kept, if any.
    pub(crate) first: Option<LogPosition>,
    /// Name, tag and function invalidations by name, with their positions.
    pub(crate) state: Vec<(String, LogPosition)>,
    /// The highest id trimmed or deleted from the stream (Redis 7 and
    /// later): a record after a reader's cursor that is gone is one it missed.
    pub(crate) max_deleted: Option<LogPosition>,
}

/// One record read from the log.
pub(crate) struct LogEntry {
    /// The stream id as read.
    pub(crate) id: String,
    /// The id as a position (`None`: not an id this protocol writes).
    pub(crate) position: Option<LogPosition>,
    /// The record and when it was sent (µs since the epoch), or `None` when
    /// it cannot be read (a newer format, a foreign writer).
    pub(crate) record: Option<(Record, Option<u64>)>,
    /// The generation it was appended to (`g`), if it says.
    pub(crate) generation: Option<String>,
    /// The record before it in the log (`p`), if it says: a reader whose
    /// cursor is that record missed nothing between the two.
    pub(crate) previous: Option<LogPosition>,
}
