//! The public face of a cache: building one ([`CacheBuilder`], the
//! environment), and its handle's general methods (figures, L1, L2
//! reachability). The handle and the instance it points to are in
//! `engine.rs`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The handle this module gives its public methods to (defined with the
/// instance's state in the engine); what the toolkit builds on.
pub(crate) use crate::engine::instance::Cache;
use crate::engine::instance::{CacheConfig, Inner};
use crate::error::{Error, RedactedUrl, Unavailable};
use crate::format::envelope::EncodeLimits;
use crate::format::policy::{parse_duration, MaxStaleness, PolicyOverride, TtlPolicy};
use crate::measure::stats::StatsSnapshot;
#[cfg(feature = "redis")]
pub use crate::tiers::l2::ConfirmInvalidations;
use crate::tiers::l2::{L2Settings, L2Tier};
use crate::tiers::topology::RedisConfig;

/// The environment variable that enables L2.
pub const ENV_REDIS_URL: &str = "ACGS_CACHE_REDIS_URL";

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config();
        let mut d = f.debug_struct("Cache");
        d.field("id", &self.inner.id())
            .field("prefix", &c.prefix)
            .field("service", &c.service)
            .field("l1_max_bytes", &c.l1_max_bytes);
        d.field("l2", &c.l2);
        d.finish_non_exhaustive()
    }
}

