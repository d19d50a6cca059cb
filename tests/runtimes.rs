//! The process-default cache, with Redis, used from several `#[tokio::test]`s:
//! each test runs on a runtime of its own, side by side with the others or
//! one after another (`--test-threads=1`), and each must get L2 hits,
//! invalidate without an error, and hear another instance's invalidations,
//! with no error counted. The test command runs this binary five times in
//! each mode.

use acgs_cache_harness as support;

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use acgs_cache::{cached, Cache, LogPosition};
use support::RedisServer;

/// One server for the whole binary, stopped when the process ends.
static SERVER: LazyLock<RedisServer> = LazyLock::new(|| {
    let server = RedisServer::start();
    server.stop_with_this_process();
    server
});

static SERVICE: &str = "runtimes";

/// The process default, on the binary's server: what a service's tests get
/// with `ACGS_CACHE_REDIS_URL` set.
fn default_cache() -> &'static Cache {
    static INSTALLED: LazyLock<()> = LazyLock::new(|| {
        let cache = Cache::builder()
            .service(SERVICE)
            .redis_url(SERVER.url())
            .build()
            .expect("valid configuration");
        assert!(cache.install_default().is_ok(), "installed once");
    });
    LazyLock::force(&INSTALLED);
    Cache::global()
}

/// Another instance of the service (another process, in production).
fn other_instance() -> Cache {
    Cache::builder()
        .service(SERVICE)
        .redis_url(SERVER.url())
        .build()
        .expect("valid configuration")
}

/// Computations per test (the tests run side by side).
static COMPUTED: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn computed(test: &str) -> u64 {
    COMPUTED.lock().unwrap().get(test).copied().unwrap_or(0)
}

#[cached(ttl = "5m", tags = ["rules.{test}"])]
async fn rule(test: String, id: u64) -> String {
    *COMPUTED.lock().unwrap().entry(test.clone()).or_default() += 1;
    format!("{test}:{id}")
}

/// The whole story on one runtime: a value another instance stored is an
/// L2 hit here; an invalidation from here answers `Ok`; one from the other
/// instance is heard here; nothing counts an error.
async fn one_runtime(test: &str) {
    let cache = default_cache();
    cache
        .connect()
        .await
        .expect("the default cache reaches redis");
    let other = other_instance();
    // Stored by the other instance, read here from L2: not in this
    // instance's L1 (the keys are the test's own), and not computed.
    for id in 0..20 {
        other.scope(rule(test.to_owned(), id)).await;
    }
    assert_eq!(computed(test), 20);
    let l2_hits = errors_and_l2_hits(cache).await.1;
    for id in 0..20 {
        assert_eq!(rule(test.to_owned(), id).await, format!("{test}:{id}"));
    }
    assert_eq!(
        computed(test),
        20,
        "{test}: every read is an L2 hit on this runtime"
    );
    assert!(errors_and_l2_hits(cache).await.1 >= l2_hits + 20);

    // An invalidation from this runtime: `Ok`, and the next call recomputes.
    let position = cache
        .invalidate(&format!("rules.{test}"))
        .await
        .unwrap_or_else(|e| panic!("{test}: invalidate failed: {e}"));
    assert!(position > LogPosition::default());
    rule(test.to_owned(), 0).await;
    assert_eq!(
        computed(test),
        21,
        "{test}: recomputed after its own invalidation"
    );

    // An invalidation from the other instance is heard here. (Polled, not
    // awaited through `log_position()`: the other tests' own invalidations,
    // applied here at once, can move this shared cache's position past the
    // other instance's before the tailer has read it.)
    rule(test.to_owned(), 1).await;
    other
        .invalidate(&format!("rules.{test}"))
        .await
        .expect("other instance invalidates");
    let deadline = Instant::now() + Duration::from_secs(10);
    while computed(test) < 23 {
        assert!(
            Instant::now() < deadline,
            "{test}: the other instance's invalidation was never heard"
        );
        rule(test.to_owned(), 1).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        computed(test),
        23,
        "{test}: recomputed once after the other instance's invalidation"
    );

    let (errors, _) = errors_and_l2_hits(cache).await;
    assert_eq!(errors, 0, "{test}: errors counted");
    let stats = cache.stats().await;
    assert!(!stats.l2_circuit_open, "{test}: the circuit opened");
    assert!(
        stats.invalidations.listening,
        "{test}: the default cache stopped listening to the log"
    );
}

/// (errors, l2_hits) of `rule` in `cache`, all tests together.
async fn errors_and_l2_hits(cache: &Cache) -> (u64, u64) {
    let stats = cache.stats().await;
    stats
        .functions
        .iter()
        .find(|f| f.function.ends_with("rule"))
        .map_or((0, 0), |f| (f.errors, f.l2_hits))
}

#[tokio::test]
async fn first_current_thread_runtime() {
    one_runtime("first").await;
}

#[tokio::test]
async fn second_current_thread_runtime() {
    one_runtime("second").await;
}

#[tokio::test]
async fn third_current_thread_runtime() {
    one_runtime("third").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_runtime() {
    one_runtime("multi").await;
}

/// Runtimes made and dropped by hand, one after another, in one test.
#[test]
fn runtimes_that_end_one_after_another() {
    for round in 0..3 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(one_runtime(&format!("round{round}")));
    }
}
