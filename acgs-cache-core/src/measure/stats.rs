//! Per-function counters and the `stats()` snapshot.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::format::envelope::Reject;
use crate::measure::counter::Counter;
use crate::measure::latency::{Latency, LatencyHistogram};

/// What happened to one function's calls, counted as they happen.
#[derive(Debug, Default)]
pub(crate) struct FunctionCounters {
    pub(crate) l1_hits: Counter,
    pub(crate) l2_hits: Counter,
    pub(crate) misses: Counter,
    /// Calls that skipped the cache because their key could not be built.
    pub(crate) bypassed: Counter,
    /// Tier failures (Redis errors, timeouts, encode failures); the call
    /// still answered. Count them with [`FunctionCounters::error`].
    pub(crate) errors: Counter,
    errors_by: [Counter; ErrorReason::ALL.len()],
    /// Results not stored: `Err`, or `None` without negative caching.
    pub(crate) not_stored: Counter,
    /// Callers that waited for another caller's computation of the same key.
    pub(crate) coalesced: Counter,
    /// Stale values served because the function failed (stale-if-error).
    pub(crate) stale_served: Counter,
    /// Misses that waited for another instance holding the key's lock.
    pub(crate) lock_waits: Counter,
    /// Background refreshes started by refresh-ahead.
    pub(crate) refreshes: Counter,
    /// Calls that skipped L1 because the instance's lease on the
    /// invalidation log had run out.
    pub(crate) lease_skips: Counter,
    rejected: [Counter; Reject::ALL.len()],
    /// How long calls took (see [`crate::measure::latency`]).
    pub(crate) latency: Latency,
}

impl FunctionCounters {
    /// Counts a tier failure, in total and by reason.
    pub(crate) fn error(&self, reason: ErrorReason) {
        self.errors.inc();
        self.errors_by[reason as usize].inc();
    }

    pub(crate) fn reject(&self, reason: Reject) {
        self.rejected[reason as usize].inc();
    }

    pub(crate) fn snapshot(
        &self,
        function: Cow<'static, str>,
        policy: &'static str,
        max_staleness: Option<std::time::Duration>,
    ) -> FunctionStats {
        let l1_hits = self.l1_hits.get();
        let l2_hits = self.l2_hits.get();
        let misses = self.misses.get();
        let bypassed = self.bypassed.get();
        let coalesced = self.coalesced.get();
        let stale_served = self.stale_served.get();
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let [p50, p95, p99] = self
            .latency
            .percentiles()
            .map_or([None; 3], |ps| ps.map(|p| Some(nanos(p))));
        FunctionStats {
            function,
            policy: Cow::Borrowed(policy),
            calls: l1_hits + l2_hits + misses + bypassed + coalesced,
            l1_hits,
            l2_hits,
            misses,
            bypassed,
            errors: self.errors.get(),
            not_stored: self.not_stored.get(),
            coalesced,
            stale_served,
            lock_waits: self.lock_waits.get(),
            refreshes: self.refreshes.get(),
            lease_skips: self.lease_skips.get(),
            max_staleness_ms: max_staleness
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            rejected: Reject::ALL
                .iter()
                .map(|r| (Cow::Borrowed(r.as_str()), self.rejected[*r as usize].get()))
                .filter(|(_, n)| *n > 0)
                .collect(),
            errors_by_reason: ErrorReason::ALL
                .iter()
                .map(|r| (Cow::Borrowed(r.as_str()), self.errors_by[*r as usize].get()))
                .filter(|(_, n)| *n > 0)
                .collect(),
            latency_p50_ns: p50,
            latency_p95_ns: p95,
            latency_p99_ns: p99,
            latency_histogram: self.latency.histogram(),
        }
    }
}

/// Why a tier failure was counted in [`FunctionStats::errors`].
///
/// ```
/// use acgs_cache_core::ErrorReason;
/// // The label of `errors_by_reason` and of the `reason` metric label.
/// assert_eq!(ErrorReason::Timeout.as_str(), "timeout");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorReason {
    /// An L2 operation outlasted the soft timeout.
    Timeout,
    /// L2 was not tried or not reachable (circuit open, reconnecting).
    Unavailable,
    /// Redis answered with an error, or the connection failed.
    Redis,
    /// L2 was skipped because the invalidation log could not be heard.
    LogUnheard,
    /// A value did not encode (or was over the size limit): not stored.
    Encode,
}

