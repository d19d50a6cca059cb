//! Publishes a cache's figures through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! Calls never touch the recorder: they count into the striped counters that
//! [`Cache::stats`] reads, and one background task per cache copies those to
//! the installed recorder every interval — cumulative counters with
//! `absolute`, state as gauges. What a scrape sees therefore lags the calls
//! by at most one interval, and the hot path costs exactly what it costs
//! without metrics.
//!
//! Every series carries `service` (one per cache); `function`, `policy` and
//! `reason` are static strings from the code, so cardinality is bounded by
//! the number of cached functions.

use std::sync::{Arc, Weak};
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

use crate::engine::instance::Inner;
use crate::measure::stats::StatsSnapshot;

/// Starts the publisher of `inner` unless metrics are off, on the process's
/// background runtime (which no caller's runtime outlives). Called once,
/// when the cache is built.
pub(crate) fn start_publisher(inner: &Arc<Inner>) {
    if let Some(interval) = inner.config().metrics_interval {
        crate::background::spawn(publish_every(Arc::downgrade(inner), interval));
    }
}

/// Publishes every `interval` until the cache is dropped.
async fn publish_every(cache: Weak<Inner>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = cache.upgrade() else { return };
        let snapshot = inner.stats();
        publish(&inner.config().service, &snapshot);
    }
}

