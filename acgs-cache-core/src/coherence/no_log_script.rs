//! The log's operations when the `redis` feature is off: there is no
//! `L2Tier` (or connection) to give them (see `tiers/no_l2.rs`), so none is
//! reachable.
//! The signatures are those of `log_script.rs`.

use std::sync::Arc;
use std::time::Duration;

use crate::coherence::log::{AppendSettings, LogEntry, LogKeys, Synced};
use crate::coherence::state::Record;
use crate::error::Error;
use crate::log_position::LogPosition;
use crate::tiers::l2::{L2Tier, RedisConnection};

pub(crate) async fn append(
    l2: &Arc<L2Tier>,
    _: &LogKeys,
    _: &Record,
    _: LogPosition,
    _: &[String],
    _: AppendSettings,
) -> Result<LogPosition, Error> {
    match **l2 {}
}

pub(crate) async fn sync(
    conn: &mut RedisConnection,
    _: &LogKeys,
    _: LogPosition,
    _: bool,
) -> Result<Synced, Error> {
    match *conn {}
}

pub(crate) async fn read_log(
    conn: &mut RedisConnection,
    _: &LogKeys,
    _: LogPosition,
    _: usize,
    _: Option<u64>,
) -> Result<Vec<LogEntry>, Error> {
    match *conn {}
}

pub(crate) async fn put_entry(
    l2: &Arc<L2Tier>,
    _: &str,
    _: LogPosition,
    _: &[u8],
    _: Duration,
    _: bool,
) -> Result<bool, Error> {
    match **l2 {}
}

pub(crate) async fn tombstone(
    l2: &Arc<L2Tier>,
    _: &str,
    _: &[u8],
    _: Duration,
) -> Result<(), Error> {
    match **l2 {}
}

pub(crate) async fn log_end(l2: &Arc<L2Tier>, _: &LogKeys) -> Result<LogPosition, Error> {
    match **l2 {}
}