impl ErrorReason {
    /// Every reason, in a fixed order.
    pub const ALL: [ErrorReason; 5] = [
        ErrorReason::Timeout,
        ErrorReason::Unavailable,
        ErrorReason::Redis,
        ErrorReason::LogUnheard,
        ErrorReason::Encode,
    ];

    /// The name used in stats and metrics.
    ///
    /// ```
    /// assert_eq!(acgs_cache_core::ErrorReason::Timeout.as_str(), "timeout");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Timeout => "timeout",
            ErrorReason::Unavailable => "unavailable",
            ErrorReason::Redis => "redis",
            ErrorReason::LogUnheard => "log_unheard",
            ErrorReason::Encode => "encode",
        }
    }

    /// The reason for a tier error.
    pub(crate) fn of(error: &crate::error::Error) -> ErrorReason {
        match error {
            crate::error::Error::Timeout(_) => ErrorReason::Timeout,
            crate::error::Error::Unavailable(_) => ErrorReason::Unavailable,
            crate::error::Error::Codec(_) => ErrorReason::Encode,
            _ => ErrorReason::Redis,
        }
    }
}

/// One function's figures in a [`StatsSnapshot`].
///
/// ```
/// use acgs_cache_core::{Cache, CacheMap};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let rules: CacheMap<u64, String> = CacheMap::builder("rules").build(&cache)?;
/// rules.get_or_compute(&1, async { "deny".to_owned() }).await;
/// rules.get_or_compute(&1, async { "deny".to_owned() }).await;
/// let stats = cache.stats().await;
/// let row = stats.function("map-rules").expect("a row per function");
/// assert_eq!((row.calls, row.misses, row.l1_hits, row.errors), (2, 1, 1, 0));
/// println!("p99 {:?}", row.latency_histogram.quantile(0.99));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The cached function's name.
    pub function: Cow<'static, str>,
    /// Its TTL policy's name.
    pub policy: Cow<'static, str>,
    /// Calls answered: hits + misses + bypassed + coalesced.
    pub calls: u64,
    /// Answered from L1.
    pub l1_hits: u64,
    /// Answered from L2.
    pub l2_hits: u64,
    /// Computed by running the function.
    pub misses: u64,
    /// Ran the function without the cache (key arguments failed to serialize).
    pub bypassed: u64,
    /// Tier failures absorbed (the call still answered).
    pub errors: u64,
    /// Results that were not stored (`Err`, or `None` without negative caching).
    pub not_stored: u64,
    /// Calls answered by another caller's computation of the same key.
    pub coalesced: u64,
    /// Calls answered with a stale value because the function failed.
    pub stale_served: u64,
    /// Misses that waited for another instance's computation (`lock`).
    pub lock_waits: u64,
    /// Background refreshes (refresh-ahead).
    pub refreshes: u64,
    /// Calls that skipped L1 because the instance had not heard the whole
    /// invalidation log within the function's lease (see `MaxStaleness`):
    /// they went on to L2 or the function.
    #[serde(default)]
    pub lease_skips: u64,
    /// The function's lease in ms (`max_staleness`); `None` for the
    /// `l1_ttl` opt-out. In a fleet sum: the longest.
    #[serde(default)]
    pub max_staleness_ms: Option<u64>,
    /// Stored bytes that were not used, by reason (see [`Reject`]).
    pub rejected: BTreeMap<Cow<'static, str>, u64>,
    /// `errors` by reason (see [`ErrorReason`]).
    #[serde(default)]
    pub errors_by_reason: BTreeMap<Cow<'static, str>, u64>,
    /// Median call latency (ns) of the last 30 to 60 seconds, from a
    /// histogram with 19% wide buckets; L1 hits are sampled (one in 64). In
    /// a fleet sum: the worst instance (use `latency_histogram` to add up).
    #[serde(default)]
    pub latency_p50_ns: Option<u64>,
    /// 95th percentile call latency (ns).
    #[serde(default)]
    pub latency_p95_ns: Option<u64>,
    /// 99th percentile call latency (ns).
    #[serde(default)]
    pub latency_p99_ns: Option<u64>,
    /// Every timed call since the instance started, in cumulative buckets
    /// (exported as the Prometheus histogram
    /// `acgs_cache_call_duration_seconds`); a fleet sum adds them up.
    #[serde(default)]
    pub latency_histogram: LatencyHistogram,
}

