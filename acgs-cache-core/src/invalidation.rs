//! The invalidation API: events, tags, whole functions and single entries,
//! and what hearing a record does to this instance.

use crate::coherence::state::Record;
use crate::engine::instance::Cache;
use crate::engine::publish::publish;
use crate::error::Error;
use crate::log_position::LogPosition;
use crate::observe::ack::FleetAck;
use acgs_cache_grammar::check_event_name;

impl Cache {
    /// Invalidates everything `event` concerns, on every instance: entries of
    /// functions whose `invalidate_on` patterns match it, and entries tagged
    /// with exactly `event` (`tags = ["tenant.{tenant_id}"]`).
    ///
    /// Once this returns `Ok`, this instance never serves (from L1, L2, or
    /// another caller's computation) a value whose computation started
    /// before the event — including one that finishes and is written after
    /// this call. Other instances stop serving such values as soon as they
    /// hear the event from the log (typically well under a millisecond on a
    /// LAN; `stats().invalidations` shows the measured delay). An instance
    /// that was disconnected catches up when it reconnects. The cost is one
    /// script call appending to the log, whatever the number of entries.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// cache.invalidate("governance.rules.updated").await?;
    /// cache.invalidate("tenant.acme corp").await?; // a tag from any value
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a name outside the grammar: an event starts
    /// with a segment of letters, digits, `_` and `-`, then optionally a dot
    /// and any text (`governance.rules.updated`, `tenant.acme corp`).
    ///
    /// When Redis cannot be reached the Redis error is returned, the
    /// invalidation still applies to this instance at once, and it is kept
    /// and published when Redis answers again (see the guide, `guide::invalidation`, "Outages").
    /// [`Error::Unconfirmed`] when replicas were asked to acknowledge it and
    /// did not in time (it is in the master's log).
    pub async fn invalidate(&self, event: &str) -> Result<LogPosition, Error> {
        check_event_name(event).map_err(|e| Error::InvalidName(format!("event {event:?} {e}")))?;
        publish(&self.inner, Record::Name(event.to_owned()), None).await
    }

    /// Invalidates every entry of the cached function instance named
    /// `function` in this cache's service, on every instance: the name its
    /// stats row shows (`evaluate_policy`, `orders::get`,
    /// `Service<Pg>::find`, `load<Account>`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for an empty name; otherwise as [`Cache::invalidate`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// // The name a function's stats row shows: every entry of it, on every instance.
    /// let position = cache.invalidate_function("evaluate_policy").await?;
    /// assert!(cache.log_position() >= position);
    /// assert!(cache.invalidate_function("").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_function(&self, function: &str) -> Result<LogPosition, Error> {
        if function.is_empty() {
            return Err(Error::InvalidName(
                "a function name must not be empty".into(),
            ));
        }
        let record = Record::Function(self.inner.function_scope(function));
        publish(&self.inner, record, None).await
    }
}

impl Cache {
    /// Waits until every live instance sharing this cache's Redis and prefix
    /// has heard the invalidation at `position` (what [`Cache::invalidate`]
    /// returned), or, for those that have not, until their lease has run
    /// out (see [`MaxStaleness`](crate::MaxStaleness)): after that none of
    /// them serves what it invalidated, whatever happened to it. So the wait
    /// lasts at most the longest lease in the fleet (1 s by default), and
    /// usually a few milliseconds.
    ///
    /// Instances publish the position they heard at most every
    /// [`CacheBuilder::fleet_acknowledgements`](crate::CacheBuilder::fleet_acknowledgements)
    /// (5 ms) and once a second besides; an instance that has not published
    /// for 10 s is taken for gone. The wait reads them every 5 ms. Without
    /// L2 it returns at once.
    ///
    /// An instance that exited in the last 10 s still counts as live: the
    /// wait then lasts its lease, and lists it in `covered_by_lease`.
    ///
    /// ```no_run
    /// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
    /// let position = cache.invalidate("governance.rules.updated").await?;
    /// let ack = cache.wait_for_fleet(position).await?;
    /// println!(
    ///     "{} instances heard it, {} are covered by their lease ({:?})",
    ///     ack.acknowledged.len(),
    ///     ack.covered_by_lease.len(),
    ///     ack.waited
    /// );
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The Redis error when what the instances published cannot be read.
    pub async fn wait_for_fleet(&self, position: LogPosition) -> Result<FleetAck, Error> {
        #[cfg(feature = "redis")]
        if let Some(l2) = self.inner.l2() {
            return crate::observe::heard::wait(&self.inner, l2, position).await;
        }
        Ok(FleetAck::only(self.inner.instance(), position))
    }
}
