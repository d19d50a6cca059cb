//! The invalidation API: events, tags, whole functions and single entries.

use std::time::SystemTime;

use crate::cache::Cache;
use crate::call::unix_ms;
use crate::coherence::{unpack, Record};
use crate::error::Error;
use crate::grammar::check_event_name;
use crate::key::KeyDigest;
use crate::log_position::LogPosition;

impl Cache {
    /// Invalidates everything `event` concerns, on every instance: entries of
    /// functions whose `invalidate_on` patterns match it, and entries tagged
    /// with exactly `event` (`tags = ["tenant.{tenant_id}"]`).
    ///
    /// Once this returns `Ok`, this instance never serves (from L1 or L2) a
    /// value whose computation started before the event — including one that
    /// finishes and is written after this call. Other instances stop serving
    /// such values as soon as they hear the event from the log (typically well
    /// under a millisecond on a LAN; `stats().invalidations` shows the
    /// measured delay). An instance that was disconnected catches up when it
    /// reconnects. The cost is one `XADD`, whatever the number of entries.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// cache.invalidate("governance.rules.updated").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a name outside the grammar: an event starts
    /// with a segment of letters, digits, `_` and `-`, then optionally a dot
    /// and any text (`governance.rules.updated`, `tenant.acme corp`). When Redis cannot be
    /// reached the Redis error is returned, and the invalidation still applies
    /// to this instance (its L1 and what it reads from L2); other instances
    /// are not told.
    pub async fn invalidate(&self, event: &str) -> Result<LogPosition, Error> {
        check_event_name(event).map_err(|e| Error::InvalidName(format!("event {event:?} {e}")))?;
        self.publish(Record::Name(event.to_owned())).await
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
        self.publish(Record::Function(self.function_scope(function)))
            .await
    }

    /// Invalidates one entry (the generated `invalidate_<fn>` companions call this).
    pub(crate) async fn invalidate_entry(
        &self,
        function: &str,
        digest: KeyDigest,
    ) -> Result<LogPosition, Error> {
        self.publish(Record::Entry(self.function_scope(function), digest))
            .await
    }

    async fn publish(&self, record: Record) -> Result<LogPosition, Error> {
        let coherence = &self.inner.coherence;
        coherence.sent.inc();
        #[cfg(feature = "redis")]
        if let Some(l2) = &self.inner.l2 {
            crate::log::ensure_tailer(&self.inner);
            let stream = crate::log::stream_key(&self.inner.config.prefix);
            return match l2
                .append(&stream, &record, self.inner.config.retention)
                .await
            {
                Ok(position) => {
                    coherence.apply(position.packed(), &record);
                    Ok(position)
                }
                Err(e) => {
                    // Nobody else hears it, but this instance stops serving
                    // what the event concerns right away.
                    coherence.apply(coherence.next_local_position(), &record);
                    tracing::warn!(target: "acgs_cache", error = %e, "invalidation not sent to redis; applied to this instance only");
                    Err(e)
                }
            };
        }
        let now_ms = unix_ms(SystemTime::now());
        let position = coherence.next_clock_position(now_ms);
        coherence.apply(position, &record);
        coherence.maybe_prune(self.inner.config.retention, now_ms);
        Ok(unpack(position))
    }
}
