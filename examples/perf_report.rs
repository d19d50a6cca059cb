//! Performance report: each comparison runs in this one process, ours beside
//! the raw engine underneath (the limit) and beside the `cached` crate 4.x
//! (the peer), in alternating rounds so that both sides see the same machine.
//!
//! ```text
//! cargo run --release --example perf_report [-- --redis-url URL] [--quick]
//!     [--warm-batch 512] [--warm-pipelines 4]
//! ```
//!
//! Starts its own `redis-server` on a free port unless given a URL. Prints a
//! Markdown table (docs/benchmarks.md's table is this output) and ends with
//!
//! ```text
//! perf: l1_vs_moka=R l1_vs_cached_2t=R l2_vs_raw=R l2_vs_cached=R l2_tput_vs_raw=R warm_per_s=N warm_vs_raw=R l1_vs_moka_sync=R l1_vs_cached=R l2_tput_vs_cached=R miss_vs_raw=R
//! ```
//!
//! R is ours / baseline time per operation (lower is better), except for
//! `l2_tput_vs_raw`, `l2_tput_vs_cached` and `warm_vs_raw`, which are ours /
//! baseline throughput (higher is better). Between the table and that line,
//! the lanes curve: L2 hit throughput with 1, 2, 4 and 8 lanes at 64 and
//! 256 tasks. Each figure is the median over the rounds.

use acgs_cache_harness as support;

#[path = "../benches/common/mod.rs"]
mod common;

use std::future::Future;
use std::hint::black_box;
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache};
use cached::macros::{cached as peer_cached, concurrent_cached};
use common::{decision, runtime, Decision};
use futures_util::StreamExt;

/// Keys the L2 comparisons spread over: far more than the concurrent
/// callers, so that they rarely share a key (and a `GET`).
const KEYS: u64 = 16_384;

/// The Redis every cache here uses, set first thing in `main`.
static REDIS_URL: OnceLock<String> = OnceLock::new();

fn redis_url() -> &'static str {
    REDIS_URL.get().expect("set in main")
}

static WARM: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .service("perf-warm")
        .redis_url(redis_url())
        .l2_soft_timeout(Duration::from_secs(2))
        .build()
        .expect("cache")
});
static L1_ONLY: LazyLock<Cache> =
    LazyLock::new(|| Cache::builder().service("perf-l1").build().expect("cache"));
/// [`L1_ONLY`] without the metrics export, for the metrics-cost row.
static L1_NO_METRICS: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .service("perf-l1-quiet")
        .metrics_interval(None)
        .build()
        .expect("cache")
});
static L2_ONLY: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .service("perf-l2")
        .redis_url(redis_url())
        .disable_l1()
        .l2_soft_timeout(Duration::from_secs(2))
        .build()
        .expect("cache")
});

// Ours.

#[cached(ttl = "policy_decision", cache = L1_ONLY)]
async fn ours_l1(policy_id: u64, subject: &str) -> Decision {
    decision(policy_id, subject)
}

#[cached(ttl = "policy_decision", cache = L2_ONLY)]
async fn ours_l2(policy_id: u64) -> Result<Decision, PeerError> {
    Ok(decision(policy_id, "alice"))
}

static BACKGROUND_WRITES: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .service("perf-miss")
        .redis_url(redis_url())
        .l2_soft_timeout(Duration::from_secs(2))
        .background_l2_writes(true)
        .build()
        .expect("cache")
});

/// [`ours_miss`] on a cache whose misses do not wait for their L2 write.
#[cached(ttl = "policy_decision", cache = BACKGROUND_WRITES)]
async fn ours_miss_background(policy_id: u64) -> Decision {
    decision(policy_id, "alice")
}

/// Called with a new key every time: each call is a miss.
#[cached(ttl = "policy_decision", cache = WARM)]
async fn ours_miss(policy_id: u64) -> Decision {
    decision(policy_id, "alice")
}

#[cached(ttl = "static_configuration", cache = WARM)]
async fn ours_blob(id: u64) -> String {
    blob(id)
}

/// The L1 side of the comparison with the `cached` crate: the same
/// argument type as [`peer_l1`], called over [`SPREAD`] ids.
#[cached(ttl = "policy_decision", cache = L1_ONLY)]
async fn ours_l1_by_id(policy_id: u64) -> Decision {
    decision(policy_id, "alice")
}

