//! What the fleet has heard: every instance publishes the last log position
//! it heard and how fresh its lease is, into one hash beside the log
//! (`{prefix}:{invalidation}:heard`, one field per instance); an
//! invalidation that asks waits until every live instance has heard it, or
//! until the instances that have not are covered by their lease.
//!
//! A publication is one `HSET`, sent when the tailer has applied records
//! (at most once per [`CacheBuilder::fleet_acknowledgements`] interval,
//! 5 ms by default) and once a second besides, as a heartbeat; a field not
//! refreshed for a minute is an instance that is gone, and is removed.
//!
//! [`CacheBuilder::fleet_acknowledgements`]: crate::CacheBuilder::fleet_acknowledgements

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::clock::unix_ms;
use crate::engine::instance::Inner;
use crate::error::Error;
use crate::log_position::LogPosition;
use crate::observe::ack::FleetAck;
use crate::tiers::l2::L2Tier;

/// How often an instance publishes even when it heard nothing new.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// A member that has not published for this long is taken for gone: a
/// live one publishes every [`HEARTBEAT`]. One that is only cut off is
/// covered by its lease long before.
pub(crate) const LIVE: Duration = Duration::from_secs(10);
/// Fields older than this are removed (by the publishers, once a minute).
const FORGET: Duration = Duration::from_secs(60);

/// The hash the instances publish into (on a cluster, in the log's slot).
pub(crate) fn key(prefix: &str) -> String {
    format!("{prefix}:{{invalidation}}:heard")
}

/// What one instance last published about the invalidation log: the
/// position it had heard and how fresh its lease was (see
/// [`MaxStaleness`](crate::MaxStaleness)). Read with
/// [`Cache::fleet_stats`](crate::Cache::fleet_stats) (`leases`).
///
/// ```no_run
/// # async fn run(cache: acgs_cache_core::Cache) -> Result<(), acgs_cache_core::Error> {
/// for lease in &cache.fleet_stats().await?.leases {
///     println!("{lease:?}"); // which instance heard the log up to where, and when
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InstanceLease {
    /// The instance ([`Cache::instance_id`](crate::Cache::instance_id)).
    pub instance: String,
    /// Its service ([`Cache::service`](crate::Cache::service)).
    pub service: String,
    /// The last log position it had heard.
    pub heard_position: LogPosition,
    /// Its lease's age when it published (ms); `None` before its first read.
    pub lease_age_ms: Option<u64>,
    /// The shortest lease its functions use (ms), if any: past it, those
    /// functions serve nothing from L1.
    pub shortest_lease_ms: Option<u64>,
    /// The longest (ms), if any: that long after an invalidation, none of
    /// its lease-bound functions serves what it invalidated.
    pub longest_lease_ms: Option<u64>,
    /// Whether a function (or the cache) opted out of the lease (`l1_ttl`).
    pub opted_out: bool,
    /// When it published (Unix ms): once a second at least while it runs.
    pub published_at_ms: u64,
}

impl InstanceLease {
    /// Its lease's age at `now_ms` (Unix ms), as far as its publications
    /// tell: the age it published plus the time since. `None` before its
    /// first read.
    ///
    /// ```no_run
    /// # async fn run(cache: acgs_cache_core::Cache, now_ms: u64) -> Result<(), acgs_cache_core::Error> {
    /// for lease in cache.fleet_stats().await?.leases {
    ///     println!("{}: heard {:?} ms ago, stale: {}", lease.instance, lease.lease_age_at(now_ms), lease.is_stale_at(now_ms));
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn lease_age_at(&self, now_ms: u64) -> Option<u64> {
        self.lease_age_ms
            .map(|age| age.saturating_add(now_ms.saturating_sub(self.published_at_ms)))
    }

