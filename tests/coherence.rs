//! The invalidation promise where callers, processes and the log meet:
//! a caller that starts after an invalidation it knows of never accepts a
//! value whose computation started before it — from L1, L2, or another
//! caller's computation — and the log's discontinuities (a re-created
//! stream, a Redis restart) are noticed.

use acgs_cache_harness as support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use acgs_cache::{cached, Cache};
use support::RedisServer;
use tokio::sync::watch;

/// The truth the cached function reads, and a gate that holds its
/// computations until the test opens it.
static VERSION: AtomicU64 = AtomicU64::new(0);
static GATE: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::Sender::new(false));
static STARTED: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

#[cached(ttl = "5m", invalidate_on = "flight.*")]
async fn versioned(key: u32) -> u64 {
    let version = VERSION.load(Ordering::SeqCst);
    STARTED.send_modify(|n| *n += 1);
    let mut gate = GATE.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    let _ = key;
    version
}

/// `versioned(key)` through `cache`, as a task of its own.
fn scoped(cache: &Cache, key: u32) -> impl std::future::Future<Output = u64> + Send + 'static {
    let cache = cache.clone();
    async move { cache.scope(versioned(key)).await }
}

/// Lets every task of this (current-thread) runtime run until it blocks.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Caller A starts computing key 1 (reading version 0); the version moves
/// on and `invalidate` returns; caller B then asks for key 1 while A's
/// computation is still running. B must not receive A's value.
async fn a_caller_after_an_invalidation_never_joins_an_older_computation(cache: &Cache) {
    GATE.send_replace(false);
    let base = VERSION.load(Ordering::SeqCst);
    let mut started = STARTED.subscribe();
    let seen = *started.borrow_and_update();
    let a = tokio::spawn(scoped(cache, 1));
    started.wait_for(|n| *n > seen).await.unwrap();

    VERSION.store(base + 1, Ordering::SeqCst);
    cache.invalidate("flight.updated").await.unwrap();
    let b = tokio::spawn(scoped(cache, 1));
    settle().await; // B is now waiting on A's computation
    GATE.send_replace(true);

    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a, base, "A started before the event: its own value is fine");
    assert_eq!(
        b,
        base + 1,
        "B started after `invalidate` returned and received a value computed before it"
    );
    let stats = cache.stats().await;
    let f = stats.function("versioned").unwrap();
    assert!(
        f.rejected.get("invalidated").is_some_and(|n| *n >= 1),
        "{f:?}"
    );
    assert_eq!(f.misses, 2);
}

#[tokio::test]
async fn flights_check_invalidations_l1_only() {
    let cache = Cache::builder().service("coherence").build().unwrap();
    a_caller_after_an_invalidation_never_joins_an_older_computation(&cache).await;
}

#[tokio::test]
async fn flights_check_invalidations_with_redis() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .service("coherence")
        .redis_url(server.url())
        .build()
        .unwrap();
    cache.connect().await.unwrap();
    a_caller_after_an_invalidation_never_joins_an_older_computation(&cache).await;
}

/// The truth a cross-process test reads: a file both processes see.
#[cached(ttl = "5m", invalidate_on = "paused.*")]
async fn file_truth(path: String) -> String {
    std::fs::read_to_string(&path).unwrap_or_default()
}

fn redis_instance(url: &str) -> Cache {
    Cache::builder()
        .service("coherence")
        .redis_url(url)
        .reconnect_backoff(std::time::Duration::from_millis(50))
        .build()
        .unwrap()
}

/// A child process of this test binary: reads `file_truth` through a cache
/// on the Redis of `ACGS_COHERENCE_CHILD_REDIS`, once per line on stdin,
/// printing each answer; does nothing when run as a test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_reads_on_request() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let (Ok(url), Ok(path)) = (
        std::env::var("ACGS_COHERENCE_CHILD_REDIS"),
        std::env::var("ACGS_COHERENCE_CHILD_FILE"),
    ) else {
        return;
    };
    let cache = redis_instance(&url);
    cache.connect().await.unwrap();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match line.as_str() {
            "quit" => break,
            "position" => println!("value={}", cache.log_position().ms),
            _ => {
                let value = cache.scope(file_truth(path.clone())).await;
                println!("value={value}");
            }
        }
    }
}

