//! The typed cache API beside the attribute (`CacheMap::builder`): get, insert
//! (with TTL and tags), get_or_compute through the same flight, remove and
//! invalidation, in L1-only mode and across two instances on one Redis.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use acgs_cache::{policies, Cache, CacheMap, Error};
use acgs_cache_harness::RedisServer;

fn rules(cache: &Cache) -> CacheMap<u64, String> {
    CacheMap::builder("rules")
        .ttl(policies::GOVERNANCE_RULES)
        .build(cache)
        .unwrap()
}

#[tokio::test]
async fn get_insert_compute_remove_in_one_instance() {
    let cache = Cache::builder().service("map-l1").build().unwrap();
    let rules = rules(&cache);
    assert_eq!(rules.get(&1).await, None);

    rules.insert(&1, "deny".to_owned()).await.unwrap();
    assert_eq!(rules.get(&1).await.as_deref(), Some("deny"));

    // A stored value wins over a computation, which is never polled.
    let computed = AtomicU64::new(0);
    let value = rules
        .get_or_compute(&1, async {
            computed.fetch_add(1, Ordering::Relaxed);
            "other".to_owned()
        })
        .await;
    assert_eq!(
        (value.as_str(), computed.load(Ordering::Relaxed)),
        ("deny", 0)
    );

    // Concurrent callers of a missing key share one computation.
    let callers = (0..16).map(|_| {
        rules.get_or_compute(&2, async {
            computed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            "allow".to_owned()
        })
    });
    let values = futures_util::future::join_all(callers).await;
    assert!(values.iter().all(|v| v == "allow"));
    assert_eq!(
        computed.load(Ordering::Relaxed),
        1,
        "one computation for 16 callers"
    );

    // Errors are returned and not stored.
    let failed: Result<String, &str> = rules.get_or_try_compute(&3, async { Err("db down") }).await;
    assert_eq!(failed, Err("db down"));
    assert_eq!(rules.get(&3).await, None);

    rules.remove(&1).await.unwrap();
    assert_eq!(rules.get(&1).await, None);
    rules.invalidate_all().await.unwrap();
    assert_eq!(rules.get(&2).await, None);

    let row = cache
        .stats()
        .await
        .functions
        .into_iter()
        .find(|f| f.function == "map-rules")
        .expect("a stats row of its own");
    assert!(row.l1_hits >= 2, "{row:?}");
}

#[tokio::test]
async fn tags_and_ttl_per_insert() {
    let cache = Cache::builder().service("map-tags").build().unwrap();
    let rules = rules(&cache);
    rules
        .insert_with(
            &1,
            "a".into(),
            Duration::from_secs(60),
            &["tenant.acme corp"],
        )
        .await
        .unwrap();
    rules
        .insert_with(&2, "b".into(), Duration::from_secs(60), &["tenant.other"])
        .await
        .unwrap();
    cache.invalidate("tenant.acme corp").await.unwrap();
    assert_eq!(rules.get(&1).await, None);
    assert_eq!(rules.get(&2).await.as_deref(), Some("b"));

    rules
        .insert_with(&3, "short".into(), Duration::from_millis(50), &[])
        .await
        .unwrap();
    assert!(rules.get(&3).await.is_some());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(rules.get(&3).await, None, "expired with its own TTL");

    let refused = rules
        .insert_with(&4, "x".into(), Duration::from_secs(1), &["no tenant.x"])
        .await;
    assert!(matches!(refused, Err(Error::InvalidName(_))), "{refused:?}");
}

