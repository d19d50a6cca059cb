//! The fleet view: instances publish their stats to Redis; one call sees
//! them all, summed per service and function; a stopped instance drops out.

use acgs_cache_harness as support;

use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache, FleetStats, MaxStaleness};
use support::{RedisServer, TcpProxy};

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

/// An instance that can be cut off: its Redis is reached through a proxy.
fn instance_at(url: &str, max_staleness: MaxStaleness) -> Cache {
    Cache::builder()
        .service("fleet-wait")
        .redis_url(url)
        .max_staleness(max_staleness)
        .fleet_interval(Duration::ZERO)
        .reconnect_backoff(Duration::from_millis(50))
        .build()
        .unwrap()
}

/// An invalidation waited for: instances that hear it acknowledge it within
/// milliseconds; one cut off (connections left open) is covered by its
/// lease once that has run out, never before; one whose functions opted out
/// of the lease is named as outside the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_the_fleet_names_who_heard_and_who_is_covered_by_the_lease() {
    const LEASE: Duration = Duration::from_millis(300);
    let server = RedisServer::start();
    let lease = MaxStaleness::lease(LEASE).unwrap();
    let writer = instance_at(&server.url(), lease);
    let listener = instance_at(&server.url(), lease);
    let cut_proxy = TcpProxy::start(server.port());
    let cut_off = instance_at(&cut_proxy.url(), lease);
    for cache in [&writer, &listener, &cut_off] {
        cache.connect().await.unwrap();
    }
    let names = |caches: &[&Cache]| -> Vec<String> {
        let mut names: Vec<String> = caches.iter().map(|c| c.instance_id().to_owned()).collect();
        names.sort();
        names
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    // Every instance publishes once a second at least: wait until all three did.
    let position = writer.invalidate("fleet.changed").await.unwrap();
    let mut ack = writer.wait_for_fleet(position).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ack.acknowledged.len() < 3 {
        assert!(Instant::now() < deadline, "{ack:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        ack = writer.wait_for_fleet(position).await.unwrap();
    }
    assert_eq!(
        sorted(ack.acknowledged.clone()),
        names(&[&writer, &listener, &cut_off])
    );
    assert!(ack.covered_by_lease.is_empty(), "{ack:#?}");

    // The third instance's network drops everything: the wait ends when its
    // lease has run out, and says so.
    cut_proxy.freeze();
    let position = writer.invalidate("fleet.changed").await.unwrap();
    let ack = writer.wait_for_fleet(position).await.unwrap();
    assert_eq!(
        sorted(ack.acknowledged.clone()),
        names(&[&writer, &listener]),
        "{ack:#?}"
    );
    assert_eq!(ack.covered_by_lease, names(&[&cut_off]), "{ack:#?}");
    assert!(ack.outside_the_bound.is_empty(), "{ack:#?}");
    assert!(
        ack.waited >= LEASE,
        "returned before the lease ran out: {ack:#?}"
    );
    cut_proxy.thaw();

    // An instance with the l1_ttl opt-out, cut off: named as outside the bound.
    let opted_proxy = TcpProxy::start(server.port());
    let opted_out = instance_at(&opted_proxy.url(), MaxStaleness::L1Ttl);
    opted_out.connect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let position = writer.invalidate("fleet.changed").await.unwrap();
        if writer
            .wait_for_fleet(position)
            .await
            .unwrap()
            .acknowledged
            .contains(&opted_out.instance_id().to_owned())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the opted-out instance never published"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    opted_proxy.freeze();
    let position = writer.invalidate("fleet.changed").await.unwrap();
    let ack = writer.wait_for_fleet(position).await.unwrap();
    assert_eq!(ack.outside_the_bound, names(&[&opted_out]), "{ack:#?}");
    opted_proxy.thaw();
}