    /// Whether, at `now_ms`, its lease has run out for its shortest lease:
    /// it is paused, cut off from the log, or gone.
    ///
    /// ```no_run
    /// # async fn run(cache: acgs_cache_core::Cache, now_ms: u64) -> Result<(), acgs_cache_core::Error> {
    /// for lease in cache.fleet_stats().await?.leases {
    ///     println!("{}: heard {:?} ms ago, stale: {}", lease.instance, lease.lease_age_at(now_ms), lease.is_stale_at(now_ms));
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn is_stale_at(&self, now_ms: u64) -> bool {
        self.shortest_lease_ms
            .is_some_and(|max| self.lease_age_at(now_ms).is_none_or(|age| age > max))
    }

    /// `service position lease_age shortest longest opted_out published_at`,
    /// `-` for an absent figure (the instance is the hash's field; a service
    /// name has no spaces).
    fn encode(&self) -> String {
        let figure = |ms: Option<u64>| ms.map_or_else(|| "-".to_owned(), |ms| ms.to_string());
        format!(
            "{} {} {} {} {} {} {}",
            self.service,
            self.heard_position,
            figure(self.lease_age_ms),
            figure(self.shortest_lease_ms),
            figure(self.longest_lease_ms),
            u8::from(self.opted_out),
            self.published_at_ms
        )
    }

