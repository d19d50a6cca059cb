//! Invalidation: events and patterns, tags, single entries, whole functions,
//! the race with in-flight computations, other instances, catch-up.

use acgs_cache_harness as support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache, MaxStaleness};
use support::{closed_port_url, RedisServer};
use tokio::sync::Notify;

fn l1_only(service: &str) -> Cache {
    Cache::builder().service(service).build().unwrap()
}

fn shared(server: &RedisServer, service: &str) -> Cache {
    Cache::builder()
        .redis_url(server.url())
        .service(service)
        .build()
        .unwrap()
}

/// The "database": a version per policy, bumped by writers.
static VERSION: AtomicU32 = AtomicU32::new(1);

#[cached(ttl = "policy_decision", invalidate_on = "governance.*")]
async fn decision(policy_id: u32) -> (u32, u32) {
    (policy_id, VERSION.load(Ordering::SeqCst))
}

#[cached(ttl = "static_configuration", invalidate_on = ["config.reloaded", "tenant.deleted"], tags = ["tenant.{tenant_id}"])]
async fn tenant_setting(tenant_id: u32, name: String) -> String {
    format!("{name}@{tenant_id}#{}", VERSION.load(Ordering::SeqCst))
}

#[tokio::test]
async fn patterns_match_the_documented_grammar() {
    let cache = l1_only("inv-patterns");
    cache
        .scope(async {
            let first = decision(1).await;
            for not_matching in ["governance", "governancex.rules", "policy.updated"] {
                cache.invalidate(not_matching).await.unwrap();
                assert_eq!(
                    decision(1).await,
                    first,
                    "{not_matching} must not match governance.*"
                );
            }
            for matching in ["governance.rules", "governance.rules.updated"] {
                let before = cache.stats().await.function("decision").unwrap().misses;
                cache.invalidate(matching).await.unwrap();
                decision(1).await;
                let after = cache.stats().await.function("decision").unwrap().misses;
                assert_eq!(after, before + 1, "{matching} must match governance.*");
            }
            assert!(cache.invalidate("bad name").await.is_err());
            assert!(cache.invalidate(".name").await.is_err());
            assert!(cache.invalidate("").await.is_err());
        })
        .await;
}

#[tokio::test]
async fn tags_drop_exactly_the_entries_carrying_them() {
    let cache = l1_only("inv-tags");
    cache
        .scope(async {
            tenant_setting(42, "quota".into()).await;
            tenant_setting(42, "region".into()).await;
            tenant_setting(7, "quota".into()).await;
            let misses = || async {
                cache
                    .stats()
                    .await
                    .function("tenant_setting")
                    .unwrap()
                    .misses
            };
            assert_eq!(misses().await, 3);
            cache.invalidate("tenant.42").await.unwrap();
            tenant_setting(7, "quota".into()).await;
            assert_eq!(misses().await, 3, "tenant 7 untouched");
            tenant_setting(42, "quota".into()).await;
            tenant_setting(42, "region".into()).await;
            assert_eq!(misses().await, 5, "both tenant-42 entries recomputed");
            // A listed exact name works as a pattern too.
            cache.invalidate("config.reloaded").await.unwrap();
            tenant_setting(7, "quota".into()).await;
            assert_eq!(misses().await, 6);
            let stats = cache.stats().await;
            assert_eq!(
                stats
                    .function("tenant_setting")
                    .unwrap()
                    .rejected
                    .get("invalidated"),
                Some(&3)
            );
        })
        .await;
}

#[tokio::test]
async fn companions_invalidate_one_entry_or_the_whole_function() {
    let cache = l1_only("inv-companions");
    cache
        .scope(async {
            decision(1).await;
            decision(2).await;
            let misses = || async { cache.stats().await.function("decision").unwrap().misses };
            invalidate_decision(1).await.unwrap();
            decision(2).await;
            assert_eq!(misses().await, 2, "entry 2 untouched");
            decision(1).await;
            assert_eq!(misses().await, 3, "entry 1 recomputed");
            invalidate_all_decision().await.unwrap();
            decision(1).await;
            decision(2).await;
            assert_eq!(misses().await, 5);
        })
        .await;
    // The same through the by-name API.
    let position = cache.invalidate_function("decision").await.unwrap();
    assert!(position >= cache.log_position() || position == cache.log_position());
}