/// A process paused (SIGSTOP) while Redis restarts empty, resumed after
/// another instance's invalidation re-created the log, must stop serving
/// the invalidated value once it hears the new log: the new generation is a
/// discontinuity, whatever its ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_paused_across_a_redis_restart_notices_the_new_log() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let mut server = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("acgs-paused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("truth");
    std::fs::write(&file, "v1").unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reads_on_request",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ACGS_COHERENCE_CHILD_REDIS", server.url())
        .env("ACGS_COHERENCE_CHILD_FILE", &file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask = move |question: &str| -> String {
        writeln!(input, "{question}").unwrap();
        input.flush().unwrap();
        loop {
            let line = output.next().expect("the child answers").unwrap();
            // libtest may print its own text before the child's on a line.
            if let Some(at) = line.find("value=") {
                return line[at + "value=".len()..].to_owned();
            }
        }
    };
    assert_eq!(ask("read"), "v1");
    assert_eq!(ask("read"), "v1", "from the child's L1");
    // The old log's clock ran ahead of the one that comes back (a restart
    // on a host whose clock is behind, a failover): the child's last id is
    // far above anything the new log will write.
    let mut raw = server.raw().await;
    let _: String = redis::cmd("XADD")
        .arg("acgs:{invalidation}:log")
        .arg("9999999999999-0")
        .arg("k")
        .arg("n")
        .arg("n")
        .arg("unrelated.skew")
        .query_async(&mut raw)
        .await
        .unwrap();
    while ask("position") != "9999999999999" {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    let pid = child.id().to_string();
    let signal = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    server.restart(); // empty: no persistence
    std::fs::write(&file, "v2").unwrap();
    let here = redis_instance(&server.url());
    here.connect().await.unwrap();
    here.invalidate("paused.changed").await.unwrap();
    signal("-CONT");

    // Once the child hears the log again (it reconnects on its own), v1 is
    // never served; it may serve v1 from L1 only until then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut answers = Vec::new();
    loop {
        let value = ask("read");
        answers.push(value.clone());
        if value == "v2" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the resumed process kept serving the invalidated value: {answers:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for _ in 0..5 {
        assert_eq!(ask("read"), "v2", "after hearing the new log: {answers:?}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Another program deletes the log and writes a record whose id is below
/// everything this instance heard (a new stream in the same millisecond, or
/// a foreign writer): the instance notices the discontinuity and rejects
/// every older entry.
#[tokio::test]
async fn a_log_re_created_behind_an_instance_is_noticed() {
    let server = RedisServer::start();
    let cache = redis_instance(&server.url());
    cache.connect().await.unwrap();
    let path = std::env::temp_dir().join(format!("acgs-recreated-{}", std::process::id()));
    std::fs::write(&path, "old").unwrap();
    let path_text = path.to_string_lossy().into_owned();
    assert_eq!(cache.scope(file_truth(path_text.clone())).await, "old");
    cache.invalidate("unrelated.event").await.unwrap();
    let loads = cache.stats().await.invalidations.state_loads;

    std::fs::write(&path, "new").unwrap();
    let mut raw = server.raw().await;
    let log = "acgs:{invalidation}:log";
    let _: () = redis::pipe()
        .cmd("DEL")
        .arg(log)
        .cmd("XADD")
        .arg(log)
        .arg("1-1")
        .arg("k")
        .arg("n")
        .arg("n")
        .arg("paused.changed")
        .query_async(&mut raw)
        .await
        .unwrap();
    support::wait_until("the instance notices the new log", || {
        futures_lite_stats(&cache) > loads
    })
    .await;
    assert_eq!(
        cache.scope(file_truth(path_text)).await,
        "new",
        "an entry stamped before the new log was served"
    );
    let _ = std::fs::remove_file(&path);
}

/// `state_loads` without awaiting (for `wait_until`'s synchronous check).
fn futures_lite_stats(cache: &Cache) -> u64 {
    let cache = cache.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move { cache.stats().await.invalidations.state_loads })
    })
    .join()
    .unwrap()
}

#[cached(ttl = "5m")]
async fn numbered(id: u64) -> u64 {
    id
}

/// Many single-entry invalidations in the log: a fresh instance loads the
/// log's state (one script) instead of reading them back, and still knows
/// every name invalidation.
#[tokio::test]
async fn a_fresh_instance_loads_the_log_state_instead_of_reading_every_record() {
    let server = RedisServer::start();
    let writer = Cache::builder()
        .service("coherence")
        .redis_url(server.url())
        .invalidation_log_capacity(50_000)
        .build()
        .unwrap();
    writer.connect().await.unwrap();
    let path = std::env::temp_dir().join(format!("acgs-fresh-{}", std::process::id()));
    std::fs::write(&path, "before").unwrap();
    let path_text = path.to_string_lossy().into_owned();
    assert_eq!(writer.scope(file_truth(path_text.clone())).await, "before");
    std::fs::write(&path, "after").unwrap();
    writer.invalidate("paused.changed").await.unwrap();
    // 20,000 entry invalidations, as `invalidate_numbered(i)` writes them,
    // straight into the log in one pipeline.
    let mut raw = server.raw().await;
    let mut pipe = redis::pipe();
    for i in 0..20_000u32 {
        pipe.cmd("XADD")
            .arg("acgs:{invalidation}:log")
            .arg("*")
            .arg("k")
            .arg("e")
            .arg("n")
            .arg("coherence:numbered")
            .arg("i")
            .arg("0")
            .arg("d")
            .arg(format!("{i:032x}"))
            .ignore();
    }
    let _: () = pipe.query_async(&mut raw).await.unwrap();

    let fresh = redis_instance(&server.url());
    fresh.connect().await.unwrap();
    let stats = fresh.stats().await.invalidations;
    assert_eq!(stats.state_loads, 1);
    assert_eq!(stats.received, 0, "no record was read back: {stats:?}");
    assert_eq!(
        fresh.scope(file_truth(path_text)).await,
        "after",
        "the name invalidation is known from the state"
    );
    let _ = std::fs::remove_file(&path);
}

/// What an instance remembers of single-entry invalidations is capped;
/// past the cap, the function as a whole is invalidated (never a stale value).
#[tokio::test]
async fn memory_for_entry_invalidations_is_bounded() {
    let cache = Cache::builder().service("coherence").build().unwrap();
    cache
        .scope(async {
            assert_eq!(numbered(7).await, 7);
            let cap = 100_000u64;
            for i in 0..cap + 10 {
                invalidate_numbered(i + 1_000).await.unwrap();
            }
            let stats = cache.stats().await.invalidations;
            // The entries, and the function the overflow invalidated.
            assert!(stats.remembered <= cap + 1, "{stats:?}");
            assert_eq!(stats.entry_overflows, 10, "{stats:?}");
            // The overflow invalidated the function: 7 is recomputed.
            numbered(7).await;
        })
        .await;
    let f = cache.stats().await;
    assert_eq!(f.function("numbered").unwrap().misses, 2);
}

/// A Sentinel failover with a lagging replica: the invalidation reached
/// only the old master (and is reported unconfirmed); after the failover,
/// neither the running instance nor a new one accepts the entry stamped
/// before it, since the log's server changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_loses_an_invalidation_is_a_new_log_generation() {
    use std::time::Duration;
    let mut setup = support::SentinelSetup::start();
    let url = setup.url();
    let instance = || {
        Cache::builder()
            .service("coherence")
            .redis_url(url.clone())
            .disable_l1()
            .reconnect_backoff(Duration::from_millis(50))
            .build()
            .unwrap()
    };
    let running = instance();
    running.connect().await.unwrap();
    let path = std::env::temp_dir().join(format!("acgs-failover-{}", std::process::id()));
    std::fs::write(&path, "before").unwrap();
    let path_text = path.to_string_lossy().into_owned();
    assert_eq!(running.scope(file_truth(path_text.clone())).await, "before");
    setup.wait_for_replicas(Duration::from_secs(10));

    let old_master = setup.master_port();
    let replica = setup
        .servers()
        .iter()
        .find(|s| s.port() != old_master)
        .unwrap();
    // It lags: frozen, and cut off from the master (bytes already in its
    // socket would otherwise still reach it after it resumes).
    replica.pause();
    setup
        .server(old_master)
        .unwrap()
        .cli(&["CLIENT", "KILL", "TYPE", "replica"]);
    std::fs::write(&path, "after").unwrap();
    match running.invalidate("paused.changed").await {
        Err(acgs_cache::Error::Unconfirmed {
            acknowledged: 0, ..
        }) => {}
        other => panic!("the lagging replica cannot have acknowledged: {other:?}"),
    }
    setup.kill_master();
    setup
        .servers()
        .iter()
        .find(|s| s.port() != old_master)
        .unwrap()
        .resume();
    setup
        .wait_for_failover(old_master, Duration::from_secs(20))
        .expect("the replica is promoted");

    let newcomer = instance();
    // The Sentinel names the new master before it takes connections.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = newcomer.connect().await {
        assert!(std::time::Instant::now() < deadline, "{e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        newcomer.scope(file_truth(path_text.clone())).await,
        "after",
        "a new instance accepted an entry stamped before the lost invalidation"
    );
    support::wait_until("the running instance hears the new master", || {
        running.health_listening()
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let value = running.scope(file_truth(path_text.clone())).await;
        if value == "after" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the running instance kept the entry stamped before the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_file(&path);
}

/// `invalidate` while Redis is away: an error, applied here at once, kept,
/// and sent when Redis answers again — another instance then hears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_made_during_an_outage_reaches_the_others_afterwards() {
    use std::time::Duration;
    let server = RedisServer::start();
    let (here, other) = (redis_instance(&server.url()), redis_instance(&server.url()));
    here.connect().await.unwrap();
    other.connect().await.unwrap();
    let path = std::env::temp_dir().join(format!("acgs-outage-{}", std::process::id()));
    std::fs::write(&path, "before").unwrap();
    let path_text = path.to_string_lossy().into_owned();
    assert_eq!(other.scope(file_truth(path_text.clone())).await, "before");
    assert_eq!(here.scope(file_truth(path_text.clone())).await, "before");

    server.pause();
    std::fs::write(&path, "after").unwrap();
    assert!(here.invalidate("paused.changed").await.is_err());
    assert_eq!(here.stats().await.invalidations.queued, 1);
    assert_eq!(
        here.scope(file_truth(path_text.clone())).await,
        "after",
        "applied to this instance at once"
    );
    server.resume();
    support::wait_until("the kept invalidation is sent", || here.recovered() >= 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while other.scope(file_truth(path_text.clone())).await != "after" {
        assert!(
            std::time::Instant::now() < deadline,
            "the other instance never heard it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_file(&path);
}

/// Synchronous views of a cache's figures, for `wait_until`.
trait Figures {
    fn health_listening(&self) -> bool;
    fn recovered(&self) -> u64;
}

impl Figures for Cache {
    fn health_listening(&self) -> bool {
        let cache = self.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move { cache.stats().await.invalidations.listening })
        })
        .join()
        .unwrap()
    }

    fn recovered(&self) -> u64 {
        let cache = self.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move { cache.stats().await.invalidations.replayed })
        })
        .join()
        .unwrap()
    }
}
