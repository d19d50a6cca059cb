//! The path of one `#[cached]` call: L1, then L2, then the function.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;

use crate::clock;
use crate::coherence::function::{FunctionRef, FunctionState};
use crate::coherence::state::{tag_hash, unpack};
use crate::engine::flight::{landing, Boarding, Landing, Leader};
use crate::engine::instance::{Cache, CacheRef};
use crate::engine::site::CallSite;
use crate::error::CodecError;
use crate::format::envelope::{self, EnvelopeHeader, Reject};
use crate::format::key::KeyDigest;
use crate::format::shape::{Cacheable, Shape, Verdict};
use crate::measure::latency;
use crate::measure::stats::ErrorReason;
use crate::tiers::l1::{EntryLife, L1Entry, L1Key, Stored};
use crate::tiers::l2::{Fetched, L2Tier, LockGuard};

/// How a cached call begins: answered by L1 (`Ok`), or [`Pending`] the
/// rest of its path, which only then needs the computation's future.
pub type Start<S> = Result<<S as Shape>::Out, Pending<S>>;

/// Starts one cached call, in `cache`, of the function described by
/// `site`, in the instance `probe` names (see `identity.rs`): the L1 probe
/// and the clone, synchronously, before any future exists. `refresh`:
/// a hit past the policy's refresh-ahead point is handed to
/// [`Pending::run_refreshing`] (the function's future can run detached).
#[inline(always)]
pub(crate) fn start<S>(
    cache: CacheRef,
    site: &'static CallSite,
    probe: &'static str,
    shape: S,
    key: Result<KeyDigest, CodecError>,
    refresh: bool,
) -> Start<S>
where
    S: Shape,
    S::Value: Cacheable,
{
    let function = cache.function(site, probe);
    let Some(digest) = usable_key(&cache, site, &function, key) else {
        return Err(Pending::new(cache, function, site, shape, Next::Bypass));
    };
    let refresh = refresh && function.policy.refresh_ahead_percent() != 0;
    let probed = cache.probe_l1(&Call::new(site, &function, digest), &shape, refresh);
    let next = match probed {
        Probe::Hit(out) => return Ok(out),
        Probe::Due(value) => Next::Due(digest, value),
        Probe::Miss(miss) => Next::Miss(digest, miss),
    };
    Err(Pending::new(cache, function, site, shape, next))
}

/// One whole call, for the typed map: [`start`], then the rest with
/// `compute` on a miss.
pub(crate) async fn call<S, F>(
    cache: CacheRef,
    site: &'static CallSite,
    probe: &'static str,
    shape: S,
    key: Result<KeyDigest, CodecError>,
    compute: F,
) -> S::Out
where
    S: Shape,
    S::Value: Cacheable,
    F: Future<Output = (Vec<String>, S::Out)>,
{
    match start(cache, site, probe, shape, key, false) {
        Ok(out) => out,
        Err(pending) => pending.run(compute).await,
    }
}

/// Starts the `refresh_<fn>` companion (named `caller`): a recomputation
/// that reads neither L1 nor L2 (see [`Pending::run`]).
pub(crate) fn start_recompute<S>(
    cache: CacheRef,
    site: &'static CallSite,
    probe: &'static str,
    caller: &'static str,
    shape: S,
    key: Result<KeyDigest, CodecError>,
) -> Pending<S>
where
    S: Shape,
    S::Value: Cacheable,
{
    let function = cache.function_for(
        site,
        probe,
        crate::format::identity::Caller {
            name: caller,
            extra_generics: 0,
        },
    );
    let next = match usable_key(&cache, site, &function, key) {
        Some(digest) => Next::Recompute(digest),
        None => Next::Bypass,
    };
    Pending::new(cache, function, site, shape, next)
}

/// A call that L1 did not answer: what the rest of its path needs, run
/// with the function's computation by [`Pending::run`].
pub struct Pending<S: Shape> {
    cache: CacheRef,
    function: FunctionRef<'static>,
    site: &'static CallSite,
    shape: S,
    next: Next<S::Value>,
}

