//! Ours beside the `cached` crate 4.x, the memoization attribute Rust users
//! know, on the same functions and in the same run:
//!
//! * `l1_2_threads`: hits from two runtime threads, ours (L1) vs `#[cached]`
//!   (its in-memory store);
//! * `l2_hit`: hits in Redis, ours with L1 off vs `#[concurrent_cached(redis
//!   = true)]`, against a `redis-server` this bench starts.

use acgs_cache_harness as support;

use std::hint::black_box;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache};
use cached::macros::{cached as peer_cached, concurrent_cached};
use criterion::{criterion_group, Criterion};

mod common;

use common::{decision, runtime, spread, Decision};

static SERVER: LazyLock<std::sync::Mutex<support::RedisServer>> =
    LazyLock::new(|| std::sync::Mutex::new(support::RedisServer::start()));

fn redis_url() -> String {
    SERVER.lock().unwrap().url()
}

static L1: LazyLock<Cache> =
    LazyLock::new(|| Cache::builder().service("bench-peers-l1").build().unwrap());
static L2_ONLY: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .service("bench-peers-l2")
        .redis_url(redis_url())
        .disable_l1()
        .l2_soft_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
});

#[cached(ttl = "policy_decision", cache = L1)]
async fn ours_l1(policy_id: u64) -> Decision {
    decision(policy_id, "alice")
}

#[peer_cached(max_size = 10_000, ttl_secs = 300)]
async fn peer_l1(policy_id: u64) -> Decision {
    decision(policy_id, "alice")
}

#[derive(Debug, Clone)]
struct PeerError(#[allow(dead_code)] String);

#[cached(ttl = "policy_decision", cache = L2_ONLY)]
async fn ours_l2(policy_id: u64) -> Result<Decision, PeerError> {
    Ok(decision(policy_id, "alice"))
}

#[concurrent_cached(redis = true, ttl_secs = 300, map_error = |e| PeerError(format!("{e:?}")))]
async fn peer_l2(policy_id: u64) -> Result<Decision, PeerError> {
    Ok(decision(policy_id, "alice"))
}

fn l1_2_threads(c: &mut Criterion) {
    let rt = runtime(2);
    rt.block_on(async {
        ours_l1(7).await;
        peer_l1(7).await;
    });
    let mut group = c.benchmark_group("l1_2_threads");
    group.bench_function("acgs_cached", |b| {
        b.iter_custom(|n| spread(&rt, n, 2, |_| ours_l1(7)))
    });
    group.bench_function("cached_crate_in_memory", |b| {
        b.iter_custom(|n| spread(&rt, n, 2, |_| peer_l1(7)))
    });
    group.finish();
}

fn l2_hit(c: &mut Criterion) {
    // The peer reads its Redis from the environment, on first use.
    std::env::set_var("CACHED_REDIS_CONNECTION_STRING", redis_url());
    let rt = runtime(2);
    const KEYS: u64 = 1024;
    rt.block_on(async {
        for k in 0..KEYS {
            ours_l2(k).await.unwrap();
            peer_l2(k).await.unwrap();
        }
    });
    let timed = |rt: &tokio::runtime::Runtime, n: u64, ours: bool| {
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..n {
                if ours {
                    black_box(ours_l2(i % KEYS).await.unwrap());
                } else {
                    black_box(peer_l2(i % KEYS).await.unwrap());
                }
            }
            start.elapsed()
        })
    };
    let mut group = c.benchmark_group("l2_hit");
    group.bench_function("acgs_cached_l1_off", |b| {
        b.iter_custom(|n| timed(&rt, n, true))
    });
    group.bench_function("cached_crate_redis", |b| {
        b.iter_custom(|n| timed(&rt, n, false))
    });
    group.finish();
    let f = rt.block_on(L2_ONLY.stats()).totals();
    assert_eq!(
        f.misses, KEYS,
        "every measured call of ours was an L2 hit: {f:?}"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = l1_2_threads, l2_hit
}
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    SERVER.lock().unwrap().stop();
}