#[cached(ttl = "policy_decision", cache = L1_NO_METRICS)]
async fn ours_l1_no_metrics(policy_id: u64, subject: &str) -> Decision {
    decision(policy_id, subject)
}

/// [`ours_l2`] on whichever cache is the runtime's default: the lanes curve
/// runs it on caches with 1, 2, 4 and 8 lanes.
#[cached(ttl = "policy_decision")]
async fn ours_l2_lanes(policy_id: u64) -> Result<Decision, PeerError> {
    Ok(decision(policy_id, "alice"))
}

// The peer: the same functions with the `cached` crate.

/// The fair peer: a `u64` key (nothing allocated or hashed that our side
/// does not), a TTL like ours, called over [`SPREAD`] ids. (An earlier
/// version took a `String` built on every call, for one hot key.)
#[peer_cached(max_size = 10_000, ttl_secs = 300)]
async fn peer_l1(policy_id: u64) -> Decision {
    decision(policy_id, "alice")
}

/// How many ids the L1 comparison with the `cached` crate spreads over.
const SPREAD: u64 = 1_000;

/// The peer's Redis store needs an error type to map its errors into.
#[derive(Debug, Clone)]
struct PeerError(#[allow(dead_code)] String);

#[concurrent_cached(redis = true, ttl_secs = 300, map_error = |e| PeerError(format!("{e:?}")))]
async fn peer_l2(policy_id: u64) -> Result<Decision, PeerError> {
    Ok(decision(policy_id, "alice"))
}

/// One comparison's rounds.
#[derive(Default)]
struct Rounds {
    ours: Vec<f64>,
    baseline: Vec<f64>,
}

impl Rounds {
    fn median(values: &[f64]) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }
    fn ours(&self) -> f64 {
        Self::median(&self.ours)
    }
    fn baseline(&self) -> f64 {
        Self::median(&self.baseline)
    }
}

/// Runs `rounds` alternating rounds of `ours` and `baseline`; each returns
/// the figure of one round (nanoseconds per operation, or operations per
/// second).
fn alternate(
    rounds: usize,
    mut ours: impl FnMut() -> f64,
    mut baseline: impl FnMut() -> f64,
) -> Rounds {
    let mut r = Rounds::default();
    for i in 0..rounds {
        // Alternate which side goes first, so neither always runs warmer.
        if i % 2 == 0 {
            r.ours.push(ours());
            r.baseline.push(baseline());
        } else {
            r.baseline.push(baseline());
            r.ours.push(ours());
        }
    }
    r
}

/// Nanoseconds per operation of `n` sequential awaits of `op`.
fn sequential<F, Fut>(rt: &tokio::runtime::Runtime, n: u64, mut op: F) -> f64
where
    F: FnMut(u64) -> Fut,
    Fut: Future,
{
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..n {
            black_box(op(i).await);
        }
        start.elapsed().as_nanos() as f64 / n as f64
    })
}

/// Nanoseconds per operation of `n` operations spread over `tasks` tasks.
fn spread<F, Fut>(rt: &tokio::runtime::Runtime, n: u64, tasks: u64, op: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future + Send,
{
    common::spread(rt, n, tasks, op).as_nanos() as f64 / n as f64
}

struct Row {
    what: &'static str,
    ours: String,
    baseline: String,
    ratio: f64,
    target: &'static str,
}

fn ns(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} µs", v / 1000.0)
    } else {
        format!("{v:.0} ns")
    }
}

fn per_s(v: f64) -> String {
    format!("{:.0}/s", v)
}

fn time_row(what: &'static str, r: &Rounds, target: &'static str) -> Row {
    Row {
        what,
        ours: ns(r.ours()),
        baseline: ns(r.baseline()),
        ratio: r.ours() / r.baseline(),
        target,
    }
}

fn rate_row(what: &'static str, r: &Rounds, target: &'static str) -> Row {
    Row {
        what,
        ours: per_s(r.ours()),
        baseline: per_s(r.baseline()),
        ratio: r.ours() / r.baseline(),
        target,
    }
}

