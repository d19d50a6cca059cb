//! The hit paths against the raw engines underneath, measured in one run:
//!
//! * `l1_hit`: a `#[cached]` L1 hit (key digest, moka lookup, type check, clone)
//!   vs a raw moka `get` of the same value under a pre-built key;
//! * `l2_hit`: a `#[cached]` L2 hit with L1 disabled (digest, `GET`, envelope
//!   checks, decode) vs a raw redis-rs multiplexed `GET` + postcard decode.
//!
//! L2 uses `ACGS_BENCH_REDIS_URL` (default `redis://127.0.0.1:6379`) and is
//! skipped, saying so, when that server does not answer.

use std::hint::black_box;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache};
use criterion::{criterion_group, criterion_main, Criterion};

mod common;

use common::{decision, runtime, Decision};

#[cached(ttl = "policy_decision")]
async fn l1_decision(policy_id: u64, subject: &str) -> Decision {
    decision(policy_id, subject)
}

fn redis_url() -> String {
    std::env::var("ACGS_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

static L2_ONLY: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .service("bench-hit-path")
        .redis_url(redis_url())
        .disable_l1()
        .l2_soft_timeout(Duration::from_secs(1))
        .build()
        .expect("bench cache")
});

#[cached(ttl = "policy_decision", cache = L2_ONLY)]
async fn l2_decision(policy_id: u64, subject: &str) -> Decision {
    decision(policy_id, subject)
}

/// Times `iters` sequential awaits of `f` inside one `block_on`, so the
/// executor's entry cost is not part of the figure.
macro_rules! timed {
    ($rt:expr, $iters:expr, $body:expr) => {
        $rt.block_on(async {
            let start = Instant::now();
            for _ in 0..$iters {
                black_box($body.await);
            }
            start.elapsed()
        })
    };
}

fn l1_hit(c: &mut Criterion) {
    let rt = runtime(1);
    Cache::builder()
        .service("bench-hit-path")
        .build()
        .unwrap()
        .install_default()
        .unwrap();
    rt.block_on(l1_decision(7, "alice"));

    let raw: moka::future::Cache<(u64, String), Decision> =
        moka::future::Cache::builder().max_capacity(10_000).build();
    let key = (7u64, "alice".to_owned());
    rt.block_on(raw.insert(key.clone(), decision(7, "alice")));

    // The same engine configured as L1 is: per-entry expiry and a weigher.
    struct PerEntry;
    impl moka::Expiry<(u64, String), Decision> for PerEntry {
        fn expire_after_create(
            &self,
            _: &(u64, String),
            _: &Decision,
            _: Instant,
        ) -> Option<Duration> {
            Some(Duration::from_secs(60))
        }
    }
    let raw_expiry: moka::future::Cache<(u64, String), Decision> = moka::future::Cache::builder()
        .max_capacity(1 << 26)
        .weigher(|_, _| 200)
        .expire_after(PerEntry)
        .build();
    rt.block_on(raw_expiry.insert(key.clone(), decision(7, "alice")));

    let mut group = c.benchmark_group("l1_hit");
    group.bench_function("raw_moka_get_per_entry_expiry", |b| {
        b.iter_custom(|n| timed!(rt, n, raw_expiry.get(black_box(&key))))
    });
    group.bench_function("acgs_cached", |b| {
        b.iter_custom(|n| timed!(rt, n, l1_decision(black_box(7), black_box("alice"))))
    });
    group.bench_function("raw_moka_get", |b| {
        b.iter_custom(|n| timed!(rt, n, raw.get(black_box(&key))))
    });
    group.finish();
}

fn l2_hit(c: &mut Criterion) {
    let rt = runtime(1);
    let raw = rt.block_on(async {
        let client = redis::Client::open(redis_url()).ok()?;
        tokio::time::timeout(
            Duration::from_secs(1),
            client.get_multiplexed_async_connection(),
        )
        .await
        .ok()?
        .ok()
    });
    let Some(mut raw) = raw else {
        eprintln!(
            "l2_hit skipped: no redis at {} (set ACGS_BENCH_REDIS_URL)",
            redis_url()
        );
        return;
    };
    rt.block_on(l2_decision(7, "alice"));
    let raw_key = "bench:raw:decision:7:alice";
    let bytes = postcard::to_allocvec(&decision(7, "alice")).unwrap();
    rt.block_on(
        redis::cmd("SET")
            .arg(raw_key)
            .arg(bytes)
            .query_async::<()>(&mut raw),
    )
    .unwrap();

    let mut group = c.benchmark_group("l2_hit");
    group.bench_function("acgs_cached_l1_off", |b| {
        b.iter_custom(|n| timed!(rt, n, l2_decision(black_box(7), black_box("alice"))))
    });
    group.bench_function("raw_get_and_decode", |b| {
        b.iter_custom(|n| {
            timed!(rt, n, async {
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg(raw_key)
                    .query_async(&mut raw.clone())
                    .await
                    .unwrap();
                postcard::from_bytes::<Decision>(&bytes).unwrap()
            })
        })
    });
    group.finish();
    let stats = rt.block_on(L2_ONLY.stats());
    let f = stats.function("l2_decision").expect("called");
    assert_eq!(
        f.misses + f.errors,
        1,
        "every measured call was an L2 hit: {f:?}"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = l1_hit, l2_hit
}
criterion_main!(benches);
