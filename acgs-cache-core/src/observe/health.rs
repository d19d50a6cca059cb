//! `Cache::health()`: whether each part of the cache works, for readiness
//! probes and operators.

use std::fmt;

use serde::Serialize;

use crate::engine::instance::Cache;

/// The verdict of a [`HealthReport`].
///
/// ```
/// use acgs_cache_core::{Cache, HealthStatus};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let health = cache.health().await;
/// assert_eq!(health.status, HealthStatus::L1Only); // no Redis configured
/// # let _ = HealthStatus::Ok;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthStatus {
    /// L2 answers, its circuit is closed and the instance hears the
    /// invalidation log.
    Ok,
    /// L2 is configured but unreachable, its circuit is open, the instance
    /// does not hear the log, or its lease on the log ran out: calls still
    /// answer (from the functions, and from L1 within the lease), but
    /// entries are not shared and invalidations from other instances may
    /// arrive late.
    Degraded,
    /// No L2 is configured: the cache is in process only, by design.
    L1Only,
}

impl HealthStatus {
    /// `ok`, `degraded` or `l1_only` (as serialized).
    ///
    /// ```
    /// assert_eq!(acgs_cache_core::HealthStatus::Ok.as_str(), "ok");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::L1Only => "l1_only",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The in-process tier.
///
/// ```
/// use acgs_cache_core::{Cache, HealthStatus};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let health = cache.health().await;
/// assert!(health.l1.enabled && health.l1.bytes <= health.l1.max_bytes);
/// # let _ = HealthStatus::Ok;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct L1Health {
    /// Whether L1 is used (see `CacheBuilder::disable_l1`).
    pub enabled: bool,
    /// Entries held.
    pub entries: u64,
    /// Weighted bytes held (encoded sizes).
    pub bytes: u64,
    /// The byte budget.
    pub max_bytes: u64,
}

/// The shared tier, when one is configured.
///
/// ```
/// use acgs_cache_core::{Cache, HealthStatus};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let health = cache.health().await;
/// assert!(health.l2.is_none()); // with Redis: its endpoint, reachability, ping, circuit and last error
/// # let _ = HealthStatus::Ok;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct L2Health {
    /// The Redis URL with any user and password replaced by `***`.
    pub endpoint: String,
    /// `standalone`, `sentinel` or `cluster`.
    pub topology: &'static str,
    /// Nodes that answered the `PING` (each master of a cluster; else 1).
    pub nodes_answering: u32,
    /// Nodes asked (0 when none could be listed).
    pub nodes: u32,
    /// Whether a `PING` was answered just now.
    pub reachable: bool,
    /// That `PING`'s round trip (µs), when it was answered.
    pub ping_rtt_us: Option<u64>,
    /// Whether the circuit is open (calls skip Redis until a probe succeeds).
    pub circuit_open: bool,
    /// Times the circuit opened since the cache was built.
    pub circuit_trips: u64,
    /// Why the `PING` failed, when it did (never contains credentials).
    pub error: Option<String>,
    /// The last failure of any L2 operation (calls, probes, this `PING`).
    pub last_error: Option<String>,
    /// The connection pool.
    pub pool: crate::measure::stats::PoolStats,
    /// The server's `maxmemory-policy` (`INFO memory`), when it was read.
    pub maxmemory_policy: Option<String>,
    /// The server's `maxmemory` in bytes (0: no limit), when it was read.
    pub maxmemory_bytes: Option<u64>,
}

/// The invalidation log as this instance hears it.
///
/// ```
/// use acgs_cache_core::{Cache, HealthStatus};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().build()?;
/// let health = cache.health().await;
/// assert!(!health.invalidation.lease_stale);
/// # let _ = HealthStatus::Ok;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct InvalidationHealth {
    /// Whether the instance currently hears the log (always, in L1-only mode).
    pub listening: bool,
    /// Median delay from send to hearing, over recent events (µs).
    pub lag_p50_us: Option<u64>,
    /// 99th percentile of that delay (µs).
    pub lag_p99_us: Option<u64>,
    /// How long ago (ms) the instance last knew it had heard the whole log:
    /// its lease's age (`None` before the first read, and without L2).
    pub lease_age_ms: Option<u64>,
    /// The shortest lease its functions use (ms); `None` when every one
    /// opted out (`l1_ttl`).
    pub max_staleness_ms: Option<u64>,
    /// Whether the lease has run out for that shortest lease: such functions
    /// serve nothing from L1 (or L2) until the tailer hears the log again.
    pub lease_stale: bool,
}

