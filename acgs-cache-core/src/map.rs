//! A typed cache used without the attribute, as moka's and FusionCache's
//! users expect: [`CacheMap`] gets, inserts, computes and removes values of
//! one type under keys of one type, through the same engine as a `#[cached]`
//! function — L1 and L2, the flight that shares one computation per key,
//! the fleet lock, stale-if-error, the invalidation check, counters and a
//! stats row of its own.

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;

use crate::engine::call::call;
use crate::engine::instance::{Cache, CacheRef};
use crate::engine::site::CallSite;
use crate::engine::store::{self, SiteSpec};
use crate::error::{CodecError, Error};
use crate::format::codec::Codec;
use crate::format::key::KeyDigest;
use crate::format::policy::MaxStaleness;
use crate::format::policy::TtlPolicy;
use crate::format::shape::{Cacheable, Shape};
use crate::log_position::LogPosition;

/// Values of `V` under keys of `K`, named: a `#[cached]` function without
/// the function. Cheap to clone.
///
/// ```
/// use acgs_cache_core::{policies, Cache, CacheMap};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let rules: CacheMap<u64, String> = CacheMap::builder("rules")
///     .ttl(policies::GOVERNANCE_RULES)
///     .build(&cache)?;
///
/// let rule = rules
///     .get_or_compute(&7, async { "deny after 18:00".to_owned() })
///     .await;
/// assert_eq!(rules.get(&7).await.as_deref(), Some(rule.as_str()));
///
/// rules.remove(&7).await?; // on every instance
/// assert_eq!(rules.get(&7).await, None);
/// # Ok(()) }
/// ```
pub struct CacheMap<K: ?Sized, V> {
    cache: Cache,
    site: &'static CallSite,
    _types: PhantomData<fn(&K) -> V>,
}

impl<K: ?Sized, V> Clone for CacheMap<K, V> {
    fn clone(&self) -> Self {
        CacheMap {
            cache: self.cache.clone(),
            site: self.site,
            _types: PhantomData,
        }
    }
}

impl<K: ?Sized, V> std::fmt::Debug for CacheMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheMap")
            .field("name", &self.site.fn_name)
            .field("policy", self.site.policy())
            .finish_non_exhaustive()
    }
}

/// Builds a [`CacheMap`] ([`CacheMap::builder`]): the one builder shape of
/// the typed map and the toolkit (`X::builder(name)`, settings,
/// `.build(&cache)`); [`SessionStoreBuilder`](crate::session::SessionStoreBuilder)
/// and [`TokenCacheBuilder`](crate::token::TokenCacheBuilder) hold one and
/// forward their settings to it.
///
/// ```
/// use std::time::Duration;
/// use acgs_cache_core::{policies, Cache, CacheMap, Codec, MaxStaleness};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let rules: CacheMap<u64, String> = CacheMap::builder("rules")
///     .ttl(policies::GOVERNANCE_RULES)
///     .version(2)                 // bump when the value's layout changes
///     .codec(Codec::Json)
///     .max_staleness(MaxStaleness::Lease(Duration::from_millis(500)))
///     .lock(true)                 // one instance of the fleet computes a miss
///     .build(&cache)?;
/// assert_eq!(rules.name(), "map-rules");
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct CacheMapBuilder<K: ?Sized, V> {
    name: String,
    policy: TtlPolicy,
    version: u32,
    codec: Codec,
    max_staleness: Option<MaxStaleness>,
    lock: bool,
    _types: PhantomData<fn(&K) -> V>,
}

impl<K: ?Sized, V> std::fmt::Debug for CacheMapBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheMapBuilder")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("version", &self.version)
            .field("codec", &self.codec)
            .field("max_staleness", &self.max_staleness)
            .field("lock", &self.lock)
            .finish()
    }
}