impl Cache {
    /// A builder with the embedded defaults (L1 only, 64 MiB).
    ///
    /// ```
    /// let cache = acgs_cache_core::Cache::builder().service("auth").build().unwrap();
    /// assert_eq!(cache.service(), "auth");
    /// ```
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// An L1-only cache with caching disabled (see
    /// [`CacheBuilder::disable_caching`]): every `#[cached]` call that uses
    /// it runs its body. Give it to the code under test with
    /// [`Cache::set_runtime_default`] or [`Cache::scope`].
    ///
    /// ```
    /// use acgs_cache_core::Cache;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let off = Cache::disabled(); // e.g. a test that must see every computation
    /// let _default = off.set_runtime_default().unwrap();
    /// assert_eq!(off.stats().await.l1_entries, 0);
    /// # }
    /// ```
    #[must_use]
    #[allow(
        clippy::expect_used,
        reason = "the builder's defaults are valid (tests/testing.rs builds them)"
    )]
    pub fn disabled() -> Cache {
        Cache::builder()
            .disable_caching()
            .build()
            .expect("the embedded defaults are valid")
    }

    /// A cache configured from `ACGS_CACHE_*` environment variables (see
    /// [`CacheBuilder::apply_env`]). With no variables set it is L1-only.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a variable is present but invalid.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// // ACGS_CACHE_REDIS_URL, ACGS_CACHE_SERVICE, ACGS_CACHE_TTL_<POLICY>, ...
    /// let cache = acgs_cache_core::Cache::from_env()?;
    /// cache.install_default().expect("installed once, at startup");
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Cache, Error> {
        Cache::builder().apply_env()?.build()
    }

    /// Whether this cache has a shared tier.
    ///
    /// ```
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().service("auth").build()?;
    /// assert!(!cache.has_l2()); // no Redis configured
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn has_l2(&self) -> bool {
        self.inner.config().has_l2()
    }

    /// The key prefix.
    ///
    /// ```
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().service("auth").build()?;
    /// assert_eq!(cache.prefix(), "acgs");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.inner.config().prefix
    }

    /// This instance's name in the fleet: process id, cache number and a
    /// random part, as [`FleetMember::instance`](crate::FleetMember) and
    /// [`FleetAck`](crate::FleetAck) name it.
    ///
    /// ```
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().service("auth").build()?;
    /// assert!(!cache.instance_id().is_empty());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn instance_id(&self) -> &str {
        self.inner.instance()
    }

    /// The service name that scopes keys.
    ///
    /// ```
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().service("auth").build()?;
    /// assert_eq!(cache.service(), "auth");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn service(&self) -> &str {
        &self.inner.config().service
    }

    /// The policy `compiled` with this cache's run-time override applied.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::{policies, Cache, PolicyOverride};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder()
    ///     .policy_override("policy_decision", PolicyOverride { ttl: Some(Duration::from_secs(600)), ..Default::default() })
    ///     .build()?;
    /// assert_eq!(cache.effective_policy(&policies::POLICY_DECISION).ttl(), Duration::from_secs(600));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn effective_policy(&self, compiled: &TtlPolicy) -> TtlPolicy {
        self.inner.effective_policy(compiled)
    }

    /// A snapshot of every function's counters and of L1's size.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache = acgs_cache_core::Cache::builder().build().unwrap();
    /// let stats = cache.stats().await;
    /// assert!(stats.functions.is_empty()); // nothing called yet
    /// println!("{stats}");
    /// # }
    /// ```
    pub async fn stats(&self) -> StatsSnapshot {
        self.inner.stats()
    }

    /// The last position of the invalidation log this instance has heard:
    /// what a computation starting now records in its entry.
    ///
    /// ```
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().service("auth").build()?;
    /// println!("{:?}", cache.log_position()); // what a computation starting now records
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn log_position(&self) -> crate::log_position::LogPosition {
        crate::coherence::state::unpack(self.inner.coherence().head())
    }

    /// Drops every L1 entry of this instance (L2 is untouched).
    ///
    /// ```
    /// use acgs_cache_core::{Cache, CacheMap};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let rules: CacheMap<u64, String> = CacheMap::builder("rules").build(&cache)?;
    /// rules.insert(&1, "deny".into()).await?;
    /// cache.clear_l1();
    /// assert_eq!(rules.get(&1).await, None); // L1 only: nothing else held it
    /// # Ok(()) }
    /// ```
    pub fn clear_l1(&self) {
        self.inner.l1().clear();
    }

    /// Round-trip time of a `PING` to L2.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] without L2; otherwise the Redis, pool or timeout error.
    ///
    /// ```no_run
    /// # async fn run(cache: acgs_cache_core::Cache) {
    /// match cache.ping_l2().await {
    ///     Ok(rtt) => println!("redis answered in {rtt:?}"),
    ///     Err(e) => println!("redis: {e}"),
    /// }
    /// # }
    /// ```
    pub async fn ping_l2(&self) -> Result<Duration, Error> {
        #[cfg(feature = "redis")]
        if let Some(l2) = self.inner.l2() {
            return l2.ping().await.map(|(rtt, _, _)| rtt);
        }
        Err(Error::Unavailable(Unavailable::NotConfigured))
    }

    /// Connects to L2 and reads the invalidation log up to now, waiting at
    /// most the connect timeout plus the soft timeout. Optional: the first
    /// cached call does the same lazily (its first L2 read then waits for the
    /// log, at most the soft timeout). Call it at startup to take that wait
    /// out of the first requests, or to fail fast on a Redis that cannot be
    /// reached. Without L2 it returns at once.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .redis_url("redis://127.0.0.1:6379")
    ///     .build()?;
    /// cache.connect().await?; // before the service takes traffic
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The Redis, pool or timeout error when L2 does not answer a `PING`;
    /// [`Error::Unavailable`] when the log could not be read in time. Cached
    /// calls work either way (they go on without L2 until it answers).
    pub async fn connect(&self) -> Result<(), Error> {
        #[cfg(feature = "redis")]
        if let Some(l2) = self.inner.l2() {
            l2.establish().await?;
            // A fresh connection's first answers may take longer than the
            // soft timeout (a TLS server busy with the handshakes of the
            // instance's other connections): an answer is awaited up to the
            // connect timeout, as the connection was.
            let deadline = std::time::Instant::now() + l2.connect_timeout();
            loop {
                match l2.ping().await {
                    Ok(_) => break,
                    Err(Error::Redis(e))
                        if e.is_timeout() && std::time::Instant::now() < deadline => {}
                    Err(Error::Timeout(_)) if std::time::Instant::now() < deadline => {}
                    Err(e) => return Err(e),
                }
            }
            let patience = l2.connect_timeout() + l2.soft_timeout();
            let coherence = self.inner.coherence();
            // Caught up, then the first read that renews the lease (one
            // round trip later): calls then serve L1 without waiting for it.
            if !coherence.wait_listening(patience).await
                || !coherence
                    .lease
                    .wait(crate::coherence::lease::LeaseLimit::RENEWED, patience)
                    .await
            {
                return Err(Error::Unavailable(Unavailable::LogNotRead));
            }
        }
        Ok(())
    }
}