impl<S: Shape> std::fmt::Debug for Pending<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("function", &self.function.name)
            .finish_non_exhaustive()
    }
}

/// What a [`Pending`] call does next.
enum Next<V> {
    /// Goes around the cache (counted, and traced, already).
    Bypass,
    /// L1 had nothing fresh: L2, the key's flight, the computation.
    Miss(KeyDigest, L1Miss<V>),
    /// L1 had a fresh value past the refresh-ahead point: answered with it,
    /// and refreshed in the background.
    Due(KeyDigest, V),
    /// The `refresh_<fn>` companion: computed as a miss, without reading.
    Recompute(KeyDigest),
}

impl<S> Pending<S>
where
    S: Shape,
    S::Value: Cacheable,
{
    fn new(
        cache: CacheRef,
        function: FunctionRef<'static>,
        site: &'static CallSite,
        shape: S,
        next: Next<S::Value>,
    ) -> Self {
        Pending {
            cache,
            function,
            site,
            shape,
            next,
        }
    }

    /// Runs the rest of the call with `compute`, the function's body
    /// yielding the entry's tags (formatted before the body runs) and its
    /// return value.
    pub async fn run<F>(self, compute: F) -> S::Out
    where
        F: Future<Output = (Vec<String>, S::Out)>,
    {
        let Pending {
            cache,
            function,
            site,
            shape,
            next,
        } = self;
        match next {
            Next::Bypass => compute.await.1,
            // Only `run_refreshing` is handed these.
            Next::Due(_, value) => shape.rebuild(value),
            Next::Miss(digest, miss) => {
                let call = Call::new(site, &function, digest);
                // Boxed: the rest of the call (L2, flights, the
                // computation) is a large state that would otherwise be
                // part of the caller's future.
                Box::pin(cache.past_l1(call, &shape, miss, compute)).await
            }
            Next::Recompute(digest) => {
                let start = Instant::now();
                let mut call = Call::new(site, &function, digest);
                call.with_l2(&cache);
                // `l2_read`: nothing in L2 is wanted (a lock's waiter still
                // takes the holder's fresh value).
                let out = Box::pin(cache.miss(call, &shape, None, true, compute)).await;
                function.counters.latency.record(start.elapsed(), 1);
                out
            }
        }
    }

    /// [`Pending::run`] for functions whose computation owns its arguments:
    /// a hit past the policy's refresh-ahead point refreshes the entry on a
    /// task of its own (once: a refresh already in flight is not started
    /// again) and answers at once from the cache.
    pub async fn run_refreshing<F>(self, compute: F) -> S::Out
    where
        S: Send + Sync + 'static,
        S::Out: Send + 'static,
        F: Detachable<Output = (Vec<String>, S::Out)>,
    {
        let Next::Due(digest, value) = self.next else {
            return self.run(compute).await;
        };
        let Pending {
            cache,
            function,
            site,
            shape,
            ..
        } = self;
        let out = shape.rebuild(value);
        if !cache
            .inner
            .flights()
            .is_flying(L1Key::new(function.identity, digest))
        {
            let cache = Cache::clone(&cache);
            tokio::spawn(async move {
                cache
                    .refresh(site, &function, &shape, digest, compute)
                    .await
            });
        }
        out
    }
}

/// What the synchronous L1 probe found.
enum Probe<Out, V> {
    Hit(Out),
    /// A hit past the refresh-ahead point, for a call that refreshes.
    Due(V),
    Miss(L1Miss<V>),
}

/// An L1 probe that did not hit.
struct L1Miss<V> {
    /// A stale value to fall back on, if any.
    stale: Option<(V, Stamp)>,
    /// L1 was not read: the instance's lease on the log had run out.
    unheard: bool,
    /// When the call started.
    start: Instant,
}

