//! Operator access to what L2 stores — one function's entry keys, one
//! entry's bytes, deleting entries — on every topology (the CLI's `keys`,
//! `inspect` and `purge`), and the one way an extension reaches Redis
//! itself: a Lua script on the cache's connections (the rate limiter's).
//! Cached calls never use these.

use std::time::Duration;

use crate::engine::instance::Cache;
use crate::error::{Error, Unavailable};

/// One entry as Redis holds it.
///
/// ```no_run
/// # async fn run(cache: acgs_cache_core::Cache, key: String) -> Result<(), acgs_cache_core::Error> {
/// if let Some(entry) = cache.stored_entry(&key).await? {
///     println!("{} bytes, {:?} left", entry.bytes.len(), entry.ttl);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredEntry {
    /// The envelope ([`decode_header`](crate::format::envelope::decode_header) reads it).
    pub bytes: Vec<u8>,
    /// Time left before Redis drops it (`None`: no expiry).
    pub ttl: Option<Duration>,
}

impl Cache {
    /// Up to `limit` L2 keys of `service`'s function instance `function`
    /// (the name its stats row shows: `evaluate_policy`, `orders::get`,
    /// `Service<Pg>::find`), by a bounded `SCAN` on every master of a
    /// cluster; never `KEYS`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for an empty service or function;
    /// [`Error::Unavailable`] without L2; the Redis error.
    ///
    /// ```no_run
    /// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
    /// for key in cache.stored_keys("policy-governance", "evaluate_policy", 100).await? {
    ///     if let Some(entry) = cache.stored_entry(&key).await? {
    ///         let (header, _payload) = acgs_cache_core::decode_header(&entry.bytes).expect("an envelope");
    ///         println!("{key}: {} bytes, expires at {} ms", entry.bytes.len(), header.expires_at_ms);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stored_keys(
        &self,
        service: &str,
        function: &str,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        if service.is_empty() || function.is_empty() {
            return Err(Error::InvalidName(
                "a service and a function name must not be empty".into(),
            ));
        }
        // `{prefix}:{service}:{function}:{16 hex digits}:{digest}`: the
        // fingerprint's shape keeps `users::get` from matching `users::get::x`.
        let pattern = format!(
            "{}:{}:{}:{}:*",
            crate::format::key::glob_escape(self.prefix()),
            crate::format::key::glob_escape(service),
            crate::format::key::glob_escape(function),
            "[0-9a-f]".repeat(16)
        );
        let mut keys = self.l2_tier()?.scan(&pattern, limit).await?;
        keys.sort();
        keys.dedup(); // SCAN may return a key twice
        keys.truncate(limit);
        Ok(keys)
    }

    /// Refuses keys outside this cache's prefix: the operator API reads and
    /// deletes only what the cache owns.
    fn own_key(&self, key: &str) -> Result<(), Error> {
        match key.strip_prefix(self.prefix()) {
            Some(rest) if rest.starts_with(':') => Ok(()),
            _ => Err(Error::InvalidName(format!(
                "{key:?} is not a key of this cache (its keys start with {:?})",
                format!("{}:", self.prefix())
            ))),
        }
    }

    /// The entry stored under `key`, if any.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a key outside this cache's prefix;
    /// [`Error::Unavailable`] without L2; the Redis error.
    ///
    /// ```no_run
    /// # async fn run(cache: acgs_cache_core::Cache, key: String) -> Result<(), acgs_cache_core::Error> {
    /// match cache.stored_entry(&key).await? {
    ///     Some(entry) => println!("{} bytes, {:?} left", entry.bytes.len(), entry.ttl),
    ///     None => println!("no entry"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stored_entry(&self, key: &str) -> Result<Option<StoredEntry>, Error> {
        self.own_key(key)?;
        let l2 = self.l2_tier()?;
        let Some(bytes) = l2.get(key).await? else {
            return Ok(None);
        };
        let pttl: i64 = l2.query(redis::cmd("PTTL").arg(key)).await?;
        Ok(Some(StoredEntry {
            bytes,
            ttl: u64::try_from(pttl).ok().map(Duration::from_millis),
        }))
    }

    /// Deletes `keys` from L2 (`UNLINK`: one command, or one per key on a
    /// cluster, where keys live in different slots); returns how many
    /// existed. Instances' L1 copies are not touched: invalidate first
    /// ([`Cache::invalidate_function`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a key outside this cache's prefix (nothing
    /// is deleted then); [`Error::Unavailable`] without L2; the Redis error.
    ///
    /// ```no_run
    /// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
    /// // Invalidate first (every instance's L1), then free Redis's memory.
    /// cache.invalidate_function("evaluate_policy").await?;
    /// let keys = cache.stored_keys(cache.service(), "evaluate_policy", 10_000).await?;
    /// let deleted = cache.delete_stored(&keys).await?;
    /// println!("{deleted} entries deleted");
    /// # Ok(()) }
    /// ```
    pub async fn delete_stored(&self, keys: &[String]) -> Result<u64, Error> {
        if keys.is_empty() {
            return Ok(0);
        }
        for key in keys {
            self.own_key(key)?;
        }
        self.l2_tier()?.unlink(keys).await
    }

    /// Records in the invalidation log (`XLEN` of its stream).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] without L2; the Redis error.
    ///
    /// ```no_run
    /// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
    /// println!("{} records in the invalidation log", cache.invalidation_log_length().await?);
    /// # Ok(()) }
    /// ```
    pub async fn invalidation_log_length(&self) -> Result<u64, Error> {
        let stream = crate::coherence::log::LogKeys::new(self.prefix()).stream;
        self.l2_tier()?.query(redis::cmd("XLEN").arg(stream)).await
    }

    /// Runs a Lua script on the cache's Redis, through its connections:
    /// `EVALSHA`, loading the script on first use, under the cache's soft
    /// timeout and circuit breaker (a failure to reach Redis counts like a
    /// cached call's). What the toolkit's rate limiter runs its checks with.
    ///
    /// ```no_run
    /// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
    /// let script = redis::Script::new("return redis.call('INCR', KEYS[1])");
    /// let hits: i64 = cache.run_script(&script.key("acgs:my-extension:hits")).await?;
    /// # let _ = hits; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] without L2 (or with the circuit open); the
    /// Redis error, a script error included.
    pub async fn run_script<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        self.l2_tier()?.run_script(invocation).await
    }

    fn l2_tier(&self) -> Result<&std::sync::Arc<crate::tiers::l2::L2Tier>, Error> {
        self.inner
            .l2()
            .ok_or(Error::Unavailable(Unavailable::NotConfigured))
    }
}
