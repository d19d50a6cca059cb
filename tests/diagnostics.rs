//! What an operator reads when Redis cannot be reached: the log says so once
//! per cause, at WARN, with the URL's credentials hidden, and again when
//! Redis answers; `health()` gives the cause; calls do not wait for a log
//! that a refused connection will not let them hear.
//!
//! A binary of its own: it installs the process's global log subscriber.

use acgs_cache_harness as support;

use std::time::Duration;

use acgs_cache::{cached, Cache};
use support::{LogSink, RedisServer};

#[cached(ttl = "90s")]
async fn lookup(id: u32) -> u32 {
    id * 2
}

#[tokio::test]
async fn an_install_after_first_use_says_why_and_what_to_do() {
    assert_eq!(lookup(21).await, 42); // builds the process default
    let refused = Cache::builder()
        .service("late")
        .build()
        .unwrap()
        .install_default()
        .unwrap_err();
    assert!(refused.by_first_use());
    let said = format!("{refused:?}");
    assert!(said.contains("used before install_default()"), "{said}");
    assert!(said.contains("at the start of main"), "{said}");
    assert!(!said.contains("Cache {"), "{said}");
    assert_eq!(refused.into_cache().service(), "late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_said_once_with_its_cause_and_again_when_it_answers() {
    let logs = LogSink::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("acgs_cache=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut server = RedisServer::start();
    server.stop();
    let url = server.url_as("app", "s3cret");
    let cache = Cache::builder()
        .service("diagnostics")
        .redis_url(&url)
        .reconnect_backoff(Duration::from_millis(20))
        .build()
        .unwrap();
    for id in 0..5 {
        assert_eq!(cache.scope(lookup(id)).await, id * 2);
    }
    // Several of the tailer's attempts (50 to 200 ms apart) fail meanwhile.
    tokio::time::sleep(Duration::from_millis(700)).await;

    // (The other test of this binary logs its own L1-only caches.)
    let ready = logs.lines_with("service=diagnostics redis=");
    assert_eq!(ready.len(), 1, "{}", logs.text());
    assert!(
        ready[0].contains("cache ready: L1 (in process) + L2 (redis, standalone) connecting"),
        "{}",
        ready[0]
    );
    let unreachable = logs.lines_with("redis unreachable: L1 only until it answers");
    assert_eq!(unreachable.len(), 1, "once per cause:\n{}", logs.text());
    assert!(unreachable[0].contains(" WARN "), "{}", unreachable[0]);
    assert!(
        unreachable[0].contains("Connection refused"),
        "{}",
        unreachable[0]
    );
    assert!(!logs.text().contains("s3cret"), "{}", logs.text());

    let health = cache.health().await.to_string();
    assert!(
        health.contains("cause=\"redis: Connection refused"),
        "{health}"
    );

    // Redis comes back (with the URL's user): said once, at INFO.
    server.restart();
    server.acl_setuser(&["app", "on", ">s3cret", "~*", "&*", "+@all"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while logs.lines_with("redis answers: L1 + L2").is_empty() {
        assert!(std::time::Instant::now() < deadline, "{}", logs.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(logs.lines_with("redis answers").len(), 1, "{}", logs.text());
}
