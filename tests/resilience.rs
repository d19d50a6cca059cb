//! Stampede protection (in process and across instances), stale-if-error,
//! and the circuit breaker.

use acgs_cache_harness as support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use acgs_cache::{cached, Cache, TtlPolicy};
use support::{closed_port_url, RedisServer};

fn l1_only(service: &str) -> Cache {
    Cache::builder().service(service).build().unwrap()
}

static EXPENSIVE_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "compliance_checks")]
async fn expensive(key: u32) -> u64 {
    EXPENSIVE_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    u64::from(key) * 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_key_run_the_function_once() {
    let cache = l1_only("res-stampede");
    let before = EXPENSIVE_RUNS.load(Ordering::SeqCst);
    let callers: Vec<_> = (0..200)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.scope(expensive(7)).await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), 21);
    }
    assert_eq!(EXPENSIVE_RUNS.load(Ordering::SeqCst) - before, 1);
    let f = cache.stats().await.function("expensive").cloned().unwrap();
    assert_eq!(f.misses, 1);
    assert_eq!(f.coalesced + f.l1_hits, 199, "{f:?}");
}

static FLAKY_RUNS: AtomicU32 = AtomicU32::new(0);

/// The first computation panics (or hangs, when cancelled); later ones succeed.
#[cached(ttl = "compliance_checks")]
async fn flaky(mode: u8) -> u32 {
    let run = FLAKY_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    match (mode, run) {
        (1, 0) => panic!("the first computation fails hard"),
        (2, 0) => std::future::pending().await,
        _ => 42,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_or_cancelled_leader_lets_a_waiter_take_over() {
    for mode in [1u8, 2] {
        FLAKY_RUNS.store(0, Ordering::SeqCst);
        let cache = l1_only("res-takeover");
        let leader = tokio::spawn({
            let cache = cache.clone();
            async move { cache.scope(flaky(mode)).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await; // the leader is computing
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.scope(flaky(mode)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        if mode == 2 {
            leader.abort(); // cancelled mid-computation
        }
        let outcome = leader.await;
        assert!(
            outcome.is_err(),
            "mode {mode}: the leader panicked or was cancelled"
        );
        for waiter in waiters {
            let answer = tokio::time::timeout(Duration::from_secs(5), waiter).await;
            assert_eq!(answer.expect("no waiter hangs").unwrap(), 42, "mode {mode}");
        }
        assert_eq!(
            FLAKY_RUNS.load(Ordering::SeqCst),
            2,
            "mode {mode}: one waiter took over"
        );
    }
}

static FAILING_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "compliance_checks")]
async fn always_failing(key: u32) -> Result<u32, String> {
    FAILING_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    Err(format!("store down for {key}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_reaches_every_caller_and_is_not_cached() {
    let cache = l1_only("res-errors");
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.scope(always_failing(1)).await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), Err("store down for 1".to_owned()));
    }
    // `E` need not be `Clone`: waiters of a failed computation compute
    // themselves (and get their own error).
    let f = cache
        .stats()
        .await
        .function("always_failing")
        .cloned()
        .unwrap();
    assert_eq!(f.misses, 10);
    assert_eq!(f.not_stored, 10);
}

pub const FLAKY_STORE: TtlPolicy = TtlPolicy::new("flaky_store", Duration::from_millis(200))
    .with_stale_if_error(Duration::from_secs(60));
static STORE_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

#[cached(ttl = FLAKY_STORE)]
async fn from_flaky_store(key: u32) -> Result<u32, String> {
    if STORE_UP.load(Ordering::SeqCst) {
        Ok(key + 1000)
    } else {
        Err("store unavailable".to_owned())
    }
}

#[tokio::test]
async fn stale_if_error_serves_the_last_good_value_within_the_window() {
    let server = RedisServer::start();
    for (label, cache) in [
        ("L1 only", l1_only("res-stale")),
        (
            "L2",
            Cache::builder()
                .service("res-stale")
                .redis_url(server.url())
                .build()
                .unwrap(),
        ),
        (
            "L2, fresh instance",
            Cache::builder()
                .service("res-stale")
                .redis_url(server.url())
                .build()
                .unwrap(),
        ),
    ] {
        // An instance stamps what it computes with the log position it has
        // heard; one computed before it first heard the log is rejected once
        // it has (a fresh instance distrusts the past). Connect first, as a
        // service does at start, so the value below is not computed before.
        if cache.has_l2() {
            cache.connect().await.unwrap();
        }
        STORE_UP.store(true, Ordering::SeqCst);
        if label != "L2, fresh instance" {
            assert_eq!(cache.scope(from_flaky_store(1)).await, Ok(1001), "{label}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // past the TTL
        STORE_UP.store(false, Ordering::SeqCst);
        assert_eq!(
            cache.scope(from_flaky_store(1)).await,
            Ok(1001),
            "{label}: stale served"
        );
        let f = cache
            .stats()
            .await
            .function("from_flaky_store")
            .cloned()
            .unwrap();
        assert_eq!(f.stale_served, 1, "{label}: {f:?}");
        // Without a stale value the error goes through.
        assert_eq!(
            cache.scope(from_flaky_store(2)).await,
            Err("store unavailable".into()),
            "{label}"
        );
    }
}

static FLEET_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "compliance_checks", lock = true)]
async fn fleet_report(key: u32) -> u32 {
    FLEET_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    key * 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_lock_one_instance_computes_for_the_fleet() {
    let server = RedisServer::start();
    let instances: Vec<Cache> = (0..4)
        .map(|_| {
            Cache::builder()
                .service("res-fleet")
                .redis_url(server.url())
                .build()
                .unwrap()
        })
        .collect();
    let before = FLEET_RUNS.load(Ordering::SeqCst);
    let mut callers = Vec::new();
    for cache in &instances {
        for _ in 0..25 {
            let cache = cache.clone();
            callers.push(tokio::spawn(
                async move { cache.scope(fleet_report(5)).await },
            ));
        }
    }
    for caller in callers {
        assert_eq!(caller.await.unwrap(), 50);
    }
    assert_eq!(
        FLEET_RUNS.load(Ordering::SeqCst) - before,
        1,
        "one computation for four instances"
    );
    let mut waits = 0;
    for cache in &instances {
        waits += cache
            .stats()
            .await
            .function("fleet_report")
            .unwrap()
            .lock_waits;
    }
    assert_eq!(
        waits, 3,
        "the three other instances waited for the holder's value"
    );
    // The lock is released once the value is stored.
    let mut raw = server.raw().await;
    let locks: Vec<String> = redis::cmd("KEYS")
        .arg("*:lock")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(locks.is_empty(), "{locks:?}");
}

#[cached(ttl = "policy_decision")]
async fn plain(key: u32) -> u32 {
    key
}

#[tokio::test]
async fn the_circuit_opens_after_failures_and_closes_when_redis_returns() {
    let mut server = RedisServer::start();
    let cache = Cache::builder()
        .service("res-breaker")
        .redis_url(server.url())
        .breaker_threshold(3)
        .probe_interval(Duration::from_millis(50))
        .reconnect_backoff(Duration::from_millis(50))
        .build()
        .unwrap();
    cache.scope(plain(0)).await;
    server.stop();
    for key in 1..20 {
        assert_eq!(cache.scope(plain(key)).await, key);
    }
    let stats = cache.stats().await;
    assert!(stats.l2_circuit_open, "opened after consecutive failures");
    assert_eq!(stats.l2_circuit_trips, 1);
    let errors_while_open = stats.function("plain").unwrap().errors;
    server.restart();
    let mut closed = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if !cache.stats().await.l2_circuit_open {
            closed = true;
            break;
        }
    }
    assert!(closed, "the probe closed the circuit");
    assert!(cache.ping_l2().await.is_ok());
    assert!(errors_while_open > 0);
}

#[tokio::test]
async fn an_unreachable_redis_opens_the_circuit_instead_of_taxing_every_call() {
    let cache = Cache::builder()
        .service("res-down")
        .redis_url(closed_port_url())
        .breaker_threshold(2)
        .build()
        .unwrap();
    for key in 0..10 {
        cache.scope(plain(key)).await;
    }
    assert!(cache.stats().await.l2_circuit_open);
}

pub const REFRESHED: TtlPolicy =
    TtlPolicy::new("refreshed", Duration::from_secs(2)).with_refresh_ahead_percent(50);
static SOURCE_VERSION: AtomicU32 = AtomicU32::new(1);

#[cached(ttl = REFRESHED)]
async fn refreshed_rules(tenant: u32) -> (u32, u32) {
    tokio::time::sleep(Duration::from_millis(20)).await;
    (tenant, SOURCE_VERSION.load(Ordering::SeqCst))
}

#[tokio::test]
async fn refresh_ahead_refreshes_in_the_background_and_answers_at_once() {
    let cache = l1_only("res-refresh");
    let stats = || async {
        cache
            .stats()
            .await
            .function("refreshed_rules")
            .cloned()
            .unwrap()
    };
    cache
        .scope(async {
            assert_eq!(refreshed_rules(1).await, (1, 1));
            SOURCE_VERSION.store(2, Ordering::SeqCst);
            // Past 50% of the TTL, a hit answers from the cache and starts
            // one refresh; a second hit does not start another.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            assert_eq!(refreshed_rules(1).await, (1, 1));
            assert_eq!(refreshed_rules(1).await, (1, 1));
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while refreshed_rules(1).await != (1, 2) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the refresh never landed"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let f = stats().await;
            assert_eq!(
                (f.misses, f.refreshes),
                (1, 1),
                "one refresh for two due hits: {f:?}"
            );
            // Past the first value's expiry: still no miss.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            assert_eq!(refreshed_rules(1).await, (1, 2));
        })
        .await;
    let f = stats().await;
    assert_eq!(f.misses, 1, "refreshed ahead, never expired: {f:?}");
}

pub const SLOW_STORE: TtlPolicy = TtlPolicy::new("slow_store", Duration::from_millis(200))
    .with_stale_if_error(Duration::from_secs(60))
    .with_stale_timeout(Duration::from_millis(50));
static STORE_SLOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cached(ttl = SLOW_STORE)]
async fn from_slow_store(key: u32) -> u32 {
    if STORE_SLOW.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        return 0;
    }
    key + 1
}

#[tokio::test]
async fn a_computation_past_the_stale_timeout_gives_way_to_the_stale_value() {
    let cache = l1_only("res-stale-timeout");
    assert_eq!(cache.scope(from_slow_store(1)).await, 2);
    tokio::time::sleep(Duration::from_millis(300)).await; // past the TTL
    STORE_SLOW.store(true, Ordering::SeqCst);
    let answer =
        tokio::time::timeout(Duration::from_secs(2), cache.scope(from_slow_store(1))).await;
    assert_eq!(
        answer,
        Ok(2),
        "the stale value, long before the 5 s computation would end"
    );
    let f = cache
        .stats()
        .await
        .function("from_slow_store")
        .cloned()
        .unwrap();
    assert_eq!(f.stale_served, 1);
}
