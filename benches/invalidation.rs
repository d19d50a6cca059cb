//! `invalidate` costs the same whatever the number of cached entries: one
//! `XADD`, no `KEYS`, no `SCAN`. Measured with 10 and with 1,000,000 entries
//! in a `redis-server` this benchmark starts (so 6379 is left alone).

use acgs_cache_harness as support;

use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

#[cached(ttl = "policy_decision", invalidate_on = "governance.*")]
async fn decision(policy_id: u64) -> u64 {
    policy_id * 2
}

/// Fills Redis with `total` real entries of `decision`: computed through the
/// cache for the first ones, then copied under other keys in pipelined batches.
async fn fill(server: &support::RedisServer, cache: &Cache, total: u64) {
    let mut raw = server.raw().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
    cache.scope(decision(0)).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("acgs:bench-invalidation:decision:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    let template: Vec<u8> = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut raw)
        .await
        .unwrap();
    let prefix = keys[0].rsplit_once(':').unwrap().0.to_owned();
    for start in (1..total).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 10_000).min(total) {
            pipe.cmd("SET")
                .arg(format!("{prefix}:{i:032x}"))
                .arg(&template)
                .arg("PX")
                .arg(600_000)
                .ignore();
        }
        let _: () = pipe.query_async(&mut raw).await.unwrap();
    }
    let size: u64 = redis::cmd("DBSIZE").query_async(&mut raw).await.unwrap();
    assert!(size >= total, "filled {size} of {total}");
}

fn invalidate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = support::RedisServer::start(); // stopped when this function returns
    let cache = Cache::builder()
        .service("bench-invalidation")
        .redis_url(server.url())
        .build()
        .unwrap();
    let mut group = c.benchmark_group("invalidate");
    for entries in [10u64, 1_000_000] {
        rt.block_on(fill(&server, &cache, entries));
        group.bench_with_input(BenchmarkId::from_parameter(entries), &entries, |b, _| {
            b.iter_custom(|n| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..n {
                        cache.invalidate("governance.rules.updated").await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = invalidate
}
criterion_main!(benches);