async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis")
}

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "acgs_cache=warn".into()),
        )
        .init();
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let rounds = if quick { 3 } else { 7 };
    let (url, _server) = support::given_or_started(arg("--redis-url"));
    REDIS_URL.set(url.clone()).expect("set once");
    let _prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the report's metrics recorder");
    // The peer reads its Redis from the environment.
    std::env::set_var("CACHED_REDIS_CONNECTION_STRING", &url);

    let mut rows = Vec::new();
    let one = runtime(1);
    let two = runtime(2);
    if let Some(what) = arg("--profile") {
        profile(&what, &one, &two);
        return;
    }

    // L1 hit, one caller: ours vs a raw moka get of the same value.
    let raw_moka: moka::future::Cache<(u64, String), Decision> =
        moka::future::Cache::builder().max_capacity(10_000).build();
    let key = (7u64, "alice".to_owned());
    one.block_on(async {
        raw_moka.insert(key.clone(), decision(7, "alice")).await;
        ours_l1(7, "alice").await;
    });
    let n = 400_000 / scale;
    let l1 = alternate(
        rounds,
        || sequential(&one, n, |_| ours_l1(black_box(7), black_box("alice"))),
        || sequential(&one, n, |_| raw_moka.get(black_box(&key))),
    );
    rows.push(time_row(
        "L1 hit vs raw moka `get`",
        &l1,
        "report it (the issue's row is `moka::sync`)",
    ));

    // L1 hit vs moka's synchronous cache, the cheaper of its two.
    let raw_sync: moka::sync::Cache<(u64, String), Decision> =
        moka::sync::Cache::builder().max_capacity(10_000).build();
    raw_sync.insert(key.clone(), decision(7, "alice"));
    let l1_sync = alternate(
        rounds,
        || sequential(&one, n, |_| ours_l1(black_box(7), black_box("alice"))),
        || {
            sequential(&one, n, |_| {
                std::future::ready(raw_sync.get(black_box(&key)))
            })
        },
    );
    rows.push(time_row(
        "L1 hit vs raw `moka::sync` `get`",
        &l1_sync,
        "≤ 1.2",
    ));

    // The metrics export's cost on a hit: a Prometheus recorder is installed
    // (for the whole report) and the cache exports every second, vs a cache
    // that does not export at all.
    one.block_on(ours_l1_no_metrics(7, "alice"));
    let metrics_cost = alternate(
        rounds,
        || sequential(&one, n, |_| ours_l1(black_box(7), black_box("alice"))),
        || {
            sequential(&one, n, |_| {
                ours_l1_no_metrics(black_box(7), black_box("alice"))
            })
        },
    );
    rows.push(time_row(
        "L1 hit, metrics exported (Prometheus recorder) vs not",
        &metrics_cost,
        "≈ 1.0 (calls never touch the recorder)",
    ));

    // L1 hits vs the `cached` crate's in-memory store (with a TTL, as
    // ours): the same `u64` argument, ids spread over `SPREAD`, every one
    // warm on both sides first.
    two.block_on(async {
        for id in 0..SPREAD {
            ours_l1_by_id(id).await;
            peer_l1(id).await;
        }
    });
    let l1_2t = alternate(
        rounds,
        || spread(&two, n, 2, |i| ours_l1_by_id(i % SPREAD)),
        || spread(&two, n, 2, |i| peer_l1(i % SPREAD)),
    );
    let l1_peer = alternate(
        rounds,
        || sequential(&one, n, |i| ours_l1_by_id(black_box(i % SPREAD))),
        || sequential(&one, n, |i| peer_l1(black_box(i % SPREAD))),
    );
    rows.push(time_row(
        "L1 hit vs `cached` #[cached] with TTL, one thread (u64 keys over 1,000 ids)",
        &l1_peer,
        "report it (moonshot ≤ 1.0)",
    ));
    rows.push(time_row(
        "L1 hit, 2 threads, vs `cached` #[cached] with TTL (u64 keys over 1,000 ids)",
        &l1_2t,
        "≤ 1.0",
    ));

    // L2 hits, one caller, L1 off: ours vs a raw GET + decode, and vs the
    // peer's Redis store. Every Redis phase runs on the same runtime: a
    // connection lives on the runtime that opened it.
    let raw = two.block_on(raw_connection(&url));
    let l2n = 4_000 / scale;
    two.block_on(async {
        set_raw_keys(&raw).await;
        for k in 0..KEYS {
            ours_l2(k).await.expect("ours");
            peer_l2(k).await.expect("peer");
        }
    });
    let raw_gets = |conn: redis::aio::MultiplexedConnection| move |k: u64| raw_get(conn.clone(), k);
    let l2 = alternate(
        rounds,
        || sequential(&two, l2n, |k| ours_l2(k % KEYS)),
        || sequential(&two, l2n, raw_gets(raw.clone())),
    );
    rows.push(time_row(
        "L2 hit (L1 off) vs raw GET + decode",
        &l2,
        "≤ 1.05",
    ));
    let l2_peer = alternate(
        rounds,
        || sequential(&two, l2n, |k| ours_l2(k % KEYS)),
        || sequential(&two, l2n, |k| peer_l2(k % KEYS)),
    );
    rows.push(time_row(
        "L2 hit (L1 off) vs `cached` #[concurrent_cached(redis)]",
        &l2_peer,
        "report it",
    ));

    // L2 throughput, 64 tasks on two threads.
    let tn = 64_000 / scale;
    let tput = alternate(
        rounds,
        || 1e9 / spread(&two, tn, 64, |k| ours_l2((k * 7919) % KEYS)),
        || 1e9 / spread(&two, tn, 64, raw_gets(raw.clone())),
    );
    rows.push(rate_row(
        "L2 hits, 64 tasks: throughput vs raw (one multiplexed connection)",
        &tput,
        "≥ 1.0 (moonshot ≥ 1.2)",
    ));
    let tput_peer = alternate(
        rounds,
        || 1e9 / spread(&two, tn, 64, |k| ours_l2((k * 7919) % KEYS)),
        || 1e9 / spread(&two, tn, 64, |k| peer_l2((k * 7919) % KEYS)),
    );
    rows.push(rate_row(
        "L2 hits, 64 tasks: throughput vs `cached` #[concurrent_cached(redis)]",
        &tput_peer,
        "≥ 1.15 (moonshot ≥ 1.3)",
    ));
    let curve = lanes_curve(&two, &raw, rounds.min(3), tn);

    // The miss path: L1 miss, L2 `GET` miss, compute, encode, `SET PX`
    // (awaited), L1 insert — vs the issue's baseline, a raw encode + `SET PX`.
    let next = std::sync::atomic::AtomicU64::new(1 << 40);
    let fresh = || next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mn = 4_000 / scale;
    two.block_on(ours_miss(0));
    let raw_set = |id: u64| raw_write(raw.clone(), id);
    let miss = alternate(
        rounds,
        || sequential(&two, mn, |_| ours_miss(fresh())),
        || sequential(&two, mn, |_| raw_set(fresh())),
    );
    rows.push(time_row(
        "miss (GET miss, compute, SET awaited, L1) vs raw encode + SET PX",
        &miss,
        "≤ 1.0 + one round trip",
    ));
    two.block_on(ours_miss_background(0));
    // The fair baseline: both sides read first. Raw: GET (a miss), encode,
    // SET PX, on one connection.
    let miss_fair = alternate(
        rounds,
        || sequential(&two, mn, |_| ours_miss(fresh())),
        || sequential(&two, mn, |_| raw_miss(raw.clone(), fresh())),
    );
    rows.push(time_row(
        "miss vs raw GET (miss) + encode + SET PX (the fair baseline: both read first)",
        &miss_fair,
        "≤ 1.1",
    ));
    let miss_background = alternate(
        rounds,
        || sequential(&two, mn, |_| ours_miss_background(fresh())),
        || sequential(&two, mn, |_| raw_set(fresh())),
    );
    rows.push(time_row(
        "miss with `background_l2_writes` vs raw encode + SET PX",
        &miss_background,
        "≤ 1.0 + the function",
    ));

    let warm = warming(&two, rounds.min(5), 100_000 / scale);
    rows.push(rate_row(
        "warming 100-byte values vs raw pipelined SET PX",
        &warm,
        "≥ 1.0 (moonshot ≥ 1.2)",
    ));

    println!("| comparison | ours | baseline | ours / baseline | target |");
    println!("|---|---:|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2} | {} |",
            r.what, r.ours, r.baseline, r.ratio, r.target
        );
    }
    println!();
    println!("L2 hits by lanes (connections per runtime, `CacheBuilder::l2_lanes`), vs raw GET + decode on one multiplexed connection:");
    println!();
    println!("| lanes | tasks | ours | raw, one connection | ours / raw |");
    println!("|---:|---:|---:|---:|---:|");
    for point in &curve {
        println!(
            "| {} | {} | {} | {} | {:.2} |",
            point.lanes,
            point.tasks,
            per_s(point.rounds.ours()),
            per_s(point.rounds.baseline()),
            point.rounds.ours() / point.rounds.baseline()
        );
    }
    println!(
        "perf: l1_vs_moka={:.2} l1_vs_cached_2t={:.2} l2_vs_raw={:.2} l2_vs_cached={:.2} l2_tput_vs_raw={:.2} warm_per_s={:.0} warm_vs_raw={:.2} l1_vs_moka_sync={:.2} l1_vs_cached={:.2} l2_tput_vs_cached={:.2} miss_vs_raw={:.2}",
        l1.ours() / l1.baseline(),
        l1_2t.ours() / l1_2t.baseline(),
        l2.ours() / l2.baseline(),
        l2_peer.ours() / l2_peer.baseline(),
        tput.ours() / tput.baseline(),
        warm.ours(),
        warm.ours() / warm.baseline(),
        l1_sync.ours() / l1_sync.baseline(),
        l1_peer.ours() / l1_peer.baseline(),
        tput_peer.ours() / tput_peer.baseline(),
        miss_fair.ours() / miss_fair.baseline()
    );
}

