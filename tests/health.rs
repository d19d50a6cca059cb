//! `Cache::health()` against a real redis-server: healthy, Redis gone, no Redis.

use acgs_cache_harness as support;

use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache, HealthReport, HealthStatus};
use support::RedisServer;

#[cached(ttl = "policy_decision")]
async fn decide(policy_id: u64) -> bool {
    policy_id.is_multiple_of(2)
}

/// Health reports until one has `status` (the log is read in the
/// background); panics with the last one after 5 s.
async fn until(cache: &Cache, status: HealthStatus) -> HealthReport {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let report = cache.health().await;
        if report.status == status {
            return report;
        }
        assert!(Instant::now() < deadline, "still {report}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn healthy_then_degraded_when_redis_stops() {
    let mut server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .service("health-it")
        .build()
        .unwrap();
    cache.scope(decide(4)).await;

    let report = until(&cache, HealthStatus::Ok).await;
    let l2 = report.l2.as_ref().expect("L2 is configured");
    assert!(l2.reachable && !l2.circuit_open, "{report}");
    assert!(l2.ping_rtt_us.is_some() && l2.error.is_none(), "{report}");
    assert!(
        l2.pool.size >= 1 && l2.pool.max_size >= l2.pool.size,
        "{report:?}"
    );
    assert_eq!(l2.endpoint, server.url());
    assert!(report.invalidation.listening);
    assert!(report.l1.enabled && report.l1.entries >= 1 && report.l1.bytes > 0);
    assert_eq!(report.service, "health-it");
    let line = report.to_string();
    assert!(
        line.starts_with("health: status=ok service=health-it "),
        "{line}"
    );
    assert!(
        line.contains(" l2=reachable ping_us=")
            && line.contains(" circuit=closed trips=0 listening=true"),
        "{line}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["l2"]["reachable"], true);

    server.stop();
    let report = until(&cache, HealthStatus::Degraded).await;
    let l2 = report.l2.as_ref().unwrap();
    assert!(!l2.reachable && l2.ping_rtt_us.is_none(), "{report}");
    assert!(l2.error.is_some(), "{report}");
    assert!(l2.last_error.is_some(), "{report:?}");
    assert!(report.to_string().contains(" l2=unreachable "), "{report}");
    // Calls still answer.
    assert!(cache.scope(decide(6)).await);
}

#[tokio::test]
async fn without_redis_the_cache_is_l1_only() {
    let cache = Cache::builder().service("health-l1").build().unwrap();
    cache.scope(decide(1)).await;
    let report = cache.health().await;
    assert_eq!(report.status, HealthStatus::L1Only);
    assert!(report.l2.is_none());
    assert!(report.invalidation.listening);
    assert_eq!(report.l1.entries, 1);
    assert_eq!(
        report.to_string(),
        format!(
            "health: status=l1_only service=health-l1 l1_entries=1 l1_bytes={} l2=none listening=true",
            report.l1.bytes
        )
    );
    assert_eq!(serde_json::to_value(&report).unwrap()["status"], "l1_only");
}

#[tokio::test]
async fn credentials_never_appear_in_the_report() {
    let url = support::closed_port_url().replace("redis://", "redis://app:hunter2@");
    let cache = Cache::builder()
        .redis_url(url)
        .service("health-secret")
        .build()
        .unwrap();
    let report = until(&cache, HealthStatus::Degraded).await;
    let l2 = report.l2.as_ref().unwrap();
    assert!(
        l2.endpoint.starts_with("redis://***@127.0.0.1:"),
        "{}",
        l2.endpoint
    );
    for shown in [
        report.to_string(),
        format!("{report:?}"),
        serde_json::to_string(&report).unwrap(),
    ] {
        assert!(
            !shown.contains("hunter2") && !shown.contains("app:"),
            "{shown}"
        );
    }
}

/// A server whose `maxmemory-policy` can evict or refuse the invalidation
/// log makes the cache `degraded`, with the reason; a `volatile-*` policy, or
/// no memory limit, does not.
#[tokio::test]
async fn an_eviction_policy_that_endangers_the_log_is_reported() {
    for (args, degraded) in [
        (
            &["--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"][..],
            true,
        ),
        (
            &["--maxmemory", "100mb", "--maxmemory-policy", "noeviction"][..],
            true,
        ),
        (
            &["--maxmemory", "100mb", "--maxmemory-policy", "volatile-lru"][..],
            false,
        ),
        (&[][..], false),
    ] {
        let server = RedisServer::start_with(args);
        let cache = Cache::builder()
            .service("memory-policy")
            .redis_url(server.url())
            .build()
            .unwrap();
        cache.connect().await.unwrap();
        let report = cache.health().await;
        let policy = report.l2.as_ref().unwrap().maxmemory_policy.clone();
        if degraded {
            assert_eq!(report.status, HealthStatus::Degraded, "{args:?}: {report}");
            assert!(
                report
                    .reasons
                    .iter()
                    .any(|r| r.contains("maxmemory-policy")),
                "{args:?}: {report}"
            );
        } else {
            assert_eq!(
                report.status,
                HealthStatus::Ok,
                "{args:?}: {report} ({policy:?})"
            );
        }
    }
}
