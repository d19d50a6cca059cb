//! What the cache publishes through the `metrics` facade, read back with a
//! debugging recorder installed globally in this test binary (the publisher
//! is a background task, so a thread-local recorder would not see it).

use acgs_cache_harness as support;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use support::RedisServer;

const INTERVAL: Duration = Duration::from_millis(50);

/// One series: kind, name, labels, value.
#[derive(Debug, Clone)]
struct Series {
    kind: MetricKind,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    })
}

/// The recorder zeroes what a snapshot reads, and every test of this binary
/// reads the same recorder: one test at a time.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

fn series() -> Vec<Series> {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            Series {
                kind,
                name: key.name().to_owned(),
                labels: key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect(),
                value: match value {
                    DebugValue::Counter(v) => v as f64,
                    DebugValue::Gauge(v) => v.into_inner(),
                    DebugValue::Histogram(_) => f64::NAN,
                },
            }
        })
        .collect()
}

fn find(all: &[Series], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    all.iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Snapshots until `check` accepts one (the publisher runs every
/// `INTERVAL`); panics with the last snapshot after 5 s.
async fn wait_for(mut check: impl FnMut(&[Series]) -> bool) -> Vec<Series> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Two intervals: a snapshot zeroes the counters until the next publication.
        tokio::time::sleep(INTERVAL * 2).await;
        let all = series();
        if check(&all) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "the expected series never appeared; last snapshot: {all:#?}"
        );
    }
}

#[cached(ttl = "policy_decision", invalidate_on = "governance.*")]
async fn decide(policy_id: u64) -> bool {
    policy_id.is_multiple_of(2)
}

#[tokio::test]
async fn counters_and_gauges_follow_the_calls_with_l2() {
    let _serial = serial().await;
    snapshotter();
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .service("metrics-l2")
        .metrics_interval(INTERVAL)
        .build()
        .unwrap();

    assert!(!cache.scope(decide(7)).await); // miss
    assert!(!cache.scope(decide(7)).await); // L1 hit
    cache.clear_l1();
    assert!(!cache.scope(decide(7)).await); // L2 hit
    cache.invalidate("governance.rules.updated").await.unwrap();
    assert!(!cache.scope(decide(7)).await); // invalidated: computed again

    let service = ("service", "metrics-l2");
    let f = ("function", "decide");
    let all = wait_for(|all| {
        find(all, "acgs_cache_invalidations_received_total", &[service]) == Some(1.0)
            && find(all, "acgs_cache_calls_total", &[service, f]) == Some(4.0)
    })
    .await;
    let value = |name: &str, labels: &[(&str, &str)]| {
        find(&all, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in {all:#?}"))
    };
    assert_eq!(
        value(
            "acgs_cache_calls_total",
            &[service, f, ("policy", "policy_decision")]
        ),
        4.0
    );
    assert_eq!(
        value("acgs_cache_hits_total", &[service, f, ("tier", "l1")]),
        1.0
    );
    assert_eq!(
        value("acgs_cache_hits_total", &[service, f, ("tier", "l2")]),
        1.0
    );
    assert_eq!(value("acgs_cache_misses_total", &[service, f]), 2.0);
    assert_eq!(value("acgs_cache_errors_total", &[service, f]), 0.0);
    assert_eq!(
        value("acgs_cache_invalidations_sent_total", &[service]),
        1.0
    );
    assert!(
        value(
            "acgs_cache_rejected_total",
            &[service, f, ("reason", "invalidated")]
        ) >= 1.0
    );
    assert!(value("acgs_cache_l1_entries", &[service]) >= 1.0);
    assert!(value("acgs_cache_l1_bytes", &[service]) > 0.0);
    assert_eq!(value("acgs_cache_l2_circuit_open", &[service]), 0.0);
    assert_eq!(value("acgs_cache_invalidation_listening", &[service]), 1.0);
    let lag = value("acgs_cache_invalidation_lag_p99_seconds", &[service]);
    assert!(lag > 0.0 && lag < 5.0, "lag {lag}");
    // Latency percentiles per function, and the pool behind L2.
    let p99 = value(
        "acgs_cache_call_latency_seconds",
        &[service, f, ("quantile", "0.99")],
    );
    assert!(p99 > 0.0 && p99 < 5.0, "p99 {p99}");
    // Call durations as the buckets of a Prometheus histogram (counters
    // with `le`): the three calls that left L1 at least (two misses, one L2
    // hit; L1 hits are sampled one in 64), cumulative, up to +Inf.
    let timed = value("acgs_cache_call_duration_seconds_count", &[service, f]);
    assert!(timed >= 3.0, "{timed} durations");
    assert_eq!(
        value(
            "acgs_cache_call_duration_seconds_bucket",
            &[service, f, ("le", "+Inf")]
        ),
        timed
    );
    let mut buckets: Vec<(f64, f64)> = all
        .iter()
        .filter(|s| {
            s.name == "acgs_cache_call_duration_seconds_bucket"
                && s.labels.get("service").map(String::as_str) == Some("metrics-l2")
                && s.labels.get("function").map(String::as_str) == Some("decide")
                && s.labels.get("le").map(String::as_str) != Some("+Inf")
        })
        .map(|s| (s.labels["le"].parse().unwrap(), s.value))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(
        buckets.len(),
        acgs_cache::LatencyHistogram::bounds_seconds().len()
    );
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert!(buckets.last().unwrap().1 <= timed);
    assert!(value("acgs_cache_l2_pool_size", &[service]) >= 1.0);
    let l2 = value(
        "acgs_cache_l2_latency_seconds",
        &[service, ("quantile", "0.5")],
    );
    assert!(l2 > 0.0 && l2 < 1.0, "L2 p50 {l2}");
    assert_eq!(value("acgs_cache_l2_pool_waiting", &[service]), 0.0);
    // Every series carries the service label, and the kinds are right.
    for s in all.iter().filter(|s| s.name.starts_with("acgs_cache_")) {
        assert!(s.labels.contains_key("service"), "{s:?}");
        let histogram_part = s.name.ends_with("_bucket") || s.name.ends_with("_count");
        assert_eq!(
            s.kind == MetricKind::Counter,
            s.name.ends_with("_total") || histogram_part,
            "{s:?}"
        );
    }
}

#[tokio::test]
async fn l1_only_caches_publish_too_and_none_turns_it_off() {
    let _serial = serial().await;
    snapshotter();
    let published = Cache::builder()
        .service("metrics-l1")
        .metrics_interval(INTERVAL)
        .build()
        .unwrap();
    let silent = Cache::builder()
        .service("metrics-off")
        .metrics_interval(None)
        .build()
        .unwrap();
    for cache in [&published, &silent] {
        for _ in 0..3 {
            cache.scope(decide(2)).await;
        }
    }
    let service = ("service", "metrics-l1");
    let all = wait_for(|all| {
        find(
            all,
            "acgs_cache_hits_total",
            &[service, ("tier", "l1"), ("function", "decide")],
        ) == Some(2.0)
    })
    .await;
    assert_eq!(find(&all, "acgs_cache_misses_total", &[service]), Some(1.0));
    assert_eq!(
        find(&all, "acgs_cache_l2_circuit_open", &[service]),
        Some(0.0)
    );
    assert!(
        !all.iter()
            .any(|s| s.labels.get("service").map(String::as_str) == Some("metrics-off")),
        "metrics_interval(None) published: {all:#?}"
    );
}
