//! The path of one `#[cached]` call: L1, then L2, then the function.

use std::future::Future;
use std::marker::PhantomData;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{de::DeserializeOwned, Serialize};

use crate::cache::{Cache, FunctionState};
use crate::coherence::{tag_hash, unpack, Consistency};
use crate::envelope::{self, EnvelopeHeader, Reject};
use crate::error::CodecError;
use crate::key::KeyDigest;
use crate::l1::{L1Key, Stored};
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
    call_tagged::<S, _>(site, key, async move { (Vec::new(), compute.await) }).await
}

/// Runs one cached call whose computation also yields the entry's tags
/// (formatted from the arguments before the body runs, and only on a miss).
pub async fn call_tagged<S, F>(
    site: &'static CallSite,
    key: Result<KeyDigest, CodecError>,
    compute: F,
) -> S::Out
where
    S: Shape,
    F: Future<Output = (Vec<String>, S::Out)>,
{
    let cache = Cache::for_site(site);
    let function = cache.function(site);
    let digest = match key {
        Ok(digest) => digest,
        Err(e) => {
            function.counters.bypassed.inc();
            tracing::warn!(target: "acgs_cache", function = site.name, error = %e, "key arguments did not serialize; calling without the cache");
            return compute.await.1;
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
        F: Future<Output = (Vec<String>, S::Out)>,
    {
        let config = &self.inner.config;
        let coherence = &self.inner.coherence;
        let l1_key = L1Key {
            function: site.fingerprint,
            digest,
        };
        let use_l1 = config.l1_enabled
            && (function.consistency == Consistency::Bounded || coherence.is_listening());
        if use_l1 {
            if let Some(entry) = self.inner.l1.get(&l1_key).await {
                if let Some(stored) = entry.stored::<S::Value>() {
                    if coherence.accepts(function, entry.position, &stored.tags, digest) {
                        function.counters.l1_hits.inc();
                        return S::rebuild(stored.value.clone());
                    }
                    function.counters.reject(Reject::Invalidated);
                    self.inner.l1.remove(&l1_key).await;
                }
            }
        }

        #[cfg(feature = "redis")]
        let redis_key = self.inner.l2.as_ref().map(|l2| {
            crate::log::ensure_tailer(&self.inner);
            (
                l2,
                crate::key::redis_key(
                    &config.prefix,
                    &config.service,
                    site.name,
                    site.fingerprint,
                    digest,
                ),
            )
        });
        #[cfg(feature = "redis")]
        if let Some((l2, redis_key)) = &redis_key {
            if let Some(value) = self
                .read_l2::<S::Value>(l2, redis_key, site, function, l1_key)
                .await
            {
                return S::rebuild(value);
            }
        }

        function.counters.misses.inc();
        let position = coherence.head();
        let (tags, out) = compute.await;
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
        let tag_hashes: Box<[u64]> = tags.iter().map(|t| tag_hash(t)).collect();
        let now = SystemTime::now();
        let header = EnvelopeHeader {
            codec: site.codec.id(),
            flags: 0,
            fingerprint: site.fingerprint,
            created_at_ms: unix_ms(now),
            expires_at_ms: unix_ms(now + ttl),
            log_position: unpack(position),
            tags,
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
        if let Some((l2, redis_key)) = &redis_key {
            let physical_ttl = ttl + function.policy.stale_if_error();
            if l2.set(redis_key, &bytes, physical_ttl).await.is_err() {
                function.counters.errors.inc();
            }
        }
        if config.l1_enabled {
            let l1_ttl = function.policy.l1_ttl().min(ttl);
            let stored = Stored {
                value: value.clone(),
                tags: tag_hashes,
            };
            self.inner
                .l1
                .insert(l1_key, stored, l1_ttl, bytes.len(), position)
                .await;
        }
        out
    }

    /// An L2 hit that passes every check, after filling L1 with it.
    #[cfg(feature = "redis")]
    async fn read_l2<V: Cacheable>(
        &self,
        l2: &std::sync::Arc<crate::l2::L2Tier>,
        redis_key: &str,
        site: &'static CallSite,
        function: &FunctionState,
        l1_key: L1Key,
    ) -> Option<V> {
        let config = &self.inner.config;
        let coherence = &self.inner.coherence;
        // An entry can only be judged against the log once the log has been
        // read. Right after start, wait for that (at most the soft timeout);
        // after a disconnection, or while the circuit is open, go on without L2.
        if !coherence.is_listening()
            && (!l2.is_available()
                || coherence.has_listened()
                || !coherence.wait_listening(l2.soft_timeout()).await)
        {
            function.counters.errors.inc();
            return None;
        }
        let bytes = match l2.get(redis_key).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(_) => {
                function.counters.errors.inc();
                return None;
            }
        };
        let (header, value) = match envelope::decode::<V>(
            &bytes,
            site.fingerprint,
            config.limits.max_value_bytes,
        ) {
            Ok(decoded) => decoded,
            Err(reason) => {
                function.counters.reject(reason);
                tracing::debug!(target: "acgs_cache", function = site.name, reason = reason.as_str(), "L2 entry rejected; recomputing");
                return None;
            }
        };
        let now = unix_ms(SystemTime::now());
        if header.expires_at_ms <= now {
            return None; // past its logical expiry: kept only for the stale-if-error window
        }
        let position = header.log_position.packed();
        let tags: Box<[u64]> = header.tags.iter().map(|t| tag_hash(t)).collect();
        if !coherence.accepts(function, position, &tags, l1_key.digest) {
            function.counters.reject(Reject::Invalidated);
            return None;
        }
        function.counters.l2_hits.inc();
        if config.l1_enabled {
            let remaining = std::time::Duration::from_millis(header.expires_at_ms - now);
            let l1_ttl = function.policy.l1_ttl().min(remaining);
            let stored = Stored {
                value: value.clone(),
                tags,
            };
            self.inner
                .l1
                .insert(l1_key, stored, l1_ttl, bytes.len(), position)
                .await;
        }
        Some(value)
    }
}
