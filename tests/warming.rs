//! Warming against a real redis-server: primed entries are what the cached
//! function then finds, computed warming is bounded, invalidations reject
//! entries warmed from older data, and bad entries are counted, not written.

use acgs_cache_harness as support;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acgs_cache::{cached, Cache, Error};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use support::RedisServer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Rule {
    id: u64,
    text: String,
}

static COMPUTED: AtomicU32 = AtomicU32::new(0);

fn rule(id: u64) -> Rule {
    Rule {
        id,
        text: format!("rule {id}"),
    }
}

#[cached(ttl = "governance_rules", invalidate_on = "governance.*")]
async fn governance_rule(id: u64) -> Result<Rule, String> {
    COMPUTED.fetch_add(1, Ordering::SeqCst);
    Ok(Rule {
        id,
        text: "computed, not warmed".to_owned(),
    })
}

#[cached(ttl = "compliance_checks", tags = ["tenant.{tenant}"])]
async fn compliance(tenant: u32, check: u32) -> String {
    format!("computed {tenant}/{check}")
}

fn instance(server: &RedisServer, service: &str) -> Cache {
    Cache::builder()
        .service(service)
        .redis_url(server.url())
        .build()
        .unwrap()
}

#[tokio::test]
async fn warmed_entries_are_l2_hits_on_another_instance() {
    let server = RedisServer::start();
    let warming = instance(&server, "warm-l2");
    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&progress);
    let report = warming
        .warmer()
        .await
        .batch_size(100)
        .on_progress(move |p| seen.lock().unwrap().push(p.written))
        .load((0..1_000).map(|id| warm_entry_governance_rule(id, rule(id))))
        .await
        .unwrap();
    assert_eq!((report.entries, report.written), (1_000, 1_000));
    assert_eq!((report.rejected, report.failed), (0, 0));
    let progress = progress.lock().unwrap().clone();
    assert_eq!(progress.len(), 10, "one report per batch");
    assert_eq!(progress.last(), Some(&1_000));

    // Entries carry the policy's TTL in Redis.
    let mut raw = server.raw().await;
    let keys: Vec<String> = raw.keys("acgs:warm-l2:governance_rule:*").await.unwrap();
    assert_eq!(keys.len(), 1_000);
    let pttl: i64 = raw.pttl(&keys[0]).await.unwrap();
    assert!(pttl > 3_000_000, "about an hour left: {pttl} ms");

    // A fresh instance (empty L1) finds them: L2 hits, nothing computed.
    let reader = instance(&server, "warm-l2");
    let before = COMPUTED.load(Ordering::SeqCst);
    for id in [0, 499, 999] {
        assert_eq!(reader.scope(governance_rule(id)).await.unwrap(), rule(id));
    }
    let stats = reader.stats().await;
    let f = stats.function("governance_rule").unwrap();
    assert_eq!((f.l2_hits, f.misses), (3, 0), "{f:?}");
    assert_eq!(COMPUTED.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn an_invalidation_after_the_warmer_started_rejects_what_it_wrote() {
    let server = RedisServer::start();
    let cache = instance(&server, "warm-coherence");
    // Data read for warming...
    let warmer = cache.warmer().await;
    // ...then the rules change before the warmed values are written.
    cache.invalidate("governance.rules.updated").await.unwrap();
    let report = warmer
        .load((0..10).map(|id| warm_entry_governance_rule(id, rule(id))))
        .await
        .unwrap();
    assert_eq!(report.written, 10);
    let value = cache.scope(governance_rule(3)).await.unwrap();
    assert_eq!(
        value.text, "computed, not warmed",
        "stale warm value served"
    );

    // A warmer created after the event writes values that are served.
    cache
        .warmer()
        .await
        .load([warm_entry_governance_rule(4, rule(4))])
        .await
        .unwrap();
    let fresh = instance(&server, "warm-coherence");
    assert_eq!(fresh.scope(governance_rule(4)).await.unwrap(), rule(4));
}

#[tokio::test]
async fn tagged_entries_keep_their_tags() {
    let server = RedisServer::start();
    let cache = instance(&server, "warm-tags");
    cache
        .warmer()
        .await
        .load([
            warm_entry_compliance(1, 1, "warmed 1/1".to_owned()),
            warm_entry_compliance(2, 1, "warmed 2/1".to_owned()),
        ])
        .await
        .unwrap();
    assert_eq!(cache.scope(compliance(1, 1)).await, "warmed 1/1");
    cache.invalidate("tenant.1").await.unwrap();
    assert_eq!(cache.scope(compliance(1, 1)).await, "computed 1/1");
    assert_eq!(cache.scope(compliance(2, 1)).await, "warmed 2/1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn computed_warming_is_bounded_and_skips_none() {
    let server = RedisServer::start();
    let cache = instance(&server, "warm-compute");
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let report = cache
        .warmer()
        .await
        .concurrency(4)
        .batch_size(16)
        .compute(0..200u64, |id| {
            let (running, peak) = (running.clone(), peak.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                // Every tenth rule is missing from the source.
                (id % 10 != 0).then(|| warm_entry_governance_rule(id, rule(id)))
            }
        })
        .await
        .unwrap();
    assert_eq!((report.entries, report.written), (180, 180));
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&peak),
        "at most 4 computations at once, saw {peak}"
    );
    let mut raw = server.raw().await;
    let keys: Vec<String> = raw
        .keys("acgs:warm-compute:governance_rule:*")
        .await
        .unwrap();
    assert_eq!(keys.len(), 180);
}

