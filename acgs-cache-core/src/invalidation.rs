//! The invalidation API: events, tags, whole functions and single entries,
//! and what hearing a record does to this instance.

use std::time::{Duration, SystemTime};

use crate::clock::unix_ms;
use crate::coherence::function::FunctionState;
use crate::coherence::state::{unpack, Record};
use crate::engine::instance::Cache;
use crate::error::Error;
use crate::format::key::KeyDigest;
use crate::format::log_position::LogPosition;
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
    /// and published when Redis answers again (see the README, "Outages").
    /// [`Error::Unconfirmed`] when replicas were asked to acknowledge it and
    /// did not in time (it is in the master's log).
    pub async fn invalidate(&self, event: &str) -> Result<LogPosition, Error> {
        check_event_name(event).map_err(|e| Error::InvalidName(format!("event {event:?} {e}")))?;
        self.publish(Record::Name(event.to_owned()), None).await
    }

    /// Invalidates every entry of the cached function instance named
    /// `function` in this cache's service, on every instance: the name its
    /// stats row shows (`evaluate_policy`, `orders::get`,
    /// `Service<Pg>::find`, `load<Account>`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for an empty name; otherwise as [`Cache::invalidate`].
    pub async fn invalidate_function(&self, function: &str) -> Result<LogPosition, Error> {
        if function.is_empty() {
            return Err(Error::InvalidName(
                "a function name must not be empty".into(),
            ));
        }
        self.publish(Record::Function(self.inner.function_scope(function)), None)
            .await
    }

    /// Invalidates one entry of `function` (the `invalidate_<fn>` companions,
    /// session revocation): a record in the log, a tombstone over its L2 key.
    pub(crate) async fn invalidate_entry(
        &self,
        function: &FunctionState,
        digest: KeyDigest,
    ) -> Result<LogPosition, Error> {
        let record = Record::Entry {
            scope: self.inner.function_scope(&function.name),
            identity: function.identity,
            digest,
        };
        let key = crate::format::key::redis_key(&function.key_prefix, digest);
        self.publish(record, Some(key)).await
    }

    /// Sends `record` through the log (and tombstones `entry_key`), then
    /// applies it here; without Redis, applies it here and keeps it for
    /// when Redis answers.
    async fn publish(
        &self,
        record: Record,
        entry_key: Option<String>,
    ) -> Result<LogPosition, Error> {
        let inner = &self.inner;
        let coherence = &inner.coherence();
        coherence.sent.inc();
        if inner.l2().is_some() {
            return match crate::engine::tailer::send(inner, &record, entry_key.as_deref()).await {
                Ok(position) => {
                    inner.apply_heard(position.packed(), &record).await;
                    Ok(position)
                }
                Err(e) => {
                    if !matches!(e, Error::Unconfirmed { .. }) {
                        // Nobody else hears it yet: this instance stops
                        // serving what it concerns at once, and it is sent
                        // when Redis answers again.
                        inner
                            .apply_heard(coherence.next_local_position(), &record)
                            .await;
                        inner.recovery().push(record, entry_key);
                        tracing::warn!(target: "acgs_cache", error = %e, "invalidation not sent to redis; applied to this instance, kept to send when redis answers");
                    } else {
                        inner.apply_heard(coherence.head(), &record).await;
                    }
                    Err(e)
                }
            };
        }
        let _ = entry_key;
        let now_ms = unix_ms(SystemTime::now());
        let position = coherence.next_clock_position(now_ms);
        inner.apply_heard(position, &record).await;
        coherence.maybe_prune(inner.config().retention, now_ms);
        Ok(unpack(position))
    }
}

/// What [`Cache::wait_for_fleet`] found: which instances heard an
/// invalidation, and which are covered by their lease instead.
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

/// A write function's result, for `#[invalidates]` to tell whether it
/// succeeded: `Ok` for a `Result` under any alias, anything else always.
#[doc(hidden)]
#[derive(Debug)]
pub struct Written<'a, T>(pub &'a T);

/// `Written(&result).succeeded()` on a `Result`: whether it is `Ok`
/// (picked before [`WrittenAny`] by method resolution, being implemented on
/// the less-referenced type).
#[doc(hidden)]
pub trait WrittenResult {
    /// Whether the write succeeded.
    fn succeeded(&self) -> bool;
}

impl<T, E> WrittenResult for Written<'_, Result<T, E>> {
    fn succeeded(&self) -> bool {
        self.0.is_ok()
    }
}

/// `Written(&value).succeeded()` on anything but a `Result`: always.
#[doc(hidden)]
pub trait WrittenAny {
    /// Whether the write succeeded.
    fn succeeded(&self) -> bool;
}

impl<T> WrittenAny for &Written<'_, T> {
    fn succeeded(&self) -> bool {
        true
    }
}

/// Publishes the events of a write that succeeded (`#[invalidates]`),
/// through `cache` or the cache `#[cached]` functions use here. A failure
/// is logged, never returned: the write itself happened, and an
/// invalidation Redis did not take is retried in the background (see
/// `recovery.rs`).
#[doc(hidden)]
pub async fn publish_after(cache: Option<&'static Cache>, events: &[String]) {
    let cache = match cache {
        Some(cache) => crate::current::CacheRef::Static(cache),
        None => Cache::resolve(None),
    };
    for event in events {
        if let Err(e) = cache.invalidate(event).await {
            tracing::warn!(target: "acgs_cache", event = %event, error = %e, "a write succeeded but its invalidation was not acknowledged");
        }
    }
}