/// What [`Cache::health`] found. `Serialize` for a health endpoint; its
/// `Display` is one line:
/// `health: status=ok service=… l1_entries=… l1_bytes=… l2=reachable ping_us=… circuit=closed trips=0 listening=true`.
///
/// ```
/// use acgs_cache_core::{Cache, HealthStatus};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), acgs_cache_core::Error> {
/// let cache = Cache::builder().service("auth").build()?;
/// let health = cache.health().await;
/// assert_eq!(health.status, HealthStatus::L1Only); // no Redis configured
/// println!("{health}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// The verdict.
    pub status: HealthStatus,
    /// The cache's service name.
    pub service: String,
    /// The in-process tier.
    pub l1: L1Health,
    /// The shared tier (`None`: not configured).
    pub l2: Option<L2Health>,
    /// The invalidation log.
    pub invalidation: InvalidationHealth,
    /// Why the status is not `ok`, in words (empty when it is).
    pub reasons: Vec<String>,
}

impl fmt::Display for HealthReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "health: status={} service={} l1_entries={} l1_bytes={}",
            self.status, self.service, self.l1.entries, self.l1.bytes
        )?;
        match &self.l2 {
            None => f.write_str(" l2=none")?,
            Some(l2) => {
                if l2.reachable {
                    f.write_str(" l2=reachable")?;
                } else {
                    f.write_str(" l2=unreachable")?;
                }
                if let Some(rtt) = l2.ping_rtt_us {
                    write!(f, " ping_us={rtt}")?;
                }
                if l2.nodes > 1 {
                    write!(f, " nodes={}/{}", l2.nodes_answering, l2.nodes)?;
                }
                let circuit = if l2.circuit_open { "open" } else { "closed" };
                write!(
                    f,
                    " topology={} circuit={circuit} trips={}",
                    l2.topology, l2.circuit_trips
                )?;
            }
        }
        write!(f, " listening={}", self.invalidation.listening)?;
        if let Some(age) = self.invalidation.lease_age_ms {
            write!(f, " lease_age_ms={age}")?;
        }
        if let Some(p99) = self.invalidation.lag_p99_us {
            write!(f, " lag_p99_us={p99}")?;
        }
        if let Some(l2) = &self.l2 {
            if let Some(error) = &l2.error {
                write!(f, " error={error:?}")?;
            }
            // The failure behind it (a refused connection, a failed lookup,
            // bad credentials), when the error above is only its consequence.
            if let Some(cause) = l2
                .last_error
                .as_ref()
                .filter(|c| l2.error.as_ref() != Some(*c))
            {
                if !l2.reachable {
                    write!(f, " cause={cause:?}")?;
                }
            }
        }
        if !self.reasons.is_empty() {
            write!(f, " reasons={:?}", self.reasons.join("; "))?;
        }
        Ok(())
    }
}

/// Why an L2 cache is not `ok`.
fn degraded_reasons(l2: &L2Health, invalidation: &InvalidationHealth) -> Vec<String> {
    let mut reasons = Vec::new();
    if !l2.reachable {
        reasons.push(match &l2.last_error {
            Some(cause) => format!("redis does not answer ({cause})"),
            None => "redis does not answer".to_owned(),
        });
    }
    if l2.circuit_open {
        reasons.push("the L2 circuit is open".to_owned());
    }
    if l2.nodes_answering < l2.nodes {
        reasons.push(format!(
            "{} of {} cluster masters answer",
            l2.nodes_answering, l2.nodes
        ));
    }
    if !invalidation.listening {
        reasons.push("the invalidation log is not heard".to_owned());
    }
    if invalidation.lease_stale {
        let age = invalidation
            .lease_age_ms
            .map_or_else(|| "never".to_owned(), |ms| format!("{ms} ms ago"));
        reasons.push(format!(
            "the lease on the invalidation log ran out (last heard in full: {age}; max staleness {} ms): L1 entries are not served",
            invalidation.max_staleness_ms.unwrap_or_default()
        ));
    }
    if let (Some(policy), Some(max)) = (&l2.maxmemory_policy, l2.maxmemory_bytes) {
        if max > 0 && !policy.starts_with("volatile-") {
            let effect = if policy == "noeviction" {
                "refuses the invalidation log's writes when memory is full"
            } else {
                "may evict the invalidation log itself"
            };
            reasons.push(format!(
                "maxmemory-policy {policy} {effect}; use a volatile-* policy (entries have TTLs, the log has none)"
            ));
        }
    }
    reasons
}

