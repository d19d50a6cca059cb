//! The staleness bound: once an invalidation is acknowledged, no instance
//! serves what it invalidated more than its lease (`max_staleness`) later,
//! whatever happens to it — a partition that leaves its TCP connections
//! open, a process paused across the invalidation, a Redis that stops
//! answering. Each case runs the `l1_ttl` opt-out beside it where that
//! shows what the lease prevents.

use acgs_cache_harness as support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache, HealthStatus, MaxStaleness};
use support::{RedisServer, TcpProxy};

/// The lease these tests give their instances: short, so that they wait
/// little, and far above this machine's renewal round trip.
const LEASE: Duration = Duration::from_millis(200);

/// The "database": the current version of every row.
static VERSION: AtomicU64 = AtomicU64::new(1);

#[cached(ttl = "5m", invalidate_on = "rows.*")]
async fn row(id: u32) -> u64 {
    let _ = id;
    VERSION.load(Ordering::SeqCst)
}

#[cached(ttl = "5m", invalidate_on = "rows.*", max_staleness = "l1_ttl")]
async fn row_opted_out(id: u32) -> u64 {
    let _ = id;
    VERSION.load(Ordering::SeqCst)
}

fn instance(url: &str, service: &str) -> Cache {
    Cache::builder()
        .redis_url(url)
        .service(service)
        .max_staleness(MaxStaleness::lease(LEASE).unwrap())
        .reconnect_backoff(Duration::from_millis(50))
        .build()
        .unwrap()
}

/// A reader cut off by a network that drops everything (its connections
/// stay open: nothing tells it) stops serving its L1 copy once its lease
/// has run out after the invalidation; the opt-out serves it for the whole
/// partition. When the network heals, both catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_leaves_tcp_open_ends_l1_serving_within_the_lease() {
    let server = RedisServer::start();
    let proxy = TcpProxy::start(server.port());
    let writer = instance(&server.url(), "stale-partition");
    let reader = instance(&proxy.url(), "stale-partition");
    writer.connect().await.unwrap();
    reader.connect().await.unwrap();
    let before = VERSION.load(Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(reader.scope(row(1)).await, before);
        assert_eq!(reader.scope(row_opted_out(1)).await, before);
    }
    let stats = reader.stats().await;
    assert_eq!(stats.function("row").unwrap().l1_hits, 1, "{stats:#?}");

    proxy.freeze();
    let changed = VERSION.fetch_add(1, Ordering::SeqCst) + 1;
    writer.invalidate("rows.changed").await.unwrap();
    let acknowledged = Instant::now();
    tokio::time::sleep(LEASE * 2).await;

    // More than the lease after the acknowledgement: never the old value.
    assert_eq!(reader.scope(row(1)).await, changed, "lease-bound function");
    assert!(acknowledged.elapsed() > LEASE);
    // The opt-out still serves its L1 copy: what the lease prevents.
    assert_eq!(
        reader.scope(row_opted_out(1)).await,
        before,
        "the l1_ttl opt-out keeps its copy while the log is unheard"
    );
    let stats = reader.stats().await;
    assert!(
        stats.function("row").unwrap().lease_skips >= 1,
        "{stats:#?}"
    );
    assert!(stats.invalidations.lease_age_us.unwrap() > 200_000);
    let health = reader.health().await;
    assert_eq!(health.status, HealthStatus::Degraded, "{health}");
    assert!(health.to_string().contains("lease"), "{health}");

    proxy.thaw();
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.scope(row_opted_out(1)).await != changed {
        assert!(
            Instant::now() < deadline,
            "the reader never heard the log again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reader.scope(row(1)).await, changed);
    assert!(proxy.forwarded() > 0);
}

/// A Redis that stops answering (SIGSTOP: connections open, nothing
/// replies): past its lease the instance serves no L1 entry it cannot
/// vouch for, answers from the function, and serves L1 again once Redis
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_ends_l1_serving_within_the_lease() {
    let server = RedisServer::start();
    let cache = instance(&server.url(), "stale-stopped");
    cache.connect().await.unwrap();
    let now = VERSION.load(Ordering::SeqCst);
    assert_eq!(cache.scope(row(2)).await, now);
    server.pause();
    tokio::time::sleep(LEASE * 2).await;
    let skips_before = cache.stats().await.function("row").unwrap().lease_skips;
    assert_eq!(cache.scope(row(2)).await, VERSION.load(Ordering::SeqCst));
    let stats = cache.stats().await;
    let f = stats.function("row").unwrap();
    assert_eq!(f.lease_skips, skips_before + 1, "{stats:#?}");
    assert_eq!(f.l1_hits, 0, "{stats:#?}");
    server.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        cache.scope(row(2)).await;
        if cache.stats().await.function("row").unwrap().l1_hits > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "L1 never served again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process of this test binary: reads `row` on request through a
/// cache with a 200 ms lease on the Redis of `ACGS_STALENESS_CHILD_REDIS`,
/// bumping the version first when asked (the "database" is per process);
/// does nothing when run as a test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_reads_on_request() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let Ok(url) = std::env::var("ACGS_STALENESS_CHILD_REDIS") else {
        return;
    };
    let cache = instance(&url, "stale-paused");
    cache.connect().await.unwrap();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match line.as_str() {
            "quit" => break,
            "bump" => println!("value={}", VERSION.fetch_add(1, Ordering::SeqCst) + 1),
            _ => println!("value={}", cache.scope(row(3)).await),
        }
    }
}

/// A process stopped (SIGSTOP) while another instance invalidates, resumed
/// more than its lease later: its very first read after the resume does
/// not serve the invalidated value — the lease is read from a clock the
/// kernel keeps, which the pause did not stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_process_serves_nothing_invalidated_more_than_its_lease_ago() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let server = RedisServer::start();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reads_on_request",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ACGS_STALENESS_CHILD_REDIS", server.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask = move |question: &str| -> u64 {
        writeln!(input, "{question}").unwrap();
        input.flush().unwrap();
        loop {
            let line = output.next().expect("the child answers").unwrap();
            // libtest may print its own text before the child's on a line.
            if let Some(at) = line.find("value=") {
                return line[at + "value=".len()..].parse().unwrap();
            }
        }
    };
    let first = ask("read");
    assert_eq!(ask("read"), first, "from the child's L1");
    let pid = child.id().to_string();
    let signal = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    // The database changes while the child is stopped (its copy of the
    // version is bumped first: it sees the change only by computing).
    let changed = ask("bump");
    signal("-STOP");
    let writer = instance(&server.url(), "stale-paused");
    writer.invalidate("rows.changed").await.unwrap();
    tokio::time::sleep(LEASE * 3).await;
    signal("-CONT");
    for _ in 0..5 {
        assert_eq!(
            ask("read"),
            changed,
            "a read after the resume served a value invalidated more than the lease before"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
