//! The rate limiter against real redis-server processes: exact allowance
//! under concurrency from two instances, remaining / retry-after, refill,
//! failing open and closed, and the in-process mode.

use acgs_cache_harness as support;

use std::time::Duration;

use acgs_cache::rate_limit::{DecidedBy, Decision, RateLimiter};
use acgs_cache::Cache;
use support::RedisServer;

fn instance(url: &str) -> Cache {
    Cache::builder()
        .service("auth")
        .redis_url(url)
        // 200 concurrent scripts on a loaded 2-core machine: a timeout here
        // would fail open and blur the count being checked.
        .l2_soft_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_burst_is_allowed_from_two_instances_at_once() {
    let server = RedisServer::start();
    const BURST: u64 = 17;
    // One request per hour: nothing refills while the test runs.
    let limiters: Vec<RateLimiter> = (0..2)
        .map(|_| {
            RateLimiter::builder("login")
                .rate(1, Duration::from_secs(3600))
                .burst(BURST)
                .fail_closed()
                .build(&instance(&server.url()))
                .unwrap()
        })
        .collect();
    let checks: Vec<_> = (0..200)
        .map(|i| {
            let limiter = limiters[i % 2].clone();
            tokio::spawn(async move { limiter.check("alice@example.com").await.unwrap() })
        })
        .collect();
    let mut decisions = Vec::new();
    for check in checks {
        decisions.push(check.await.unwrap());
    }
    assert!(decisions.iter().all(|d| d.decided_by == DecidedBy::Redis));
    let allowed = decisions.iter().filter(|d| d.allowed).count();
    assert_eq!(allowed as u64, BURST);
    let stats = [limiters[0].stats(), limiters[1].stats()];
    assert_eq!(stats[0].allowed + stats[1].allowed, BURST);
    assert_eq!(stats[0].denied + stats[1].denied, 200 - BURST);
    // Every count from 0 to BURST-1 was reported remaining exactly once.
    let mut remaining: Vec<u64> = decisions
        .iter()
        .filter(|d| d.allowed)
        .map(|d| d.remaining)
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..BURST).collect::<Vec<_>>());
    // The key is stored under the documented name, and nothing else is.
    let mut raw = server.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("acgs:rl:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keys, ["acgs:rl:login:alice@example.com"]);
}

#[tokio::test]
async fn remaining_retry_after_and_reset_after_follow_the_rate() {
    let server = RedisServer::start();
    let limiter = RateLimiter::builder("api")
        .rate(10, Duration::from_secs(1))
        .burst(3)
        .build(&instance(&server.url()))
        .unwrap();
    let first = limiter.check("tenant-1").await.unwrap();
    assert!(first.allowed);
    assert_eq!(first.remaining, 2);
    assert_eq!(first.retry_after, None);
    assert!(first.reset_after <= Duration::from_millis(100));
    let second = limiter.check_n("tenant-1", 2).await.unwrap();
    assert!(second.allowed);
    assert_eq!(second.remaining, 0);
    let denied = limiter.check("tenant-1").await.unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 0);
    let retry = denied.retry_after.expect("a denial says when to retry");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_millis(100),
        "{retry:?}"
    );
    assert!(denied.reset_after <= Duration::from_millis(300));
    assert!(denied.reset_after >= retry);
    // Other keys have their own budget.
    assert_eq!(limiter.check("tenant-2").await.unwrap().remaining, 2);
    // A cost above the burst could never pass: a clear error, not a denial.
    assert!(limiter.check_n("tenant-1", 4).await.is_err());
    // Zero cost only reports.
    let peek = limiter.check_n("tenant-2", 0).await.unwrap();
    assert!(peek.allowed && peek.remaining == 2);
}

#[tokio::test]
async fn the_budget_refills_at_the_rate() {
    let server = RedisServer::start();
    let limiter = RateLimiter::builder("refill")
        .rate(20, Duration::from_secs(1)) // one every 50 ms
        .burst(2)
        .build(&instance(&server.url()))
        .unwrap();
    assert!(limiter.check("k").await.unwrap().allowed);
    assert!(limiter.check("k").await.unwrap().allowed);
    let denied = limiter.check("k").await.unwrap();
    assert!(!denied.allowed);
    // Waiting what the denial said (on the server's clock) is enough for one more.
    tokio::time::sleep(denied.retry_after.unwrap()).await;
    assert!(limiter.check("k").await.unwrap().allowed);
    // After a full reset the whole burst is back.
    let d = limiter.check_n("k", 0).await.unwrap();
    tokio::time::sleep(d.reset_after + Duration::from_millis(5)).await;
    assert_eq!(limiter.check_n("k", 0).await.unwrap().remaining, 2);
}

