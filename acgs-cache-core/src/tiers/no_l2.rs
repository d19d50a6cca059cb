//! L2 when the `redis` feature is off: the names the layers above use,
//! with an uninhabited [`L2Tier`]. A cache has no L2 (`Option<Arc<L2Tier>>`
//! is always `None`), so every branch that would use one is unreachable and
//! compiles to nothing, and the engine is written once for both builds.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::measure::latency::Latency;
use crate::measure::stats::PoolStats;

pub(crate) use crate::tiers::l2_types::{BulkEntry, Fetched};

/// The L2 tier, which this build cannot have.
pub(crate) enum L2Tier {}

/// The L2 settings, which this build cannot be given.
#[derive(Debug, Clone)]
pub(crate) enum L2Settings {}

/// A Redis connection, which this build cannot open.
pub(crate) enum RedisConnection {}

/// A held Redis lock, which this build cannot take.
pub(crate) enum LockGuard {}

/// A warming writer, which this build cannot open.
pub(crate) enum BulkWriter {}

impl L2Settings {
    pub(crate) fn shown(&self) -> String {
        match *self {}
    }
}

impl L2Tier {
    pub(crate) fn new(settings: L2Settings) -> Result<Self, Error> {
        match settings {}
    }

    pub(crate) fn is_available(&self) -> bool {
        match *self {}
    }

    pub(crate) fn circuit(&self) -> (bool, u64) {
        match *self {}
    }

    pub(crate) fn latency(&self) -> &Latency {
        match *self {}
    }

    pub(crate) fn pool_stats(&self) -> PoolStats {
        match *self {}
    }

    pub(crate) fn soft_timeout(&self) -> Duration {
        match *self {}
    }

    pub(crate) fn is_cluster(&self) -> bool {
        match *self {}
    }

    pub(crate) fn confirmation(&self) -> Option<(u32, Duration)> {
        match *self {}
    }

    pub(crate) async fn decide_confirmation(&self, _: &mut RedisConnection) {
        match *self {}
    }

    pub(crate) async fn dedicated_connection(self: &Arc<Self>) -> Result<RedisConnection, Error> {
        match **self {}
    }

    pub(crate) async fn bulk_writer(&self, _: Duration) -> Result<BulkWriter, Error> {
        match *self {}
    }

    pub(crate) async fn get_entry(self: &Arc<Self>, _: &str, _: usize) -> Result<Fetched, Error> {
        match **self {}
    }

    pub(crate) async fn unlink(self: &Arc<Self>, _: &[String]) -> Result<u64, Error> {
        match **self {}
    }

    pub(crate) async fn try_lock(
        self: &Arc<Self>,
        _: &str,
        _: Option<&str>,
        _: Duration,
    ) -> Result<Option<(LockGuard, u64)>, Error> {
        match **self {}
    }
}

impl LockGuard {
    pub(crate) async fn release(self) -> Result<(), Error> {
        match self {}
    }
}

impl BulkWriter {
    pub(crate) async fn write(&self, _: &[BulkEntry]) -> Result<(), Error> {
        match *self {}
    }
}
