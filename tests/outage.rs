//! Redis unreachable at start and lost mid-run: cached calls keep answering,
//! errors are counted, and L2 comes back by itself.

use acgs_cache_harness as support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use acgs_cache::{cached, Cache, MaxStaleness};
use support::{closed_port_url, RedisServer};

static RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "compliance_checks")]
async fn check(subject: u32) -> Result<bool, String> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(subject.is_multiple_of(3))
}

fn cache_at(url: String, service: &str) -> Cache {
    Cache::builder()
        .redis_url(url)
        .service(service)
        .reconnect_backoff(Duration::from_millis(100))
        .build()
        .expect("an unreachable server is not a build error")
}

/// Forty calls of twenty subjects through `cache`; its figures for `check`.
async fn forty_calls(cache: &Cache) -> acgs_cache::FunctionStats {
    for _ in 0..2 {
        for subject in 0..20 {
            assert_eq!(
                cache.scope(check(subject)).await,
                Ok(subject.is_multiple_of(3))
            );
        }
    }
    cache.stats().await.function("check").cloned().unwrap()
}

#[tokio::test]
async fn unreachable_at_start_still_answers_from_the_function_and_l1_when_opted_out() {
    // A cache that never heard the log cannot vouch for anything in L1
    // against invalidations sent by other instances: with the default
    // lease, every call computes.
    let leased = cache_at(closed_port_url(), "outage-start");
    let f = forty_calls(&leased).await;
    assert_eq!(
        (f.calls, f.misses, f.l1_hits, f.lease_skips),
        (40, 40, 0, 40),
        "no lease, no L1"
    );
    assert!(
        f.errors >= 20,
        "each miss's L2 read and write failed and was counted: {}",
        f.errors
    );
    assert!(leased.ping_l2().await.is_err());

    // With the opt-out, L1 still caches.
    let opted_out = Cache::builder()
        .redis_url(closed_port_url())
        .service("outage-start-l1-ttl")
        .reconnect_backoff(Duration::from_millis(100))
        .max_staleness(MaxStaleness::L1Ttl)
        .build()
        .unwrap();
    let f = forty_calls(&opted_out).await;
    assert_eq!(
        (f.calls, f.misses, f.l1_hits, f.lease_skips),
        (40, 20, 20, 0),
        "L1 still caches"
    );
}

#[tokio::test]
async fn lost_mid_run_then_recovers_without_a_restart() {
    let mut server = RedisServer::start();
    let cache = cache_at(server.url(), "outage-mid");
    assert_eq!(cache.scope(check(3)).await, Ok(true));
    assert!(cache.ping_l2().await.is_ok());

    server.stop();
    for subject in 100..130 {
        assert_eq!(
            cache.scope(check(subject)).await,
            Ok(subject.is_multiple_of(3)),
            "answers while redis is down"
        );
    }
    let errors_during_outage = cache.stats().await.function("check").unwrap().errors;
    assert!(errors_during_outage > 0);

    server.restart();
    // The tier reconnects in the background; a write after that is shared again.
    let mut recovered = false;
    for attempt in 0..100u32 {
        cache.scope(check(1_000 + attempt)).await.unwrap();
        let reader = cache_at(server.url(), "outage-mid");
        reader.scope(check(1_000 + attempt)).await.unwrap();
        if reader.stats().await.function("check").unwrap().l2_hits == 1 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "L2 was not used again after redis came back");
    assert!(cache.ping_l2().await.is_ok());
}