#[tokio::test]
async fn long_keys_are_hashed_into_a_bounded_redis_key() {
    let server = RedisServer::start();
    let limiter = RateLimiter::builder("ip")
        .rate(5, Duration::from_secs(1))
        .build(&instance(&server.url()))
        .unwrap();
    let long = "a".repeat(100_000);
    assert!(limiter.check(&long).await.unwrap().allowed);
    let mut raw = server.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("acgs:rl:ip:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with("acgs:rl:ip:sha256:") && keys[0].len() < 100);
}

async fn decide_while_stopped(fail_closed: bool) -> Decision {
    let mut server = RedisServer::start();
    let cache = Cache::builder()
        .service("auth")
        .redis_url(server.url())
        .l2_soft_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let builder = RateLimiter::builder("login").rate(1, Duration::from_secs(60));
    let limiter = if fail_closed {
        builder.fail_closed()
    } else {
        builder.fail_open()
    }
    .build(&cache)
    .unwrap();
    assert_eq!(
        limiter.check("bob").await.unwrap().decided_by,
        DecidedBy::Redis
    );
    server.stop();
    // Budget spent and Redis gone: the failure mode decides, every time.
    for _ in 0..3 {
        limiter.check("bob").await.unwrap();
    }
    let stats = limiter.stats();
    assert_eq!(stats.allowed, 1);
    if fail_closed {
        assert_eq!(stats.failed_closed, 3);
    } else {
        assert_eq!(stats.failed_open, 3);
    }
    limiter.check("bob").await.unwrap()
}

#[tokio::test]
async fn fails_open_when_redis_is_down() {
    let d = decide_while_stopped(false).await;
    assert!(d.allowed);
    assert_eq!(d.decided_by, DecidedBy::FailedOpen);
}

#[tokio::test]
async fn fails_closed_when_redis_is_down() {
    let d = decide_while_stopped(true).await;
    assert!(!d.allowed);
    assert_eq!(d.decided_by, DecidedBy::FailedClosed);
    assert_eq!(d.retry_after, Some(Duration::from_secs(60)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_limit_is_exact_in_process() {
    let cache = Cache::builder().service("auth").build().unwrap();
    let limiter = RateLimiter::builder("login")
        .rate(1, Duration::from_secs(3600))
        .burst(9)
        .build(&cache)
        .unwrap();
    let checks: Vec<_> = (0..200)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.check("carol").await.unwrap() })
        })
        .collect();
    let mut allowed = 0;
    for check in checks {
        let d = check.await.unwrap();
        assert_eq!(d.decided_by, DecidedBy::InProcess);
        allowed += u32::from(d.allowed);
    }
    assert_eq!(allowed, 9);
    let denied = limiter.check("carol").await.unwrap();
    assert!(denied.retry_after.unwrap() > Duration::from_secs(3590));
}

/// A bucket damaged in Redis (garbage, `nan`, an empty string, `inf`, a
/// time far ahead, another type) is reset and counted: never a permanent
/// allow (the script failing open) nor a permanent deny.
#[tokio::test]
async fn a_damaged_bucket_is_reset_and_counted() {
    let server = RedisServer::start();
    let cache = instance(&server.url());
    let limiter = RateLimiter::builder("damage")
        .rate(1, Duration::from_secs(3600))
        .burst(2)
        .fail_open()
        .build(&cache)
        .unwrap();
    let mut raw = server.raw().await;
    let damages: [&[&str]; 6] = [
        &["SET", "acgs:rl:damage:k", "garbage"],
        &["SET", "acgs:rl:damage:k", "nan"],
        &["SET", "acgs:rl:damage:k", ""],
        &["SET", "acgs:rl:damage:k", "inf"],
        &["SET", "acgs:rl:damage:k", "1e308"],
        &["HSET", "acgs:rl:damage:k", "tat", "1"],
    ];
    for (i, damage) in damages.iter().enumerate() {
        let _: () = redis::cmd("DEL")
            .arg("acgs:rl:damage:k")
            .query_async(&mut raw)
            .await
            .unwrap();
        let mut cmd = redis::cmd(damage[0]);
        for arg in &damage[1..] {
            cmd.arg(*arg);
        }
        let _: () = cmd.query_async(&mut raw).await.unwrap();
        let decisions = [
            limiter.check("k").await.unwrap(),
            limiter.check("k").await.unwrap(),
            limiter.check("k").await.unwrap(),
        ];
        assert!(
            decisions.iter().all(|d| d.decided_by == DecidedBy::Redis),
            "{damage:?}: {decisions:?}"
        );
        assert_eq!(
            decisions.map(|d| d.allowed),
            [true, true, false],
            "{damage:?}: the burst of a fresh bucket, then the limit"
        );
        assert_eq!(limiter.stats().reset_damaged, i as u64 + 1, "{damage:?}");
    }
    assert_eq!(limiter.stats().failed_open, 0);
}
