//! The clock of L1 deadlines: a coarse one, read on every hit.
//!
//! A precise clock read (`clock_gettime`) was the largest single cost of an
//! L1 hit on the machines we measured (≈30 ns of ≈300 ns in a VM). L1
//! deadlines are TTLs of seconds to hours, so a time that lags by at most
//! [`RESOLUTION`] is precise enough: quanta's upkeep thread keeps a global
//! "recent" time that a hit reads with one atomic load. Without that thread
//! (it could not be spawned) every read falls back to the precise clock, so
//! a stale recent time can never keep an entry alive.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) use quanta::Instant;

/// How far the coarse time may lag behind the real one.
pub(crate) const RESOLUTION: Duration = Duration::from_millis(2);

/// The upkeep thread's handle (kept for the life of the process); `None`
/// when it could not be started by us.
static UPKEEP: OnceLock<Option<quanta::Handle>> = OnceLock::new();

/// Starts the upkeep thread once per process (called when a cache is built).
pub(crate) fn start() {
    UPKEEP.get_or_init(|| match quanta::Upkeep::new(RESOLUTION).start() {
        Ok(handle) => Some(handle),
        Err(e) => {
            // Someone else's upkeep may stop at any time: do not rely on it.
            tracing::debug!(target: "acgs_cache", error = %e, "coarse clock unavailable; L1 reads the precise clock");
            None
        }
    });
}

/// Now, give or take [`RESOLUTION`] (never ahead of the real time).
pub(crate) fn now() -> Instant {
    match UPKEEP.get() {
        Some(Some(_)) => Instant::recent(),
        _ => Instant::now(),
    }
}

/// Milliseconds since the Unix epoch (0 before it): the wall-clock time
/// written into entries and fleet records, compared across machines.
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