#[tokio::test]
async fn two_instances_share_entries_and_removals() {
    let server = RedisServer::start();
    let instance = |name: &str| {
        Cache::builder()
            .service("map-shared")
            .redis_url(server.url())
            .build()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let (a, b) = (instance("a"), instance("b"));
    a.connect().await.unwrap();
    b.connect().await.unwrap();
    let (rules_a, rules_b) = (rules(&a), rules(&b));

    rules_a.insert(&7, "from a".into()).await.unwrap();
    assert_eq!(
        rules_b.get(&7).await.as_deref(),
        Some("from a"),
        "an L2 hit on b"
    );

    let position = rules_a.remove(&7).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b.log_position() < position {
        assert!(
            std::time::Instant::now() < deadline,
            "b never heard the removal"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(rules_b.get(&7).await, None, "removed on every instance");

    // One name, another value type of the same layout: never the other's
    // bytes (only the map's identity tells them apart).
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Label(String);
    let labels = CacheMap::<u64, Label>::builder("rules").build(&b).unwrap();
    rules_a.insert(&8, "text".into()).await.unwrap();
    assert_eq!(labels.get(&8).await, None);
    labels.insert(&8, Label("label".into())).await.unwrap();
    assert_eq!(rules_b.get(&8).await.as_deref(), Some("text"));
}

/// Two maps of one name and different types on one cache would share a
/// stats row, metric labels and `invalidate_all`: the second to register is
/// refused the name (logged at ERROR) and shows as `map-rules#…`.
#[tokio::test]
async fn two_stores_claiming_one_name_get_two_rows() {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Label(String);
    let cache = Cache::builder().service("map-names").build().unwrap();
    let rules = CacheMap::<u64, String>::builder("rules")
        .build(&cache)
        .unwrap();
    let labels = CacheMap::<u64, Label>::builder("rules")
        .build(&cache)
        .unwrap();
    rules.insert(&1, "deny".into()).await.unwrap();
    labels.insert(&1, Label("red".into())).await.unwrap();
    assert_eq!(rules.get(&1).await.as_deref(), Some("deny"));
    assert_eq!(labels.get(&1).await, Some(Label("red".into())));
    labels.invalidate_all().await.unwrap();
    assert_eq!(rules.get(&1).await.as_deref(), Some("deny"), "only its own");
    let stats = cache.stats().await;
    let names: Vec<&str> = stats.functions.iter().map(|f| &*f.function).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"map-rules"), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("map-rules#")),
        "{names:?}"
    );
}

/// What is left of an entry's TTL is Redis's copy's: the same on an
/// instance that only read it, nothing once the entry is removed or
/// tagged away, nothing for another map's bytes under the key.
#[tokio::test]
async fn expires_in_is_the_shared_entrys_and_ends_with_it() {
    let server = RedisServer::start();
    let instance = || {
        Cache::builder()
            .service("map-ttl")
            .redis_url(server.url())
            .build()
            .unwrap()
    };
    let (a, b) = (instance(), instance());
    a.connect().await.unwrap();
    b.connect().await.unwrap();
    let (rules_a, rules_b) = (rules(&a), rules(&b));
    assert_eq!(rules_a.expires_in(&1).await.unwrap(), None);

    let ttl = Duration::from_secs(90);
    rules_a
        .insert_with(&1, "deny".into(), ttl, &["tenant.acme"])
        .await
        .unwrap();
    for (who, map) in [("writer", &rules_a), ("reader", &rules_b)] {
        let left = map.expires_in(&1).await.unwrap().expect(who);
        assert!(
            left <= ttl && left > ttl - Duration::from_secs(10),
            "{who}: {left:?} of {ttl:?}"
        );
    }
    // The policy's TTL for a plain insert.
    rules_a.insert(&2, "allow".into()).await.unwrap();
    let left = rules_b.expires_in(&2).await.unwrap().unwrap();
    assert!(
        left <= rules_b.default_ttl() && left > rules_b.default_ttl() - Duration::from_secs(10)
    );

    // Invalidated by its tag: no time left, on the instance that published.
    a.invalidate("tenant.acme").await.unwrap();
    assert_eq!(rules_a.expires_in(&1).await.unwrap(), None);
    // Removed: nothing on either instance once heard.
    let position = rules_b.remove(&2).await.unwrap();
    assert_eq!(rules_b.expires_in(&2).await.unwrap(), None);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while a.log_position() < position {
        assert!(std::time::Instant::now() < deadline, "a never heard it");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(rules_a.expires_in(&2).await.unwrap(), None);
}