impl Cache {
    /// Checks every part of the cache: L1's size, L2 with one `PING` (its
    /// round trip, or why it failed), the circuit breaker, and whether the
    /// instance hears the invalidation log (it starts listening here if no
    /// call has yet). Never fails: a broken part is reported, and the
    /// status says whether the cache is [`Ok`](HealthStatus::Ok),
    /// [`Degraded`](HealthStatus::Degraded) or [`L1Only`](HealthStatus::L1Only).
    ///
    /// The `PING` is bounded by the L2 soft timeout and, like any L2
    /// operation, counts toward opening the circuit when Redis does not
    /// answer; while the circuit is open it is not sent.
    ///
    /// ```
    /// use acgs_cache_core::{Cache, HealthStatus};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), acgs_cache_core::Error> {
    /// let cache = Cache::builder().service("auth").build()?;
    /// let health = cache.health().await;
    /// assert_eq!(health.status, HealthStatus::L1Only);
    /// println!("{health}"); // health: status=l1_only service=auth l1_entries=0 l1_bytes=0 l2=none listening=true
    /// # Ok(()) }
    /// ```
    pub async fn health(&self) -> HealthReport {
        let stats = self.stats().await;
        let l2 = self.l2_health().await;
        let coherence = self.inner.coherence();
        // Without L2 the log is local: there is no lease to report.
        let remote = self.inner.l2().is_some();
        let lease_age = coherence.lease.age().filter(|_| remote);
        let shortest = coherence.shortest_lease().filter(|_| remote);
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let invalidation = InvalidationHealth {
            listening: coherence.is_listening(),
            lag_p50_us: stats.invalidations.propagation_p50_us,
            lag_p99_us: stats.invalidations.propagation_p99_us,
            lease_age_ms: lease_age.map(millis),
            max_staleness_ms: shortest.map(millis),
            lease_stale: shortest.is_some_and(|max| lease_age.is_none_or(|age| age > max)),
        };
        let reasons = l2
            .as_ref()
            .map(|l2| degraded_reasons(l2, &invalidation))
            .unwrap_or_default();
        let status = match &l2 {
            None => HealthStatus::L1Only,
            Some(_) if reasons.is_empty() => HealthStatus::Ok,
            Some(_) => HealthStatus::Degraded,
        };
        HealthReport {
            status,
            service: self.service().to_owned(),
            l1: L1Health {
                enabled: self.inner.config().l1_enabled,
                entries: stats.l1_entries,
                bytes: stats.l1_bytes,
                max_bytes: self.inner.config().l1_max_bytes,
            },
            l2,
            invalidation,
            reasons,
        }
    }

    #[cfg(feature = "redis")]
    async fn l2_health(&self) -> Option<L2Health> {
        let settings = self.inner.config().l2.as_ref()?;
        let tier = self.inner.l2()?;
        let ping = tier.ping().await;
        let (nodes_answering, nodes) = ping.as_ref().map_or((0, 0), |&(_, a, n)| (a, n));
        let ping = ping.map(|(rtt, _, _)| rtt);
        let memory = match &ping {
            Ok(_) => tier.memory_policy().await.ok(),
            Err(_) => None,
        };
        // The circuit as the ping left it (a failed ping may have opened it).
        Some(L2Health {
            endpoint: settings.redis.to_string(),
            topology: tier.topology(),
            nodes_answering,
            nodes,
            reachable: ping.is_ok(),
            ping_rtt_us: ping
                .as_ref()
                .ok()
                .map(|rtt| u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX)),
            circuit_open: tier.breaker.is_open(),
            circuit_trips: tier
                .breaker
                .trips
                .load(std::sync::atomic::Ordering::Relaxed),
            error: ping.err().map(|e| e.to_string()),
            last_error: tier.last_error(),
            pool: tier.pool_stats(),
            maxmemory_policy: memory.as_ref().map(|(policy, _)| policy.clone()),
            maxmemory_bytes: memory.map(|(_, bytes)| bytes),
        })
    }

    #[cfg(not(feature = "redis"))]
    #[allow(clippy::unused_async)] // the same signature as with L2
    async fn l2_health(&self) -> Option<L2Health> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_and_serializes_the_status_as_a_word() {
        let report = HealthReport {
            status: HealthStatus::Degraded,
            service: "auth".into(),
            l1: L1Health {
                enabled: true,
                entries: 3,
                bytes: 120,
                max_bytes: 1024,
            },
            l2: Some(L2Health {
                endpoint: "redis://***@cache:6379".into(),
                topology: "standalone",
                nodes_answering: 0,
                nodes: 1,
                reachable: false,
                ping_rtt_us: None,
                circuit_open: true,
                circuit_trips: 1,
                error: Some("L2 is unavailable: circuit open".into()),
                last_error: Some("L2 is unavailable: circuit open".into()),
                pool: crate::measure::stats::PoolStats {
                    max_size: 4,
                    size: 1,
                    available: 0,
                    waiting: 0,
                },
                maxmemory_policy: None,
                maxmemory_bytes: None,
            }),
            invalidation: InvalidationHealth {
                listening: false,
                lag_p50_us: None,
                lag_p99_us: None,
                lease_age_ms: Some(2300),
                max_staleness_ms: Some(1000),
                lease_stale: true,
            },
            reasons: vec!["redis does not answer".into()],
        };
        let line = report.to_string();
        assert_eq!(
            line,
            "health: status=degraded service=auth l1_entries=3 l1_bytes=120 l2=unreachable \
             topology=standalone circuit=open trips=1 listening=false lease_age_ms=2300 error=\"L2 is unavailable: circuit open\" \
             reasons=\"redis does not answer\""
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["status"], "degraded");
        assert_eq!(json["l2"]["circuit_open"], true);
    }
}
