//! Redis Cluster: a 3-master cluster the harness starts. Entries spread over
//! every shard; reads, invalidation (the log lives on one shard, the
//! entries on all), warming, locks and the fleet view work; with one master
//! killed, calls keep answering.

use acgs_cache_harness as support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache};
use support::ClusterSetup;

static COMPUTED: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = "policy_decision", invalidate_on = "governance.*")]
async fn decide(policy_id: u64) -> u64 {
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    policy_id * 2
}

#[cached(ttl = "policy_decision")]
async fn rule_text(rule_id: u64) -> String {
    format!("rule {rule_id}")
}

fn instance(cluster: &ClusterSetup) -> Cache {
    Cache::builder()
        .service("cluster-test")
        .redis_url(cluster.url())
        .disable_l1() // every call reaches the cluster
        .l2_soft_timeout(Duration::from_millis(500))
        .fleet_interval(Duration::from_millis(100))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_master_cluster_serves_every_feature_and_survives_a_dead_master() {
    let mut cluster = ClusterSetup::start(3);
    let writer = instance(&cluster);
    let reader = instance(&cluster);
    writer.connect().await.expect("connect to the cluster");
    reader.connect().await.expect("connect to the cluster");
    let health = writer.health().await;
    assert_eq!(health.l2.as_ref().map(|l2| l2.topology), Some("cluster"));

    // Misses write entries; their keys hash to slots on all three masters.
    for id in 0..300 {
        assert_eq!(writer.scope(decide(id)).await, id * 2);
    }
    let computed = COMPUTED.load(Ordering::Relaxed);
    assert_eq!(computed, 300);
    for node in 0..3 {
        let keys = cluster.keys_on(node, "acgs:cluster-test:decide:*");
        assert!(
            keys.len() > 30,
            "master {node} holds only {} of 300 entries",
            keys.len()
        );
    }

    // A second instance reads them all from L2 (GETs routed per slot).
    for id in 0..300 {
        assert_eq!(reader.scope(decide(id)).await, id * 2);
    }
    assert_eq!(
        COMPUTED.load(Ordering::Relaxed),
        300,
        "every read was a hit"
    );
    let stats = reader.stats().await;
    let decide_stats = stats.function("decide").unwrap();
    assert_eq!((decide_stats.l2_hits, decide_stats.misses), (300, 0));

    // One event invalidates the entries on every shard, for both instances.
    let position = writer
        .invalidate("governance.policy-updated")
        .await
        .unwrap();
    support::wait_until("the reader hears the event", || {
        reader.log_position() >= position
    })
    .await;
    for id in 0..300 {
        assert_eq!(reader.scope(decide(id)).await, id * 2);
    }
    assert_eq!(
        COMPUTED.load(Ordering::Relaxed),
        600,
        "every entry, on every shard, was invalidated"
    );

    // Warming writes single-key SETs, never one cross-slot pipeline.
    let report = writer
        .warmer()
        .await
        .load((0..500).map(|id| warm_entry_rule_text(id, format!("rule {id}"))))
        .await
        .unwrap();
    assert_eq!(
        (report.written, report.failed, report.rejected),
        (500, 0, 0)
    );
    for node in 0..3 {
        assert!(!cluster
            .keys_on(node, "acgs:cluster-test:rule_text:*")
            .is_empty());
    }
    for id in 0..500 {
        assert_eq!(reader.scope(rule_text(id)).await, format!("rule {id}"));
    }
    assert_eq!(
        reader.stats().await.function("rule_text").unwrap().l2_hits,
        500
    );

    // Locks (one key, one slot) exclude each other across instances.
    let lock = writer
        .try_lease("nightly-report", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("free lock");
    assert!(reader
        .try_lease("nightly-report", Duration::from_secs(5))
        .await
        .unwrap()
        .is_none());
    lock.release().await.unwrap();
    assert!(reader
        .try_lease("nightly-report", Duration::from_secs(5))
        .await
        .unwrap()
        .is_some());

    // The rate limiter's script touches one key.
    let limiter = acgs_cache::RateLimiter::builder("login")
        .rate(5, Duration::from_secs(60))
        .burst(5)
        .fail_closed()
        .build(&writer)
        .unwrap();
    let allowed = futures_util::future::join_all((0..8).map(|_| limiter.check("alice"))).await;
    let allowed = allowed
        .into_iter()
        .filter(|d| d.as_ref().unwrap().allowed)
        .count();
    assert_eq!(allowed, 5, "exactly the burst");

    // The fleet view scans every master for the instances' snapshots.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fleet = writer.fleet_stats().await.unwrap();
        if fleet
            .function("cluster-test", "decide")
            .is_some_and(|f| f.instances == 2 && f.stats.calls == 900)
        {
            break;
        }
        assert!(Instant::now() < deadline, "fleet view: {fleet:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A master that does not hold the invalidation log dies (if the log's
    // master dies, instances stop trusting L2 until it is back, and L1 once
    // their lease runs out). Every call still answers, with the right value.
    let log_node = cluster.node_of_key("acgs:{invalidation}:log");
    cluster.kill((log_node + 1) % 3);
    let start = Instant::now();
    let before = reader.stats().await.function("decide").unwrap().l2_hits;
    for round in 0..3 {
        for id in 0..300 {
            assert_eq!(reader.scope(decide(id)).await, id * 2, "round {round}");
        }
    }
    let after = reader.stats().await.function("decide").unwrap().clone();
    // About two thirds of the keys live on the two masters left.
    assert!(
        after.l2_hits - before > 300,
        "the two live shards kept serving hits: {after:?}"
    );
    let health = reader.health().await;
    let l2 = health.l2.as_ref().unwrap();
    assert_eq!((l2.nodes_answering, l2.nodes), (2, 3), "{health}");
    assert_eq!(health.status, acgs_cache::HealthStatus::Degraded);
    println!(
        "cluster: 900 calls with one master dead in {:?}; l2_hits +{} errors {}",
        start.elapsed(),
        after.l2_hits - before,
        after.errors
    );
}
