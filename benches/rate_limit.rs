//! One rate-limit check against the raw round trip it is built on, in one
//! run: `RateLimiter::check` (soft timeout, circuit breaker, key building,
//! decision) vs a plain redis-rs `EVALSHA` of the same script on one
//! multiplexed connection. Both spread over many keys with a generous limit,
//! so every check runs the script's write path. Prints ours / raw at the
//! end. Uses a `redis-server` it starts.

use acgs_cache_harness as support;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use acgs_cache::rate_limit::{RateLimiter, GCRA_SCRIPT};
use acgs_cache::Cache;
use criterion::{criterion_group, Criterion};

static SERVER: LazyLock<std::sync::Mutex<support::RedisServer>> =
    LazyLock::new(|| std::sync::Mutex::new(support::RedisServer::start()));

const KEYS: u64 = 4096;

/// Mean time per check of each side, for the ratio.
static OURS_NS: AtomicU64 = AtomicU64::new(0);
static RAW_NS: AtomicU64 = AtomicU64::new(0);

fn timed(n: u64, total: &AtomicU64, elapsed: Duration) -> Duration {
    total.store(
        (elapsed.as_nanos() / u128::from(n.max(1))) as u64,
        Ordering::Relaxed,
    );
    elapsed
}

fn checks(c: &mut Criterion) {
    let url = SERVER.lock().unwrap().url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = Cache::builder()
        .service("bench-rl")
        .redis_url(&url)
        .l2_soft_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let limiter = RateLimiter::builder("bench")
        .rate(1_000_000, Duration::from_secs(1))
        .burst(1_000_000)
        .build(&cache)
        .unwrap();
    let raw = rt
        .block_on(
            redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection(),
        )
        .unwrap();
    let script = redis::Script::new(GCRA_SCRIPT);
    // Warm both: script loaded, connections up.
    rt.block_on(async {
        limiter.check("warm").await.unwrap();
        let mut conn = raw.clone();
        let _: (i64, i64, i64, i64) = script
            .key("bench:raw:warm")
            .arg(1)
            .arg(1_000_000)
            .arg(1)
            .invoke_async(&mut conn)
            .await
            .unwrap();
    });

    let mut group = c.benchmark_group("rate_limit_check");
    group.bench_function("acgs_rate_limiter", |b| {
        b.iter_custom(|n| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..n {
                    black_box(limiter.check(&(i % KEYS).to_string()).await.unwrap());
                }
                timed(n, &OURS_NS, start.elapsed())
            })
        })
    });
    group.bench_function("raw_evalsha", |b| {
        b.iter_custom(|n| {
            let mut conn = raw.clone();
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..n {
                    let reply: (i64, i64, i64, i64) = script
                        .key(format!("bench:raw:{}", i % KEYS))
                        .arg(1)
                        .arg(1_000_000)
                        .arg(1)
                        .invoke_async(&mut conn)
                        .await
                        .unwrap();
                    black_box(reply);
                }
                timed(n, &RAW_NS, start.elapsed())
            })
        })
    });
    group.finish();
    let s = limiter.stats();
    let (ours, raw) = (
        OURS_NS.load(Ordering::Relaxed),
        RAW_NS.load(Ordering::Relaxed),
    );
    eprintln!(
        "rate_limit: ours {:.1} µs/check ({:.0} checks/s), raw EVALSHA {:.1} µs ({:.0}/s), ours / raw = {:.2} (last sample of each; allowed={} denied={} failed_open={})",
        ours as f64 / 1000.0,
        1e9 / ours.max(1) as f64,
        raw as f64 / 1000.0,
        1e9 / raw.max(1) as f64,
        ours as f64 / raw.max(1) as f64,
        s.allowed,
        s.denied,
        s.failed_open
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).sample_size(30);
    targets = checks
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    SERVER.lock().unwrap().stop();
}