impl FunctionStats {
    /// Fraction of calls answered by either tier (0 when there were none).
    ///
    /// ```
    /// use acgs_cache_core::{Cache, CacheMap};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().build()?;
    /// let rules: CacheMap<u64, String> = CacheMap::builder("rules").build(&cache)?;
    /// for _ in 0..4 {
    ///     rules.get_or_compute(&1, async { "deny".to_owned() }).await;
    /// }
    /// let row = cache.stats().await.function("map-rules").cloned().expect("called");
    /// assert_eq!(row.hit_ratio(), 0.75);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            (self.l1_hits + self.l2_hits) as f64 / self.calls as f64
        }
    }
}

/// A point-in-time copy of a cache's counters.
///
/// ```
/// use acgs_cache_core::{Cache, CacheMap};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let rules: CacheMap<u64, String> = CacheMap::builder("rules").build(&cache)?;
/// for _ in 0..3 {
///     rules.get_or_compute(&1, async { "deny".to_owned() }).await;
/// }
/// let stats = cache.stats().await;
/// let row = stats.function("map-rules").expect("called");
/// assert_eq!((row.misses, row.l1_hits), (1, 2));
/// println!("{stats}"); // one line per function
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Per function, in the order they were first called.
    pub functions: Vec<FunctionStats>,
    /// Entries in L1.
    pub l1_entries: u64,
    /// Weighted bytes in L1.
    pub l1_bytes: u64,
    /// The invalidation log as this instance sees it.
    pub invalidations: InvalidationStats,
    /// Whether L2's circuit is open (calls skip Redis until a probe succeeds).
    pub l2_circuit_open: bool,
    /// Times the circuit opened.
    pub l2_circuit_trips: u64,
    /// The L2 connection pool, when there is L2.
    #[serde(default)]
    pub l2_pool: Option<PoolStats>,
    /// Latency of single L2 operations (`GET`, `SET`, scripts), all of them
    /// timed: p50, p95 and p99 in ns, once one ran.
    #[serde(default)]
    pub l2_latency_ns: Option<[u64; 3]>,
}

/// The L2 connection pool (deadpool's own figures). The shared lane holds
/// one connection; the log tailer and bulk writers hold one each.
///
/// ```no_run
/// # async fn run(cache: acgs_cache_core::Cache) {
/// // With L2: the deadpool pool behind the lanes.
/// if let Some(pool) = cache.stats().await.l2_pool {
///     println!("{} of {} connections in use", pool.size - pool.available, pool.max_size);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PoolStats {
    /// The most connections the pool opens.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Open connections idle in the pool.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

/// Invalidation figures of one instance.
///
/// ```
/// use acgs_cache_core::Cache;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// cache.invalidate("tenant.acme").await?;
/// let sent = cache.stats().await.invalidations.sent;
/// assert_eq!(sent, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InvalidationStats {
    /// Invalidations this instance sent.
    pub sent: u64,
    /// Invalidations it heard from the log (its own included).
    pub received: u64,
    /// Invalidations it remembers (pruned past the retention).
    pub remembered: u64,
    /// Whether it currently hears the log.
    pub listening: bool,
    /// Median delay from send to hearing (µs) over the last 30 to 60
    /// seconds, from a histogram with 19% wide buckets.
    pub propagation_p50_us: Option<u64>,
    /// 99th percentile of that delay (µs).
    pub propagation_p99_us: Option<u64>,
    /// Invalidations that could not reach Redis and wait to be sent (they
    /// applied to this instance at once).
    #[serde(default)]
    pub queued: u64,
    /// Kept invalidations sent after Redis answered again.
    #[serde(default)]
    pub replayed: u64,
    /// Kept invalidations folded into one that invalidates everything
    /// before it, because the queue was full.
    #[serde(default)]
    pub dropped: u64,
    /// Catch-ups that loaded the log's state rather than reading records
    /// (a start, a new generation of the log, a long absence).
    #[serde(default)]
    pub state_loads: u64,
    /// Single-entry invalidations that found the instance's memory for them
    /// full and invalidated their whole function instead.
    #[serde(default)]
    pub entry_overflows: u64,
    /// The last log position this instance has heard (what a computation
    /// starting now records).
    #[serde(default)]
    pub heard_position: crate::log_position::LogPosition,
    /// How long ago (µs) the instance last knew it had heard the whole log:
    /// the age of its lease (see `MaxStaleness`). `Some(0)` for a local log
    /// (L1 only); `None` before the first read of a Redis log.
    #[serde(default)]
    pub lease_age_us: Option<u64>,
    /// The cache's default lease in ms; `None` for the `l1_ttl` opt-out.
    #[serde(default)]
    pub max_staleness_ms: Option<u64>,
    /// Log reads that renewed the lease.
    #[serde(default)]
    pub lease_renewals: u64,
    /// Every send-to-hear delay measured since the instance started, in
    /// cumulative buckets, four per power of two: instances' histograms add
    /// up ([`LatencyHistogram::add`]) and give the fleet's percentiles
    /// ([`LatencyHistogram::quantile`]).
    #[serde(default)]
    pub propagation_histogram: LatencyHistogram,
}