/// A computation that waits for the test's signal half-way, so an
/// invalidation can land while it runs.
static GATE: std::sync::LazyLock<Arc<Notify>> =
    std::sync::LazyLock::new(|| Arc::new(Notify::new()));
static SLOW_VERSION: AtomicU32 = AtomicU32::new(1);
static READ_DONE: std::sync::LazyLock<Arc<Notify>> =
    std::sync::LazyLock::new(|| Arc::new(Notify::new()));

#[cached(ttl = "policy_decision", invalidate_on = "rules.changed")]
async fn slow_rules(id: u32) -> u32 {
    let read = SLOW_VERSION.load(Ordering::SeqCst); // reads the database first...
    READ_DONE.notify_one();
    GATE.notified().await; // ...and is slow to finish
    id * 1000 + read
}

/// The race the log exists for: a value computed from old data and written
/// after the invalidation must not be served, by this instance or another.
#[tokio::test]
async fn a_value_computed_before_the_event_and_written_after_it_is_rejected() {
    let server = RedisServer::start();
    let writer = shared(&server, "inv-race");
    let other = shared(&server, "inv-race");
    // Let both instances hear the log before the race starts.
    other.scope(slow_rules_ready(&other)).await;

    let computing = tokio::spawn({
        let writer = writer.clone();
        async move { writer.scope(slow_rules(1)).await }
    });
    READ_DONE.notified().await; // it has read version 1
    SLOW_VERSION.store(2, Ordering::SeqCst);
    writer.invalidate("rules.changed").await.unwrap();
    GATE.notify_one(); // now it finishes and writes L1 and L2 with version 1
    assert_eq!(
        computing.await.unwrap(),
        1001,
        "the in-flight caller gets what it computed"
    );

    // The stale value now sits in the writer's L1 and in L2. The other
    // instance, once it has heard the event, rejects the L2 copy...
    wait_until_heard(&other, writer.log_position()).await;
    let release = || {
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            GATE.notify_one();
        })
    };
    release();
    assert_eq!(
        other.scope(slow_rules(1)).await,
        1002,
        "the other instance must not serve the late, stale write"
    );
    let f = other.stats().await.function("slow_rules").cloned().unwrap();
    assert_eq!(
        (f.l2_hits, f.misses, f.rejected.get("invalidated")),
        (0, 1, Some(&1))
    );
    // ...and the writer never kept it in L1 (its fill was checked after the
    // insert), so it finds the fresh L2 entry.
    assert_eq!(writer.scope(slow_rules(1)).await, 1002);
    let f = writer
        .stats()
        .await
        .function("slow_rules")
        .cloned()
        .unwrap();
    assert_eq!((f.l1_hits, f.l2_hits), (0, 1), "{f:?}");
}

static ENTRY_GATE: std::sync::LazyLock<Arc<Notify>> =
    std::sync::LazyLock::new(|| Arc::new(Notify::new()));
static ENTRY_READ: std::sync::LazyLock<Arc<Notify>> =
    std::sync::LazyLock::new(|| Arc::new(Notify::new()));
static ENTRY_VERSION: AtomicU32 = AtomicU32::new(1);

#[cached(ttl = "policy_decision")]
async fn slow_entry(id: u32) -> u32 {
    let read = ENTRY_VERSION.load(Ordering::SeqCst);
    ENTRY_READ.notify_one();
    ENTRY_GATE.notified().await;
    id * 1000 + read
}

