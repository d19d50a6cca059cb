//! Coherence report: several OS processes read, write and invalidate one key
//! space through one Redis, some of them cut off or paused on purpose; every
//! read is checked against the truth, kept in a second Redis.
//!
//! ```text
//! cargo run --release --example coherence -- --instances 3 --seconds 10 \
//!     [--paused] [--partitioned] [--sentinel] [--restart-one] \
//!     [--unprotected | --unchecked] [--separate-truth] [--redis-url URL]
//! ```
//!
//! Without `--redis-url` (or `ACGS_CACHE_REDIS_URL`) it starts a
//! `redis-server` of its own for the cache. The truth (the "database") is a
//! plain key space in the same server, or, with `--sentinel` or
//! `--separate-truth`, a second `redis-server` it starts, which the
//! failover does not touch. The parent process is the writer: it bumps a
//! key's version in the database, calls `invalidate("coherence.key.{k}")`,
//! then records (version, log position, wall time the invalidation
//! returned) in a short history. Each reader process reads through a cached
//! function tagged `coherence.key.{k}` and checks every value it gets, two
//! ways:
//!
//! - `stale`: it had already *heard* (log position) the invalidation of a
//!   newer version before the call started — the exact check;
//! - `stale_past_delta`: the invalidation of a newer version had *returned*
//!   more than `max_staleness` (δ, 1 s) before the call started — the
//!   staleness bound, which holds for instances that hear nothing.
//!
//! `max_stale_lag_ms` is the longest any read served a value after the
//! invalidation that made it stale had returned.
//!
//! Faults, each on readers of their own besides the `--instances` steady
//! ones:
//! - `--paused`: one reader is stopped (SIGSTOP) for 2 s at a quarter of the
//!   run, and again at two thirds (runs of 8 s or more), as a long GC pause,
//!   a stalled VM or a debugger would;
//! - `--partitioned`: one reader reaches Redis through a proxy (the test
//!   harness's `TcpProxy`) that stops forwarding bytes for 3 s from 30% of
//!   the run, leaving every connection open — a network that drops
//!   packets;
//! - `--sentinel`: the cache's Redis is a master, a replica and a Sentinel;
//!   the master is killed at 40% of the run (not with `--partitioned`);
//! - `--restart-one`: a steady reader is SIGKILLed half-way and started
//!   again (it must catch up before trusting L2).
//!
//! The writer reads too, through the cache it invalidates with (four tasks
//! on the same 64 keys, so calls often share a computation): a value older
//! than a version whose `invalidate` had returned `Ok` before the call
//! started is a stale read of the calling instance (`writer_stale`).
//!
//! Controls, to show the checks can fail: `--unprotected` switches the
//! lease off (every cache is built with `max_staleness(MaxStaleness::L1Ttl)`):
//! the paused and partitioned readers then serve stale values past δ;
//! `--unchecked` switches the invalidation check itself off. The exit status
//! is 0 only for a protected run without a stale read.
//!
//! The last line is `coherence: reads=N stale=N stale_past_delta=N
//! max_stale_lag_ms=N paused_stale_past_delta=N partitioned_stale_past_delta=N
//! writer_reads=N writer_stale=N invalidations=N failed_invalidations=N
//! propagation_p50_us=N propagation_p99_us=N invalidate_p50_us=N
//! invalidate_p99_us=N max_staleness_ms=N`: propagation is measured by the
//! steady readers (send to applied), `invalidate_*` is the writer's own
//! round trip for an invalidation, whose tail on a saturated machine is the
//! same scheduling delay.

use acgs_cache_harness as support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use acgs_cache::{cached, Cache, LogPosition, MaxStaleness, DEFAULT_MAX_STALENESS};
use redis::AsyncCommands;
use support::{arg, flag, RedisServer, SentinelSetup, TcpProxy};