impl StatsSnapshot {
    /// The figures of the function named `name`, if it has been called.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// assert!(cache.stats().await.function("evaluate_policy").is_none()); // not called yet
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn function(&self, name: &str) -> Option<&FunctionStats> {
        self.functions.iter().find(|f| f.function == name)
    }

    /// Sums over all functions (`function` and `policy` are `"*"`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = acgs_cache_core::Cache::builder().build()?;
    /// let all = cache.stats().await.totals(); // every function's counters summed
    /// assert_eq!(all.calls, 0);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn totals(&self) -> FunctionStats {
        let mut total = FunctionStats::empty(Cow::Borrowed("*"), Cow::Borrowed("*"));
        for f in &self.functions {
            total.add(f);
        }
        total
    }
}

impl FunctionStats {
    /// All counts zero.
    pub(crate) fn empty(function: Cow<'static, str>, policy: Cow<'static, str>) -> Self {
        FunctionStats {
            function,
            policy,
            calls: 0,
            l1_hits: 0,
            l2_hits: 0,
            misses: 0,
            bypassed: 0,
            errors: 0,
            not_stored: 0,
            coalesced: 0,
            stale_served: 0,
            lock_waits: 0,
            refreshes: 0,
            lease_skips: 0,
            max_staleness_ms: Some(0),
            rejected: BTreeMap::new(),
            errors_by_reason: BTreeMap::new(),
            latency_p50_ns: None,
            latency_p95_ns: None,
            latency_p99_ns: None,
            latency_histogram: LatencyHistogram::default(),
        }
    }

    /// Adds `other`'s counts to these.
    pub(crate) fn add(&mut self, other: &FunctionStats) {
        self.calls += other.calls;
        self.l1_hits += other.l1_hits;
        self.l2_hits += other.l2_hits;
        self.misses += other.misses;
        self.bypassed += other.bypassed;
        self.errors += other.errors;
        self.not_stored += other.not_stored;
        self.coalesced += other.coalesced;
        self.stale_served += other.stale_served;
        self.lock_waits += other.lock_waits;
        self.refreshes += other.refreshes;
        self.lease_skips += other.lease_skips;
        // `None` (no bound) is the longest.
        self.max_staleness_ms = self
            .max_staleness_ms
            .zip(other.max_staleness_ms)
            .map(|(a, b)| a.max(b));
        for (reason, n) in &other.rejected {
            *self.rejected.entry(reason.clone()).or_default() += n;
        }
        for (reason, n) in &other.errors_by_reason {
            *self.errors_by_reason.entry(reason.clone()).or_default() += n;
        }
        // Percentiles do not add up; the worst of the parts is what a sum can say.
        self.latency_p50_ns = self.latency_p50_ns.max(other.latency_p50_ns);
        self.latency_p95_ns = self.latency_p95_ns.max(other.latency_p95_ns);
        self.latency_p99_ns = self.latency_p99_ns.max(other.latency_p99_ns);
        self.latency_histogram.add(&other.latency_histogram);
    }
}

impl std::fmt::Display for StatsSnapshot {
    /// The one-line summary the examples print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.totals();
        write!(
            f,
            "stats: calls={} l1_hits={} l2_hits={} misses={} errors={}",
            t.calls, t.l1_hits, t.l2_hits, t.misses, t.errors
        )
    }
}