/// A miss whose read found the key empty writes with a plain `SET NX`; an
/// entry invalidation during its computation leaves a tombstone there,
/// which that write must not replace: the late value reaches neither Redis
/// nor another instance. (A plain `SET` in its place fails this test.)
#[tokio::test]
async fn an_entry_invalidated_while_its_empty_key_is_computed_keeps_its_tombstone() {
    let server = RedisServer::start();
    let writer = shared(&server, "inv-entry-race");
    let other = shared(&server, "inv-entry-race");
    writer.connect().await.unwrap();
    other.connect().await.unwrap();

    let computing = tokio::spawn({
        let writer = writer.clone();
        async move { writer.scope(slow_entry(7)).await }
    });
    ENTRY_READ.notified().await; // read version 1, from an empty key
    ENTRY_VERSION.store(2, Ordering::SeqCst);
    let position = writer.scope(invalidate_slow_entry(7)).await.unwrap();
    ENTRY_GATE.notify_one(); // finishes with version 1 and tries to store it
    assert_eq!(computing.await.unwrap(), 7001);

    wait_until_heard(&other, position).await;
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        ENTRY_GATE.notify_one();
    });
    assert_eq!(
        other.scope(slow_entry(7)).await,
        7002,
        "the late write must not have replaced the tombstone"
    );
    let f = other.stats().await.function("slow_entry").cloned().unwrap();
    assert_eq!((f.l2_hits, f.misses), (0, 1), "{f:?}");
    let f = writer
        .stats()
        .await
        .function("slow_entry")
        .cloned()
        .unwrap();
    assert_eq!(f.not_stored, 1, "the refused write is counted: {f:?}");
}

async fn slow_rules_ready(cache: &Cache) {
    wait_until_listening(cache).await;
}

async fn wait_until_listening(cache: &Cache) {
    // The tailer starts on first use; an invalidation of nothing starts it.
    cache.invalidate("test.warmup").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cache.stats().await.invalidations.listening {
        assert!(Instant::now() < deadline, "instance never heard the log");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_until_heard(cache: &Cache, position: acgs_cache::LogPosition) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.log_position() < position {
        assert!(Instant::now() < deadline, "instance never heard {position}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn another_instance_stops_serving_once_it_hears_the_event() {
    let server = RedisServer::start();
    let a = shared(&server, "inv-fleet");
    let b = shared(&server, "inv-fleet");
    wait_until_listening(&a).await;
    wait_until_listening(&b).await;
    let before = b.scope(tenant_setting(9, "plan".into())).await;
    assert_eq!(
        b.scope(tenant_setting(9, "plan".into())).await,
        before,
        "B serves from L1"
    );

    VERSION.fetch_add(1, Ordering::SeqCst);
    let sent_at = Instant::now();
    let position = a.invalidate("tenant.9").await.unwrap();
    wait_until_heard(&b, position).await;
    let heard_after = sent_at.elapsed();
    let after = b.scope(tenant_setting(9, "plan".into())).await;
    assert_ne!(after, before, "B recomputed after hearing the event");
    let stats = b.stats().await;
    assert!(stats.invalidations.received >= 1);
    assert!(stats.invalidations.propagation_p99_us.is_some());
    eprintln!("propagation to B: {heard_after:?}");
}

#[tokio::test]
async fn a_restarted_instance_catches_up_before_trusting_l2() {
    let server = RedisServer::start();
    let a = shared(&server, "inv-restart");
    let b = shared(&server, "inv-restart");
    wait_until_listening(&b).await;
    let stale = b.scope(decision(77)).await; // written to L2 by B
    drop(b); // B stops

    VERSION.fetch_add(1, Ordering::SeqCst);
    a.invalidate("governance.rules.updated").await.unwrap();

    let b_again = shared(&server, "inv-restart"); // B comes back, empty L1
    let fresh = b_again.scope(decision(77)).await;
    assert_ne!(fresh, stale, "the pre-event L2 entry was rejected");
    let f = b_again.stats().await.function("decision").cloned().unwrap();
    assert_eq!((f.l2_hits, f.misses), (0, 1));
    assert_eq!(f.rejected.get("invalidated"), Some(&1));
}

#[tokio::test]
async fn a_newcomer_learns_trimmed_invalidations_from_the_log_state() {
    let server = RedisServer::start();
    let a = shared(&server, "inv-trim");
    let stale = a.scope(decision(5)).await; // an entry in L2 before the event
    VERSION.fetch_add(1, Ordering::SeqCst);
    a.invalidate("governance.rules.updated").await.unwrap();
    a.invalidate("unrelated.event").await.unwrap();
    // The log loses its records (as trimming past a long-disconnected
    // instance would): a newcomer reads none of them.
    let mut raw = server.raw().await;
    let _: i64 = redis::cmd("XTRIM")
        .arg("acgs:{invalidation}:log")
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut raw)
        .await
        .unwrap();
    let newcomer = shared(&server, "inv-trim");
    assert_ne!(
        newcomer.scope(decision(5)).await,
        stale,
        "the event is known from the log's state"
    );
    let f = newcomer
        .stats()
        .await
        .function("decision")
        .cloned()
        .unwrap();
    assert_eq!((f.l2_hits, f.misses), (0, 1));
    assert_eq!(f.rejected.get("invalidated"), Some(&1));
    assert!(newcomer.stats().await.invalidations.state_loads >= 1);
}

#[tokio::test]
async fn unreachable_redis_fails_the_invalidation_but_clears_this_instance() {
    // The opt-out serves L1 while the log is unheard: what the local
    // invalidation must drop.
    let cache = Cache::builder()
        .redis_url(closed_port_url())
        .service("inv-down")
        .reconnect_backoff(Duration::from_millis(50))
        .max_staleness(MaxStaleness::L1Ttl)
        .build()
        .unwrap();
    cache
        .scope(async {
            decision(3).await;
            decision(3).await;
            assert!(cache.invalidate("governance.rules.updated").await.is_err());
            decision(3).await;
        })
        .await;
    let f = cache.stats().await.function("decision").cloned().unwrap();
    assert_eq!(
        (f.l1_hits, f.misses),
        (1, 2),
        "the local L1 entry was dropped"
    );
}

static LEASED_RUNS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "policy_decision")]
async fn leased_lookup(id: u32) -> u32 {
    LEASED_RUNS.fetch_add(1, Ordering::SeqCst);
    id
}