#[tokio::test]
async fn without_l2_entries_go_to_l1() {
    let cache = Cache::builder().service("warm-l1").build().unwrap();
    let report = cache
        .warmer()
        .await
        .load((0..50).map(|id| warm_entry_governance_rule(id, rule(id))))
        .await
        .unwrap();
    assert_eq!(report.written, 50);
    let before = COMPUTED.load(Ordering::SeqCst);
    assert_eq!(cache.scope(governance_rule(7)).await.unwrap(), rule(7));
    let stats = cache.stats().await;
    let f = stats.function("governance_rule").unwrap();
    assert_eq!((f.l1_hits, f.misses), (1, 0), "{f:?}");
    assert_eq!(COMPUTED.load(Ordering::SeqCst), before);
}

static PINNED: std::sync::LazyLock<Cache> =
    std::sync::LazyLock::new(|| Cache::builder().service("warm-pinned").build().unwrap());

#[cached(ttl = "policy_decision", cache = PINNED)]
async fn pinned(id: u64) -> u64 {
    id
}

#[tokio::test]
async fn entries_of_another_cache_are_rejected_not_misfiled() {
    let server = RedisServer::start();
    let other = instance(&server, "warm-other");
    let report = other
        .warmer()
        .await
        .load([
            warm_entry_pinned(1, 1),
            warm_entry_governance_rule(1, rule(1)),
        ])
        .await
        .unwrap();
    assert_eq!((report.written, report.rejected), (1, 1));
    // The pinned function's own cache can be warmed.
    let report = PINNED
        .warmer()
        .await
        .load([warm_entry_pinned(2, 20)])
        .await
        .unwrap();
    assert_eq!(report.written, 1);
    assert_eq!(pinned(2).await, 20);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let cache = Cache::builder()
        .service("warm-down")
        .redis_url(support::closed_port_url())
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let outcome = cache
        .warmer()
        .await
        .load([warm_entry_governance_rule(1, rule(1))])
        .await;
    match outcome {
        Err(e @ Error::Redis(_)) => {
            assert!(e.to_string().contains("refused"), "unclear error: {e}");
        }
        Err(Error::Timeout(_) | Error::Unavailable(_)) => {}
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fresh_instance_stamps_entries_with_the_logs_current_position() {
    let server = RedisServer::start();
    // The log already holds a matching event from another instance...
    instance(&server, "warm-fresh")
        .invalidate("governance.rules.updated")
        .await
        .unwrap();
    // ...and this one has made no call yet: the warmer reads the log first,
    // so its entries are not stamped older than that event.
    let fresh = instance(&server, "warm-fresh");
    fresh
        .warmer()
        .await
        .load([warm_entry_governance_rule(9, rule(9))])
        .await
        .unwrap();
    let reader = instance(&server, "warm-fresh");
    assert_eq!(reader.scope(governance_rule(9)).await.unwrap(), rule(9));
    let stats = reader.stats().await;
    let f = stats.function("governance_rule").unwrap();
    assert_eq!((f.l2_hits, f.misses), (1, 0), "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_lost_mid_run_is_counted_not_fatal() {
    let mut server = RedisServer::start();
    let cache = Cache::builder()
        .service("warm-lost")
        .redis_url(server.url())
        .build()
        .unwrap();
    let warmer = cache
        .warmer()
        .await
        .batch_size(10)
        .pipelines_in_flight(1)
        .pipeline_timeout(Duration::from_millis(500));
    let sent = AtomicU32::new(0);
    let report = warmer
        .compute(0..100u64, |id| {
            if sent.fetch_add(1, Ordering::SeqCst) == 30 {
                server.stop(); // Redis dies a third of the way in
            }
            async move { Some(warm_entry_governance_rule(id, rule(id))) }
        })
        .await
        .unwrap();
    assert_eq!(report.entries, 100);
    // Entries 30.. were computed after the loss: their batches all failed.
    // (How many earlier batches made it depends on timing.)
    assert!(report.failed >= 70, "{report}");
    assert_eq!(report.written + report.failed, 100, "{report}");
}