/// Runs one side of one comparison alone for ten seconds, for a profiler
/// (`perf record -F 999 -- target/release/examples/perf_report --profile
/// l2`): `l1` (L1 hits, one task), `l1x2` / `l1x2peer` (ours and the
/// `cached` crate's L1 hits from two threads), `l2` (L2 hits, 64 tasks, L1
/// off) or
/// `l2raw` (the raw `GET`s and decodes of the table's raw side, 64 tasks on
/// one connection), `l2one` / `l2oneraw` (the same, one caller at a time),
/// `miss` / `missraw` (a miss of a fresh key, one at a time, and the raw
/// `GET` + encode + `SET PX` it is compared with) or `warm` (warming 100,000 100-byte values at a time). The rate printed
/// counts the ten seconds after the setup (filling L2 takes seconds).
fn profile(what: &str, one: &tokio::runtime::Runtime, two: &tokio::runtime::Runtime) {
    let fill_ours = || {
        two.block_on(async {
            for k in 0..KEYS {
                ours_l2(k).await.expect("ours");
            }
        })
    };
    let raw = || {
        let raw = two.block_on(raw_connection(redis_url()));
        two.block_on(set_raw_keys(&raw));
        raw
    };
    // Each step runs a batch of calls and says how many.
    let step: Box<dyn Fn() -> u64> = match what {
        "l1" => {
            one.block_on(ours_l1(7, "alice"));
            Box::new(|| {
                sequential(one, 100_000, |_| ours_l1(black_box(7), black_box("alice")));
                100_000
            })
        }
        "l1moka" => {
            let raw_sync: moka::sync::Cache<(u64, String), Decision> =
                moka::sync::Cache::builder().max_capacity(10_000).build();
            let key = (7u64, "alice".to_owned());
            raw_sync.insert(key.clone(), decision(7, "alice"));
            Box::new(move || {
                sequential(one, 100_000, |_| {
                    std::future::ready(raw_sync.get(black_box(&key)))
                });
                100_000
            })
        }
        "l1x2" => {
            two.block_on(async {
                for id in 0..SPREAD {
                    ours_l1_by_id(id).await;
                }
            });
            Box::new(|| {
                spread(two, 400_000, 2, |i| ours_l1_by_id(i % SPREAD));
                400_000
            })
        }
        "l1x2peer" => {
            two.block_on(async {
                for id in 0..SPREAD {
                    peer_l1(id).await;
                }
            });
            Box::new(|| {
                spread(two, 400_000, 2, |i| peer_l1(i % SPREAD));
                400_000
            })
        }
        "l2" => {
            fill_ours();
            Box::new(|| {
                spread(two, 64_000, 64, |k| ours_l2((k * 7919) % KEYS));
                64_000
            })
        }
        "l2raw" => {
            let raw = raw();
            Box::new(move || {
                let raw = raw.clone();
                spread(two, 64_000, 64, move |k| raw_get(raw.clone(), k * 7919));
                64_000
            })
        }
        "l2one" => {
            fill_ours();
            Box::new(|| {
                sequential(two, 4_000, |k| ours_l2(k % KEYS));
                4_000
            })
        }
        "l2oneraw" => {
            let raw = raw();
            Box::new(move || {
                sequential(two, 4_000, |k| raw_get(raw.clone(), k));
                4_000
            })
        }
        "miss" => {
            let next = std::sync::atomic::AtomicU64::new(1 << 41);
            Box::new(move || {
                sequential(two, 4_000, |_| {
                    ours_miss(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                });
                4_000
            })
        }
        "missraw" => {
            let raw = raw();
            let next = std::sync::atomic::AtomicU64::new(1 << 41);
            Box::new(move || {
                sequential(two, 4_000, |_| {
                    raw_miss(
                        raw.clone(),
                        next.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    )
                });
                4_000
            })
        }
        "warm" => Box::new(|| {
            two.block_on(async {
                WARM.warmer()
                    .await
                    .load((0..100_000).map(|i| warm_entry_ours_blob(i, blob(i))))
                    .await
            })
            .expect("warming")
            .written
        }),
        other => {
            panic!("--profile l1, l1moka, l1x2, l1x2peer, l2, l2raw, l2one, l2oneraw, miss, missraw or warm, not {other}")
        }
    };
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < Duration::from_secs(10) {
        done += step();
    }
    println!(
        "profile {what}: {:.0}/s",
        done as f64 / start.elapsed().as_secs_f64()
    );
}

/// Stores every key the raw side reads: `perf:raw:{k}`, postcard as is.
async fn set_raw_keys(raw: &redis::aio::MultiplexedConnection) {
    let mut pipe = redis::pipe();
    for k in 0..KEYS {
        let bytes = postcard::to_allocvec(&decision(k, "alice")).expect("encode");
        pipe.cmd("SET")
            .arg(format!("perf:raw:{k}"))
            .arg(bytes)
            .ignore();
    }
    pipe.query_async::<()>(&mut raw.clone())
        .await
        .expect("raw setup");
}

/// The raw side of the L2 rows: `GET` key `k` (modulo [`KEYS`]) on one
/// multiplexed connection and decode it.
async fn raw_get(mut conn: redis::aio::MultiplexedConnection, k: u64) -> Decision {
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(format!("perf:raw:{}", k % KEYS))
        .query_async(&mut conn)
        .await
        .expect("raw GET");
    postcard::from_bytes::<Decision>(&bytes).expect("raw decode")
}

/// The raw side of the fair miss row: `GET` a fresh key (a miss), then
/// encode its value and `SET` it with a TTL.
async fn raw_miss(mut conn: redis::aio::MultiplexedConnection, id: u64) {
    let found: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("perf:raw:miss:{id}"))
        .query_async(&mut conn)
        .await
        .expect("raw GET");
    assert!(found.is_none(), "a fresh key");
    raw_write(conn, id).await
}