/// What `#[cached(cache = PATH)]` accepts: a `static` holding a [`Cache`].
#[diagnostic::on_unimplemented(
    message = "`cache = …` names a `{Self}`, not a cache held by a `static`",
    label = "expected a `static` of type `Cache` or `LazyLock<Cache>`",
    note = "e.g. `static CACHE: std::sync::LazyLock<Cache> = std::sync::LazyLock::new(|| Cache::builder().build().unwrap());`"
)]
pub trait AsStaticCache {
    /// The cache.
    fn as_static_cache(&'static self) -> &'static Cache;
}

impl AsStaticCache for Cache {
    fn as_static_cache(&'static self) -> &'static Cache {
        self
    }
}

impl<F: FnOnce() -> Cache> AsStaticCache for std::sync::LazyLock<Cache, F> {
    fn as_static_cache(&'static self) -> &'static Cache {
        std::sync::LazyLock::force(self)
    }
}

/// Connections per calling runtime that L2 requests spread over, unless
/// [`CacheBuilder::l2_lanes`] says otherwise. Chosen from the lanes curve
/// of `perf_report` (docs/benchmarks.md): on two cores, two lanes gave
/// 1.2–1.4× the L2 hit throughput of one at 64 and 256 tasks; four and
/// eight gave no more.
pub const DEFAULT_L2_LANES: usize = 2;

/// Builds a [`Cache`].
///
/// Defaults: prefix `acgs`, service from `ACGS_CACHE_SERVICE` or the
/// executable's name, L1 64 MiB, no L2, L2 soft timeout 50 ms, connect
/// timeout 500 ms, reconnect backoff 1 s, values up to 8 MiB, compression
/// above 4 KiB.
///
/// ```
/// use std::time::Duration;
/// use acgs_cache_core::Cache;
///
/// # fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder()
///     .service("policy-governance")
///     .l1_max_bytes(16 * 1024 * 1024)
///     .l2_soft_timeout(Duration::from_millis(30)) // used once an L2 is set
///     .build()?;
/// assert!(!cache.has_l2()); // no `redis_url`: L1 only
/// assert_eq!(cache.service(), "policy-governance");
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Clone)]
pub struct CacheBuilder {
    prefix: String,
    service: Option<String>,
    l1_enabled: bool,
    l1_max_bytes: u64,
    redis: Option<RedisSource>,
    l2_soft_timeout: Duration,
    connect_timeout: Duration,
    reconnect_backoff: Duration,
    pool_size: usize,
    l2_lanes: usize,
    compress_above: usize,
    max_value_bytes: usize,
    overrides: HashMap<String, PolicyOverride>,
    retention: Duration,
    invalidation_window: Duration,
    log_capacity: usize,
    breaker_threshold: u32,
    probe_interval: Duration,
    lock_lease: Duration,
    background_l2_writes: bool,
    fleet_interval: Duration,
    acknowledgements: Duration,
    metrics_interval: Option<Duration>,
    #[cfg(feature = "redis")]
    confirm: ConfirmInvalidations,
    unprotected: bool,
    caching: bool,
    max_staleness: MaxStaleness,
}

impl fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("prefix", &self.prefix)
            .field("service", &self.service)
            .field("l1_enabled", &self.l1_enabled)
            .field("l1_max_bytes", &self.l1_max_bytes)
            .field("redis", &self.redis)
            .field("l2_soft_timeout", &self.l2_soft_timeout)
            .field("overrides", &self.overrides)
            .finish_non_exhaustive()
    }
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            prefix: "acgs".to_owned(),
            service: None,
            l1_enabled: true,
            l1_max_bytes: 64 * 1024 * 1024,
            redis: None,
            l2_soft_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(500),
            reconnect_backoff: Duration::from_secs(1),
            pool_size: 4,
            l2_lanes: DEFAULT_L2_LANES,
            compress_above: 4096,
            max_value_bytes: 8 * 1024 * 1024,
            overrides: HashMap::new(),
            retention: Duration::from_secs(25 * 3600),
            invalidation_window: Duration::from_secs(120),
            log_capacity: 100_000,
            breaker_threshold: 5,
            probe_interval: Duration::from_millis(250),
            lock_lease: Duration::from_secs(10),
            background_l2_writes: false,
            fleet_interval: Duration::from_secs(5),
            acknowledgements: Duration::from_millis(5),
            metrics_interval: Some(Duration::from_secs(1)),
            #[cfg(feature = "redis")]
            confirm: ConfirmInvalidations::Auto,
            unprotected: false,
            caching: true,
            max_staleness: MaxStaleness::default(),
        }
    }
}

