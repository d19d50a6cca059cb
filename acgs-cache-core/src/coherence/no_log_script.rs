//! The log's operations when the `redis` feature is off: there is no
//! `L2Tier` to call them on (see `tiers/no_l2.rs`), so none is reachable.
//! The signatures are those of `log_script.rs`.

use std::sync::Arc;
use std::time::Duration;

use crate::coherence::log::{AppendSettings, LogEntry, LogKeys, Synced};
use crate::coherence::state::Record;
use crate::error::Error;
use crate::log_position::LogPosition;
use crate::tiers::l2::{L2Tier, RedisConnection};

impl L2Tier {
    pub(crate) async fn append(
        self: &Arc<Self>,
        _: &LogKeys,
        _: &Record,
        _: LogPosition,
        _: &[String],
        _: AppendSettings,
    ) -> Result<LogPosition, Error> {
        match **self {}
    }

    pub(crate) async fn sync(
        &self,
        _: &mut RedisConnection,
        _: &LogKeys,
        _: LogPosition,
        _: bool,
    ) -> Result<Synced, Error> {
        match *self {}
    }

    pub(crate) async fn read_log(
        &self,
        _: &mut RedisConnection,
        _: &LogKeys,
        _: LogPosition,
        _: usize,
        _: Option<u64>,
    ) -> Result<Vec<LogEntry>, Error> {
        match *self {}
    }

    pub(crate) async fn put_entry(
        self: &Arc<Self>,
        _: &str,
        _: LogPosition,
        _: &[u8],
        _: Duration,
    ) -> Result<bool, Error> {
        match **self {}
    }

    pub(crate) async fn tombstone(
        self: &Arc<Self>,
        _: &str,
        _: &[u8],
        _: Duration,
    ) -> Result<(), Error> {
        match **self {}
    }

    pub(crate) async fn log_end(self: &Arc<Self>, _: &LogKeys) -> Result<LogPosition, Error> {
        match **self {}
    }
}