/// The raw side of the miss rows: encode a fresh value and `SET` it with a
/// TTL.
async fn raw_write(mut conn: redis::aio::MultiplexedConnection, id: u64) {
    let bytes = postcard::to_allocvec(&decision(id, "alice")).expect("encode");
    redis::cmd("SET")
        .arg(format!("perf:raw:miss:{id}"))
        .arg(bytes)
        .arg("PX")
        .arg(300_000)
        .query_async::<()>(&mut conn)
        .await
        .expect("raw SET")
}

/// One point of the lanes curve.
struct LanePoint {
    lanes: usize,
    tasks: u64,
    rounds: Rounds,
}

/// L2 hit throughput of caches with 1, 2, 4 and 8 lanes at 64 and 256
/// tasks, each beside raw `GET`s on one multiplexed connection.
fn lanes_curve(
    rt: &tokio::runtime::Runtime,
    raw: &redis::aio::MultiplexedConnection,
    rounds: usize,
    n: u64,
) -> Vec<LanePoint> {
    let mut curve = Vec::new();
    for lanes in [1, 2, 4, 8] {
        let cache = Cache::builder()
            .service("perf-lanes")
            .redis_url(redis_url())
            .disable_l1()
            .l2_soft_timeout(Duration::from_secs(2))
            .pool_size(8)
            .l2_lanes(lanes)
            .build()
            .expect("cache");
        let _enter = rt.enter();
        let _default = cache.set_runtime_default().expect("on a runtime");
        // Every key stored once (the first cache), every lane connected.
        spread(rt, KEYS, 64, ours_l2_lanes);
        for tasks in [64, 256] {
            let raw = raw.clone();
            let rounds = alternate(
                rounds,
                || 1e9 / spread(rt, n, tasks, |k| ours_l2_lanes((k * 7919) % KEYS)),
                || {
                    let raw = raw.clone();
                    1e9 / spread(rt, n, tasks, move |k| raw_get(raw.clone(), k * 7919))
                },
            );
            curve.push(LanePoint {
                lanes,
                tasks,
                rounds,
            });
        }
    }
    curve
}