impl CacheBuilder {
    /// The first segment of every key (default `acgs`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .prefix("governance")
    ///     .build()?;
    /// assert_eq!(cache.prefix(), "governance");
    /// # Ok(()) }
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The service name, the second key segment: instances of one service
    /// share entries, different services do not.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .service("auth")
    ///     .build()?;
    /// assert_eq!(cache.service(), "auth");
    /// # Ok(()) }
    /// ```
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// L1's budget in bytes (entries are weighed by their encoded size).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .l1_max_bytes(256 * 1024 * 1024)
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.l1_max_bytes = bytes;
        self
    }

    /// Turns L1 off (every call goes to L2): for benchmarks and for functions
    /// whose values must never be served from a local copy.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .disable_l1()
    ///     .build()?;
    /// # let _ = cache; // every call goes to L2 (or computes)
    /// # Ok(()) }
    /// ```
    pub fn disable_l1(mut self) -> Self {
        self.l1_enabled = false;
        self
    }

    /// Enables L2 at this Redis URL, of any topology (see [`RedisConfig`]):
    /// `redis://[user:password@]host:port[/db]` (`rediss://` for TLS),
    /// `redis+sentinel://s1:26379,s2:26379/master-name`,
    /// `redis+cluster://node1:6379,node2:6379`. The URL is checked by
    /// [`build`](Self::build).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .redis_url("redis://127.0.0.1:6379")
    ///     .build()?;
    /// assert!(cache.has_l2()); // connects in the background
    /// # Ok(()) }
    /// ```
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis = Some(RedisSource::Url(url.into()));
        self
    }

    /// Enables L2 with a configuration built in code (Sentinel, Cluster,
    /// credentials, a private CA for TLS).
    ///
    /// ```
    /// use acgs_cache_core::{Cache, RedisConfig};
    ///
    /// let cache = Cache::builder()
    ///     .redis(RedisConfig::sentinel("governance", ["10.0.0.1:26379", "10.0.0.2:26379"])
    ///         .credentials("policy-svc", "s3cret"))
    ///     .build()?;
    /// assert!(cache.has_l2());
    /// # Ok::<(), acgs_cache_core::Error>(())
    /// ```
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .redis(acgs_cache_core::RedisConfig::standalone("redis://127.0.0.1:6379"))
    ///     .build()?;
    /// assert!(cache.has_l2());
    /// # Ok(()) }
    /// ```
    pub fn redis(mut self, config: RedisConfig) -> Self {
        self.redis = Some(RedisSource::Config(config));
        self
    }

    /// How long a cached call waits for one L2 operation before it goes on
    /// without it (default 50 ms).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .l2_soft_timeout(Duration::from_millis(20))
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn l2_soft_timeout(mut self, timeout: Duration) -> Self {
        self.l2_soft_timeout = timeout;
        self
    }

    /// Bound on establishing a Redis connection (default 500 ms).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .connect_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Pause between reconnect attempts while Redis is unreachable (default 1 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .reconnect_backoff(Duration::from_millis(500))
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn reconnect_backoff(mut self, backoff: Duration) -> Self {
        self.reconnect_backoff = backoff;
        self
    }

    /// Consecutive L2 failures (timeouts, refused or dropped connections)
    /// after which the circuit opens: calls then skip L2 at no cost until a
    /// background probe finds Redis answering (default 5).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .breaker_threshold(10)
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn breaker_threshold(mut self, failures: u32) -> Self {
        self.breaker_threshold = failures;
        self
    }

    /// Pause between the open circuit's probes (default 250 ms): bounds how
    /// long after Redis returns the cache uses it again.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .probe_interval(Duration::from_millis(100))
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// Lease of the lock `lock = true` functions take on a miss (default
    /// 10 s, renewed while the computation runs). Other instances wait at most
    /// this long for the holder's value before computing themselves.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .lock_lease(Duration::from_secs(30))
    ///     .build()?;
    /// # let _ = cache; // `lock = true` misses hold the fleet lock this long at most
    /// # Ok(()) }
    /// ```
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.lock_lease = lease;
        self
    }

    /// Maximum connections in the Redis pool (default 4). Calls take their
    /// connections from it (see [`l2_lanes`](Self::l2_lanes)); the log
    /// tailer, bulk writes and large values use connections of their own.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .pool_size(16)
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// How many pooled connections the calls of one tokio runtime spread
    /// their L2 requests over (default [`DEFAULT_L2_LANES`], at most
    /// [`pool_size`](Self::pool_size)). Each is multiplexed: one connection
    /// carries many concurrent requests, pipelined by one driver task;
    /// more of them spread the requests of many concurrent callers over
    /// more tasks and sockets. The pool's figures
    /// ([`PoolStats`](crate::measure::stats::PoolStats)) count them.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .l2_lanes(2)
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn l2_lanes(mut self, lanes: usize) -> Self {
        self.l2_lanes = lanes;
        self
    }

    /// How often this instance publishes its stats to Redis for the fleet
    /// view ([`Cache::fleet_stats`](crate::engine::instance::Cache::fleet_stats), the operator
    /// tools): default every 5 s, into a key that expires after three
    /// intervals; `Duration::ZERO` turns it off.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .fleet_interval(Duration::ZERO)
    ///     .build()?;
    /// # let _ = cache; // this instance never publishes its stats
    /// # Ok(()) }
    /// ```
    pub fn fleet_interval(mut self, interval: Duration) -> Self {
        self.fleet_interval = interval;
        self
    }

    /// How often, at most, this instance publishes the invalidation log
    /// position it has heard, for [`Cache::wait_for_fleet`] (default every
    /// 5 ms while invalidations arrive, and once a second besides; one
    /// `HSET` each, into `{prefix}:{invalidation}:heard`). `Duration::ZERO`
    /// turns it off: a wait for the fleet then always lasts the instances'
    /// lease.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .fleet_acknowledgements(Duration::from_millis(100))
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn fleet_acknowledgements(mut self, interval: Duration) -> Self {
        self.acknowledgements = interval;
        self
    }

    /// Whether a miss answers its caller before Redis has acknowledged the
    /// new entry (default `false`). On: the miss costs its L2 read, the
    /// function and the encoding — the write's round trip happens on a task
    /// of its own (a failure is still counted). The price: for about one
    /// round trip, another instance may miss the entry and compute it too.
    /// Coherence is unaffected (a late write of an invalidated value carries
    /// its old log position and is rejected), and `lock = true` misses
    /// always wait for the write, since the lock's waiters read it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .background_l2_writes(true)
    ///     .build()?;
    /// # let _ = cache; // a miss returns before Redis acknowledges its write
    /// # Ok(()) }
    /// ```
    pub fn background_l2_writes(mut self, background: bool) -> Self {
        self.background_l2_writes = background;
        self
    }

    /// How often the cache publishes its counters and state through the
    /// [`metrics`](https://docs.rs/metrics) facade, to whatever recorder the
    /// application installed (default every second; `None` or zero: never).
    ///
    /// A background task copies the counters [`Cache::stats`] reads, so calls
    /// pay nothing for it and a scrape lags them by at most `interval`. It
    /// starts in [`build`](Self::build) when a tokio runtime is current, else
    /// on the first call of a cached function. The names are in the guide
    /// (docs/operations.md, "Observability").
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let every_ten_seconds = acgs_cache_core::Cache::builder()
    ///     .metrics_interval(Duration::from_secs(10))
    ///     .build()?;
    /// let silent = acgs_cache_core::Cache::builder().metrics_interval(None).build()?;
    /// # drop((every_ten_seconds, silent)); Ok(()) }
    /// ```
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .metrics_interval(None)
    ///     .build()?;
    /// # let _ = cache; // no export to the `metrics` facade
    /// # Ok(()) }
    /// ```
    pub fn metrics_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.metrics_interval = interval.into().filter(|i| !i.is_zero());
        self
    }

    /// Payloads above this many bytes are lz4-compressed (default 4096).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .compress_above(16 * 1024)
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.compress_above = bytes;
        self
    }

    /// Values whose envelope exceeds this are not cached (default 8 MiB).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .max_value_bytes(1024 * 1024)
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// How long invalidations are kept in the log and remembered by
    /// instances (default 25 h: the longest built-in TTL, 24 h, plus an hour).
    /// Must cover the longest TTL + stale window of every function sharing
    /// the prefix, and the longest computation.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .invalidation_retention(Duration::from_secs(48 * 3600))
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn invalidation_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long single-entry invalidations (`invalidate_<fn>`, session
    /// revocations) are remembered, and how long their tombstones hold an
    /// entry's L2 key against late writes (default 2 min). Computations that
    /// take longer than this are not stored. Keep it equal across a fleet.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .invalidation_window(Duration::from_secs(120))
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn invalidation_window(mut self, window: Duration) -> Self {
        self.invalidation_window = window;
        self
    }

    /// The most records the Redis invalidation log keeps (default 100,000,
    /// trimmed approximately). An instance that falls further behind loads
    /// the log's state instead of reading records back.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .invalidation_log_capacity(200_000)
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn invalidation_log_capacity(mut self, records: usize) -> Self {
        self.log_capacity = records;
        self
    }

    /// Whether invalidations wait for replicas to acknowledge them (see
    /// [`ConfirmInvalidations`]; default `Auto`: when the server has replicas).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{Cache, ConfirmInvalidations, PolicyOverride};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().confirm_invalidations(ConfirmInvalidations::Off).build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn confirm_invalidations(mut self, confirm: ConfirmInvalidations) -> Self {
        self.confirm = confirm;
        self
    }

    /// Turns caching off: every `#[cached]` call runs its body, nothing is
    /// read or stored (the calls are counted as `bypassed`). For tests of the
    /// code under the cache, as cashews' `cache.disabling()`; sessions,
    /// tokens, rate limits and locks, which store data rather than cache it,
    /// work as before. [`Cache::disabled`] is the short form.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .disable_caching()
    ///     .build()?;
    /// # let _ = cache; // every call runs its body
    /// # Ok(()) }
    /// ```
    pub fn disable_caching(mut self) -> Self {
        self.caching = false;
        self
    }

    /// How long after an invalidation is acknowledged this instance may still
    /// serve what it invalidated, whatever happens to it — paused, cut off
    /// from Redis with its connections left open, across a failover — for
    /// functions and policies that do not set their own (default
    /// [`MaxStaleness::Lease`] of [`DEFAULT_MAX_STALENESS`](crate::DEFAULT_MAX_STALENESS),
    /// 1 s). Each instance renews its lease on the log every quarter of the
    /// shortest lease it uses, with one blocking log read. `MaxStaleness::L1Ttl`
    /// opts out: L1 entries are then served for their L1 TTL while the log is
    /// unheard.
    ///
    /// ```
    /// use std::time::Duration;
    /// use acgs_cache_core::{Cache, MaxStaleness};
    ///
    /// let cache = Cache::builder()
    ///     .max_staleness(MaxStaleness::lease(Duration::from_millis(250))?)
    ///     .build()?;
    /// # drop(cache);
    /// # Ok::<(), acgs_cache_core::Error>(())
    /// ```
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .max_staleness(acgs_cache_core::MaxStaleness::Lease(Duration::from_millis(250)))
    ///     .build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn max_staleness(mut self, max: MaxStaleness) -> Self {
        self.max_staleness = max;
        self
    }

    /// Turns the invalidation check off: every entry is served, whatever was
    /// invalidated. Never for a service — only for the coherence report,
    /// whose `--unchecked` run shows what the check prevents.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{Cache, ConfirmInvalidations, PolicyOverride};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// // Only to show a report what the lease prevents.
    /// let cache = Cache::builder().unprotected_for_coherence_reports().build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    #[doc(hidden)]
    pub fn unprotected_for_coherence_reports(mut self) -> Self {
        self.unprotected = true;
        self
    }

    /// Overrides the durations of the policy named `policy` at run time.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{Cache, ConfirmInvalidations, PolicyOverride};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().policy_override("policy_decision", PolicyOverride { ttl: Some(Duration::from_secs(60)), ..Default::default() }).build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn policy_override(mut self, policy: impl Into<String>, with: PolicyOverride) -> Self {
        let entry = self.overrides.entry(policy.into()).or_default();
        entry.ttl = with.ttl.or(entry.ttl);
        entry.l1_ttl = with.l1_ttl.or(entry.l1_ttl);
        entry.stale_if_error = with.stale_if_error.or(entry.stale_if_error);
        entry.max_staleness = with.max_staleness.or(entry.max_staleness);
        self
    }

    /// Reads the `ACGS_CACHE_*` environment variables:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `ACGS_CACHE_REDIS_URL` | enables L2 |
    /// | `ACGS_CACHE_PREFIX`, `ACGS_CACHE_SERVICE` | key segments |
    /// | `ACGS_CACHE_L1_MAX_BYTES` | L1 budget |
    /// | `ACGS_CACHE_L2_TIMEOUT` | soft timeout, e.g. `50ms` |
    /// | `ACGS_CACHE_TTL_<POLICY>` | e.g. `ACGS_CACHE_TTL_POLICY_DECISION=10m` |
    /// | `ACGS_CACHE_L1_TTL_<POLICY>` | the policy's L1 lifetime |
    /// | `ACGS_CACHE_STALE_<POLICY>` | the policy's stale-if-error window |
    /// | `ACGS_CACHE_MAX_STALENESS` | the cache's [`MaxStaleness`]: `250ms`, `1s` or `l1_ttl` |
    /// | `ACGS_CACHE_MAX_STALENESS_<POLICY>` | the policy's |
    /// | `ACGS_CACHE_FLEET_INTERVAL`, `ACGS_CACHE_FLEET_ACKNOWLEDGEMENTS` | how often the stats and the heard position are published (`0` turns either off) |
    /// | `ACGS_CACHE_METRICS_INTERVAL` | how often `metrics` is fed (`0`: never) |
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the variable when a value does not parse.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .apply_env()?
    ///     .build()?;
    /// # let _ = cache; // ACGS_CACHE_* variables override what the code set
    /// # Ok(()) }
    /// ```
    pub fn apply_env(self) -> Result<Self, Error> {
        self.apply_vars(std::env::vars())
    }

    fn apply_vars(
        mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let duration = |name: &str, value: &str| {
            parse_duration(value).map_err(|e| Error::Config(format!("{name}: {e}")))
        };
        // Background intervals may be turned off, which a TTL may not.
        let interval = |name: &str, value: &str| match value {
            "0" | "0s" | "off" => Ok(Duration::ZERO),
            _ => duration(name, value),
        };
        for (name, value) in vars {
            let Some(setting) = name.strip_prefix("ACGS_CACHE_") else {
                continue;
            };
            let policy_field =
                |field: &str| setting.strip_prefix(field).map(str::to_ascii_lowercase);
            match setting {
                "REDIS_URL" => {
                    self.redis = Some(value).filter(|v| !v.is_empty()).map(RedisSource::Url)
                }
                "PREFIX" => self.prefix = value,
                "SERVICE" => self.service = Some(value),
                "L1_MAX_BYTES" => {
                    self.l1_max_bytes = value.parse().map_err(|e| {
                        Error::Config(format!("{name}: {value:?} is not a byte count ({e})"))
                    })?;
                }
                "L2_TIMEOUT" => self.l2_soft_timeout = duration(&name, &value)?,
                "FLEET_INTERVAL" => self.fleet_interval = interval(&name, &value)?,
                "FLEET_ACKNOWLEDGEMENTS" => self.acknowledgements = interval(&name, &value)?,
                "METRICS_INTERVAL" => self.metrics_interval = Some(interval(&name, &value)?),
                "MAX_STALENESS" => {
                    self.max_staleness = MaxStaleness::parse(&value)
                        .map_err(|e| Error::Config(format!("{name}: {e}")))?;
                }
                _ => {
                    let mut with = PolicyOverride::default();
                    let policy = if let Some(p) = policy_field("MAX_STALENESS_") {
                        with.max_staleness = Some(
                            MaxStaleness::parse(&value)
                                .map_err(|e| Error::Config(format!("{name}: {e}")))?,
                        );
                        p
                    } else if let Some(p) = policy_field("L1_TTL_") {
                        with.l1_ttl = Some(duration(&name, &value)?);
                        p
                    } else if let Some(p) = policy_field("TTL_") {
                        with.ttl = Some(duration(&name, &value)?);
                        p
                    } else if let Some(p) = policy_field("STALE_") {
                        with.stale_if_error = Some(duration(&name, &value)?);
                        p
                    } else {
                        tracing::warn!(target: "acgs_cache", variable = %name, "unknown ACGS_CACHE_ variable ignored");
                        continue;
                    };
                    self = self.policy_override(policy, with);
                }
            }
        }
        Ok(self)
    }

    /// Builds the cache and connects it ([`Cache::connect`]): for services
    /// that should not start without L2, or that want a bad password or an
    /// unreachable Redis reported at startup rather than as counted errors.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder()
    ///     .redis_url("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/governance")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`build`](Self::build), then those of [`Cache::connect`]:
    /// [`Error::Auth`] when Redis refuses the credentials.
    pub async fn connect(self) -> Result<Cache, Error> {
        let cache = self.build()?;
        cache.connect().await?;
        Ok(cache)
    }

    /// Builds the cache. No connection is made here: L2 connects in the
    /// background on first use and calls answer from the function until it is up.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an empty prefix or service, a zero budget, or an
    /// unusable Redis URL; without the `redis` feature, any Redis URL.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use acgs_cache_core::{Cache, ConfirmInvalidations, PolicyOverride};
    /// # fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().service("auth").build()?;
    /// # let _ = cache;
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<Cache, Error> {
        let service = match self.service {
            Some(s) => s,
            None => default_service_name(),
        };
        for (what, value) in [("prefix", &self.prefix), ("service", &service)] {
            if value.is_empty() || value.contains(char::is_whitespace) {
                return Err(Error::Config(format!(
                    "{what} {value:?} must be non-empty and without spaces"
                )));
            }
        }
        if self.l1_max_bytes == 0 {
            return Err(Error::Config(
                "l1_max_bytes must be positive; use disable_l1() to turn L1 off".into(),
            ));
        }
        let redis = self.redis.map(RedisSource::into_config).transpose()?;
        #[cfg(feature = "redis")]
        let l2_settings = redis.map(|redis| L2Settings {
            redis,
            soft_timeout: self.l2_soft_timeout,
            connect_timeout: self.connect_timeout,
            reconnect_backoff: self.reconnect_backoff,
            pool_size: self.pool_size.max(1),
            lanes: self.l2_lanes.clamp(1, self.pool_size.max(1)),
            breaker_threshold: self.breaker_threshold,
            probe_interval: self.probe_interval,
            confirm: self.confirm,
        });
        #[cfg(not(feature = "redis"))]
        let l2_settings: Option<L2Settings> = match redis {
            Some(redis) => {
                return Err(Error::Config(format!(
                    "{redis} is set but acgs-cache was built without the `redis` feature"
                )))
            }
            None => None,
        };
        let l2 = l2_settings
            .clone()
            .map(L2Tier::new)
            .transpose()?
            .map(Arc::new);
        let config = CacheConfig {
            prefix: self.prefix,
            service,
            l1_enabled: self.l1_enabled,
            l1_max_bytes: self.l1_max_bytes,
            limits: EncodeLimits {
                compress_above: self.compress_above,
                max_value_bytes: self.max_value_bytes,
            },
            overrides: self.overrides,
            retention: self.retention,
            invalidation_window: self.invalidation_window,
            log_capacity: self.log_capacity,
            lock_lease: self.lock_lease,
            background_l2_writes: self.background_l2_writes,
            metrics_interval: self.metrics_interval,
            caching: self.caching,
            max_staleness: self.max_staleness,
            l2: l2_settings,
        };
        let cache = Cache {
            inner: Arc::new(Inner::new(config, l2, self.unprotected)),
        };
        // Every background task of the instance starts here, on the
        // process's background runtime (`background.rs`), and ends once the
        // last handle is dropped: the log tailer and the fleet publisher
        // (with L2), the metrics publisher (when configured).
        if cache.inner.l2().is_some() {
            crate::engine::tailer::start_tailer(&cache.inner);
            #[cfg(feature = "redis")]
            {
                crate::observe::fleet::start_publisher(&cache.inner, self.fleet_interval);
                crate::observe::heard::start_publisher(&cache.inner, self.acknowledgements);
            }
        }
        crate::observe::metrics::start_publisher(&cache.inner);
        #[cfg(feature = "redis")]
        if let Some(l2) = &cache.inner.config().l2 {
            let l1 = if cache.inner.config().l1_enabled {
                "L1 (in process) + "
            } else {
                ""
            };
            // Ready for calls; L2 only once Redis answers (the tailer says
            // so, or why not, at WARN).
            tracing::info!(
                target: "acgs_cache",
                service = %cache.service(),
                redis = %l2.redis,
                "cache ready: {l1}L2 (redis, {}) connecting",
                l2.redis.topology()
            );
        }
        if !cache.has_l2() {
            tracing::info!(
                target: "acgs_cache",
                service = %cache.service(),
                "cache ready: L1 only (in process); set {ENV_REDIS_URL} to share entries through redis"
            );
        }
        Ok(cache)
    }
}