/// The key's digest, or `None` (counted as bypassed) when the call goes
/// around the cache: the key arguments did not serialize (traced), or the
/// cache was built with caching disabled. Inlined into the hit path; the
/// bypass is out of line.
#[inline]
fn usable_key(
    cache: &Cache,
    site: &CallSite,
    function: &FunctionState,
    key: Result<KeyDigest, CodecError>,
) -> Option<KeyDigest> {
    match key {
        Ok(digest) if cache.inner.config().caching || site.storage => Some(digest),
        key => {
            bypass(function, key.err());
            None
        }
    }
}

/// Counts (and, for a key that did not serialize, traces) a call that goes
/// around the cache.
#[cold]
#[inline(never)]
fn bypass(function: &FunctionState, key_error: Option<CodecError>) {
    function.counters.bypassed.inc();
    crate::engine::outcome::note(crate::engine::outcome::Outcome::Bypassed);
    if let Some(e) = key_error {
        tracing::warn!(target: "acgs_cache", function = %function.name, error = %e, "key arguments did not serialize; calling without the cache");
    }
}

/// One call's identity, shared by the steps of its path.
struct Call<'a> {
    site: &'static CallSite,
    function: &'a FunctionRef<'static>,
    l1_key: L1Key,
    /// The key arguments' digest (in `l1_key`, mixed with the function's).
    digest: KeyDigest,
    /// The tier and the entry's Redis key, when there is L2.
    l2: Option<(&'a Arc<L2Tier>, String)>,
    /// This call already waited for the log in vain: it does not wait again.
    log_unheard: bool,
}

impl<'a> Call<'a> {
    fn new(site: &'static CallSite, function: &'a FunctionRef<'static>, digest: KeyDigest) -> Self {
        Call {
            site,
            function,
            l1_key: L1Key::new(function.identity, digest),
            digest,
            // Filled after L1 (`with_l2`): a hit never builds the Redis key.
            l2: None,
            log_unheard: false,
        }
    }

    /// Adds the L2 tier and this entry's Redis key (and starts the log
    /// tailer on first use).
    fn with_l2(&mut self, cache: &'a Cache) {
        self.l2 = cache.inner.l2().map(|l2| {
            (
                l2,
                crate::format::key::redis_key(&self.function.key_prefix, self.digest),
            )
        });
    }
}

/// When a value's computation started (packed log position) and the tags it
/// answers to: what the invalidation check compares, for values read from a
/// tier and for values handed from one caller to another.
#[derive(Clone)]
struct Stamp {
    position: u64,
    tags: Arc<[u64]>,
    /// When this process started computing the value (`None`: read from a
    /// tier). A waiter whose lease on the log has run out still takes a
    /// value whose computation started within its lease: nothing
    /// acknowledged before that can have been missed by it.
    computed_at: Option<clock::Instant>,
}

/// What L1 had for a key.
enum Found<V> {
    Fresh(V),
    /// Fresh, and past the policy's refresh-ahead point.
    Due(V),
    /// Past its freshness but within the stale-if-error window.
    Stale(V, Stamp),
    Nothing,
    /// Not read: the instance has not heard the whole log within the
    /// function's lease, so nothing in L1 can be vouched for.
    Unheard,
}

/// What L2 had for a key.
enum L2Found<V> {
    Fresh(V, Stamp),
    Stale(V, Stamp),
    Nothing,
}

/// A computation that can run in the background, detached from its caller:
/// what refresh-ahead needs.
#[diagnostic::on_unimplemented(
    message = "this cached function's future cannot be refreshed in the background: it is not `Send + 'static`",
    note = "refresh-ahead runs the computation on its own task; add `refresh_ahead = false` to the attribute to opt out"
)]
pub trait Detachable: Future + Send + 'static {}

impl<F: Future + Send + 'static> Detachable for F {}

