//! The read side of a call: the synchronous L1 probe (a fresh entry judged
//! inline, anything else out of line), L2 reads and the checks every value
//! passes before it is served — the lease on the log, the invalidation
//! check, the deadlines — including a value another caller's computation
//! hands over.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::clock;
use crate::coherence::function::FunctionState;
use crate::engine::instance::Cache;
use crate::engine::path::{shared_tags, tag_hashes, Call, Found, L1Miss, L2Found, Probe, Stamp};
use crate::format::envelope::{self, Reject};
use crate::format::key::KeyDigest;
use crate::format::shape::{Cacheable, Shape};
use crate::measure::latency;
use crate::measure::stats::ErrorReason;
use crate::tiers::l1::L1Entry;
use crate::tiers::l2::{Fetched, L2Tier};

impl Cache {
    /// The L1 lookup, synchronous: a lookup, the lease, invalidation and
    /// deadline checks, the clone. Everything but a fresh hit is judged
    /// again out of line ([`Cache::probe_l1_missed`]), so the hit path stays
    /// a few small inlined steps.
    #[inline(always)]
    pub(super) fn probe_l1<S>(
        &self,
        call: &Call<'_>,
        shape: &S,
        refresh: bool,
    ) -> Probe<S::Out, S::Value>
    where
        S: Shape,
        S::Value: Cacheable,
    {
        // One hit in `L1_SAMPLE` is timed (see `latency`).
        let sampled = latency::sample_l1().then(Instant::now);
        match self.peek_l1::<S::Value>(call) {
            Some(value) => {
                if let Some(start) = sampled {
                    self.sampled_hit(call.function, start);
                }
                Probe::Hit(shape.rebuild(value))
            }
            None => self.probe_l1_missed(call, shape, sampled, refresh),
        }
    }

    /// A fresh L1 value that passes the lease and invalidation checks, or
    /// `None` for anything else (nothing, stale, due for a refresh,
    /// invalidated, another type, the lease run out), which the caller
    /// judges again with [`Cache::read_l1`].
    #[inline(always)]
    fn peek_l1<V: Cacheable>(&self, call: &Call<'_>) -> Option<V> {
        let inner = &self.inner;
        if !inner.config().l1_enabled {
            return None;
        }
        let now = clock::now();
        let coherence = inner.coherence();
        if !coherence.lease.covers(call.function.lease, now) {
            return None;
        }
        let entry = inner.l1().get(&call.l1_key)?;
        let stored = entry.stored::<V>()?;
        if now >= entry.refresh_at
            || now >= entry.fresh_until
            || !coherence.accepts(call.function, entry.position, stored.tags(), call.digest)
        {
            return None;
        }
        call.function.counters.l1_hits.inc();
        crate::engine::outcome::note(crate::engine::outcome::Outcome::L1Hit);
        Some(stored.value.clone())
    }

    /// Records a timed L1 hit (one in `L1_SAMPLE`), and traces it.
    #[cold]
    #[inline(never)]
    fn sampled_hit(&self, function: &FunctionState, start: Instant) {
        function
            .counters
            .latency
            .record(start.elapsed(), latency::L1_SAMPLE);
        // Per-call events name the function, never the arguments.
        tracing::trace!(target: "acgs_cache", function = %function.name, "L1 hit");
    }

    /// The L1 probe after [`Cache::peek_l1`] found no fresh value: the
    /// entry judged in full (a value due for a refresh is still a hit; a
    /// stale one is kept as a fallback; a rejection is counted). `refresh`:
    /// a value due for a refresh is handed back as such.
    #[inline(never)]
    fn probe_l1_missed<S>(
        &self,
        call: &Call<'_>,
        shape: &S,
        sampled: Option<Instant>,
        refresh: bool,
    ) -> Probe<S::Out, S::Value>
    where
        S: Shape,
        S::Value: Cacheable,
    {
        let function = call.function;
        let (stale, unheard) = match self.read_l1::<S::Value>(call) {
            Found::Due(value) if refresh => return Probe::Due(value),
            Found::Fresh(value) | Found::Due(value) => {
                if let Some(start) = sampled {
                    self.sampled_hit(function, start);
                }
                return Probe::Hit(shape.rebuild(value));
            }
            Found::Stale(value, stamp) => (Some((value, stamp)), false),
            Found::Nothing => (None, false),
            Found::Unheard => {
                function.counters.lease_skips.inc();
                (None, true)
            }
        };
        Probe::Miss(L1Miss {
            stale,
            unheard,
            start: sampled.unwrap_or_else(Instant::now),
        })
    }

    /// An L1 entry that passes the invalidation check: fresh, or stale (kept
    /// only for stale-if-error); nothing while the function's lease on the
    /// log has run out.
    pub(super) fn read_l1<V: Cacheable>(&self, call: &Call<'_>) -> Found<V> {
        if !self.inner.config().l1_enabled {
            return Found::Nothing;
        }
        let now = clock::now();
        if !self
            .inner
            .coherence()
            .lease
            .covers(call.function.lease, now)
        {
            return Found::Unheard;
        }
        match self.inner.l1().get(&call.l1_key) {
            Some(entry) => self.judge_l1(call, &entry, now),
            None => Found::Nothing,
        }
    }