const KEYS: u32 = 64;
/// Versions kept per key for the checks.
const HISTORY: isize = 32;
/// Reads checked per pipelined history fetch.
const CHECK_BATCH: usize = 64;
/// How long the paused reader stays stopped, each time.
const PAUSE: Duration = Duration::from_secs(2);
/// How long the partitioned reader's network drops everything.
const PARTITION: Duration = Duration::from_secs(3);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What a reader process is there for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Steady,
    Paused,
    Partitioned,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Steady => "steady",
            Role::Paused => "paused",
            Role::Partitioned => "partitioned",
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if flag("--worker") {
        return worker().await;
    }
    let instances: usize = arg("--instances", 3);
    let seconds: u64 = arg("--seconds", 10);
    let run = Duration::from_secs(seconds);
    let mut sentinel = flag("--sentinel").then(SentinelSetup::start);
    let (url, own_server) = match &sentinel {
        Some(setup) => (setup.url(), None),
        None => support::given_or_started(
            std::env::var("ACGS_CACHE_REDIS_URL")
                .ok()
                .or_else(|| std::env::args().skip_while(|a| a != "--redis-url").nth(1)),
        ),
    };
    // The truth lives in the cache's Redis (as a plain key space), unless
    // that Redis fails over (or `--separate-truth` asks): then in a second
    // one, which nothing done to the cache's touches.
    let separate_truth = (sentinel.is_some() || flag("--separate-truth")).then(RedisServer::start);
    let truth_url = separate_truth
        .as_ref()
        .map_or_else(|| url.clone(), RedisServer::url);
    let proxy = if flag("--partitioned") {
        if sentinel.is_some() {
            return Err("--partitioned runs on a standalone Redis, not with --sentinel".into());
        }
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .ok_or("--partitioned needs a redis://host:port URL")?;
        Some(TcpProxy::start(port))
    } else {
        None
    };
    let mode = match (flag("--unprotected"), flag("--unchecked")) {
        (true, _) => " (unprotected: the lease switched off)",
        (_, true) => " (unchecked: the invalidation check switched off)",
        _ => "",
    };
    println!(
        "coherence: {instances} steady readers{}{}{}, {seconds} s, redis at {url}{}, truth at {}{mode}",
        if flag("--paused") { " + paused" } else { "" },
        if proxy.is_some() { " + partitioned" } else { "" },
        if sentinel.is_some() { " (sentinel, master killed at 40%)" } else { "" },
        if own_server.is_some() { " (started for this run)" } else { "" },
        if separate_truth.is_some() { truth_url.as_str() } else { "the same server" },
    );
    let mut db = truth_connection(&truth_url).await?;
    DB.set(db.clone()).map_err(|_| "connected twice")?;
    let run_id = format!("{}-{}", std::process::id(), fastrand::u32(..));
    RUN_ID.set(run_id.clone()).map_err(|_| "set twice")?;
    for k in 0..KEYS {
        let _: () = db.set(format!("coh:{run_id}:truth:{k}"), 0u64).await?;
    }
    let spawn = |id: usize, role: Role, cache_url: &str, seconds: u64| {
        let mut command = Command::new(std::env::current_exe()?);
        command.args([
            "--worker",
            "--redis-url",
            cache_url,
            "--truth-url",
            &truth_url,
            "--seconds",
            &seconds.to_string(),
            "--run",
            &run_id,
            "--id",
            &id.to_string(),
            "--role",
            role.name(),
        ]);
        for control in ["--unprotected", "--unchecked"] {
            if flag(control) {
                command.arg(control);
            }
        }
        command.stdout(Stdio::piped()).spawn()
    };
    let mut workers: Vec<(Role, Child)> = Vec::new();
    for i in 0..instances {
        workers.push((Role::Steady, spawn(i, Role::Steady, &url, seconds)?));
    }
    let paused_pid = if flag("--paused") {
        let child = spawn(instances, Role::Paused, &url, seconds)?;
        let pid = child.id();
        workers.push((Role::Paused, child));
        Some(pid)
    } else {
        None
    };
    if let Some(proxy) = &proxy {
        let child = spawn(instances + 1, Role::Partitioned, &proxy.url(), seconds)?;
        workers.push((Role::Partitioned, child));
    }

    WRITER_URL.set(url.clone()).map_err(|_| "set twice")?;
    let writer = &*WRITER_CACHE;
    let started = Instant::now();
    let deadline = started + run;

    // The faults, on a schedule of their own (the writer's loop may stall
    // while an invalidation waits out a failover).
    let proxy = proxy.map(Arc::new);
    let faults = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let mut schedule: Vec<(Duration, Fault)> = Vec::new();
            if let Some(pid) = paused_pid {
                schedule.push((run / 4, Fault::Stop(pid)));
                schedule.push((run / 4 + PAUSE, Fault::Continue(pid)));
                if run >= Duration::from_secs(8) {
                    schedule.push((run * 2 / 3, Fault::Stop(pid)));
                    schedule.push((run * 2 / 3 + PAUSE, Fault::Continue(pid)));
                }
            }
            if let Some(proxy) = &proxy {
                schedule.push((run * 3 / 10, Fault::Freeze(Arc::clone(proxy))));
                schedule.push((run * 3 / 10 + PARTITION, Fault::Thaw(Arc::clone(proxy))));
            }
            if let Some(setup) = sentinel.take() {
                schedule.push((run * 2 / 5, Fault::KillMaster(Box::new(setup))));
            }
            schedule.sort_by_key(|(at, _)| *at);
            let mut kept = Vec::new();
            for (at, fault) in schedule {
                tokio::time::sleep_until((started + at).into()).await;
                println!("  fault at {:.1} s: {}", at.as_secs_f64(), fault.name());
                // Blocking (processes, a failover's wait): off the runtime.
                if let Ok(Some(setup)) = tokio::task::spawn_blocking(move || fault.apply()).await {
                    kept.push(setup); // the new master must outlive the run
                }
            }
            kept
        })
    };

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
    // How long each successful `invalidate` took here (µs): its tail is the
    // machine's, the same hops an invalidation takes to another instance.
    let mut round_trips: Vec<u64> = Vec::new();
    let mut restarted = !flag("--restart-one");
    let mut replacement = None;
    while Instant::now() < deadline {
        let k = fastrand::u32(..KEYS);
        let version: u64 = db.incr(format!("coh:{run_id}:truth:{k}"), 1).await?;
        // On a loaded machine, or across a failover, an invalidation may
        // fail: it still applies here and is sent later; it is counted, and
        // not relied on.
        let sent = Instant::now();
        let position = match writer.invalidate(&format!("coherence.key.{k}")).await {
            Ok(position) => position,
            Err(e) => {
                failed_invalidations += 1;
                if failed_invalidations <= 3 {
                    eprintln!("invalidation failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
        };
        let returned_us = now_us();
        round_trips.push(sent.elapsed().as_micros() as u64);
        confirmed[k as usize].fetch_max(version, Ordering::SeqCst);
        let _: () = redis::pipe()
            .lpush(
                format!("coh:{run_id}:history:{k}"),
                format!("{version} {position} {returned_us}"),
            )
            .ltrim(format!("coh:{run_id}:history:{k}"), 0, HISTORY - 1)
            .query_async(&mut db)
            .await?;
        invalidations += 1;
        if !restarted && started.elapsed() >= run / 2 {
            // A reader dies across invalidations and comes back.
            let (role, mut killed) = workers.remove(0);
            killed.kill()?;
            let _ = killed.wait();
            tokio::time::sleep(Duration::from_millis(300)).await; // events it misses
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_secs()
                .max(1);
            replacement = Some((role, spawn(0, role, &url, left)?));
            restarted = true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    workers.extend(replacement);
    let _kept = faults.await?;
    let (mut writer_reads_total, mut writer_stale) = (0u64, 0u64);
    for task in writer_reads {
        let (reads, stale) = task.await?;
        writer_reads_total += reads;
        writer_stale += stale;
    }

    let mut totals = Totals::default();
    for (role, worker) in workers {
        let output = worker.wait_with_output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with("worker:"))
            .ok_or("a reader printed no result")?;
        println!("  {line}");
        totals.add(role, line);
    }
    drop(own_server);
    let max_staleness_ms = DEFAULT_MAX_STALENESS.as_millis();
    let Totals {
        reads,
        stale,
        stale_past_delta,
        max_stale_lag_ms,
        paused_stale_past_delta,
        partitioned_stale_past_delta,
        mut p50s,
        p99,
    } = totals;
    p50s.sort_unstable();
    let p50 = p50s.get(p50s.len() / 2).copied().unwrap_or(0);
    round_trips.sort_unstable();
    let quantile = |q: usize| {
        round_trips
            .get(round_trips.len() * q / 100)
            .copied()
            .unwrap_or(0)
    };
    let (invalidate_p50, invalidate_p99) = (quantile(50), quantile(99));
    println!("coherence: reads={reads} stale={stale} stale_past_delta={stale_past_delta} max_stale_lag_ms={max_stale_lag_ms} paused_stale_past_delta={paused_stale_past_delta} partitioned_stale_past_delta={partitioned_stale_past_delta} writer_reads={writer_reads_total} writer_stale={writer_stale} invalidations={invalidations} failed_invalidations={failed_invalidations} propagation_p50_us={p50} propagation_p99_us={p99} invalidate_p50_us={invalidate_p50} invalidate_p99_us={invalidate_p99} max_staleness_ms={max_staleness_ms}");
    let controlled = flag("--unprotected") || flag("--unchecked");
    if (stale > 0 || writer_stale > 0 || stale_past_delta > 0) && !controlled {
        std::process::exit(1);
    }
    Ok(())
}

/// One scheduled fault.
enum Fault {
    Stop(u32),
    Continue(u32),
    Freeze(Arc<TcpProxy>),
    Thaw(Arc<TcpProxy>),
    KillMaster(Box<SentinelSetup>),
}

impl Fault {
    fn name(&self) -> &'static str {
        match self {
            Fault::Stop(_) => "SIGSTOP the paused reader",
            Fault::Continue(_) => "SIGCONT the paused reader",
            Fault::Freeze(_) => "the partitioned reader's network drops everything",
            Fault::Thaw(_) => "the partitioned reader's network heals",
            Fault::KillMaster(_) => "SIGKILL the Redis master (Sentinel fails over)",
        }
    }

    /// Applies the fault; a Sentinel setup is handed back to be kept.
    fn apply(self) -> Option<Box<SentinelSetup>> {
        let signal = |sig: &str, pid: u32| {
            let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
        };
        match self {
            Fault::Stop(pid) => signal("-STOP", pid),
            Fault::Continue(pid) => signal("-CONT", pid),
            Fault::Freeze(proxy) => proxy.freeze(),
            Fault::Thaw(proxy) => proxy.thaw(),
            Fault::KillMaster(mut setup) => {
                let old = setup.kill_master();
                let new = setup.wait_for_failover(old, Duration::from_secs(20));
                println!("  master {old} killed; new master: {new:?}");
                return Some(setup);
            }
        }
        None
    }
}

/// The readers' results, added up.
#[derive(Default)]
struct Totals {
    reads: u64,
    stale: u64,
    stale_past_delta: u64,
    max_stale_lag_ms: u64,
    paused_stale_past_delta: u64,
    partitioned_stale_past_delta: u64,
    p50s: Vec<u64>,
    p99: u64,
}

impl Totals {
    fn add(&mut self, role: Role, line: &str) {
        let field = |name: &str| support::field(line, name);
        self.reads += field("reads");
        self.stale += field("stale");
        let past = field("stale_past_delta");
        self.stale_past_delta += past;
        match role {
            Role::Paused => self.paused_stale_past_delta += past,
            Role::Partitioned => self.partitioned_stale_past_delta += past,
            Role::Steady => {}
        }
        self.max_stale_lag_ms = self.max_stale_lag_ms.max(field("max_stale_lag_ms"));
        if role == Role::Steady {
            // Faulted readers measure their faults, not propagation.
            self.p50s.push(field("propagation_p50_us"));
            self.p99 = self.p99.max(field("propagation_p99_us"));
        }
    }
}

/// The "database" read a reader caches: the key's current version.
#[cached(ttl = "policy_decision", tags = ["coherence.key.{k}"], cache = WORKER_CACHE)]
async fn version_of(k: u32) -> u64 {
    truth_version(k).await
}

/// The same read, through the writer's own cache.
#[cached(ttl = "policy_decision", tags = ["coherence.key.{k}"], cache = WRITER_CACHE)]
async fn writer_version_of(k: u32) -> u64 {
    truth_version(k).await
}

/// The key's current version in the truth server. A failed read is
/// retried, never taken as version 0: the checker would count it stale.
async fn truth_version(k: u32) -> u64 {
    let mut db = DB.get().expect("connected").clone();
    let key = format!("coh:{}:truth:{k}", run_id());
    loop {
        match db.get::<_, Option<u64>>(&key).await {
            Ok(version) => return version.unwrap_or(0),
            Err(e) => {
                eprintln!("truth read failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A connection to the truth server with no response timeout: a process
/// resumed after SIGSTOP fires its overdue timers before it reads the
/// replies already waiting on its socket, and the checker's own reads must
/// not fail for that.
async fn truth_connection(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

static DB: std::sync::OnceLock<redis::aio::MultiplexedConnection> = std::sync::OnceLock::new();
static RUN_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static WRITER_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn coherence_cache(url: &str) -> Cache {
    let mut builder = Cache::builder()
        .redis_url(url)
        .service("coherence")
        .prefix(format!("coh-{}", run_id()))
        .reconnect_backoff(Duration::from_millis(50))
        .probe_interval(Duration::from_millis(50));
    if flag("--unprotected") {
        builder = builder.max_staleness(MaxStaleness::L1Ttl);
    }
    if flag("--unchecked") {
        builder = builder.unprotected_for_coherence_reports();
    }
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

/// One read, as checked against the history.
struct Read {
    k: u32,
    /// The log position the instance had heard when the call started.
    heard: LogPosition,
    /// When the call started (µs since the Unix epoch).
    started_us: u64,
    served: u64,
}

/// One version's invalidation, as the writer recorded it.
struct Invalidated {
    version: u64,
    position: LogPosition,
    returned_us: u64,
}

fn parse_history(entries: &[String]) -> Vec<Invalidated> {
    entries
        .iter()
        .filter_map(|entry| {
            let mut parts = entry.split(' ');
            Some(Invalidated {
                version: parts.next()?.parse().ok()?,
                position: LogPosition::parse(parts.next()?)?,
                returned_us: parts.next()?.parse().ok()?,
            })
        })
        .collect()
}

async fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = arg("--seconds", 10);
    let role: String = arg("--role", "steady".to_owned());
    let mut db = truth_connection(&arg("--truth-url", String::new())).await?;
    DB.set(db.clone()).map_err(|_| "connected twice")?;
    let cache = &*WORKER_CACHE;
    let delta_us = DEFAULT_MAX_STALENESS.as_micros() as u64;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut reads, mut stale, mut stale_past_delta, mut unchecked) = (0u64, 0u64, 0u64, 0u64);
    let mut max_lag_us = 0u64;
    while Instant::now() < deadline {
        // Read a batch, then check it with one pipelined history fetch.
        let mut batch = Vec::with_capacity(CHECK_BATCH);
        for _ in 0..CHECK_BATCH {
            let k = fastrand::u32(..KEYS);
            let heard = cache.log_position();
            let started_us = now_us();
            let served = version_of(k).await;
            batch.push(Read {
                k,
                heard,
                started_us,
                served,
            });
        }
        reads += batch.len() as u64;
        let mut pipe = redis::pipe();
        for read in &batch {
            pipe.lrange(
                format!("coh:{}:history:{}", run_id(), read.k),
                0,
                HISTORY - 1,
            );
        }
        let histories: Vec<Vec<String>> = pipe.query_async(&mut db).await?;
        for (read, history) in batch.iter().zip(histories) {
            // Newest first.
            let history = parse_history(&history);
            // The newest version whose invalidation this instance had heard
            // before the call: serving anything older is a stale read.
            match history.iter().find(|i| i.position <= read.heard) {
                Some(i) if read.served < i.version => {
                    stale += 1;
                    if stale <= 5 {
                        eprintln!(
                            "stale: key {} served version {}, version {} was invalidated before the call",
                            read.k, read.served, i.version
                        );
                    }
                }
                Some(_) => {}
                None => unchecked += 1,
            }
            // The newest version whose invalidation had returned more than
            // δ before the call: serving anything older breaks the bound.
            if let Some(i) = history
                .iter()
                .find(|i| i.returned_us + delta_us < read.started_us)
            {
                if read.served < i.version {
                    stale_past_delta += 1;
                    if stale_past_delta <= 5 {
                        eprintln!(
                            "stale past δ ({role}): key {} served version {}, version {} was invalidated {} ms before the call",
                            read.k,
                            read.served,
                            i.version,
                            (read.started_us - i.returned_us) / 1000
                        );
                    }
                }
            }
            // How long after the invalidation that made the value stale
            // (the oldest newer version whose invalidation had returned).
            if let Some(first) = history
                .iter()
                .filter(|i| i.version > read.served && i.returned_us < read.started_us)
                .min_by_key(|i| i.version)
            {
                max_lag_us = max_lag_us.max(read.started_us - first.returned_us);
            }
        }
    }
    let stats = cache.stats().await;
    let inv = &stats.invalidations;
    let t = stats.totals();
    println!(
        "worker: id={} role={role} reads={reads} stale={stale} stale_past_delta={stale_past_delta} max_stale_lag_ms={} unchecked={unchecked} l1_hits={} l2_hits={} misses={} lease_skips={} heard={} renewals={} propagation_p50_us={} propagation_p99_us={}",
        arg("--id", 0usize),
        max_lag_us / 1000,
        t.l1_hits,
        t.l2_hits,
        t.misses,
        t.lease_skips,
        inv.received,
        inv.lease_renewals,
        inv.propagation_p50_us.unwrap_or(0),
        inv.propagation_p99_us.unwrap_or(0),
    );
    Ok(())
}
