//! The path of one `#[cached]` call: L1, then L2, then the function.

use std::future::Future;
use std::marker::PhantomData;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{de::DeserializeOwned, Serialize};

use crate::cache::{Cache, FunctionState};
use crate::envelope::{self, EnvelopeHeader};
use crate::error::CodecError;
use crate::key::KeyDigest;
use crate::l1::L1Key;
use crate::log_position::LogPosition;
use crate::site::CallSite;

/// What a cached value must be: stored in two tiers, shared between tasks.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: a cached value must be `Serialize + DeserializeOwned + Clone + Send + Sync + 'static`",
    label = "this type is stored in L1 (cloned, shared between tasks) and L2 (serialized)"
)]
pub trait Cacheable: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Cacheable for T {}

/// Whether (and how) a function's output is stored.
#[derive(Debug)]
pub enum Verdict<'a, V> {
    /// Store the value with the policy's TTL.
    Store(&'a V),
    /// Store the value only if negative caching is on, with its TTL.
    Negative(&'a V),
    /// Do not store (an `Err`).
    Skip,
}

/// How a function's return type maps to the value that is cached.
pub trait Shape {
    /// The function's return type.
    type Out;
    /// The part of it that is cached.
    type Value: Cacheable;
    /// Decides whether `out` is stored.
    fn verdict(out: &Self::Out) -> Verdict<'_, Self::Value>;
    /// Rebuilds the return value from a cached value.
    fn rebuild(value: Self::Value) -> Self::Out;
}

/// Any cacheable return type: always stored.
#[derive(Debug)]
pub struct Plain<R>(PhantomData<R>);

impl<R: Cacheable> Shape for Plain<R> {
    type Out = R;
    type Value = R;
    fn verdict(out: &R) -> Verdict<'_, R> {
        Verdict::Store(out)
    }
    fn rebuild(value: R) -> R {
        value
    }
}

/// `Result<T, E>` (or an alias of it): only `Ok` is stored.
#[derive(Debug)]
pub struct OkOnly<R>(PhantomData<R>);

impl<T: Cacheable, E> Shape for OkOnly<Result<T, E>> {
    type Out = Result<T, E>;
    type Value = T;
    fn verdict(out: &Result<T, E>) -> Verdict<'_, T> {
        match out {
            Ok(value) => Verdict::Store(value),
            Err(_) => Verdict::Skip,
        }
    }
    fn rebuild(value: T) -> Result<T, E> {
        Ok(value)
    }
}

/// `Option<T>`: `Some` is stored; `None` only with negative caching.
#[derive(Debug)]
pub struct SomeOnly<R>(PhantomData<R>);

impl<T: Cacheable> Shape for SomeOnly<Option<T>> {
    type Out = Option<T>;
    type Value = Option<T>;
    fn verdict(out: &Option<T>) -> Verdict<'_, Option<T>> {
        match out {
            Some(_) => Verdict::Store(out),
            None => Verdict::Negative(out),
        }
    }
    fn rebuild(value: Option<T>) -> Option<T> {
        value
    }
}

pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs one cached call of the function described by `site`.
pub async fn call<S, F>(
    site: &'static CallSite,
    key: Result<KeyDigest, CodecError>,
    compute: F,
) -> S::Out
where
    S: Shape,
    F: Future<Output = S::Out>,
{
    let cache = Cache::for_site(site);
    let function = cache.function(site);
    let digest = match key {
        Ok(digest) => digest,
        Err(e) => {
            function.counters.bypassed.inc();
            tracing::warn!(target: "acgs_cache", function = site.name, error = %e, "key arguments did not serialize; calling without the cache");
            return compute.await;
        }
    };
    cache
        .call_with::<S, F>(site, &function, digest, compute)
        .await
}

impl Cache {
    async fn call_with<S, F>(
        &self,
        site: &'static CallSite,
        function: &FunctionState,
        digest: KeyDigest,
        compute: F,
    ) -> S::Out
    where
        S: Shape,
        F: Future<Output = S::Out>,
    {
        let l1_key = L1Key {
            function: site.fingerprint,
            digest,
        };
        let config = &self.inner.config;
        if config.l1_enabled {
            if let Some((value, _position)) = self.inner.l1.get::<S::Value>(&l1_key).await {
                function.counters.l1_hits.inc();
                return S::rebuild(value);
            }
        }
        #[cfg(feature = "redis")]
        let redis_key = self.inner.l2.as_ref().map(|_| {
            crate::key::redis_key(
                &config.prefix,
                &config.service,
                site.name,
                site.fingerprint,
                digest,
            )
        });
        #[cfg(feature = "redis")]
        if let (Some(l2), Some(redis_key)) = (&self.inner.l2, &redis_key) {
            match l2.get(redis_key).await {
                Ok(Some(bytes)) => {
                    match envelope::decode::<S::Value>(
                        &bytes,
                        site.fingerprint,
                        config.limits.max_value_bytes,
                    ) {
                        Ok((header, value)) => {
                            let now = unix_ms(SystemTime::now());
                            if header.expires_at_ms > now {
                                let remaining =
                                    std::time::Duration::from_millis(header.expires_at_ms - now);
                                let l1_ttl = function.policy.l1_ttl().min(remaining);
                                function.counters.l2_hits.inc();
                                if config.l1_enabled {
                                    self.inner
                                        .l1
                                        .insert(
                                            l1_key,
                                            value.clone(),
                                            l1_ttl,
                                            bytes.len(),
                                            header.log_position,
                                        )
                                        .await;
                                }
                                return S::rebuild(value);
                            }
                            // Past its logical expiry: kept only for the stale-if-error window.
                        }
                        Err(reason) => {
                            function.counters.reject(reason);
                            tracing::debug!(target: "acgs_cache", function = site.name, reason = reason.as_str(), "L2 entry rejected; recomputing");
                        }
                    }
                }
                Ok(None) => {}
                Err(_) => function.counters.errors.inc(),
            }
        }

        function.counters.misses.inc();
        let position = LogPosition::ORIGIN;
        let out = compute.await;
        let (value, ttl) = match S::verdict(&out) {
            Verdict::Store(value) => (value, function.policy.jittered_ttl(digest.low64())),
            Verdict::Negative(value) => match site.negative_ttl {
                Some(ttl) => (value, ttl),
                None => {
                    function.counters.not_stored.inc();
                    return out;
                }
            },
            Verdict::Skip => {
                function.counters.not_stored.inc();
                return out;
            }
        };
        let now = SystemTime::now();
        let header = EnvelopeHeader {
            codec: site.codec.id(),
            flags: 0,
            fingerprint: site.fingerprint,
            created_at_ms: unix_ms(now),
            expires_at_ms: unix_ms(now + ttl),
            log_position: position,
            tags: Vec::new(),
        };
        let bytes = match envelope::encode(value, site.codec, header, config.limits) {
            Ok(bytes) => bytes,
            Err(e) => {
                function.counters.errors.inc();
                tracing::warn!(target: "acgs_cache", function = site.name, error = %e, "result not cached");
                return out;
            }
        };
        #[cfg(feature = "redis")]
        if let (Some(l2), Some(redis_key)) = (&self.inner.l2, &redis_key) {
            let physical_ttl = ttl + function.policy.stale_if_error();
            if l2.set(redis_key, &bytes, physical_ttl).await.is_err() {
                function.counters.errors.inc();
            }
        }
        if config.l1_enabled {
            let l1_ttl = function.policy.l1_ttl().min(ttl);
            self.inner
                .l1
                .insert(l1_key, value.clone(), l1_ttl, bytes.len(), position)
                .await;
        }
        out
    }
}
