//! The fleet view: every instance publishes its [`StatsSnapshot`] to Redis
//! every [`CacheBuilder::fleet_interval`](crate::cache::CacheBuilder::fleet_interval)
//! under `{prefix}:fleet:{service}:{instance}`, a key that expires after
//! three intervals (an instance that stops drops out of the view by itself).
//! [`Cache::fleet_stats`] reads them all back — with a bounded `SCAN`, never
//! `KEYS` — and adds them up per service and function.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::engine::instance::{Cache, Inner};
use crate::error::{Error, Unavailable};
use crate::measure::stats::{FunctionStats, StatsSnapshot};
use crate::observe::heard::InstanceLease;

/// The most keys one [`Cache::fleet_stats`] reads (and so the largest fleet
/// it reports on): the scan stops there.
pub const MAX_FLEET_MEMBERS: usize = 10_000;

/// What one instance published.
///
/// ```no_run
/// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
/// let fleet = cache.fleet_stats().await?;
/// for member in &fleet.members {
///     println!("{} {}: {} functions", member.service, member.instance, member.stats.functions.len());
/// }
/// for row in &fleet.functions {
///     println!("{}: {} instances, {} calls", row.stats.function, row.instances, row.stats.calls);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FleetMember {
    /// Its service (the key's second segment).
    pub service: String,
    /// Its instance id: process id, cache number and a random part.
    pub instance: String,
    /// When it published (Unix ms).
    pub published_at_ms: u64,
    /// Its stats at that moment.
    pub stats: StatsSnapshot,
}

/// One function of one service, summed over the instances that run it.
///
/// ```no_run
/// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
/// let fleet = cache.fleet_stats().await?;
/// for member in &fleet.members {
///     println!("{} {}: {} functions", member.service, member.instance, member.stats.functions.len());
/// }
/// for row in &fleet.functions {
///     println!("{}: {} instances, {} calls", row.stats.function, row.instances, row.stats.calls);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FleetFunction {
    /// The service.
    pub service: String,
    /// How many instances reported the function.
    pub instances: usize,
    /// The sums (calls, hits per tier, misses, errors, …).
    pub stats: FunctionStats,
}

/// Every instance's stats, and their sums per function.
///
/// ```no_run
/// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
/// let fleet = cache.fleet_stats().await?; // what every instance published
/// for member in &fleet.members {
///     println!("{} {}", member.service, member.instance);
/// }
/// if let Some(row) = fleet.function("policy-governance", "evaluate_policy") {
///     println!("{} instances, fleet-wide hits: {}", row.instances, row.stats.l1_hits + row.stats.l2_hits);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FleetStats {
    /// One entry per instance that published within the last three intervals.
    pub members: Vec<FleetMember>,
    /// Per service and function, summed over `members`.
    pub functions: Vec<FleetFunction>,
    /// Keys under the fleet prefix that could not be read as a member
    /// (another version, or not ours).
    pub unreadable: usize,
    /// What each instance last published about the invalidation log: the
    /// position it heard and its lease's age, fresher than the stats (once
    /// a second at least). Instances whose lease has run out are paused,
    /// cut off from the log, or gone.
    #[serde(default)]
    pub leases: Vec<InstanceLease>,
}

