//! Concurrency and the miss path, ours beside the raw engine in one run:
//!
//! * `l2_64_tasks`: 64 tasks doing L2 hits (L1 off) vs 64 tasks doing a raw
//!   redis-rs `GET` + postcard decode on one multiplexed connection;
//! * `l1_2_threads`: L1 hits from two runtime threads vs raw moka `get`s;
//! * `miss_path`: a miss (L2 `GET` that finds nothing, the function, encode,
//!   `SET PX`, L1 insert) vs a raw encode + `SET PX`.
//!
//! Criterion times `n` operations spread over the tasks, so the figures are
//! time per operation at that concurrency (lower is better: throughput is
//! its inverse). Uses a `redis-server` it starts.

use acgs_cache_harness as support;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use acgs_cache::{cached, Cache};
use criterion::{criterion_group, Criterion};

mod common;

use common::{decision, runtime, spread, Decision};

/// Started on first use, stopped at the end of `main` (statics are never dropped).
static SERVER: LazyLock<std::sync::Mutex<support::RedisServer>> =
    LazyLock::new(|| std::sync::Mutex::new(support::RedisServer::start()));

fn redis_url() -> String {
    SERVER.lock().unwrap().url()
}

static L2_ONLY: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .service("bench-tput")
        .redis_url(redis_url())
        .disable_l1()
        .l2_soft_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
});
static L1: LazyLock<Cache> =
    LazyLock::new(|| Cache::builder().service("bench-tput-l1").build().unwrap());
static TWO_TIERS: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .service("bench-tput-miss")
        .redis_url(redis_url())
        .l2_soft_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
});

#[cached(ttl = "policy_decision", cache = L2_ONLY)]
async fn from_l2(policy_id: u64) -> Decision {
    decision(policy_id, "alice")
}

#[cached(ttl = "policy_decision", cache = L1)]
async fn from_l1(policy_id: u64) -> Decision {
    decision(policy_id, "alice")
}

#[cached(ttl = "policy_decision", cache = TWO_TIERS)]
async fn always_new(policy_id: u64) -> Decision {
    decision(policy_id, "alice")
}

/// Keys the L2 throughput spreads over: far more than the 64 tasks, so
/// concurrent calls rarely share a key (and a GET).
const KEYS: u64 = 65_536;

/// A plain redis-rs connection to the bench's server, for the baselines.
fn raw_connection(rt: &tokio::runtime::Runtime) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).unwrap();
    rt.block_on(client.get_multiplexed_async_connection())
        .unwrap()
}

fn l2_64_tasks(c: &mut Criterion) {
    let rt = runtime(2);
    let raw = raw_connection(&rt);
    // Distinct keys: concurrent calls of one key would share a single GET
    // (stampede protection), which is not what is measured here.
    spread(&rt, KEYS, 64, |k| async move {
        black_box(from_l2(k).await);
    });
    let mut setup = raw.clone();
    rt.block_on(async {
        let mut pipe = redis::pipe();
        for k in 0..KEYS {
            let bytes = postcard::to_allocvec(&decision(k, "alice")).unwrap();
            pipe.cmd("SET")
                .arg(format!("bench:raw:{k}"))
                .arg(bytes)
                .ignore();
        }
        pipe.query_async::<()>(&mut setup).await.unwrap();
    });
    let mut group = c.benchmark_group("l2_64_tasks");
    group.bench_function("acgs_cached_l1_off", |b| {
        b.iter_custom(|n| {
            spread(&rt, n, 64, |i| async move {
                black_box(from_l2(i % KEYS).await);
            })
        })
    });
    group.bench_function("raw_get_and_decode", |b| {
        b.iter_custom(|n| {
            let raw = raw.clone();
            spread(&rt, n, 64, move |i| {
                let mut conn = raw.clone();
                async move {
                    let key = format!("bench:raw:{}", i % KEYS);
                    let bytes: Vec<u8> = redis::cmd("GET")
                        .arg(key)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    black_box(postcard::from_bytes::<Decision>(&bytes).unwrap());
                }
            })
        })
    });
    group.finish();
    let f = rt.block_on(L2_ONLY.stats()).totals();
    eprintln!(
        "l2_64_tasks: {} L2 hits, {} coalesced, {} misses, {} errors",
        f.l2_hits, f.coalesced, f.misses, f.errors
    );
}

fn l1_2_threads(c: &mut Criterion) {
    let rt = runtime(2);
    rt.block_on(from_l1(7));
    let raw: moka::future::Cache<u64, Decision> =
        moka::future::Cache::builder().max_capacity(10_000).build();
    rt.block_on(raw.insert(7, decision(7, "alice")));
    let mut group = c.benchmark_group("l1_2_threads");
    group.bench_function("acgs_cached", |b| {
        b.iter_custom(|n| {
            spread(&rt, n, 2, |_| async {
                black_box(from_l1(7).await);
            })
        })
    });
    group.bench_function("raw_moka_get", |b| {
        b.iter_custom(|n| {
            let raw = raw.clone();
            spread(&rt, n, 2, move |_| {
                let raw = raw.clone();
                async move {
                    black_box(raw.get(&7).await);
                }
            })
        })
    });
    group.finish();
}

fn miss_path(c: &mut Criterion) {
    let rt = runtime(2);
    let raw = raw_connection(&rt);
    static NEXT: AtomicU64 = AtomicU64::new(1_000_000);
    rt.block_on(always_new(0)); // connect and start the log tailer outside the measurement
    let mut group = c.benchmark_group("miss_path");
    group.bench_function("acgs_cached", |b| {
        b.iter_custom(|n| {
            spread(&rt, n, 1, |_| async {
                black_box(always_new(NEXT.fetch_add(1, Ordering::Relaxed)).await);
            })
        })
    });
    group.bench_function("raw_encode_and_set", |b| {
        b.iter_custom(|n| {
            let raw = raw.clone();
            spread(&rt, n, 1, move |_| {
                let mut conn = raw.clone();
                async move {
                    let id = NEXT.fetch_add(1, Ordering::Relaxed);
                    let bytes = postcard::to_allocvec(&decision(id, "alice")).unwrap();
                    redis::cmd("SET")
                        .arg(format!("bench:raw:miss:{id}"))
                        .arg(bytes)
                        .arg("PX")
                        .arg(300_000)
                        .query_async::<()>(&mut conn)
                        .await
                        .unwrap();
                }
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = l2_64_tasks, l1_2_threads, miss_path
}
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    SERVER.lock().unwrap().stop();
}
