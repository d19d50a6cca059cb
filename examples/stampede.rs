//! Stampede report: 1000 concurrent callers of one cold key in one process,
//! then 4 processes × 250 callers of one cold key with `lock = true`.
//!
//! ```text
//! cargo run --release --example stampede [-- --redis-url URL]
//! ```
//!
//! Starts its own `redis-server` unless given a URL. Each computation takes
//! 200 ms and counts itself (in process, and in Redis for the fleet). Last
//! line: `stampede: callers=1000 executions_local=N executions_fleet=N`.

use acgs_cache_harness as support;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use acgs_cache::{cached, Cache};
use redis::AsyncCommands;

const CALLERS: usize = 1000;
const PROCESSES: usize = 4;

static LOCAL_EXECUTIONS: AtomicU32 = AtomicU32::new(0);

/// A compliance report that takes 200 ms to build.
#[cached(ttl = "compliance_checks")]
async fn compliance_report(tenant: u32) -> String {
    LOCAL_EXECUTIONS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    format!("tenant {tenant}: compliant")
}

/// The same, shared by the fleet: one instance computes, the others wait
/// for its value. Every execution is counted in Redis.
#[cached(ttl = "compliance_checks", lock = true)]
async fn fleet_report(run: String) -> String {
    let url = arg("--redis-url").expect("worker has a url");
    let mut counter = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: u64 = counter
        .incr(format!("stampede:{run}:executions"), 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    format!("fleet report for {run}")
}

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

async fn callers<F, Fut>(count: usize, call: F) -> usize
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    let tasks: Vec<_> = (0..count).map(|_| tokio::spawn(call())).collect();
    let mut answered = 0;
    for task in tasks {
        if !task.await.expect("caller").is_empty() {
            answered += 1;
        }
    }
    answered
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--worker") {
        let url = arg("--redis-url").ok_or("--redis-url")?;
        let run = arg("--run").ok_or("--run")?;
        let cache = Cache::builder()
            .service("stampede")
            .redis_url(url)
            .build()?;
        cache.clone().install_default().expect("first cache");
        let answered = callers(CALLERS / PROCESSES, move || fleet_report(run.clone())).await;
        let f = cache
            .stats()
            .await
            .function("fleet_report")
            .cloned()
            .ok_or("no calls")?;
        println!(
            "worker: answered={answered} misses={} coalesced={} lock_waits={}",
            f.misses, f.coalesced, f.lock_waits
        );
        return Ok(());
    }

    let (url, own_server) = support::given_or_started(arg("--redis-url"));

    // One process: everything in L1 only, so only in-process coalescing counts.
    let local = Cache::builder().service("stampede-local").build()?;
    let answered = local.scope(callers(CALLERS, || compliance_report(7))).await;
    let executions_local = LOCAL_EXECUTIONS.load(Ordering::SeqCst);
    println!("one process: {answered} callers answered, {executions_local} execution(s)");

    // The fleet: four processes start together on one cold key.
    let run = format!("{}-{}", std::process::id(), fastrand::u32(..));
    let workers: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .args(["--worker", "--redis-url", &url, "--run", &run])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for worker in workers {
        let output = worker.wait_with_output()?;
        print!("  {}", String::from_utf8_lossy(&output.stdout));
    }
    let mut redis = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let executions_fleet: u32 = redis.get(format!("stampede:{run}:executions")).await?;
    drop(own_server);
    println!("stampede: callers={CALLERS} executions_local={executions_local} executions_fleet={executions_fleet}");
    Ok(())
}