impl<K: Serialize + ?Sized, V: Cacheable> CacheMap<K, V> {
    /// A builder for the map `name` (1–64 letters, digits, `_`, `-`). Its
    /// entries are
    /// `{prefix}:{service}:map-{name}:{identity}:{digest of the key}`, shared
    /// by the instances of one service; maps of one name holding different
    /// key or value types never share entries.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{policies, Cache, CacheMap, Codec, MaxStaleness};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let rules: CacheMap<u64, String> = CacheMap::builder("rules").build(&cache)?;
    /// assert_eq!(rules.name(), "map-rules");
    /// # Ok(()) }
    /// ```
    pub fn builder(name: impl Into<String>) -> CacheMapBuilder<K, V> {
        CacheMapBuilder {
            name: name.into(),
            policy: TtlPolicy::new("map", Duration::from_secs(300)),
            version: 0,
            codec: Codec::Postcard,
            max_staleness: None,
            lock: false,
            _types: PhantomData,
        }
    }
}

impl<K: Serialize + ?Sized, V: Cacheable> CacheMapBuilder<K, V> {
    /// The TTL policy (default: 5 minutes, no stale window). Run-time
    /// overrides of the cache apply to it by its name.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{policies, Cache, CacheMap, Codec, MaxStaleness};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let rules: CacheMap<u64, String> = CacheMap::builder("rules").ttl(policies::GOVERNANCE_RULES).build(&cache)?;
    /// assert_eq!(rules.default_ttl(), Duration::from_secs(3600));
    /// # Ok(()) }
    /// ```
    pub fn ttl(mut self, policy: TtlPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Bump when `V`'s layout changes: entries of another version are
    /// never decoded.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{policies, Cache, CacheMap, Codec, MaxStaleness};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let rules: CacheMap<u64, String> = CacheMap::builder("rules").version(3).build(&cache)?;
    /// # let _ = rules;
    /// # Ok(()) }
    /// ```
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Postcard (default) or JSON.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{policies, Cache, CacheMap, Codec, MaxStaleness};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let rules: CacheMap<u64, String> = CacheMap::builder("rules").codec(Codec::Json).build(&cache)?;
    /// # let _ = rules;
    /// # Ok(()) }
    /// ```
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// How stale an entry may be served after its invalidation (as
    /// `#[cached]`'s `max_staleness`; default: the policy's, else the
    /// cache's).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{policies, Cache, CacheMap, Codec, MaxStaleness};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let rules: CacheMap<u64, String> = CacheMap::builder("rules").max_staleness(MaxStaleness::Lease(Duration::from_millis(500))).build(&cache)?;
    /// # let _ = rules;
    /// # Ok(()) }
    /// ```
    pub fn max_staleness(mut self, max: MaxStaleness) -> Self {
        self.max_staleness = Some(max);
        self
    }

    /// One instance of the fleet computes a missing key (as `#[cached]`'s
    /// `lock = true`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{policies, Cache, CacheMap, Codec, MaxStaleness};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let rules: CacheMap<u64, String> = CacheMap::builder("rules").lock(true).build(&cache)?;
    /// # let _ = rules;
    /// # Ok(()) }
    /// ```
    pub fn lock(mut self, lock: bool) -> Self {
        self.lock = lock;
        self
    }

    /// The map, on `cache`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a name outside 1–64 letters, digits, `_`, `-`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{policies, Cache, CacheMap, Codec, MaxStaleness};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let rules: CacheMap<u64, String> = CacheMap::builder("rules").build(&cache)?;
    /// # let _ = rules;
    /// # Ok(()) }
    /// ```
    pub fn build(self, cache: &Cache) -> Result<CacheMap<K, V>, Error> {
        store::check_store_name("map", &self.name)?;
        let name = format!("map-{}", self.name);
        let site = SiteSpec {
            signature: format!(
                "{name}({})->{}",
                std::any::type_name::<K>(),
                std::any::type_name::<V>()
            ),
            name,
            module: module_path!(),
            version: self.version,
            policy: self.policy.with_lock(self.lock),
            codec: self.codec,
            max_staleness: self.max_staleness,
        }
        .intern();
        Ok(CacheMap {
            cache: cache.clone(),
            site,
            _types: PhantomData,
        })
    }
}

/// What a lookup computes: nothing, so nothing is stored.
struct Absent;

/// `tags` checked as event names.
fn event_names<T: AsRef<str>>(tags: impl IntoIterator<Item = T>) -> Result<Vec<String>, Error> {
    tags.into_iter()
        .map(|tag| {
            let tag = tag.as_ref();
            acgs_cache_grammar::check_event_name(tag)
                .map(|()| tag.to_owned())
                .map_err(|e| Error::InvalidName(format!("tag {tag:?}: {e}")))
        })
        .collect()
}

impl<K: Serialize + ?Sized, V: Cacheable> CacheMap<K, V> {
    /// One call of this map's site in its cache: the path of a `#[cached]`
    /// call, with `shape` deciding what of `compute`'s value is stored.
    fn call<'a, S, F>(
        &'a self,
        shape: S,
        key: Result<KeyDigest, CodecError>,
        compute: F,
    ) -> impl Future<Output = S::Out> + 'a
    where
        S: Shape + 'a,
        S::Value: Cacheable,
        F: Future<Output = (Vec<String>, S::Out)> + 'a,
    {
        // Lent, not cloned: only a call past L1 keeps (clones) the handle.
        call(
            CacheRef::Borrowed(&self.cache),
            self.site,
            "",
            shape,
            key,
            compute,
        )
    }