impl Cache {
    /// The L1 lookup, synchronous: a lookup, the lease, invalidation and
    /// deadline checks, the clone. Everything but a fresh hit is judged
    /// again out of line ([`Cache::probe_l1_missed`]), so the hit path stays
    /// a few small inlined steps.
    #[inline(always)]
    fn probe_l1<S>(&self, call: &Call<'_>, shape: &S, refresh: bool) -> Probe<S::Out, S::Value>
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

    /// Everything after an L1 probe that did not hit, timed from the
    /// call's start.
    async fn past_l1<S, F>(
        &self,
        call: Call<'_>,
        shape: &S,
        miss: L1Miss<S::Value>,
        compute: F,
    ) -> S::Out
    where
        S: Shape,
        S::Value: Cacheable,
        F: Future<Output = (Vec<String>, S::Out)>,
    {
        let function = call.function;
        let L1Miss {
            mut stale,
            unheard,
            start,
        } = miss;
        let mut call = call;
        // L1 was skipped because the lease on the log had run out: the
        // tailer may be about to renew it (a process that was paused, a
        // connection just re-made). Wait for that briefly, then probe again.
        if unheard {
            if self.vouch(function, true).await {
                match self.read_l1::<S::Value>(&call) {
                    Found::Fresh(value) | Found::Due(value) => {
                        function.counters.latency.record(start.elapsed(), 1);
                        return shape.rebuild(value);
                    }
                    Found::Stale(value, stamp) => stale = Some((value, stamp)),
                    Found::Nothing | Found::Unheard => {}
                }
            } else {
                call.log_unheard = true;
            }
        }
        // L2 is read without a flight when nobody in this process computes
        // the key: a flight (its allocation, map entry, landing and
        // notification) protects computations, not reads.
        let mut l2_read = false;
        call.with_l2(self);
        if let Some((l2, key)) = &call.l2 {
            if !self.inner.flights().is_flying(call.l1_key) {
                match self.read_l2::<S::Value>(&call, l2, key).await {
                    L2Found::Fresh(value, _) => {
                        let elapsed = start.elapsed();
                        function.counters.latency.record(elapsed, 1);
                        tracing::debug!(target: "acgs_cache", function = %function.name, elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), "answered from L2");
                        return shape.rebuild(value);
                    }
                    L2Found::Stale(value, stamp) => stale = stale.or(Some((value, stamp))),
                    L2Found::Nothing => {}
                }
                l2_read = true;
            }
        }
        // The miss path's state is large; boxed, it does not weigh on (and
        // is not copied around with) every hit's future.
        let out = Box::pin(self.miss(call, shape, stale, l2_read, compute)).await;
        let elapsed = start.elapsed();
        function.counters.latency.record(elapsed, 1);
        tracing::debug!(target: "acgs_cache", function = %function.name, elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), "answered past L1 (L2, shared or computed)");
        out
    }

    /// The rest of a call that neither L1 nor a flight-free L2 read
    /// answered (`l2_read`: L2 was read just before, found nothing usable).
    async fn miss<S, F>(
        &self,
        call: Call<'_>,
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
                match self.read_l2::<S::Value>(&call, l2, key).await {
                    L2Found::Fresh(value, stamp) => return land(shape, leader, value, stamp),
                    L2Found::Stale(value, stamp) => stale = stale.or(Some((value, stamp))),
                    L2Found::Nothing => {}
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
    async fn refresh<S, F>(
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

    /// An L1 entry that passes the invalidation check: fresh, or stale (kept
    /// only for stale-if-error); nothing while the function's lease on the
    /// log has run out.
    fn read_l1<V: Cacheable>(&self, call: &Call<'_>) -> Found<V> {
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
    fn judge_l1<V: Cacheable>(
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

    /// Stores a computed value: its envelope in L2 (kept past its TTL for
    /// stale-if-error readers), then L1. An L2 failure is counted and L1
    /// still serves the value; a newer tombstone (an invalidation after the
    /// computation started) keeps it out of both.
    async fn store<V: Cacheable>(
        &self,
        call: &Call<'_>,
        value: &V,
        ttl: Duration,
        tags: Vec<String>,
        stamp: &Stamp,
        write: L2Write,
    ) {
        let function = call.function;
        let sealed = match self.encode_entry(call, value, ttl, tags, stamp.position) {
            Ok(sealed) => sealed,
            Err(e) => {
                function.counters.error(ErrorReason::Encode);
                tracing::warn!(target: "acgs_cache", function = %function.name, error = %e, "result not cached");
                return;
            }
        };
        let keep_for = ttl + function.policy.stale_if_error();
        if let Ok(false) = self
            .write_l2(call, sealed.bytes, stamp.position, keep_for, write)
            .await
        {
            function.counters.not_stored.inc();
            return;
        }
        self.fill_l1(call, value, stamp, ttl, sealed.plain_size);
    }

    /// The envelope of `value`, computed from `position` on, fresh for `ttl`.
    fn encode_entry<V: Cacheable>(
        &self,
        call: &Call<'_>,
        value: &V,
        ttl: Duration,
        tags: Vec<String>,
        position: u64,
    ) -> Result<envelope::Sealed, crate::error::CodecError> {
        let header = header(call.site, call.function, call.digest, ttl, tags, position);
        envelope::encode(value, call.site.codec, header, self.inner.config().limits)
    }

    /// The one L2 write of an entry (calls, refreshes and values the toolkit
    /// puts; warming pipelines its own batches): `SET` with `keep_for`,
    /// refused by the script when a tombstone newer than `position` covers
    /// the key (`Ok(false)`). A failure is counted and returned. In the
    /// background, the outcome is counted when it comes and `Ok(true)`
    /// returned at once; without L2, `Ok(true)`.
    async fn write_l2(
        &self,
        call: &Call<'_>,
        bytes: Vec<u8>,
        position: u64,
        keep_for: Duration,
        write: L2Write,
    ) -> Result<bool, crate::error::Error> {
        if let Some((l2, key)) = &call.l2 {
            let function = call.function;
            let started = unpack(position);
            match write {
                L2Write::Awaited => {
                    return l2
                        .put_entry(key, started, &bytes, keep_for)
                        .await
                        .inspect_err(|e| function.counters.error(ErrorReason::of(e)));
                }
                L2Write::Background => {
                    let (l2, key, function) = (Arc::clone(l2), key.clone(), function.clone());
                    crate::background::spawn(async move {
                        match l2.put_entry(&key, started, &bytes, keep_for).await {
                            Ok(true) => {}
                            Ok(false) => function.counters.not_stored.inc(),
                            Err(e) => function.counters.error(ErrorReason::of(&e)),
                        }
                    });
                }
            }
        }
        Ok(true)
    }

    /// Puts a value in L1: fresh for the policy's L1 TTL (never past
    /// `remaining`, the entry's own life), then kept for the stale window.
    fn fill_l1<V: Cacheable>(
        &self,
        call: &Call<'_>,
        value: &V,
        stamp: &Stamp,
        remaining: Duration,
        plain_bytes: usize,
    ) {
        let function = call.function;
        if !self.inner.config().l1_enabled {
            return;
        }
        let stored = Stored::new(value.clone(), &stamp.tags);
        let life = EntryLife::of(&function.policy, remaining);
        if let Some(entry) = crate::tiers::l1::entry(stored, life, plain_bytes, stamp.position) {
            self.inner
                .fill_l1(function, call.digest, entry, &stamp.tags);
        }
    }

    /// An L2 entry that passes every check (a fresh one also fills L1).
    async fn read_l2<V: Cacheable>(
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
            Ok(Fetched::Missing) => return L2Found::Nothing,
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
    fn takes_handed_over(
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
    async fn vouch(&self, function: &FunctionState, patient: bool) -> bool {
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

    /// Fleet-wide stampede protection: take the key's lock and compute
    /// (`Ok(guard)`), or wait for the holder's value (`Err(value)`). After
    /// the lease without a value, or when the lock cannot be used, compute
    /// without it (`Ok(None)`).
    async fn lock_or_wait<V: Cacheable>(
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
            match l2.try_lock(&lock_key, hold.min(lease)).await {
                Ok(Some(guard)) => return Ok(Some(guard)),
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

/// Whether a store waits for Redis to acknowledge its write.
#[derive(Debug, Clone, Copy)]
enum L2Write {
    Awaited,
    /// See `CacheBuilder::background_l2_writes`.
    Background,
}

/// The envelope header of the value of `function` (described by `site`)
/// under `digest`, whose computation started at `position` (packed), fresh
/// for `ttl` from now.
pub(crate) fn header(
    site: &CallSite,
    function: &FunctionState,
    digest: KeyDigest,
    ttl: Duration,
    tags: Vec<String>,
    position: u64,
) -> EnvelopeHeader {
    let now = SystemTime::now();
    EnvelopeHeader {
        codec: site.codec.id(),
        flags: 0,
        fingerprint: function.identity,
        created_at_ms: clock::unix_ms(now),
        expires_at_ms: clock::unix_ms(now + ttl),
        log_position: unpack(position),
        key: digest.low64(),
        tags,
        checksum: 0, // set by encode
    }
}

/// Ends the flight with `value` and returns it to the caller.
fn land<S>(shape: &S, leader: Option<Leader<'_>>, value: S::Value, stamp: Stamp) -> S::Out
where
    S: Shape,
    S::Value: Cacheable,
{
    hand_over(leader, &value, &stamp);
    shape.rebuild(value)
}

/// Ends the flight (if this caller leads one) with `value` for its
/// waiters; with none waiting, the value is not copied (later callers find
/// it where it was stored).
fn hand_over<V: Cacheable>(leader: Option<Leader<'_>>, value: &V, stamp: &Stamp) {
    if let Some(leader) = leader {
        let landing = if leader.has_waiters() {
            share(value, stamp)
        } else {
            Landing::Retry
        };
        leader.land(landing);
    }
}

/// A value for the callers waiting on a flight.
fn share<V: Cacheable>(value: &V, stamp: &Stamp) -> Landing {
    Landing::Value {
        value: Arc::new(value.clone()),
        position: stamp.position,
        tags: Arc::clone(&stamp.tags),
        computed_at: stamp.computed_at,
    }
}

fn tag_hashes(tags: &[impl AsRef<str>]) -> Arc<[u64]> {
    if tags.is_empty() {
        return shared_tags(&[]);
    }
    tags.iter().map(|t| tag_hash(t.as_ref())).collect()
}

/// `hashes` as a stamp's tags: the empty set, by far the most common, is
/// one shared allocation rather than one per call.
fn shared_tags(hashes: &[u64]) -> Arc<[u64]> {
    static NONE: std::sync::LazyLock<Arc<[u64]>> = std::sync::LazyLock::new(|| Arc::from([]));
    if hashes.is_empty() {
        Arc::clone(&NONE)
    } else {
        Arc::from(hashes)
    }
}

fn finish(leader: Option<Leader<'_>>, landing: Landing) {
    if let Some(leader) = leader {
        leader.land(landing);
    }
}

impl Cache {
    /// Stores `value` as `site`'s entry for `digest` — in L2, then L1 — as a
    /// computation that started at log position `position` would, but with
    /// its own `ttl`, and returning the L2 write's failure instead of only
    /// counting it: for values that are put rather than computed (sessions,
    /// token verifications). Reads go through [`call`] as usual.
    /// `Ok(false)`: not stored, the entry was invalidated after `position`.
    pub(crate) async fn put<V: Cacheable>(
        &self,
        site: &'static CallSite,
        digest: KeyDigest,
        value: &V,
        ttl: Duration,
        tags: Vec<String>,
        position: u64,
    ) -> Result<bool, crate::error::Error> {
        let function = self.function(site, "");
        let mut call = Call::new(site, &function, digest);
        call.with_l2(self);
        let stamp = Stamp {
            position,
            tags: tag_hashes(&tags),
            computed_at: None,
        };
        let sealed = self.encode_entry(&call, value, ttl, tags, position)?;
        if !self
            .write_l2(&call, sealed.bytes, position, ttl, L2Write::Awaited)
            .await?
        {
            return Ok(false);
        }
        self.fill_l1(&call, value, &stamp, ttl, sealed.plain_size);
        Ok(true)
    }
}

/// The read and write paths on an L1-only cache: the tiers and coherence
/// are real, Redis is not involved (the integration tests cover L2).
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::format::policy::TtlPolicy;

    static POLICY: TtlPolicy = TtlPolicy::new("unit_calls", Duration::from_secs(60));
    static SITE: CallSite = CallSite::new("double", module_path!(), "double(u64)->u64", 0, &POLICY)
        .invalidate_on(&["unit.*"]);

    fn digest(n: u64) -> KeyDigest {
        KeyDigest::of(&n).unwrap()
    }

    /// One cached call of `double(n)`, counting computations in `runs`.
    async fn double(cache: &Cache, n: u64, runs: &AtomicU32) -> u64 {
        let key = Ok(digest(n));
        let compute = async {
            runs.fetch_add(1, Ordering::SeqCst);
            (Vec::new(), n * 2)
        };
        call(
            CacheRef::Owned(cache.clone()),
            &SITE,
            "",
            crate::__acgs_shape!(u64),
            key,
            compute,
        )
        .await
    }

    fn counters(cache: &Cache) -> (u64, u64, u64) {
        let f = cache.function(&SITE, "");
        (
            f.counters.misses.get(),
            f.counters.l1_hits.get(),
            f.counters.bypassed.get(),
        )
    }

    #[tokio::test]
    async fn a_miss_is_stored_and_the_next_call_is_an_l1_hit() {
        let cache = Cache::builder().build().unwrap();
        let runs = AtomicU32::new(0);
        assert_eq!(double(&cache, 21, &runs).await, 42);
        assert_eq!(double(&cache, 21, &runs).await, 42);
        assert_eq!(double(&cache, 4, &runs).await, 8);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(counters(&cache), (2, 1, 0));
    }

    #[tokio::test]
    async fn a_put_value_is_read_without_computing() {
        let cache = Cache::builder().build().unwrap();
        let position = cache.inner.coherence().head();
        let stored = cache
            .put(
                &SITE,
                digest(5),
                &99u64,
                Duration::from_secs(60),
                Vec::new(),
                position,
            )
            .await
            .unwrap();
        assert!(stored);
        let runs = AtomicU32::new(0);
        assert_eq!(double(&cache, 5, &runs).await, 99, "the put value, not 10");
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_entry_from_before_an_invalidation_is_not_served() {
        let cache = Cache::builder().build().unwrap();
        let runs = AtomicU32::new(0);
        let before = cache.inner.coherence().head();
        assert_eq!(double(&cache, 3, &runs).await, 6);
        cache.invalidate("unit.changed").await.unwrap();
        assert_eq!(double(&cache, 3, &runs).await, 6);
        assert_eq!(runs.load(Ordering::SeqCst), 2, "recomputed after the event");
        // A value put with a position from before the event is not kept.
        cache
            .put(
                &SITE,
                digest(7),
                &1u64,
                Duration::from_secs(60),
                Vec::new(),
                before,
            )
            .await
            .unwrap();
        assert_eq!(double(&cache, 7, &runs).await, 14);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn keys_that_did_not_serialize_and_disabled_caches_bypass() {
        let cache = Cache::builder().build().unwrap();
        let runs = AtomicU32::new(0);
        for _ in 0..2 {
            let key = Err(CodecError::Encode("no".into()));
            let compute = async {
                runs.fetch_add(1, Ordering::SeqCst);
                (Vec::new(), 1u64)
            };
            let out = call(
                CacheRef::Owned(cache.clone()),
                &SITE,
                "",
                crate::__acgs_shape!(u64),
                key,
                compute,
            )
            .await;
            assert_eq!(out, 1);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(counters(&cache).2, 2);

        let disabled = Cache::disabled();
        assert_eq!(double(&disabled, 1, &runs).await, 2);
        assert_eq!(double(&disabled, 1, &runs).await, 2);
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        assert_eq!(counters(&disabled), (0, 0, 2));
    }
}
