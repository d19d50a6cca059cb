//! Coherence report: several OS processes read, write and invalidate one key
//! space through one Redis; every read is checked against the truth.
//!
//! ```text
//! cargo run --release --example coherence -- --instances 3 --seconds 10 [--restart-one] [--redis-url URL]
//! ```
//!
//! Without `--redis-url` (or `ACGS_CACHE_REDIS_URL`) it starts a
//! `redis-server` of its own on a free port. The parent process is the
//! writer: it bumps a key's version in the "database" (a plain Redis key),
//! then calls `invalidate("coherence.key.{k}")`, then records (version, log
//! position) in a short history. Each worker process reads through a cached
//! function tagged `coherence.key.{k}` and checks every value it gets: if it
//! had already heard (log position) the invalidation of a newer version
//! before the call started, the value is stale. `--restart-one` SIGKILLs a
//! worker half-way and starts it again (it must catch up before trusting L2).
//!
//! The writer reads too, through the cache it invalidates with (four tasks
//! on the same 64 keys, so calls often share a computation): a value older
//! than a version whose `invalidate` had returned `Ok` before the call
//! started is a stale read of the calling instance (`writer_stale`).
//!
//! `--unprotected` runs every cache with the invalidation check turned off:
//! the same run then reports the stale reads the check prevents (the exit
//! status is 0 only for a protected run without stale reads).
//!
//! The last line is
//! `coherence: reads=N stale=N writer_reads=N writer_stale=N invalidations=N propagation_p50_us=N propagation_p99_us=N`.

use acgs_cache_harness as support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache, LogPosition};
use redis::AsyncCommands;

const KEYS: u32 = 64;
/// Versions kept per key for the stale check.
const HISTORY: isize = 32;
/// Reads checked per pipelined history fetch.
const CHECK_BATCH: usize = 64;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if flag("--worker") {
        return worker().await;
    }
    let instances: usize = arg("--instances", 3);
    let seconds: u64 = arg("--seconds", 10);
    let (url, own_server) = support::given_or_started(
        std::env::var("ACGS_CACHE_REDIS_URL")
            .ok()
            .or_else(|| std::env::args().skip_while(|a| a != "--redis-url").nth(1)),
    );
    println!(
        "coherence: {instances} worker processes, {seconds} s, redis at {url}{}",
        if own_server.is_some() {
            " (started for this run)"
        } else {
            ""
        }
    );
    let mut db = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    DB.set(db.clone()).map_err(|_| "connected twice")?;
    let run_id = format!("{}-{}", std::process::id(), fastrand::u32(..));
    RUN_ID.set(run_id.clone()).map_err(|_| "set twice")?;
    for k in 0..KEYS {
        let _: () = db.set(format!("coh:{run_id}:truth:{k}"), 0u64).await?;
    }
    let unprotected = flag("--unprotected");
    let spawn = |id: usize, seconds: u64| -> std::io::Result<Child> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args([
            "--worker",
            "--redis-url",
            &url,
            "--seconds",
            &seconds.to_string(),
            "--run",
            &run_id,
            "--id",
            &id.to_string(),
        ]);
        if unprotected {
            command.arg("--unprotected");
        }
        command.stdout(Stdio::piped()).spawn()
    };
    let mut workers: Vec<Child> = (0..instances)
        .map(|i| spawn(i, seconds))
        .collect::<Result<_, _>>()?;

    WRITER_URL.set(url.clone()).map_err(|_| "set twice")?;
    let writer = &*WRITER_CACHE;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    // Versions whose invalidation returned `Ok` here, per key.
    let confirmed: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let writer_reads: Vec<_> = (0..4)
        .map(|_| {
            let confirmed = Arc::clone(&confirmed);
            tokio::spawn(async move {
                let (mut reads, mut stale) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let k = fastrand::u32(..KEYS);
                    let required = confirmed[k as usize].load(Ordering::SeqCst);
                    let served = writer_version_of(k).await;
                    reads += 1;
                    if reads % 64 == 0 {
                        // L1 hits never wait: let the writer's own loop run.
                        tokio::task::yield_now().await;
                    }
                    if served < required {
                        stale += 1;
                        if stale <= 5 {
                            eprintln!("writer stale: key {k} served version {served} after version {required} was invalidated here");
                        }
                    }
                }
                (reads, stale)
            })
        })
        .collect();
    let (mut invalidations, mut failed_invalidations) = (0u64, 0u64);
    let mut restarted = !flag("--restart-one");
    let mut replacement = None;
    while Instant::now() < deadline {
        let k = fastrand::u32(..KEYS);
        let version: u64 = db.incr(format!("coh:{run_id}:truth:{k}"), 1).await?;
        // On a loaded machine an invalidation may time out: it still applies
        // here and is sent later; it is counted, and not relied on.
        let position = match writer.invalidate(&format!("coherence.key.{k}")).await {
            Ok(position) => position,
            Err(e) => {
                failed_invalidations += 1;
                if failed_invalidations <= 3 {
                    eprintln!("invalidation failed: {e}");
                }
                continue;
            }
        };
        confirmed[k as usize].fetch_max(version, Ordering::SeqCst);
        let _: () = redis::pipe()
            .lpush(
                format!("coh:{run_id}:history:{k}"),
                format!("{version} {position}"),
            )
            .ltrim(format!("coh:{run_id}:history:{k}"), 0, HISTORY - 1)
            .query_async(&mut db)
            .await?;
        invalidations += 1;
        if !restarted && started.elapsed() >= Duration::from_secs(seconds) / 2 {
            // A worker dies across invalidations and comes back.
            workers[0].kill()?;
            let killed = workers.remove(0);
            drop(killed);
            tokio::time::sleep(Duration::from_millis(300)).await; // events it misses
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_secs()
                .max(1);
            replacement = Some(spawn(0, left)?);
            restarted = true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    workers.extend(replacement);
    let (mut writer_reads_total, mut writer_stale) = (0u64, 0u64);
    for task in writer_reads {
        let (reads, stale) = task.await?;
        writer_reads_total += reads;
        writer_stale += stale;
    }

    let (mut reads, mut stale, mut p50s, mut p99) = (0u64, 0u64, Vec::new(), 0u64);
    for worker in workers {
        let output = worker.wait_with_output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with("worker:"))
            .ok_or("a worker printed no result")?;
        println!("  {line}");
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        reads += field("reads");
        stale += field("stale");
        p50s.push(field("propagation_p50_us"));
        p99 = p99.max(field("propagation_p99_us"));
    }
    p50s.sort_unstable();
    let p50 = p50s.get(p50s.len() / 2).copied().unwrap_or(0);
    drop(own_server);
    println!("coherence: reads={reads} stale={stale} writer_reads={writer_reads_total} writer_stale={writer_stale} invalidations={invalidations} failed_invalidations={failed_invalidations} propagation_p50_us={p50} propagation_p99_us={p99}");
    if (stale > 0 || writer_stale > 0) && !unprotected {
        std::process::exit(1);
    }
    Ok(())
}