    /// The value under `key`, from L1 or L2, if one is stored and was not
    /// invalidated. A key that does not serialize finds nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let rules: acgs_cache_core::CacheMap<u64, String> =
    ///     acgs_cache_core::CacheMap::builder("rules").build(&cache)?;
    /// let found = rules.get(&7).await; // L1, then L2; never computes
    /// assert_eq!(found, None);
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: &K) -> Option<V> {
        let digest = KeyDigest::of(key).ok()?;
        self.call(crate::__acgs_shape!(Result<V, Absent>), Ok(digest), async {
            (Vec::new(), Err(Absent))
        })
        .await
        .ok()
    }

    /// The value under `key`, or what `compute` yields, stored with the
    /// policy's TTL (`compute` is polled only on a miss, as moka's
    /// `get_with`):
    /// the path of a `#[cached]` call (one computation per key for
    /// concurrent callers, the fleet lock if set, a stale value if the
    /// computation panics within the policy's stale window, the invalidation
    /// check on every value, a shared one included).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{policies, Cache, CacheMap, Codec, MaxStaleness};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let rules: CacheMap<u64, String> = CacheMap::builder("rules").build(&cache)?;
    /// let rule = rules.get_or_compute(&7, async { "deny".to_owned() }).await;
    /// assert_eq!(rules.get(&7).await, Some(rule)); // computed once, then a hit
    /// # Ok(()) }
    /// ```
    pub async fn get_or_compute(&self, key: &K, compute: impl Future<Output = V>) -> V {
        self.call(crate::__acgs_shape!(V), KeyDigest::of(key), async {
            (Vec::new(), compute.await)
        })
        .await
    }

    /// [`get_or_compute`](Self::get_or_compute) for a computation that can
    /// fail: only `Ok` is stored, and with a stale value in the policy's
    /// window an `Err` gives way to it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let rules: acgs_cache_core::CacheMap<u64, String> =
    ///     acgs_cache_core::CacheMap::builder("rules").lock(true).build(&cache)?;
    /// let failed = rules.get_or_try_compute(&7, async { Err::<String, _>("db down") }).await;
    /// assert_eq!(failed, Err("db down")); // not stored: the next call computes
    /// let rule = rules.get_or_try_compute(&7, async { Ok::<_, &str>("deny".to_owned()) }).await;
    /// assert_eq!(rule.as_deref(), Ok("deny"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// `compute`'s error, uncached: the next call computes again.
    pub async fn get_or_try_compute<E>(
        &self,
        key: &K,
        compute: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E> {
        self.call(
            crate::__acgs_shape!(Result<V, E>),
            KeyDigest::of(key),
            async { (Vec::new(), compute.await) },
        )
        .await
    }

    /// [`get_or_try_compute`](Self::get_or_try_compute) where each computed
    /// value chooses how long it is kept, as `#[cached(ttl_from = …)]`:
    /// `ttl_of(&value)` returns `None` for the policy's TTL
    /// ([`default_ttl`](Self::default_ttl)), `Some(ttl)` for its own, and
    /// `Some(Duration::ZERO)` to return it without storing it. Concurrent
    /// callers of one key still share one computation.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// // Grants that say how long they are valid: never kept past that.
    /// let grants: acgs_cache_core::CacheMap<str, (String, u64)> =
    ///     acgs_cache_core::CacheMap::builder("grants").build(&cache)?;
    /// let grant = grants
    ///     .get_or_try_compute_with_ttl(
    ///         "alice",
    ///         |(_, valid_for_s)| Some(Duration::from_secs(*valid_for_s)),
    ///         async { Ok::<_, std::io::Error>(("read".to_owned(), 30)) },
    ///     )
    ///     .await;
    /// assert_eq!(grant.unwrap().0, "read");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// `compute`'s error, uncached.
    pub async fn get_or_try_compute_with_ttl<E>(
        &self,
        key: &K,
        ttl_of: impl Fn(&V) -> Option<Duration>,
        compute: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E> {
        self.call(
            crate::format::shape::ttl_from(crate::__acgs_shape!(Result<V, E>), ttl_of),
            KeyDigest::of(key),
            async { (Vec::new(), compute.await) },
        )
        .await
    }

    /// The TTL an entry gets when none is chosen: the policy's, with the
    /// cache's run-time override (`ACGS_CACHE_TTL_<POLICY>`) applied.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{policies, Cache, CacheMap, Codec, MaxStaleness};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let rules: CacheMap<u64, String> = CacheMap::builder("rules").build(&cache)?;
    /// assert_eq!(rules.default_ttl(), Duration::from_secs(300)); // the default policy: 5 min
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn default_ttl(&self) -> Duration {
        store::ttl(&self.cache, self.site)
    }

    /// Stores `value` under `key` with the policy's TTL: `Ok(true)` when
    /// stored, `Ok(false)` when the key was invalidated while it was being
    /// written (the write is refused, as a computation's would be).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] for a key or value that does not encode (or is
    /// larger than the limit); the Redis error if L2 did not take it (L1
    /// then does not keep it either).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let rules: acgs_cache_core::CacheMap<u64, String> =
    ///     acgs_cache_core::CacheMap::builder("rules").build(&cache)?;
    /// assert!(rules.insert(&7, "deny".into()).await?); // stored: not refused by an invalidation
    /// assert_eq!(rules.get(&7).await.as_deref(), Some("deny"));
    /// # Ok(()) }
    /// ```
    pub async fn insert(&self, key: &K, value: V) -> Result<bool, Error> {
        let ttl = store::ttl(&self.cache, self.site);
        self.insert_with(key, value, ttl, &[]).await
    }

    /// Stores `value` under `key` for `ttl`, tagged with `tags` (each an
    /// event name: [`Cache::invalidate`]`(tag)` drops it); `Ok(false)` as
    /// for [`insert`](Self::insert).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let quotas: acgs_cache_core::CacheMap<str, u64> =
    ///     acgs_cache_core::CacheMap::builder("quotas").build(&cache)?;
    /// let ttl = Duration::from_secs(60);
    /// assert!(quotas.insert_with("acme", 100, ttl, &["tenant.acme"]).await?);
    /// cache.invalidate("tenant.acme").await?; // on every instance
    /// assert_eq!(quotas.get("acme").await, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert); [`Error::InvalidName`] for a tag that is
    /// not an event name.
    pub async fn insert_with(
        &self,
        key: &K,
        value: V,
        ttl: Duration,
        tags: &[&str],
    ) -> Result<bool, Error> {
        let digest = KeyDigest::of(key)?;
        let tags = event_names(tags)?;
        let position = store::position_now(&self.cache).await;
        self.cache
            .put(self.site, digest, &value, ttl, tags, position)
            .await
    }

    /// Reads the value under `key`, lets `change` make its successor and
    /// that successor's TTL, and stores it tagged with `tags_of(&successor)`
    /// — unless the key (or a tag) was invalidated after the read began:
    /// then nothing is stored and the answer is `Ok(None)`, as it is for a
    /// key with no value. One read: a sliding expiry is
    /// `update(key, |v| (v, ttl), |_| Vec::new())`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let visits: acgs_cache_core::CacheMap<str, u64> =
    ///     acgs_cache_core::CacheMap::builder("visits").build(&cache)?;
    /// visits.insert("alice", 1).await?;
    /// let next = visits
    ///     .update("alice", |n| (n + 1, Duration::from_secs(60)), |_| Vec::new())
    ///     .await?;
    /// assert_eq!(next, Some(2));
    /// let absent = visits.update("bob", |n| (n + 1, Duration::from_secs(60)), |_| Vec::new());
    /// assert_eq!(absent.await?, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`insert_with`](Self::insert_with).
    pub async fn update(
        &self,
        key: &K,
        change: impl FnOnce(V) -> (V, Duration),
        tags_of: impl FnOnce(&V) -> Vec<String>,
    ) -> Result<Option<V>, Error> {
        let digest = KeyDigest::of(key)?;
        // Read before the value: an invalidation that lands meanwhile
        // refuses what is written back.
        let position = store::position_now(&self.cache).await;
        let Some(value) = self.get(key).await else {
            return Ok(None);
        };
        let (value, ttl) = change(value);
        let tags = event_names(tags_of(&value))?;
        let stored = self
            .cache
            .put(self.site, digest, &value, ttl, tags, position)
            .await?;
        Ok(stored.then_some(value))
    }

    /// How long the entry under `key` has left before it expires: `None`
    /// when there is none (or it was invalidated). With L2 it is the
    /// entry's TTL as stored in Redis, the same on every instance; without,
    /// this instance's copy's.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let grants: acgs_cache_core::CacheMap<str, String> =
    ///     acgs_cache_core::CacheMap::builder("grants").build(&cache)?;
    /// grants.insert_with("alice", "read".into(), Duration::from_secs(60), &[]).await?;
    /// let left = grants.expires_in("alice").await?.expect("stored");
    /// assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(50));
    /// assert_eq!(grants.expires_in("bob").await?, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] for a key that does not serialize; the Redis error.
    pub async fn expires_in(&self, key: &K) -> Result<Option<Duration>, Error> {
        // Through the engine first: an invalidated entry has no time left.
        if self.get(key).await.is_none() {
            return Ok(None);
        }
        store::expires_in(&self.cache, self.site, KeyDigest::of(key)?).await
    }

    /// Invalidates the entry under `key` on every instance, and deletes it
    /// from Redis: once this returns `Ok`, no value stored before it is
    /// served here, and other instances stop within the propagation delay
    /// (one that has not heard it yet and has no copy of its own finds
    /// nothing in Redis either).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] for a key that does not serialize; as
    /// [`Cache::invalidate`] otherwise.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let rules: acgs_cache_core::CacheMap<u64, String> =
    ///     acgs_cache_core::CacheMap::builder("rules").build(&cache)?;
    /// rules.insert(&7, "deny".into()).await?;
    /// rules.remove(&7).await?; // this instance at once, the others within the propagation delay
    /// assert_eq!(rules.get(&7).await, None);
    /// # Ok(()) }
    /// ```
    pub async fn remove(&self, key: &K) -> Result<LogPosition, Error> {
        store::revoke_entry(&self.cache, self.site, KeyDigest::of(key)?).await
    }

    /// Invalidates every entry of the map on every instance.
    ///
    /// # Errors
    ///
    /// As [`Cache::invalidate`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let rules: acgs_cache_core::CacheMap<u64, String> =
    ///     acgs_cache_core::CacheMap::builder("rules").build(&cache)?;
    /// rules.insert(&7, "deny".into()).await?;
    /// rules.invalidate_all().await?;
    /// assert_eq!(rules.get(&7).await, None);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_all(&self) -> Result<LogPosition, Error> {
        let function = self.cache.function(self.site, "");
        self.cache.invalidate_function(&function.name).await
    }

    /// The map's name in stats, metrics and keys (`map-{name}`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{policies, Cache, CacheMap, Codec, MaxStaleness};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let rules: CacheMap<u64, String> = CacheMap::builder("rules").build(&cache)?;
    /// assert_eq!(rules.name(), "map-rules");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn name(&self) -> &str {
        self.site.fn_name
    }
}