/// A 100-byte value (as the warming target asks): the id, zero-padded. Built without `format!`'s padding
/// (one `write_char` per zero: 7% of a warming profile, on both sides).
fn blob(id: u64) -> String {
    const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
    let digits = id.to_string();
    let mut value = String::with_capacity(ZEROS.len());
    value.push_str(&ZEROS[digits.len().min(ZEROS.len())..]);
    value.push_str(&digits);
    value
}

/// The raw side's warming key, `perf:raw:warm:` and the id in 32 hex digits,
/// built as cheaply as ours (no padding machinery).
fn raw_warm_key(id: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut key = String::with_capacity(14 + 32);
    key.push_str("perf:raw:warm:0000000000000000");
    key.extend(
        (0..16)
            .rev()
            .map(|i| char::from(HEX[((id >> (i * 4)) & 0xf) as usize])),
    );
    key
}

/// Primes `n` entries of 100-byte values per round: ours through the
/// warmer (envelope, pipelined `SET PX` on a connection of its own) vs a raw
/// redis-rs pipelined `SET PX` loop of the same values, with the same batch
/// size and pipelines in flight. Figures are entries per second.
fn warming(rt: &tokio::runtime::Runtime, rounds: usize, n: u64) -> Rounds {
    let numeric = |name, default| arg(name).map_or(default, |v| v.parse().expect(name));
    let (batch, in_flight) = (numeric("--warm-batch", 512), numeric("--warm-pipelines", 4));
    let raw = rt.block_on(raw_connection(redis_url()));
    let rounds = alternate(
        rounds,
        || {
            let report = rt
                .block_on(async {
                    WARM.warmer()
                        .await
                        .batch_size(batch)
                        .pipelines_in_flight(in_flight)
                        .load((0..n).map(|i| warm_entry_ours_blob(i, blob(i))))
                        .await
                })
                .expect("warming");
            assert_eq!(report.written, n, "every entry written: {report}");
            report.per_second()
        },
        || {
            rt.block_on(async {
                let start = Instant::now();
                let keys: Vec<u64> = (0..n).collect();
                let batches = keys.chunks(batch).map(|chunk| {
                    let mut conn = raw.clone();
                    let mut pipe = redis::pipe();
                    for &i in chunk {
                        let bytes = postcard::to_allocvec(&blob(i)).expect("encode");
                        pipe.cmd("SET")
                            .arg(raw_warm_key(i))
                            .arg(bytes)
                            .arg("PX")
                            .arg(86_400_000u64)
                            .ignore();
                    }
                    async move {
                        pipe.query_async::<()>(&mut conn)
                            .await
                            .expect("raw pipeline")
                    }
                });
                futures_util::stream::iter(batches)
                    .buffer_unordered(in_flight)
                    .for_each(|()| async {})
                    .await;
                n as f64 / start.elapsed().as_secs_f64()
            })
        },
    );
    // What was warmed is what the function finds: hits, no computation.
    rt.block_on(async {
        for i in [0, n / 2, n - 1] {
            assert_eq!(ours_blob(i).await, blob(i));
        }
    });
    let stats = rt.block_on(WARM.stats());
    let f = stats.function("ours_blob").expect("called");
    assert_eq!(
        (f.l2_hits, f.misses),
        (3, 0),
        "warmed entries are hits: {f:?}"
    );
    rounds
}