/// `pool_size(1)`: the one pooled connection serves calls (the log tailer
/// and other long-held connections are made outside the pool), and after a
/// freeze the circuit closes again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_one_connection_works_and_recovers_after_a_freeze() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .service("pool-of-one")
        .redis_url(server.url())
        .pool_size(1)
        .disable_l1()
        .probe_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    cache
        .connect()
        .await
        .expect("one connection is enough to connect");
    assert_eq!(cache.scope(check(30)).await, Ok(true));
    assert_eq!(cache.scope(check(30)).await, Ok(true));
    let f = cache.stats().await.function("check").cloned().unwrap();
    assert_eq!(f.l2_hits, 1, "{f:?}");

    server.pause();
    for subject in 0..10 {
        // Answers from the function while Redis is frozen.
        assert_eq!(
            cache.scope(check(subject)).await,
            Ok(subject.is_multiple_of(3))
        );
    }
    assert!(
        cache.stats().await.l2_circuit_open,
        "timeouts open the circuit"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.resume();
    // L2 is read again once the circuit has closed *and* the invalidation
    // log is heard again (its tailer reconnects on its own schedule; until
    // then an entry cannot be checked and is not served).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = cache.stats().await;
        if !stats.l2_circuit_open && stats.invalidations.listening {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the circuit never closed or the log was never heard again: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = cache.stats().await.function("check").cloned().unwrap();
    assert_eq!(cache.scope(check(30)).await, Ok(true));
    let after = cache.stats().await.function("check").cloned().unwrap();
    assert_eq!(
        after.l2_hits,
        before.l2_hits + 1,
        "L2 hits resume: before {before:?}, after {after:?}"
    );
}

/// An L2-only cache on `server` with `lanes` lanes, all of the pool, and
/// connected. The fleet's publishers are off: they borrow a lane too, and
/// with them off every lane's last command is a call's.
async fn lanes_cache(server: &RedisServer, service: &str, lanes: usize) -> Cache {
    let cache = Cache::builder()
        .service(service)
        .redis_url(server.url())
        .pool_size(lanes)
        .l2_lanes(lanes)
        .disable_l1()
        .reconnect_backoff(Duration::from_millis(50))
        .fleet_interval(Duration::ZERO)
        .fleet_acknowledgements(Duration::ZERO)
        .build()
        .unwrap();
    cache.connect().await.unwrap();
    cache
}

/// `l2_lanes(4)`: calls of one runtime spread their requests over four
/// connections checked out of the pool (the pool's figures count them), and
/// when the server drops them the lanes are made again and L2 hits resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_several_pooled_lanes_and_get_them_back_after_a_kill() {
    let server = RedisServer::start();
    let cache = lanes_cache(&server, "lanes", 4).await;
    let burst = || async {
        let calls = (0..200u32).map(|s| cache.scope(check(1_000 + s)));
        for (s, answer) in futures_util::future::join_all(calls)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(answer, Ok((1_000 + s as u32).is_multiple_of(3)));
        }
    };
    // Lanes are added one connect at a time while calls go on.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        burst().await;
        let pool = cache.stats().await.l2_pool.unwrap();
        if pool.size == 4 && pool.available == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lanes never reached 4: {pool:?}"
        );
    }
    // Four connections whose last command was a call's read.
    let reading = || {
        server
            .cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|l| l.contains(" cmd=getrange "))
            .count()
    };
    burst().await;
    assert!(reading() >= 4, "{}", server.cli(&["CLIENT", "LIST"]));

    // The server drops every connection: the calls still answer, the lanes
    // are made again, and L2 hits come back.
    server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    let hits = || async { cache.stats().await.function("check").unwrap().l2_hits };
    let before = hits().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        burst().await;
        let pool = cache.stats().await.l2_pool.unwrap();
        if hits().await >= before + 200 && pool.size == 4 && pool.available == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lanes not back after the kill: {pool:?}, l2 hits {} (from {before})",
            hits().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A task's requests stay on one lane while it is idle (as on a raw
/// multiplexed connection: one driver, no hop between two), and calls in
/// flight together still spread: after a `join_all` burst has used both
/// lanes, one task's sequential calls are all read on one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_task_keeps_to_one_lane() {
    let server = RedisServer::start();
    let cache = lanes_cache(&server, "one-lane", 2).await;
    let reading = |idle: &str| {
        server
            .cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|l| l.contains(" cmd=getrange ") && l.contains(&format!(" idle={idle} ")))
            .count()
    };
    // Both lanes made, and both read from by calls in flight together.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let calls = (0..200u32).map(|s| cache.scope(check(5_000 + s)));
        futures_util::future::join_all(calls).await;
        if reading("0") == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the burst never read on both lanes: {}",
            server.cli(&["CLIENT", "LIST"])
        );
    }
    // Two seconds later, one task's sequential reads: one connection.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(reading("0"), 0, "{}", server.cli(&["CLIENT", "LIST"]));
    let scoped = cache.clone();
    tokio::spawn(async move {
        scoped
            .scope(async {
                for s in 0..50u32 {
                    assert_eq!(check(5_000 + s).await, Ok((5_000 + s).is_multiple_of(3)));
                }
            })
            .await;
    })
    .await
    .unwrap();
    assert_eq!(reading("0"), 1, "{}", server.cli(&["CLIENT", "LIST"]));
}