fn default_service_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| s.replace(char::is_whitespace, "_"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "app".to_owned())
}

/// L2 as given to the builder: a URL is parsed at `build`, so that a bad
/// one is an error there and not in a chain of setters.
#[derive(Clone)]
enum RedisSource {
    Url(String),
    Config(RedisConfig),
}

impl RedisSource {
    fn into_config(self) -> Result<RedisConfig, Error> {
        match self {
            RedisSource::Url(url) => RedisConfig::parse(&url),
            RedisSource::Config(config) => Ok(config),
        }
    }
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisSource::Url(url) => std::fmt::Display::fmt(&RedactedUrl(url), f),
            RedisSource::Config(config) => std::fmt::Display::fmt(config, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_policies_by_name() {
        let b = Cache::builder()
            .apply_vars(vars(&[
                ("ACGS_CACHE_TTL_POLICY_DECISION", "10m"),
                ("ACGS_CACHE_L1_TTL_POLICY_DECISION", "5s"),
                ("ACGS_CACHE_SERVICE", "auth"),
                ("PATH", "/bin"),
            ]))
            .unwrap();
        let cache = b.build().unwrap();
        let p = cache.effective_policy(&crate::format::policy::builtin::POLICY_DECISION);
        assert_eq!(p.ttl(), Duration::from_secs(600));
        assert_eq!(p.l1_ttl(), Duration::from_secs(5));
        assert_eq!(cache.service(), "auth");
        let untouched = cache.effective_policy(&crate::format::policy::builtin::USER_SESSIONS);
        assert_eq!(untouched, crate::format::policy::builtin::USER_SESSIONS);
    }

    #[test]
    fn environment_sets_the_background_intervals() {
        let b = Cache::builder()
            .apply_vars(vars(&[
                ("ACGS_CACHE_FLEET_INTERVAL", "250ms"),
                ("ACGS_CACHE_METRICS_INTERVAL", "0s"),
            ]))
            .unwrap();
        assert_eq!(b.fleet_interval, Duration::from_millis(250));
        let cache = b.build().unwrap();
        assert_eq!(cache.inner.config().metrics_interval, Some(Duration::ZERO));
    }

    #[test]
    fn environment_sets_the_staleness_bound() {
        let b = Cache::builder()
            .apply_vars(vars(&[
                ("ACGS_CACHE_MAX_STALENESS", "250ms"),
                ("ACGS_CACHE_MAX_STALENESS_POLICY_DECISION", "l1_ttl"),
                ("ACGS_CACHE_FLEET_ACKNOWLEDGEMENTS", "0"),
            ]))
            .unwrap();
        assert_eq!(
            b.max_staleness,
            MaxStaleness::Lease(Duration::from_millis(250))
        );
        assert_eq!(b.acknowledgements, Duration::ZERO);
        let cache = b.build().unwrap();
        let p = cache.effective_policy(&crate::format::policy::builtin::POLICY_DECISION);
        assert_eq!(p.max_staleness(), Some(MaxStaleness::L1Ttl));
        let err = Cache::builder()
            .apply_vars(vars(&[("ACGS_CACHE_MAX_STALENESS", "1ms")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("ACGS_CACHE_MAX_STALENESS"),
            "{err}"
        );
    }

    #[test]
    fn bad_environment_names_the_variable() {
        let err = Cache::builder()
            .apply_vars(vars(&[("ACGS_CACHE_TTL_USER_SESSIONS", "forever")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("ACGS_CACHE_TTL_USER_SESSIONS"),
            "{err}"
        );
        let err = Cache::builder()
            .apply_vars(vars(&[("ACGS_CACHE_L1_MAX_BYTES", "lots")]))
            .unwrap_err();
        assert!(err.to_string().contains("ACGS_CACHE_L1_MAX_BYTES"), "{err}");
    }

    #[test]
    fn invalid_builds_are_errors() {
        assert!(Cache::builder().prefix("").build().is_err());
        assert!(Cache::builder().service("a b").build().is_err());
        assert!(Cache::builder().l1_max_bytes(0).build().is_err());
    }

    #[cfg(feature = "redis")]
    #[test]
    fn credentials_never_show_in_debug() {
        let builder = Cache::builder().redis_url("redis://app:hunter2@127.0.0.1:1");
        assert!(!format!("{builder:?}").contains("hunter2"));
        let cache = builder.build().unwrap();
        assert!(!format!("{cache:?}").contains("hunter2"));
        let err = Cache::builder()
            .redis_url("redis://app:hunter2@[::bad")
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