#[cached(ttl = "policy_decision", max_staleness = "l1_ttl")]
async fn opted_out_lookup(id: u32) -> u32 {
    id
}

#[tokio::test]
async fn functions_with_a_lease_bypass_l1_while_the_log_cannot_be_heard() {
    let cache = Cache::builder()
        .redis_url(closed_port_url())
        .service("inv-lease")
        .reconnect_backoff(Duration::from_millis(50))
        .build()
        .unwrap();
    cache
        .scope(async {
            for _ in 0..3 {
                leased_lookup(1).await;
                opted_out_lookup(1).await;
            }
        })
        .await;
    let stats = cache.stats().await;
    assert!(!stats.invalidations.listening);
    assert_eq!(stats.invalidations.lease_age_us, None, "never heard");
    let leased = stats.function("leased_lookup").unwrap();
    assert_eq!(
        (leased.misses, leased.l1_hits, leased.lease_skips),
        (3, 0, 3),
        "a lease never renewed: computed every time"
    );
    assert_eq!(leased.max_staleness_ms, Some(1000));
    let opted_out = stats.function("opted_out_lookup").unwrap();
    assert_eq!(
        (
            opted_out.l1_hits,
            opted_out.lease_skips,
            opted_out.max_staleness_ms
        ),
        (2, 0, None),
        "l1_ttl: served from L1"
    );
}

#[tokio::test]
async fn invalidation_state_is_bounded_by_the_retention() {
    let remembering = Cache::builder().service("inv-prune").build().unwrap();
    let forgetting = Cache::builder()
        .service("inv-prune")
        .invalidation_retention(Duration::from_millis(20))
        .build()
        .unwrap();
    for i in 0..100 {
        remembering
            .invalidate(&format!("tenant.{i}"))
            .await
            .unwrap();
        forgetting.invalidate(&format!("tenant.{i}")).await.unwrap();
    }
    assert_eq!(remembering.stats().await.invalidations.remembered, 100);
    tokio::time::sleep(Duration::from_millis(50)).await;
    forgetting.invalidate("tenant.last").await.unwrap();
    assert_eq!(
        forgetting.stats().await.invalidations.remembered,
        1,
        "older records pruned"
    );
}
