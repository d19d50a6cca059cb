//! The path of one `#[cached]` call, from its synchronous start (the L1
//! probe, `read.rs`) to what follows a probe that did not hit: L2, then the
//! computation (`miss.rs`), then the landing (`land.rs`).

use std::future::Future;
use std::time::Instant;

use crate::coherence::function::{FunctionRef, FunctionState};
use crate::engine::instance::{Cache, CacheRef};
use crate::engine::path::{Call, Found, L1Miss, L2Found, Probe};
use crate::engine::site::CallSite;
use crate::error::CodecError;
use crate::format::key::KeyDigest;
use crate::format::shape::{Cacheable, Shape};
use crate::tiers::l1::L1Key;

/// How a cached call begins: answered by L1 (`Ok`), or [`Pending`] the
/// rest of its path, which only then needs the computation's future.
pub(crate) type Start<S> = Result<<S as Shape>::Out, Pending<S>>;

/// Starts one cached call, in `cache`, of the function described by
/// `site`, in the instance `probe` names (see `identity.rs`): the L1 probe
/// and the clone, synchronously, before any future exists. `refresh`:
/// a hit past the policy's refresh-ahead point is handed to
/// [`Pending::run_refreshing`] (the function's future can run detached).
#[inline(always)]
pub(crate) fn start<S>(
    cache: CacheRef<'_>,
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
        return Err(Pending::new(
            cache.into_owned(),
            function,
            site,
            shape,
            Next::Bypass,
        ));
    };
    let refresh = refresh && function.policy.refresh_ahead_percent() != 0;
    let probed = cache.probe_l1(&Call::new(site, &function, digest), &shape, refresh);
    let next = match probed {
        Probe::Hit(out) => return Ok(out),
        Probe::Due(value) => Next::Due(digest, value),
        Probe::Miss(miss) => Next::Miss(digest, miss),
    };
    Err(Pending::new(
        cache.into_owned(),
        function,
        site,
        shape,
        next,
    ))
}

/// One whole call, for the typed map: [`start`], then the rest with
/// `compute` on a miss.
pub(crate) async fn call<S, F>(
    cache: CacheRef<'_>,
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
    cache: CacheRef<'static>,
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
    cache: CacheRef<'static>,
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
        cache: CacheRef<'static>,
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

/// A computation that can run in the background, detached from its caller:
/// what refresh-ahead needs.
#[diagnostic::on_unimplemented(
    message = "this cached function's future cannot be refreshed in the background: it is not `Send + 'static`",
    note = "refresh-ahead runs the computation on its own task; add `refresh_ahead = false` to the attribute to opt out"
)]
pub trait Detachable: Future + Send + 'static {}

impl<F: Future + Send + 'static> Detachable for F {}

impl Cache {
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
                let found = self.read_l2::<S::Value>(&call, l2, key).await;
                call.l2_absent = matches!(found, L2Found::Absent);
                match found {
                    L2Found::Fresh(value, _) => {
                        let elapsed = start.elapsed();
                        function.counters.latency.record(elapsed, 1);
                        tracing::debug!(target: "acgs_cache", function = %function.name, elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), "answered from L2");
                        return shape.rebuild(value);
                    }
                    L2Found::Stale(value, stamp) => stale = stale.or(Some((value, stamp))),
                    L2Found::Nothing | L2Found::Absent => {}
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
}

/// The read and write paths on an L1-only cache: the tiers and coherence
/// are real, Redis is not involved (the integration tests cover L2).
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

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