/// Sets every series from `snapshot` (descriptions included, so a recorder
/// installed after the cache was built still gets them).
pub(crate) fn publish(service: &str, snapshot: &StatsSnapshot) {
    describe();
    for f in &snapshot.functions {
        let function = &f.function;
        let per_function = [
            ("acgs_cache_misses_total", f.misses),
            ("acgs_cache_errors_total", f.errors),
            ("acgs_cache_bypassed_total", f.bypassed),
            ("acgs_cache_not_stored_total", f.not_stored),
            ("acgs_cache_stale_served_total", f.stale_served),
            ("acgs_cache_coalesced_total", f.coalesced),
            ("acgs_cache_lock_waits_total", f.lock_waits),
            ("acgs_cache_refreshes_total", f.refreshes),
            ("acgs_cache_lease_skips_total", f.lease_skips),
        ];
        counter!("acgs_cache_calls_total", "service" => service.to_owned(), "function" => function.clone(), "policy" => f.policy.clone())
            .absolute(f.calls);
        for (tier, hits) in [("l1", f.l1_hits), ("l2", f.l2_hits)] {
            counter!("acgs_cache_hits_total", "service" => service.to_owned(), "function" => function.clone(), "tier" => tier)
                .absolute(hits);
        }
        for (name, value) in per_function {
            counter!(name, "service" => service.to_owned(), "function" => function.clone())
                .absolute(value);
        }
        for (quantile, nanos) in [
            ("0.5", f.latency_p50_ns),
            ("0.95", f.latency_p95_ns),
            ("0.99", f.latency_p99_ns),
        ] {
            if let Some(nanos) = nanos {
                gauge!("acgs_cache_call_latency_seconds", "service" => service.to_owned(), "function" => function.clone(), "quantile" => quantile)
                    .set(nanos as f64 / 1e9);
            }
        }
        // Cumulative bucket counts as counters with an `le` label: the
        // series of a Prometheus histogram, published each interval from the
        // histogram the calls already keep (a `metrics` histogram would take
        // every call as a sample, O(calls) per interval).
        for (bound_ns, calls) in &f.latency_histogram.buckets {
            counter!("acgs_cache_call_duration_seconds_bucket", "service" => service.to_owned(), "function" => function.clone(), "le" => seconds_label(*bound_ns))
                .absolute(*calls);
        }
        counter!("acgs_cache_call_duration_seconds_bucket", "service" => service.to_owned(), "function" => function.clone(), "le" => "+Inf")
            .absolute(f.latency_histogram.count);
        counter!("acgs_cache_call_duration_seconds_count", "service" => service.to_owned(), "function" => function.clone())
            .absolute(f.latency_histogram.count);
        for (reason, n) in &f.errors_by_reason {
            counter!("acgs_cache_errors_by_reason_total", "service" => service.to_owned(), "function" => function.clone(), "reason" => reason.clone())
                .absolute(*n);
        }
        for (reason, n) in &f.rejected {
            counter!("acgs_cache_rejected_total", "service" => service.to_owned(), "function" => function.clone(), "reason" => reason.clone())
                .absolute(*n);
        }
    }
    let inv = &snapshot.invalidations;
    counter!("acgs_cache_invalidations_sent_total", "service" => service.to_owned())
        .absolute(inv.sent);
    counter!("acgs_cache_invalidations_received_total", "service" => service.to_owned())
        .absolute(inv.received);
    counter!("acgs_cache_l2_circuit_trips_total", "service" => service.to_owned())
        .absolute(snapshot.l2_circuit_trips);
    counter!("acgs_cache_lease_renewals_total", "service" => service.to_owned())
        .absolute(inv.lease_renewals);
    if let Some(age) = inv.lease_age_us {
        gauge!("acgs_cache_lease_age_seconds", "service" => service.to_owned())
            .set(age as f64 / 1e6);
    }
    gauge!("acgs_cache_l1_entries", "service" => service.to_owned())
        .set(snapshot.l1_entries as f64);
    gauge!("acgs_cache_l1_bytes", "service" => service.to_owned()).set(snapshot.l1_bytes as f64);
    gauge!("acgs_cache_l2_circuit_open", "service" => service.to_owned())
        .set(f64::from(u8::from(snapshot.l2_circuit_open)));
    if let Some(latency) = snapshot.l2_latency_ns {
        for (quantile, nanos) in ["0.5", "0.95", "0.99"].into_iter().zip(latency) {
            gauge!("acgs_cache_l2_latency_seconds", "service" => service.to_owned(), "quantile" => quantile)
                .set(nanos as f64 / 1e9);
        }
    }
    if let Some(pool) = snapshot.l2_pool {
        for (name, value) in [
            ("acgs_cache_l2_pool_size", pool.size),
            ("acgs_cache_l2_pool_available", pool.available),
            ("acgs_cache_l2_pool_waiting", pool.waiting),
        ] {
            gauge!(name, "service" => service.to_owned()).set(value as f64);
        }
    }
    gauge!("acgs_cache_invalidation_listening", "service" => service.to_owned())
        .set(f64::from(u8::from(inv.listening)));
    for (name, us) in [
        (
            "acgs_cache_invalidation_lag_p50_seconds",
            inv.propagation_p50_us,
        ),
        (
            "acgs_cache_invalidation_lag_p99_seconds",
            inv.propagation_p99_us,
        ),
    ] {
        if let Some(us) = us {
            gauge!(name, "service" => service.to_owned()).set(us as f64 / 1e6);
        }
    }
}

/// A bucket bound as Prometheus writes `le`: seconds, exact (the bounds are
/// powers of two nanoseconds, which `f64` holds exactly).
fn seconds_label(bound_ns: u64) -> String {
    format!("{}", bound_ns as f64 / 1e9)
}