    /// What an L1 entry is worth now. An invalidated or dead entry is not
    /// removed here: the miss that follows overwrites it, and moka's bounds
    /// free it otherwise; a hit's future then has no second await.
    pub(super) fn judge_l1<V: Cacheable>(
        &self,
        call: &Call<'_>,
        entry: &L1Entry,
        now: clock::Instant,
    ) -> Found<V> {
        let function = call.function;
        let Some(stored) = entry.stored::<V>() else {
            return Found::Nothing;
        };
        if !self
            .inner
            .coherence()
            .accepts(function, entry.position, stored.tags(), call.digest)
        {
            function.counters.reject(Reject::Invalidated);
            return Found::Nothing;
        }
        if now < entry.fresh_until {
            function.counters.l1_hits.inc();
            crate::engine::outcome::note(crate::engine::outcome::Outcome::L1Hit);
            if now >= entry.refresh_at {
                Found::Due(stored.value.clone())
            } else {
                Found::Fresh(stored.value.clone())
            }
        } else if now < entry.dies_at {
            let stamp = Stamp {
                position: entry.position,
                tags: shared_tags(stored.tags()),
                computed_at: None,
            };
            Found::Stale(stored.value.clone(), stamp)
        } else {
            Found::Nothing
        }
    }

    /// An L2 entry that passes every check (a fresh one also fills L1).
    pub(super) async fn read_l2<V: Cacheable>(
        &self,
        call: &Call<'_>,
        l2: &Arc<L2Tier>,
        redis_key: &str,
    ) -> L2Found<V> {
        let function = call.function;
        let config = &self.inner.config();
        let coherence = &self.inner.coherence();
        // An entry can only be judged against a log this instance hears.
        if !self.vouch(function, !call.log_unheard).await {
            function.counters.error(if l2.is_available() {
                ErrorReason::LogUnheard
            } else {
                ErrorReason::Unavailable
            });
            return L2Found::Nothing;
        }
        let bytes = match l2.get_entry(redis_key, config.limits.max_value_bytes).await {
            Ok(Fetched::Bytes(bytes)) => bytes,
            Ok(Fetched::Missing) => return L2Found::Absent,
            Ok(Fetched::TooLarge) => {
                function.counters.reject(Reject::TooLarge);
                return L2Found::Nothing;
            }
            Err(e) => {
                function.counters.error(ErrorReason::of(&e));
                return L2Found::Nothing;
            }
        };
        if bytes.first() == Some(&crate::log_position::TOMBSTONE_MAGIC) {
            function.counters.reject(Reject::Invalidated);
            return L2Found::Nothing;
        }
        let (header, value) = match envelope::decode::<V>(
            &bytes,
            function.identity,
            call.digest.low64(),
            config.limits.max_value_bytes,
        ) {
            Ok(decoded) => decoded,
            Err(reason) => {
                function.counters.reject(reason);
                tracing::debug!(target: "acgs_cache", function = %function.name, reason = reason.as_str(), "L2 entry rejected; recomputing");
                return L2Found::Nothing;
            }
        };
        let stamp = Stamp {
            position: header.log_position.packed(),
            tags: tag_hashes(&header.tags),
            computed_at: None,
        };
        if !coherence.accepts(function, stamp.position, &stamp.tags, call.digest) {
            function.counters.reject(Reject::Invalidated);
            return L2Found::Nothing;
        }
        let now = clock::unix_ms(SystemTime::now());
        if header.expires_at_ms <= now {
            return L2Found::Stale(value, stamp); // kept past its TTL for stale-if-error only
        }
        function.counters.l2_hits.inc();
        crate::engine::outcome::note(crate::engine::outcome::Outcome::L2Hit);
        let remaining = Duration::from_millis(header.expires_at_ms - now);
        if self.inner.config().l1_enabled {
            self.fill_l1(call, &value, &stamp, remaining, header.plain_size());
        }
        L2Found::Fresh(value, stamp)
    }

    /// Whether a waiter takes the value another caller's flight handed
    /// over (computed from `position` on, tagged `tags`, computed here since
    /// `computed_at`): no invalidation this caller heard came after it, and
    /// either its lease on the log covers it or the computation started
    /// within that lease.
    pub(super) fn takes_handed_over(
        &self,
        function: &FunctionState,
        digest: KeyDigest,
        position: u64,
        tags: &[u64],
        computed_at: Option<clock::Instant>,
    ) -> bool {
        let coherence = self.inner.coherence();
        let now = clock::now();
        let heard = coherence.lease.covers(function.lease, now)
            || computed_at.is_some_and(|at| function.lease.allows(now.saturating_since(at)));
        heard && coherence.accepts(function, position, tags, digest)
    }

    /// Whether `function`'s entries can be vouched for now: its lease on the
    /// log covers it (for the `l1_ttl` opt-out: the log is heard). With
    /// `patient`, when the log is likely to be heard in a moment — right
    /// after start, or while the tailer believes its connection works (a
    /// process that was paused, a partition not noticed yet) — waits for
    /// that, at most the soft timeout. Without L2 the log is local and
    /// always heard.
    pub(super) async fn vouch(&self, function: &FunctionState, patient: bool) -> bool {
        let coherence = self.inner.coherence();
        let Some(l2) = self.inner.l2() else {
            return true;
        };
        // Not while the tailer's attempts fail (a refused connection, a
        // failed lookup): the log will not be heard in a moment.
        let hopeful = patient
            && l2.is_available()
            && (coherence.is_listening() || !coherence.has_listened())
            && !coherence.is_unreachable();
        if function.lease.is_opt_out() {
            return coherence.is_listening()
                || (hopeful
                    && Box::pin(
                        coherence.unless_unreachable(coherence.wait_listening(l2.soft_timeout())),
                    )
                    .await);
        }
        coherence.lease.covers(function.lease, clock::now())
            || (hopeful
                && Box::pin(
                    coherence.unless_unreachable(
                        coherence.lease.wait(function.lease, l2.soft_timeout()),
                    ),
                )
                .await)
    }
}