/// The "database" read a worker caches: the key's current version.
#[cached(ttl = "policy_decision", tags = ["coherence.key.{k}"], cache = WORKER_CACHE)]
async fn version_of(k: u32) -> u64 {
    let mut db = DB.get().expect("connected").clone();
    db.get(format!("coh:{}:truth:{k}", run_id()))
        .await
        .unwrap_or(0)
}

/// The same read, through the writer's own cache.
#[cached(ttl = "policy_decision", tags = ["coherence.key.{k}"], cache = WRITER_CACHE)]
async fn writer_version_of(k: u32) -> u64 {
    let mut db = DB.get().expect("connected").clone();
    db.get(format!("coh:{}:truth:{k}", run_id()))
        .await
        .unwrap_or(0)
}

static DB: std::sync::OnceLock<redis::aio::MultiplexedConnection> = std::sync::OnceLock::new();
static RUN_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static WRITER_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn coherence_cache(url: &str) -> Cache {
    let builder = Cache::builder()
        .redis_url(url)
        .service("coherence")
        .prefix(format!("coh-{}", run_id()));
    let builder = if flag("--unprotected") {
        builder.unprotected_for_coherence_reports()
    } else {
        builder
    };
    builder.build().expect("cache")
}

static WORKER_CACHE: std::sync::LazyLock<Cache> =
    std::sync::LazyLock::new(|| coherence_cache(&arg("--redis-url", String::new())));
static WRITER_CACHE: std::sync::LazyLock<Cache> =
    std::sync::LazyLock::new(|| coherence_cache(WRITER_URL.get().expect("set in main")));

fn run_id() -> String {
    RUN_ID
        .get()
        .cloned()
        .unwrap_or_else(|| arg("--run", String::new()))
}

async fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let url: String = arg("--redis-url", String::new());
    let seconds: u64 = arg("--seconds", 10);
    let mut db = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    DB.set(db.clone()).map_err(|_| "connected twice")?;
    let cache = &*WORKER_CACHE;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut reads, mut stale, mut unchecked) = (0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        // Read a batch, then check it with one pipelined history fetch.
        let mut batch = Vec::with_capacity(CHECK_BATCH);
        for _ in 0..CHECK_BATCH {
            let k = fastrand::u32(..KEYS);
            let heard = cache.log_position();
            batch.push((k, heard, version_of(k).await));
        }
        reads += batch.len() as u64;
        let mut pipe = redis::pipe();
        for (k, _, _) in &batch {
            pipe.lrange(format!("coh:{}:history:{k}", run_id()), 0, HISTORY - 1);
        }
        let histories: Vec<Vec<String>> = pipe.query_async(&mut db).await?;
        for ((k, heard, served), history) in batch.into_iter().zip(histories) {
            // The newest version whose invalidation this instance had heard
            // before the call: serving anything older is a stale read.
            let required = history.iter().find_map(|entry| {
                let (version, position) = entry.split_once(' ')?;
                (LogPosition::parse(position)? <= heard).then(|| version.parse::<u64>().ok())?
            });
            match required {
                Some(required) if served < required => {
                    stale += 1;
                    if stale <= 5 {
                        eprintln!("stale: key {k} served version {served}, version {required} was invalidated before the call");
                    }
                }
                Some(_) => {}
                None => unchecked += 1,
            }
        }
    }
    let stats = cache.stats().await;
    let inv = &stats.invalidations;
    let t = stats.totals();
    println!(
        "worker: id={} reads={reads} stale={stale} unchecked={unchecked} l1_hits={} l2_hits={} misses={} heard={} propagation_p50_us={} propagation_p99_us={}",
        arg("--id", 0usize),
        t.l1_hits,
        t.l2_hits,
        t.misses,
        inv.received,
        inv.propagation_p50_us.unwrap_or(0),
        inv.propagation_p99_us.unwrap_or(0),
    );
    Ok(())
}