/// Names, units and help texts (`# HELP` lines in Prometheus).
fn describe() {
    let counters: [(&'static str, &'static str); 19] = [
        (
            "acgs_cache_call_duration_seconds_bucket",
            "Calls per function that took at most `le` seconds since the instance started (power-of-two bounds, 256 ns to 34 s, and +Inf): a classic Prometheus histogram's buckets, so histogram_quantile over their sum across instances works. Calls past L1 all timed; one L1 hit in 64 timed, standing for 64.",
        ),
        (
            "acgs_cache_call_duration_seconds_count",
            "Timed calls per function since the instance started (the +Inf bucket).",
        ),
        (
            "acgs_cache_calls_total",
            "Cached calls answered (hits, misses, bypassed, coalesced).",
        ),
        (
            "acgs_cache_hits_total",
            "Calls answered from a tier (label tier: l1 or l2).",
        ),
        ("acgs_cache_misses_total", "Calls that ran the function."),
        (
            "acgs_cache_errors_total",
            "Tier failures absorbed; the call still answered.",
        ),
        (
            "acgs_cache_errors_by_reason_total",
            "Tier failures by reason: timeout, unavailable, redis, log_unheard, encode.",
        ),
        (
            "acgs_cache_bypassed_total",
            "Calls that ran without the cache (key arguments did not serialize).",
        ),
        (
            "acgs_cache_not_stored_total",
            "Results not stored (Err, or None without negative caching).",
        ),
        (
            "acgs_cache_stale_served_total",
            "Stale values served because the function failed (stale-if-error).",
        ),
        (
            "acgs_cache_coalesced_total",
            "Calls answered by another caller's computation of the same key.",
        ),
        (
            "acgs_cache_lock_waits_total",
            "Misses that waited for another instance's computation (lock = true).",
        ),
        (
            "acgs_cache_refreshes_total",
            "Background refreshes (refresh-ahead).",
        ),
        (
            "acgs_cache_rejected_total",
            "Stored bytes not used, by reason.",
        ),
        (
            "acgs_cache_lease_skips_total",
            "Calls that skipped L1 because the instance's lease on the invalidation log had run out (max_staleness).",
        ),
        (
            "acgs_cache_lease_renewals_total",
            "Log reads that renewed the instance's lease on the invalidation log.",
        ),
        (
            "acgs_cache_invalidations_sent_total",
            "Invalidations this instance sent.",
        ),
        (
            "acgs_cache_invalidations_received_total",
            "Invalidations this instance heard from the log (its own included).",
        ),
        (
            "acgs_cache_l2_circuit_trips_total",
            "Times the L2 circuit opened.",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
    }
    describe_gauge!("acgs_cache_l1_entries", Unit::Count, "Entries in L1.");
    describe_gauge!(
        "acgs_cache_l1_bytes",
        Unit::Bytes,
        "Weighted bytes in L1 (encoded sizes)."
    );
    describe_gauge!(
        "acgs_cache_l2_circuit_open",
        "1 while the L2 circuit is open (calls skip Redis until a probe succeeds)."
    );
    describe_gauge!(
        "acgs_cache_call_latency_seconds",
        Unit::Seconds,
        "Call latency percentiles per function over the last 30 to 60 s (label quantile: 0.5, 0.95, 0.99); L1 hits sampled one in 64. Percentiles do not add up across instances: acgs_cache_call_duration_seconds_bucket does."
    );
    describe_gauge!(
        "acgs_cache_l2_latency_seconds",
        Unit::Seconds,
        "Latency percentiles of single L2 operations over the last 30 to 60 s (label quantile: 0.5, 0.95, 0.99)."
    );
    describe_gauge!(
        "acgs_cache_l2_pool_size",
        Unit::Count,
        "Open connections of the L2 pool."
    );
    describe_gauge!(
        "acgs_cache_l2_pool_available",
        Unit::Count,
        "Idle connections in the L2 pool."
    );
    describe_gauge!(
        "acgs_cache_l2_pool_waiting",
        Unit::Count,
        "Callers waiting for an L2 pool connection."
    );
    describe_gauge!(
        "acgs_cache_invalidation_listening",
        "1 while the instance hears the invalidation log."
    );
    describe_gauge!(
        "acgs_cache_lease_age_seconds",
        Unit::Seconds,
        "How long ago the instance last knew it had heard the whole invalidation log (its lease's age); past a function's max_staleness its L1 entries are not served."
    );
    describe_gauge!(
        "acgs_cache_invalidation_lag_p50_seconds",
        Unit::Seconds,
        "Median delay from sending an invalidation to hearing it, over the last 30 to 60 s."
    );
    describe_gauge!(
        "acgs_cache_invalidation_lag_p99_seconds",
        Unit::Seconds,
        "99th percentile of the invalidation propagation delay, over the last 30 to 60 s."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_labels_are_the_bounds_in_seconds() {
        assert_eq!(seconds_label(256), "0.000000256");
        assert_eq!(seconds_label(1 << 30), "1.073741824");
    }
}
