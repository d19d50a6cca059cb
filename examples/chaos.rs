//! Chaos report: 64 concurrent callers while Redis is killed, restarted,
//! frozen and thawed. A cached call must never fail or wait on Redis.
//!
//! ```text
//! cargo run --release --example chaos [-- --seconds-per-phase 3]
//! ```
//!
//! Starts its own `redis-server`. Phases: normal (4 s), Redis SIGKILLed
//! (3 s), restarted (2 s), SIGSTOPped — a hung server (3 s), SIGCONTed
//! (2 s). Every call's latency is recorded under the phase it started in;
//! `recovered_ms` is the time from the restart command (it includes Redis's
//! own start) until the cache uses Redis again. Last line:
//! `chaos: calls=N failed=N p99_ms_normal=N p99_ms_outage=N p99_ms_hung=N recovered_ms=N`.

use acgs_cache_harness as support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache};

const CALLERS: usize = 64;
/// More keys than L1 holds: calls keep going to L2 (hits, misses, writes).
const KEYS: u32 = 200_000;
/// A call slower than this counts as failed (nothing should come close).
const HARD_LIMIT: Duration = Duration::from_secs(1);

const NORMAL: usize = 0;
const OUTAGE: usize = 1;
const HUNG: usize = 2;

/// The "database": 1 ms per query.
#[cached(ttl = "api_responses")]
async fn account_limits(account: u32) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(u64::from(account) * 7)
}

fn p99_ms(samples: &mut [u32]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    f64::from(samples[(samples.len() - 1) * 99 / 100]) / 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "acgs_cache=warn".into()),
        )
        .init();
    let phase_secs: u64 = std::env::args()
        .skip_while(|a| a != "--seconds-per-phase")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut server = support::RedisServer::start();
    let cache = Cache::builder()
        .service("chaos")
        .redis_url(server.url())
        .l1_max_bytes(1 << 20) // about 5,000 entries
        .build()?;
    cache.clone().install_default().expect("first cache");
    println!(
        "chaos: {CALLERS} callers, redis at {} (started for this run)",
        server.url()
    );

    let phase = Arc::new(AtomicUsize::new(NORMAL));
    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<[Mutex<Vec<u32>>; 3]> = Arc::new(Default::default());
    let (calls, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (phase, stop, samples, calls, failed) = (
                phase.clone(),
                stop.clone(),
                samples.clone(),
                calls.clone(),
                failed.clone(),
            );
            tokio::spawn(async move {
                let mut local: [Vec<u32>; 3] = Default::default();
                while !stop.load(Ordering::Relaxed) {
                    let account = fastrand::u32(..KEYS);
                    let in_phase = phase.load(Ordering::Relaxed);
                    let started = Instant::now();
                    let answer = tokio::time::timeout(HARD_LIMIT, account_limits(account)).await;
                    let took = started.elapsed();
                    calls.fetch_add(1, Ordering::Relaxed);
                    if answer != Ok(Ok(u64::from(account) * 7)) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    local[in_phase].push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                    // An L1 hit completes without yielding; a real request
                    // handler does other I/O between calls.
                    tokio::task::yield_now().await;
                }
                for (shared, mine) in samples.iter().zip(local) {
                    shared.lock().unwrap().extend(mine);
                }
            })
        })
        .collect();

    let wait = |secs: u64| tokio::time::sleep(Duration::from_secs(secs));
    wait(phase_secs + 1).await;
    println!("  redis SIGKILLed");
    phase.store(OUTAGE, Ordering::Relaxed);
    server.stop();
    wait(phase_secs).await;
    let restarted = Instant::now();
    server.restart();
    phase.store(NORMAL, Ordering::Relaxed);
    let recovered = loop {
        if cache.ping_l2().await.is_ok() && !cache.stats().await.l2_circuit_open {
            break restarted.elapsed();
        }
        if restarted.elapsed() > Duration::from_secs(30) {
            break Duration::MAX;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!("  redis restarted; in use again after {recovered:?}");
    wait(phase_secs.saturating_sub(1).max(1)).await;
    println!("  redis SIGSTOPped (hung)");
    phase.store(HUNG, Ordering::Relaxed);
    server.pause();
    wait(phase_secs).await;
    server.resume();
    phase.store(NORMAL, Ordering::Relaxed);
    println!("  redis SIGCONTed");
    wait(phase_secs.saturating_sub(1).max(1)).await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await?;
    }

    let stats = cache.stats().await;
    let t = stats.totals();
    println!(
        "  l1_hits={} l2_hits={} misses={} coalesced={} errors_absorbed={} circuit_trips={}",
        t.l1_hits, t.l2_hits, t.misses, t.coalesced, t.errors, stats.l2_circuit_trips
    );
    let mut samples = Arc::try_unwrap(samples).map_err(|_| "callers still running")?;
    let p99 = |i: usize, samples: &mut [Mutex<Vec<u32>>; 3]| p99_ms(samples[i].get_mut().unwrap());
    let (normal, outage, hung) = (
        p99(NORMAL, &mut samples),
        p99(OUTAGE, &mut samples),
        p99(HUNG, &mut samples),
    );
    println!(
        "chaos: calls={} failed={} p99_ms_normal={normal:.2} p99_ms_outage={outage:.2} p99_ms_hung={hung:.2} recovered_ms={}",
        calls.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        recovered.as_millis()
    );
    Ok(())
}