impl FleetStats {
    fn from_members(
        members: Vec<FleetMember>,
        unreadable: usize,
        leases: Vec<InstanceLease>,
    ) -> FleetStats {
        let mut sums: BTreeMap<(String, Cow<'static, str>), FleetFunction> = BTreeMap::new();
        for member in &members {
            for f in &member.stats.functions {
                let sum = sums
                    .entry((member.service.clone(), f.function.clone()))
                    .or_insert_with(|| FleetFunction {
                        service: member.service.clone(),
                        instances: 0,
                        stats: FunctionStats::empty(f.function.clone(), f.policy.clone()),
                    });
                sum.instances += 1;
                sum.stats.add(f);
            }
        }
        FleetStats {
            members,
            functions: sums.into_values().collect(),
            unreadable,
            leases,
        }
    }

    /// The sums for `function` of `service`, if any instance reported it.
    ///
    /// ```no_run
    /// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
    /// let fleet = cache.fleet_stats().await?;
    /// if let Some(row) = fleet.function("policy-governance", "evaluate_policy") {
    ///     println!("{} instances, {:.0}% hits", row.instances, row.stats.hit_ratio() * 100.0);
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn function(&self, service: &str, function: &str) -> Option<&FleetFunction> {
        self.functions
            .iter()
            .find(|f| f.service == service && f.stats.function == function)
    }
}

fn key_pattern(prefix: &str) -> String {
    format!("{}:fleet:*", crate::format::key::glob_escape(prefix))
}

/// Starts publishing `inner`'s stats (which has L2) every `interval`,
/// unless it is zero. Called once, when the cache is built.
pub(crate) fn start_publisher(inner: &Arc<Inner>, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    let instance = inner.instance().to_owned();
    let key = format!(
        "{}:fleet:{}:{instance}",
        inner.config().prefix,
        inner.config().service
    );
    crate::background::spawn(publish(Arc::downgrade(inner), key, instance, interval));
}

async fn publish(weak: Weak<Inner>, key: String, instance: String, interval: Duration) {
    let expiry_ms = u64::try_from((interval * 3).as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let member = FleetMember {
            service: inner.config().service.clone(),
            instance: instance.clone(),
            published_at_ms: crate::clock::unix_ms(SystemTime::now()),
            stats: inner.stats(),
        };
        if let (Some(l2), Ok(json)) = (inner.l2(), serde_json::to_string(&member)) {
            let set = redis::cmd("SET")
                .arg(&key)
                .arg(json)
                .arg("PX")
                .arg(expiry_ms)
                .clone();
            if let Err(e) = l2.query::<()>(&set).await {
                tracing::debug!(target: "acgs_cache", error = %e, "fleet stats not published");
            }
        }
        drop(inner); // a dropped cache ends the loop at the next upgrade
        tokio::time::sleep(interval).await;
    }
}

impl Cache {
    /// The stats every instance sharing this cache's Redis and prefix
    /// published recently, and their sums per service and function.
    ///
    /// ```no_run
    /// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
    /// let fleet = cache.fleet_stats().await?;
    /// for f in &fleet.functions {
    ///     println!("{}/{}: {} calls on {} instances, hit ratio {:.2}",
    ///         f.service, f.stats.function, f.stats.calls, f.instances, f.stats.hit_ratio());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] without L2; otherwise the Redis error of the
    /// scan or the reads.
    pub async fn fleet_stats(&self) -> Result<FleetStats, Error> {
        let l2 = self
            .inner
            .l2()
            .ok_or(Error::Unavailable(Unavailable::NotConfigured))?;
        let pattern = key_pattern(&self.inner.config().prefix);
        let mut keys = l2.scan(&pattern, MAX_FLEET_MEMBERS).await?;
        keys.sort();
        keys.dedup(); // SCAN may return a key twice
        keys.truncate(MAX_FLEET_MEMBERS);
        let mut members = Vec::with_capacity(keys.len());
        let mut unreadable = 0;
        // Single-key GETs: valid on a cluster, where the keys spread over shards.
        for chunk in keys.chunks(100) {
            for value in l2.get_many(chunk).await?.into_iter().flatten() {
                match serde_json::from_slice::<FleetMember>(&value) {
                    Ok(member) => members.push(member),
                    Err(_) => unreadable += 1,
                }
            }
        }
        let mut leases = crate::observe::heard::members(
            l2,
            &crate::observe::heard::key(&self.inner.config().prefix),
        )
        .await?;
        leases.sort_by(|a, b| a.instance.cmp(&b.instance));
        Ok(FleetStats::from_members(members, unreadable, leases))
    }
}
