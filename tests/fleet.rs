//! The fleet view: instances publish their stats to Redis; one call sees
//! them all, summed per service and function; a stopped instance drops out.

use acgs_cache_harness as support;

use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache, FleetStats};
use support::RedisServer;

#[cached(ttl = "policy_decision")]
async fn decide(policy_id: u64) -> bool {
    policy_id.is_multiple_of(2)
}

fn instance(server: &RedisServer, service: &str) -> Cache {
    Cache::builder()
        .service(service)
        .redis_url(server.url())
        .fleet_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

/// Polls the fleet view until `done` holds (at most 3 s).
async fn wait_for(cache: &Cache, done: impl Fn(&FleetStats) -> bool) -> FleetStats {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let fleet = cache.fleet_stats().await.unwrap();
        if done(&fleet) {
            return fleet;
        }
        assert!(
            Instant::now() < deadline,
            "fleet view never got there: {fleet:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_instances_are_summed_and_a_stopped_one_drops_out() {
    let server = RedisServer::start();
    let a = instance(&server, "fleet-decisions");
    let b = instance(&server, "fleet-decisions");
    for id in 0..10 {
        a.scope(decide(id)).await; // 10 misses
    }
    for id in 0..10 {
        b.scope(decide(id)).await; // 10 L2 hits
        b.scope(decide(id)).await; // 10 L1 hits
    }
    let fleet = wait_for(&a, |f| {
        f.function("fleet-decisions", "decide")
            .is_some_and(|d| d.instances == 2 && d.stats.calls == 30)
    })
    .await;
    assert_eq!(fleet.members.len(), 2);
    assert_eq!(fleet.unreadable, 0);
    let decide = fleet.function("fleet-decisions", "decide").unwrap();
    assert_eq!(
        (
            decide.stats.misses,
            decide.stats.l2_hits,
            decide.stats.l1_hits
        ),
        (10, 10, 10)
    );

    // An instance that stops publishing expires out of the view.
    drop(b);
    let fleet = wait_for(&a, |f| f.members.len() == 1).await;
    assert_eq!(
        fleet
            .function("fleet-decisions", "decide")
            .unwrap()
            .instances,
        1
    );
}

#[tokio::test]
async fn without_l2_there_is_no_fleet_view() {
    let cache = Cache::builder().service("fleet-l1").build().unwrap();
    assert!(matches!(
        cache.fleet_stats().await,
        Err(acgs_cache::Error::Unavailable(_))
    ));
}

#[tokio::test]
async fn foreign_keys_under_the_prefix_are_counted_not_fatal() {
    let server = RedisServer::start();
    let cache = instance(&server, "fleet-foreign");
    cache.scope(decide(1)).await;
    let mut raw = server.raw().await;
    let _: () = redis::cmd("SET")
        .arg("acgs:fleet:other:garbage")
        .arg("{not a member")
        .query_async(&mut raw)
        .await
        .unwrap();
    let fleet = wait_for(&cache, |f| f.members.len() == 1).await;
    assert_eq!(fleet.unreadable, 1);
}
