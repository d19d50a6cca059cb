//! A call that neither L1 nor L2 answered: the key's flight (one
//! computation per key in the process), the fleet lock with `lock = true`,
//! the computation with its stale-if-error fallback and timeout, then the
//! landing; and refresh-ahead's background recomputation.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use crate::clock;
use crate::coherence::function::FunctionRef;
use crate::engine::flight::{landing, Boarding, Landing};
use crate::engine::instance::Cache;
use crate::engine::land::{finish, hand_over, land, share};
use crate::engine::path::{tag_hashes, Call, Found, L2Found, L2Write, Stamp};
use crate::engine::site::CallSite;
use crate::format::envelope::Reject;
use crate::format::key::KeyDigest;
use crate::format::shape::{Cacheable, Shape, Verdict};
use crate::tiers::l2::{L2Tier, LockGuard};

impl Cache {
    /// The rest of a call that neither L1 nor a flight-free L2 read
    /// answered (`l2_read`: L2 was read just before, found nothing usable).
    pub(super) async fn miss<S, F>(
        &self,
        mut call: Call<'_>,
        shape: &S,
        mut stale: Option<(S::Value, Stamp)>,
        l2_read: bool,
        compute: F,
    ) -> S::Out
    where
        S: Shape,
        S::Value: Cacheable,
        F: Future<Output = (Vec<String>, S::Out)>,
    {
        let (site, function, digest) = (call.site, call.function, call.digest);
        // Lead the computation of this key, or wait for the caller that
        // leads it (local stampede protection); L1 is read again after a
        // flight that ended without a value for us. A value handed over by
        // the leader passes the same invalidation check as one read from a
        // tier: a computation that started before an event this caller knows
        // of is not good for it, even if it is still running.
        let mut look_again = false;
        // Whether this caller waited on another's flight: then L2 may hold
        // what that flight stored, and is read again.
        let mut waited = false;
        let leader = loop {
            if look_again {
                match self.read_l1::<S::Value>(&call) {
                    Found::Fresh(value) | Found::Due(value) => return shape.rebuild(value),
                    Found::Stale(value, stamp) => stale = Some((value, stamp)),
                    Found::Nothing | Found::Unheard => {}
                }
            }
            look_again = true;
            let boarding = self.inner.flights().board(call.l1_key);
            waited |= matches!(boarding, Boarding::Wait(_));
            match boarding {
                Boarding::Lead(leader) => break Some(leader),
                Boarding::Wait(flight) => match landing(flight).await {
                    Landing::Value {
                        value,
                        position,
                        tags,
                        computed_at,
                    } => match value.downcast_ref::<S::Value>() {
                        Some(value)
                            if self.takes_handed_over(
                                function,
                                digest,
                                position,
                                &tags,
                                computed_at,
                            ) =>
                        {
                            function.counters.coalesced.inc();
                            crate::engine::outcome::note(
                                crate::engine::outcome::Outcome::Coalesced,
                            );
                            return shape.rebuild(value.clone());
                        }
                        Some(_) => {
                            // Started before an invalidation this caller
                            // heard, or before the start of a lease it no
                            // longer holds: lead (or join) a newer computation.
                            function.counters.reject(Reject::Invalidated);
                            continue;
                        }
                        None => break None, // another type under this key: compute alone
                    },
                    Landing::Failed => break None, // errors are not shared
                    Landing::Retry => continue,
                },
            }
        };

        let mut fleet_lock: Option<LockGuard> = None;
        if let Some((l2, key)) = &call.l2 {
            if waited || !l2_read {
                let found = self.read_l2::<S::Value>(&call, l2, key).await;
                call.l2_absent = matches!(found, L2Found::Absent);
                match found {
                    L2Found::Fresh(value, stamp) => return land(shape, leader, value, stamp),
                    L2Found::Stale(value, stamp) => stale = stale.or(Some((value, stamp))),
                    L2Found::Nothing | L2Found::Absent => {}
                }
            }
            if site.lock || function.policy.lock() {
                // Boxed, like the computation and the store below: the
                // state of what follows the L2 read would otherwise weigh on
                // every L2 hit's future (the allocation for a large one
                // cost more than the rest of our part of an L2 hit).
                match Box::pin(self.lock_or_wait::<S::Value>(&call, l2, key)).await {
                    Ok(lock) => fleet_lock = lock,
                    Err((value, stamp)) => return land(shape, leader, value, stamp),
                }
            }
        }

        function.counters.misses.inc();
        let position = self.inner.coherence().head();
        let computed_at = clock::now();
        let started = Instant::now();
        // With a stale value to fall back on, a computation that panics or
        // outlasts the policy's timeout gives way to it.
        let fallback = stale
            .take()
            .filter(|_| !function.policy.stale_if_error().is_zero());
        let timeout = function
            .policy
            .stale_timeout()
            .filter(|_| fallback.is_some());
        let computed = AssertUnwindSafe(compute).catch_unwind();
        let outcome = Box::pin(async move {
            match timeout {
                Some(limit) => tokio::time::timeout(limit, computed)
                    .await
                    .map_err(|_| "took longer than its stale timeout"),
                None => Ok(computed.await),
            }
        })
        .await;
        let (tags, out) = match outcome {
            Ok(Ok(computed)) => {
                crate::engine::outcome::note(crate::engine::outcome::Outcome::Computed);
                computed
            }
            Ok(Err(panic)) if fallback.is_none() => std::panic::resume_unwind(panic), // waiters retry
            failed => {
                let why = failed.err().unwrap_or("panicked");
                tracing::error!(target: "acgs_cache", function = %function.name, "computation {why}; serving the stale value");
                function.counters.stale_served.inc();
                crate::engine::outcome::note(crate::engine::outcome::Outcome::StaleServed);
                #[allow(
                    clippy::expect_used,
                    reason = "a timeout is set, and a panic caught, only with a fallback"
                )]
                let (value, stamp) = fallback.expect("a fallback exists on this path");
                return land(shape, leader, value, stamp);
            }
        };
        let mut stale = fallback;
        let (value, ttl) = match shape.verdict(&out) {
            Verdict::Store(value, ttl) => (
                value,
                ttl.unwrap_or_else(|| function.policy.jittered_ttl(digest.low64())),
            ),
            Verdict::Negative(value) => match site.negative_ttl {
                Some(ttl) => (value, ttl),
                None => {
                    function.counters.not_stored.inc();
                    let stamp = Stamp {
                        position,
                        tags: tag_hashes(&tags),
                        computed_at: Some(computed_at),
                    };
                    finish(leader, share(value, &stamp));
                    return out;
                }
            },
            Verdict::Skip => {
                if let Some((value, stamp)) = stale.take() {
                    tracing::warn!(target: "acgs_cache", function = %function.name, "computation failed; serving the stale value");
                    function.counters.stale_served.inc();
                    crate::engine::outcome::note(crate::engine::outcome::Outcome::StaleServed);
                    return land(shape, leader, value, stamp);
                }
                function.counters.not_stored.inc();
                finish(leader, Landing::Failed);
                return out;
            }
        };
        let write = if self.inner.config().background_l2_writes && fleet_lock.is_none() {
            L2Write::Background
        } else {
            L2Write::Awaited
        };
        let stamp = Stamp {
            position,
            tags: tag_hashes(&tags),
            computed_at: Some(computed_at),
        };
        if started.elapsed() < self.inner.config().invalidation_window {
            Box::pin(self.store(&call, value, ttl, tags, &stamp, write)).await;
        } else {
            // An invalidation of this entry may have been forgotten (and its
            // tombstone expired) while it was computed: not stored.
            function.counters.not_stored.inc();
        }
        if let Some(lock) = fleet_lock {
            let _ = lock.release().await;
        }
        hand_over(leader, value, &stamp);
        out
    }

    /// Recomputes an entry ahead of its expiry and stores it, unless a
    /// computation of it is already in flight.
    pub(super) async fn refresh<S, F>(
        &self,
        site: &'static CallSite,
        function: &FunctionRef<'static>,
        shape: &S,
        digest: KeyDigest,
        compute: F,
    ) where
        S: Shape,
        S::Value: Cacheable,
        F: Future<Output = (Vec<String>, S::Out)>,
    {
        let mut call = Call::new(site, function, digest);
        let Boarding::Lead(leader) = self.inner.flights().board(call.l1_key) else {
            return;
        };
        call.with_l2(self);
        function.counters.refreshes.inc();
        let position = self.inner.coherence().head();
        let computed_at = clock::now();
        let Ok((tags, out)) = AssertUnwindSafe(compute).catch_unwind().await else {
            tracing::warn!(target: "acgs_cache", function = %function.name, "background refresh panicked; the cached value stays");
            return; // the leader's guard lets the next caller retry
        };
        match shape.verdict(&out) {
            Verdict::Store(value, ttl) => {
                let ttl = ttl.unwrap_or_else(|| function.policy.jittered_ttl(digest.low64()));
                let stamp = Stamp {
                    position,
                    tags: tag_hashes(&tags),
                    computed_at: Some(computed_at),
                };
                self.store(&call, value, ttl, tags, &stamp, L2Write::Awaited)
                    .await;
                hand_over(Some(leader), value, &stamp);
            }
            Verdict::Negative(_) | Verdict::Skip => {
                tracing::debug!(target: "acgs_cache", function = %function.name, "background refresh returned nothing to store; the cached value stays");
                leader.land(Landing::Retry);
            }
        }
    }

    /// Fleet-wide stampede protection: take the key's lock and compute
    /// (`Ok(guard)`), or wait for the holder's value (`Err(value)`). After
    /// the lease without a value, or when the lock cannot be used, compute
    /// without it (`Ok(None)`).
    pub(super) async fn lock_or_wait<V: Cacheable>(
        &self,
        call: &Call<'_>,
        l2: &Arc<L2Tier>,
        redis_key: &str,
    ) -> Result<Option<LockGuard>, (V, Stamp)> {
        const POLL: Duration = Duration::from_millis(10);
        let lock_key = format!("{redis_key}:lock");
        let lease = self.inner.config().lock_lease;
        // The lock itself lives only a short hold, renewed while its holder
        // computes: a holder that died (or an attempt that timed out but ran)
        // frees it within the hold, and a waiter takes it, instead of waiting
        // out the whole lease for a value nobody computes.
        let hold = (lease / 5).clamp(Duration::from_millis(200), Duration::from_secs(2));
        let deadline = Instant::now() + lease;
        let mut waited = false;
        loop {
            match l2.try_lock(&lock_key, None, hold.min(lease)).await {
                Ok(Some((guard, _))) => return Ok(Some(guard)),
                Ok(None) => {}
                Err(_) => return Ok(None), // Redis trouble: the lock only saves work
            }
            if !waited {
                waited = true;
                call.function.counters.lock_waits.inc();
            }
            tokio::time::sleep(POLL).await;
            if let L2Found::Fresh(value, stamp) = self.read_l2::<V>(call, l2, redis_key).await {
                return Err((value, stamp));
            }
            if Instant::now() >= deadline {
                tracing::warn!(target: "acgs_cache", function = %call.function.name, "no value from the lock holder within the lease; computing");
                return Ok(None);
            }
        }
    }
}
