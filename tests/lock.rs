//! The distributed lock: exclusion between tasks and instances, fencing,
//! renewal, expiry of a crashed holder's lease, token-checked release.

use acgs_cache_harness as support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use acgs_cache::{Cache, DistributedLock, Error};
use redis::AsyncCommands;
use support::{example, field, RedisServer};

fn instance(server: &RedisServer) -> Cache {
    Cache::builder()
        .service("locks")
        .redis_url(server.url())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_across_instances_with_growing_fencing_tokens() {
    let server = RedisServer::start();
    let instances: Vec<Cache> = (0..3).map(|_| instance(&server)).collect();
    let inside = Arc::new(AtomicU32::new(0));
    let tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for (i, cache) in instances.iter().enumerate() {
        for _ in 0..5 {
            let (cache, inside, tokens) = (cache.clone(), inside.clone(), tokens.clone());
            workers.push(tokio::spawn(async move {
                let lock = DistributedLock::acquire(
                    &cache,
                    "ledger",
                    Duration::from_secs(5),
                    Duration::from_secs(20),
                )
                .await
                .unwrap();
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "instance {i}: someone else holds it"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                tokens.lock().unwrap().push(lock.fencing_token());
                lock.release().await.unwrap();
            }));
        }
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let mut tokens = tokens.lock().unwrap().clone();
    let acquired = tokens.len();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(
        tokens.len(),
        acquired,
        "every acquisition has its own token"
    );
    assert_eq!(tokens, (1..=15).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_held_lock_is_renewed_and_a_waiter_times_out() {
    let server = RedisServer::start();
    let (a, b) = (instance(&server), instance(&server));
    let held = DistributedLock::acquire(&a, "report", Duration::from_millis(300), Duration::ZERO)
        .await
        .unwrap();
    // Three leases later it is still held: renewal works.
    let waited = DistributedLock::acquire(
        &b,
        "report",
        Duration::from_millis(300),
        Duration::from_millis(900),
    )
    .await;
    assert!(matches!(waited, Err(Error::LockTimeout(_))), "{waited:?}");
    held.release().await.unwrap();
    let next = DistributedLock::acquire(
        &b,
        "report",
        Duration::from_millis(300),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    assert_eq!(next.fencing_token(), 2);
}

#[tokio::test]
async fn a_crashed_holders_lease_runs_out() {
    let server = RedisServer::start();
    let cache = instance(&server);
    // A holder that died: the key is there, nobody renews it.
    let mut raw = server.raw().await;
    let _: () = redis::cmd("SET")
        .arg("acgs:lock:{batch}")
        .arg("dead-holder")
        .arg("PX")
        .arg(300)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(cache
        .try_lease("batch", Duration::from_secs(1))
        .await
        .unwrap()
        .is_none());
    let lock = DistributedLock::acquire(
        &cache,
        "batch",
        Duration::from_secs(1),
        Duration::from_secs(3),
    )
    .await
    .unwrap();
    assert_eq!(lock.fencing_token(), 1);
}

#[tokio::test]
async fn release_never_frees_someone_elses_lock() {
    let server = RedisServer::start();
    let cache = instance(&server);
    let lock = DistributedLock::acquire(&cache, "payout", Duration::from_secs(5), Duration::ZERO)
        .await
        .unwrap();
    // Our lease was lost and another holder took the name meanwhile.
    let mut raw = server.raw().await;
    let _: () = raw.set("acgs:lock:{payout}", "newer-holder").await.unwrap();
    lock.release().await.unwrap();
    let still: String = raw.get("acgs:lock:{payout}").await.unwrap();
    assert_eq!(still, "newer-holder");
}

#[tokio::test]
async fn locks_need_l2_and_a_plain_name() {
    let l1_only = Cache::builder().service("locks").build().unwrap();
    assert!(matches!(
        l1_only.try_lease("x", Duration::from_secs(1)).await,
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(
        DistributedLock::try_acquire(&l1_only, "x", Duration::from_secs(1)).await,
        Err(Error::Unavailable(_))
    ));
    let server = RedisServer::start();
    assert!(matches!(
        instance(&server)
            .try_lease("a{b}", Duration::from_secs(1))
            .await,
        Err(Error::InvalidName(_))
    ));
}

#[test]
fn one_holder_at_a_time_across_processes_with_fenced_writes() {
    let server = RedisServer::start();
    let output = std::process::Command::new(example("ledger_lock"))
        .args([
            "--redis-url",
            &server.url(),
            "--processes",
            "4",
            "--rounds",
            "15",
        ])
        .env_remove("ACGS_CACHE_REDIS_URL")
        .output()
        .expect("run the ledger_lock example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("ledger_lock: processes="))
        .unwrap_or_else(|| panic!("no summary line\n{stdout}\n{stderr}"));
    assert_eq!(field(summary, "acquisitions"), 60, "{stdout}");
    assert_eq!(field(summary, "overlaps"), 0, "{stdout}");
    assert_eq!(field(summary, "fenced_rejections"), 0, "{stdout}");
    assert!(summary.ends_with("tokens_increasing=true"), "{stdout}");
}

static ORPHANED_RUNS: AtomicU32 = AtomicU32::new(0);

#[acgs_cache::cached(ttl = "policy_decision", lock = true)]
async fn locked_report(id: u64) -> u64 {
    ORPHANED_RUNS.fetch_add(1, Ordering::SeqCst);
    id
}

/// A miss whose lock attempt timed out while Redis was frozen (so it
/// computed without the lock) leaves no lock held by nobody once Redis
/// runs the attempt: the next miss, on another instance, does not wait out
/// the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_miss_lock_does_not_stall_the_next_miss_for_the_lease() {
    let server = RedisServer::start();
    let instance = || {
        Cache::builder()
            .service("locks")
            .redis_url(server.url())
            .lock_lease(Duration::from_secs(20))
            .disable_l1()
            .build()
            .unwrap()
    };
    let (first, second) = (instance(), instance());
    first.connect().await.unwrap();
    second.connect().await.unwrap();
    // Once, so every script is loaded: the frozen server then runs them.
    first.scope(locked_report(0)).await;

    server.pause();
    assert_eq!(
        first.scope(locked_report(1)).await,
        1,
        "computed without L2"
    );
    server.resume();
    // The frozen server now runs what it was sent (the lock attempt, and
    // the entry's write, which is removed so the next call misses).
    let mut raw = server.raw().await;
    let _: () = redis::cmd("PING").query_async(&mut raw).await.unwrap();
    let keys: Vec<String> = raw.keys("acgs:locks:locked_report:*").await.unwrap();
    for key in keys.iter().filter(|k| !k.ends_with(":lock")) {
        let _: () = raw.del(key).await.unwrap();
    }
    let start = std::time::Instant::now();
    assert_eq!(second.scope(locked_report(1)).await, 1);
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "waited {waited:?}: an orphaned lock held the miss for the lease"
    );
}

/// A lock attempt that times out while Redis is frozen may still run once
/// Redis resumes: its lock is then released by its token at once, not held
/// by nobody for its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_attempt_that_timed_out_is_released_in_the_background() {
    let server = RedisServer::start();
    let cache = instance(&server);
    cache.connect().await.unwrap();
    // Once, so the script is loaded: the frozen server then runs it.
    let warm = cache
        .try_lease("nightly", Duration::from_secs(60))
        .await
        .unwrap();
    warm.unwrap().release().await.unwrap();
    server.pause();
    let attempt = cache.try_lease("nightly", Duration::from_secs(60)).await;
    assert!(attempt.is_err(), "{attempt:?}");
    server.resume();
    let mut raw = server.raw().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let held: bool = raw.exists("acgs:lock:{nightly}").await.unwrap();
        if !held {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lock stayed held by nobody"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Free for the next holder.
    assert!(cache
        .try_lease("nightly", Duration::from_secs(60))
        .await
        .unwrap()
        .is_some());
}