    /// The inverse of [`InstanceLease::encode`]; `None` for anything else.
    fn decode(instance: String, text: &str) -> Option<InstanceLease> {
        let figure = |part: &str| match part {
            "-" => Some(None),
            ms => ms.parse().ok().map(Some),
        };
        let mut parts = text.split(' ');
        let lease = InstanceLease {
            instance,
            service: parts.next()?.to_owned(),
            heard_position: LogPosition::parse(parts.next()?)?,
            lease_age_ms: figure(parts.next()?)?,
            shortest_lease_ms: figure(parts.next()?)?,
            longest_lease_ms: figure(parts.next()?)?,
            opted_out: parts.next()? == "1",
            published_at_ms: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(lease)
    }

    /// What `inner` would publish now.
    fn of(inner: &Inner) -> InstanceLease {
        let coherence = inner.coherence();
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (longest, opted_out) = coherence.lease_bounds();
        InstanceLease {
            instance: inner.instance().to_owned(),
            service: inner.config().service.clone(),
            heard_position: crate::coherence::state::unpack(coherence.head()),
            lease_age_ms: coherence.lease.age().map(millis),
            shortest_lease_ms: coherence.shortest_lease().map(millis),
            longest_lease_ms: longest.map(millis),
            opted_out,
            published_at_ms: unix_ms(SystemTime::now()),
        }
    }
}

/// Starts publishing what `inner` (which has L2) heard, at most every
/// `every`, unless it is zero. Called once, when the cache is built.
pub(crate) fn start_publisher(inner: &Arc<Inner>, every: Duration) {
    if every.is_zero() {
        return;
    }
    crate::background::spawn(publish(Arc::downgrade(inner), every));
}

async fn publish(weak: Weak<Inner>, every: Duration) {
    let mut last_prune = tokio::time::Instant::now();
    loop {
        let heard_more = {
            let Some(inner) = weak.upgrade() else { return };
            let Some(l2) = inner.l2() else { return };
            let hash = key(&inner.config().prefix);
            let lease = InstanceLease::of(&inner);
            let set = redis::cmd("HSET")
                .arg(&hash)
                .arg(&lease.instance)
                .arg(lease.encode())
                .clone();
            if let Err(e) = l2.query::<()>(&set).await {
                tracing::debug!(target: "acgs_cache", error = %e, "heard position not published");
            }
            if last_prune.elapsed() >= FORGET {
                last_prune = tokio::time::Instant::now();
                if let Ok(members) = members(l2, &hash).await {
                    forget_gone(l2, &hash, &members).await;
                }
            }
            Arc::clone(&inner.coherence().heard_more)
        };
        // Not holding the cache: dropping it ends the loop at the next upgrade.
        tokio::time::sleep(every).await;
        let _ = tokio::time::timeout(HEARTBEAT, heard_more.notified()).await;
    }
}

/// How often a wait reads the hash again.
const POLL: Duration = Duration::from_millis(5);

/// Waits until every live instance but this one (`inner`, which applied the
/// invalidation before it returned) has published a position at or past
/// `position`, or, for those that have not, until their longest lease has
/// passed: they serve nothing it reached after that (see `MaxStaleness`).
pub(crate) async fn wait(
    inner: &Inner,
    l2: &Arc<L2Tier>,
    position: LogPosition,
) -> Result<FleetAck, Error> {
    let start = tokio::time::Instant::now();
    let hash = key(&inner.config().prefix);
    let live_ms = u64::try_from(LIVE.as_millis()).unwrap_or(u64::MAX);
    let default_bound_ms =
        u64::try_from(crate::format::policy::DEFAULT_MAX_STALENESS.as_millis()).unwrap_or(u64::MAX);
    loop {
        let members = members(l2, &hash).await?;
        let now_ms = unix_ms(SystemTime::now());
        let waited = start.elapsed();
        let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        let mut ack = FleetAck::only(inner.instance(), position);
        let mut pending = false;
        for member in members {
            if member.instance == inner.instance()
                || now_ms.saturating_sub(member.published_at_ms) > live_ms
            {
                continue;
            }
            if member.heard_position >= position {
                ack.acknowledged.push(member.instance);
                continue;
            }
            // Until its longest lease has passed it may still serve what the
            // invalidation reached; one whose functions all opted out has no
            // lease, and is waited for as long as the default bound.
            let bound_ms = member.longest_lease_ms.unwrap_or(default_bound_ms);
            if waited_ms < bound_ms {
                pending = true;
                continue;
            }
            if member.opted_out {
                ack.outside_the_bound.push(member.instance.clone());
            }
            if member.longest_lease_ms.is_some() {
                ack.covered_by_lease.push(member.instance);
            }
        }
        if !pending {
            ack.waited = waited;
            return Ok(ack);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every field of the hash at `hash`, decoded (unreadable ones skipped).
pub(crate) async fn members(l2: &Arc<L2Tier>, hash: &str) -> Result<Vec<InstanceLease>, Error> {
    let fields: Vec<(String, String)> = l2.query(redis::cmd("HGETALL").arg(hash)).await?;
    Ok(fields
        .into_iter()
        .filter_map(|(instance, text)| InstanceLease::decode(instance, &text))
        .collect())
}

/// Removes the fields of instances that stopped publishing a while ago.
async fn forget_gone(l2: &Arc<L2Tier>, hash: &str, members: &[InstanceLease]) {
    let horizon = unix_ms(SystemTime::now())
        .saturating_sub(u64::try_from(FORGET.as_millis()).unwrap_or(u64::MAX));
    let gone: Vec<&str> = members
        .iter()
        .filter(|member| member.published_at_ms < horizon)
        .map(|member| member.instance.as_str())
        .collect();
    if !gone.is_empty() {
        let _ = l2
            .query::<u64>(redis::cmd("HDEL").arg(hash).arg(&gone))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_reads_back_as_written() {
        let lease = InstanceLease {
            instance: "12-1-00ab".into(),
            service: "policy-governance".into(),
            heard_position: LogPosition { ms: 17, seq: 3 },
            lease_age_ms: Some(120),
            shortest_lease_ms: Some(250),
            longest_lease_ms: None,
            opted_out: true,
            published_at_ms: 1_700_000_000_000,
        };
        assert_eq!(
            lease.encode(),
            "policy-governance 17-3 120 250 - 1 1700000000000"
        );
        assert_eq!(
            InstanceLease::decode("12-1-00ab".into(), &lease.encode()),
            Some(lease.clone())
        );
        assert_eq!(InstanceLease::decode("x".into(), "svc 17-3 120"), None);
        assert_eq!(InstanceLease::decode("x".into(), "garbage"), None);
        // Its age grows while it does not publish: stale past its shortest lease.
        assert!(!lease.is_stale_at(1_700_000_000_100));
        assert_eq!(lease.lease_age_at(1_700_000_000_200), Some(320));
        assert!(lease.is_stale_at(1_700_000_000_200));
    }
}
