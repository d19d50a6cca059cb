//! What waiting for the fleet found ([`crate::Cache::wait_for_fleet`]).

use std::time::Duration;

use crate::log_position::LogPosition;

/// What [`Cache::wait_for_fleet`](crate::Cache::wait_for_fleet) found: which instances heard an
/// invalidation, and which are covered by their lease instead.
///
/// ```
/// use std::time::Duration;
/// use acgs_cache_core::Cache;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?; // L1 only: the fleet is this instance
/// let position = cache.invalidate("governance.rules.updated").await?;
/// let ack = cache.wait_for_fleet(position).await?;
/// println!("{ack:?}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct FleetAck {
    /// The invalidation waited for.
    pub position: LogPosition,
    /// Instances that published a heard position at or past it (the
    /// waiting one first: it applied the invalidation before it returned).
    pub acknowledged: Vec<String>,
    /// Instances that did not, but whose longest lease has run out since:
    /// paused, cut off or slow, they serve nothing the invalidation reached.
    pub covered_by_lease: Vec<String>,
    /// Instances that did not, and have functions that opted out of the
    /// lease (`max_staleness = "l1_ttl"`): those may serve their L1 copies
    /// until they hear the log.
    pub outside_the_bound: Vec<String>,
    /// How long the wait took.
    pub waited: Duration,
}

impl FleetAck {
    /// Only `instance`, at once.
    pub(crate) fn only(instance: &str, position: LogPosition) -> FleetAck {
        FleetAck {
            position,
            acknowledged: vec![instance.to_owned()],
            covered_by_lease: Vec::new(),
            outside_the_bound: Vec::new(),
            waited: Duration::ZERO,
        }
    }
}
