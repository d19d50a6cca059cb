//! Sentinel: master + replica + one Sentinel, started by the harness. Every
//! feature works through the master the Sentinel names; and under
//! concurrent load the master is killed; Sentinel promotes the replica; every
//! call keeps answering (from the function while L2 is away) and L2 writes
//! resume on the new master.

use acgs_cache_harness as support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache};
use support::SentinelSetup;

#[cached(ttl = "policy_decision")]
async fn decide(policy_id: u64) -> u64 {
    policy_id * 2
}

/// Before any failover: invalidation between instances, warming, locks
/// and the fleet view, all through the master the Sentinel names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_feature_works_through_the_sentinel() {
    let setup = SentinelSetup::start();
    let instance = || {
        Cache::builder()
            .service("sentinel-features")
            .redis_url(setup.url())
            .disable_l1()
            .fleet_interval(Duration::from_millis(50))
            .build()
            .unwrap()
    };
    let (writer, reader) = (instance(), instance());
    writer.connect().await.unwrap();
    reader.connect().await.unwrap();
    let report = writer
        .warmer()
        .await
        .load((0..100).map(|id| warm_entry_decide(id, id * 2)))
        .await
        .unwrap();
    assert_eq!(report.written, 100);
    for id in 0..100 {
        assert_eq!(reader.scope(decide(id)).await, id * 2);
    }
    assert_eq!(
        reader.stats().await.function("decide").unwrap().l2_hits,
        100
    );
    let position = writer.invalidate_function("decide").await.unwrap();
    support::wait_until("the reader hears the invalidation", || {
        reader.log_position() >= position
    })
    .await;
    reader.scope(decide(1)).await;
    assert_eq!(reader.stats().await.function("decide").unwrap().misses, 1);
    let lock = writer
        .try_lease("report", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(reader
        .try_lease("report", Duration::from_secs(5))
        .await
        .unwrap()
        .is_none());
    lock.release().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while writer.fleet_stats().await.unwrap().members.len() < 2 {
        assert!(Instant::now() < deadline, "fleet view incomplete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_keep_answering_through_a_failover_and_writes_resume_on_the_new_master() {
    let mut setup = SentinelSetup::start();
    let old_master = setup.master_port();
    let cache = Cache::builder()
        .service("sentinel-test")
        .redis_url(setup.url())
        .disable_l1() // every call reaches Redis
        .l2_soft_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(300))
        .reconnect_backoff(Duration::from_millis(100))
        .probe_interval(Duration::from_millis(100))
        .fleet_interval(Duration::ZERO)
        .build()
        .unwrap();
    cache.connect().await.expect("connect through the Sentinel");
    assert_eq!(
        cache.health().await.l2.map(|l2| l2.topology),
        Some("sentinel")
    );
    for id in 0..100 {
        cache.scope(decide(id)).await;
    }
    assert_eq!(entries_on(&setup, old_master), 100);

    // 16 callers over 200 ids; each checks every answer.
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..16)
        .map(|task| {
            let (cache, stop, calls) = (cache.clone(), stop.clone(), calls.clone());
            tokio::spawn(async move {
                let mut id = task;
                while !stop.load(Ordering::Relaxed) {
                    id = (id + 7) % 200;
                    assert_eq!(cache.scope(decide(id)).await, id * 2);
                    calls.fetch_add(1, Ordering::Relaxed);
                    // A caller with L2 away computes without awaiting
                    // anything: yield, as a request handler's I/O would.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    setup.kill_master();
    let killed = Instant::now();
    let before = calls.load(Ordering::Relaxed);
    let new_master = tokio::task::spawn_blocking(move || {
        let port = setup.wait_for_failover(old_master, Duration::from_secs(30));
        (setup, port)
    });
    let (setup, new_master) = new_master.await.unwrap();
    let new_master = new_master.expect("Sentinel promoted the replica");
    assert_ne!(new_master, old_master);
    let during_switch = calls.load(Ordering::Relaxed) - before;
    assert!(during_switch > 0, "calls went on while the master was gone");

    // Fresh entries land on the new master (it held only what it had
    // replicated when it was promoted).
    let promoted_with = entries_on(&setup, new_master);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut fresh = 1_000;
    loop {
        cache.scope(decide(fresh)).await;
        fresh += 1;
        if entries_on(&setup, new_master) > promoted_with {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write reached the new master: {:?}",
            cache.health().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = killed.elapsed();
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller
            .await
            .expect("no caller saw a wrong value or a panic");
    }
    let health = cache.health().await;
    assert!(
        health.l2.as_ref().is_some_and(|l2| l2.reachable),
        "{health:?}"
    );
    println!(
        "sentinel: calls={} during_switch={during_switch} writes_resumed_after={resumed:?}",
        calls.load(Ordering::Relaxed)
    );
}

/// The cache's entries on the server at `port`.
fn entries_on(setup: &SentinelSetup, port: u16) -> usize {
    setup
        .server(port)
        .expect("a server of the setup")
        .keys("acgs:sentinel-test:decide:*")
        .len()
}
