//! Failover report: a Redis master, its replica and a Sentinel (started here
//! from `redis-server`, on free ports), 64 concurrent callers of a cached
//! policy decision, then the master is killed. Sentinel promotes the
//! replica; the cache follows it.
//!
//! ```sh
//! cargo run --release --example failover            # default: 3 s before, 6 s after
//! cargo run --release --example failover -- --seconds 10
//! ```
//!
//! Every answer is checked against the policy store. The last line:
//!
//! `failover: calls=N failed=N switch_ms=N`
//!
//! - `failed`: calls that returned an error or a wrong decision;
//! - `switch_ms`: from the kill to the first answer read from the new
//!   master (sampled every 5 ms). In between, calls answer from the policy
//!   store (fail-open).
//!
//! L1 is off so that every call goes to Redis: with it on, hot decisions
//! would not notice the failover at all. Needs `redis-server` on the PATH
//! (no existing Redis is used).

use acgs_cache_harness as topology;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache};
use serde::{Deserialize, Serialize};
use topology::SentinelSetup;

const CALLERS: u64 = 64;
const POLICIES: u64 = 5_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Decision {
    policy_id: u64,
    allow: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("policy store unavailable")]
struct StoreError;

/// The policy store: a lookup that takes a little while, as a query would.
async fn query_policy_store(policy_id: u64) -> Result<Decision, StoreError> {
    tokio::time::sleep(Duration::from_micros(200)).await;
    Ok(expected(policy_id))
}

fn expected(policy_id: u64) -> Decision {
    Decision {
        policy_id,
        allow: !policy_id.is_multiple_of(3),
    }
}

#[cached(ttl = "policy_decision")]
async fn evaluate_policy(policy_id: u64) -> Result<Decision, StoreError> {
    query_policy_store(policy_id).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "acgs_cache=info".into()),
        )
        .init();
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(6);

    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "failover: needs redis-server on the PATH: it starts its own master, replica and \
             Sentinel (an existing Redis is never used). Without Redis there is nothing to fail \
             over; the other examples run L1 only."
        );
        std::process::exit(2);
    }
    let mut setup = SentinelSetup::start();
    let old_master = setup.master_port();
    println!(
        "master 127.0.0.1:{old_master}, replica, sentinel at {} ({})",
        setup.url(),
        setup.master_name()
    );
    let cache = Cache::builder()
        .service("failover")
        .redis_url(setup.url())
        .disable_l1()
        .l2_soft_timeout(Duration::from_millis(100))
        .connect_timeout(Duration::from_millis(250))
        .reconnect_backoff(Duration::from_millis(50))
        .probe_interval(Duration::from_millis(50))
        .fleet_interval(Duration::ZERO)
        .connect()
        .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (cache, stop) = (cache.clone(), stop.clone());
            let (calls, failed) = (calls.clone(), failed.clone());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(caller);
                while !stop.load(Ordering::Relaxed) {
                    let policy_id = rng.u64(0..POLICIES);
                    match cache.scope(evaluate_policy(policy_id)).await {
                        Ok(decision) if decision == expected(policy_id) => {}
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    let l2_hits = || async {
        cache
            .stats()
            .await
            .function("evaluate_policy")
            .map_or(0, |f| f.l2_hits)
    };
    println!(
        "before: calls={} l2_hits={}; killing the master",
        calls.load(Ordering::Relaxed),
        l2_hits().await
    );

    setup.kill_master();
    let killed = Instant::now();
    // Hits that were in flight at the kill may still land: wait for the
    // connection to notice, then for the first hit served afterwards.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut last = l2_hits().await;
    let mut switch = None;
    let mut promoted = None;
    let watch_until = killed + Duration::from_secs(30);
    for round in 0u64.. {
        if switch.is_some() || Instant::now() > watch_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Until the replica is promoted nothing can answer a GET: a hit
        // now comes from the new master.
        let now = l2_hits().await;
        if now > last {
            switch = Some(killed.elapsed());
        }
        last = now;
        // Asking the Sentinel spawns redis-cli: every 50 ms is enough.
        if promoted.is_none() && round % 10 == 0 && setup.master_port() != old_master {
            promoted = Some(killed.elapsed());
            println!(
                "sentinel promoted 127.0.0.1:{} after {} ms",
                setup.master_port(),
                killed.elapsed().as_millis()
            );
        }
    }
    let switch = switch.ok_or("no answer from the new master within 30 s")?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await?;
    }

    let stats = cache.stats().await;
    let function = stats
        .function("evaluate_policy")
        .ok_or("evaluate_policy was never called")?;
    println!(
        "after: l2_hits={} misses={} errors={} {:?} circuit_trips={}",
        function.l2_hits,
        function.misses,
        function.errors,
        function.errors_by_reason,
        stats.l2_circuit_trips
    );
    println!("{}", cache.health().await);
    println!(
        "failover: calls={} failed={} switch_ms={}",
        calls.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        switch.as_millis()
    );
    Ok(())
}
