//! The invalidation promise where callers, processes and the log meet:
//! a caller that starts after an invalidation it knows of never accepts a
//! value whose computation started before it — from L1, L2, or another
//! caller's computation — and the log's discontinuities (a re-created
//! stream, a Redis restart) are noticed.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use acgs_cache::{cached, Cache};
use support::RedisServer;
use tokio::sync::watch;

/// The truth the cached function reads, and a gate that holds its
/// computations until the test opens it.
static VERSION: AtomicU64 = AtomicU64::new(0);
static GATE: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::Sender::new(false));
static STARTED: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

#[cached(ttl = "5m", invalidate_on = "flight.*")]
async fn versioned(key: u32) -> u64 {
    let version = VERSION.load(Ordering::SeqCst);
    STARTED.send_modify(|n| *n += 1);
    let mut gate = GATE.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    let _ = key;
    version
}

/// `versioned(key)` through `cache`, as a task of its own.
fn scoped(cache: &Cache, key: u32) -> impl std::future::Future<Output = u64> + Send + 'static {
    let cache = cache.clone();
    async move { cache.scope(versioned(key)).await }
}

/// Lets every task of this (current-thread) runtime run until it blocks.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Caller A starts computing key 1 (reading version 0); the version moves
/// on and `invalidate` returns; caller B then asks for key 1 while A's
/// computation is still running. B must not receive A's value.
async fn a_caller_after_an_invalidation_never_joins_an_older_computation(cache: &Cache) {
    GATE.send_replace(false);
    let base = VERSION.load(Ordering::SeqCst);
    let mut started = STARTED.subscribe();
    let seen = *started.borrow_and_update();
    let a = tokio::spawn(scoped(cache, 1));
    started.wait_for(|n| *n > seen).await.unwrap();

    VERSION.store(base + 1, Ordering::SeqCst);
    cache.invalidate("flight.updated").await.unwrap();
    let b = tokio::spawn(scoped(cache, 1));
    settle().await; // B is now waiting on A's computation
    GATE.send_replace(true);

    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a, base, "A started before the event: its own value is fine");
    assert_eq!(
        b,
        base + 1,
        "B started after `invalidate` returned and received a value computed before it"
    );
    let stats = cache.stats().await;
    let f = stats.function("versioned").unwrap();
    assert!(
        f.rejected.get("invalidated").is_some_and(|n| *n >= 1),
        "{f:?}"
    );
    assert_eq!(f.misses, 2);
}

#[tokio::test]
async fn flights_check_invalidations_l1_only() {
    let cache = Cache::builder().service("coherence").build().unwrap();
    a_caller_after_an_invalidation_never_joins_an_older_computation(&cache).await;
}

#[tokio::test]
async fn flights_check_invalidations_with_redis() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .service("coherence")
        .redis_url(server.url())
        .build()
        .unwrap();
    cache.connect().await.unwrap();
    a_caller_after_an_invalidation_never_joins_an_older_computation(&cache).await;
}
