//! What the README's "Testing code that uses the cache" section promises:
//! each test its own cache, reaching every task the test spawns (an axum
//! server included), and a cache with caching disabled.

use std::collections::BTreeMap;
use std::sync::Mutex;

use acgs_cache::{cached, Cache, SessionStore};
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Computations per tenant (the tests run side by side).
static COMPUTED: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn computed(tenant: &str) -> u64 {
    COMPUTED.lock().unwrap().get(tenant).copied().unwrap_or(0)
}

#[cached(ttl = "5m")]
async fn quota(tenant: String) -> u64 {
    *COMPUTED.lock().unwrap().entry(tenant.clone()).or_default() += 1;
    tenant.len() as u64 * 100
}

fn own_cache(service: &str) -> Cache {
    Cache::builder().service(service).build().unwrap()
}

fn quota_calls(stats: &acgs_cache::StatsSnapshot) -> (u64, u64, u64) {
    stats
        .functions
        .iter()
        .find(|f| f.function.ends_with("quota"))
        .map_or((0, 0, 0), |f| (f.l1_hits, f.misses, f.bypassed))
}

#[tokio::test]
async fn a_runtime_default_reaches_spawned_tasks() {
    let cache = own_cache("spawned");
    let _default = cache.set_runtime_default().unwrap();
    assert_eq!(Cache::current().service(), "spawned");

    let first = tokio::spawn(quota("spawned-a".to_owned())).await.unwrap();
    let again = tokio::spawn(async { quota("spawned-a".to_owned()).await })
        .await
        .unwrap();
    assert_eq!((first, again), (900, 900));
    assert_eq!(
        computed("spawned-a"),
        1,
        "the second spawned call hit the test's cache"
    );
    assert_eq!(quota_calls(&cache.stats().await), (1, 1, 0));
    // The process default never saw these calls.
    assert_eq!(quota_calls(&Cache::global().stats().await), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_server_started_in_a_test_uses_the_tests_cache() {
    let cache = own_cache("axum");
    let _default = cache.set_runtime_default().unwrap();

    let app = Router::new().route(
        "/quota/{tenant}",
        get(|Path(tenant): Path<String>| async move { quota(tenant).await.to_string() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    for _ in 0..3 {
        assert_eq!(http_get(address, "/quota/axum-tenant").await, "1100");
    }
    assert_eq!(computed("axum-tenant"), 1);
    assert_eq!(
        quota_calls(&cache.stats().await),
        (2, 1, 0),
        "the server's calls went to the test's cache"
    );
    server.abort();
}

#[tokio::test]
async fn a_scope_covers_one_future_and_wins_over_the_runtime_default() {
    let runtime_default = own_cache("runtime-default");
    let _default = runtime_default.set_runtime_default().unwrap();
    let scoped = own_cache("scoped");
    scoped.scope(quota("scoped-a".to_owned())).await;
    assert_eq!(quota_calls(&scoped.stats().await), (0, 1, 0));
    assert_eq!(quota_calls(&runtime_default.stats().await), (0, 0, 0));
    // Outside the scope, the runtime default.
    quota("scoped-a".to_owned()).await;
    assert_eq!(quota_calls(&runtime_default.stats().await), (0, 1, 0));
    assert_eq!(computed("scoped-a"), 2, "two caches, two computations");
}

#[tokio::test]
async fn the_runtime_default_ends_with_its_guard() {
    let cache = own_cache("guarded");
    {
        let _default = cache.set_runtime_default().unwrap();
        let inner = own_cache("nested");
        let _nested = inner.set_runtime_default().unwrap();
        assert_eq!(
            Cache::current().service(),
            "nested",
            "the newest guard wins"
        );
    }
    assert_eq!(Cache::current().service(), Cache::global().service());
}

#[test]
fn a_runtime_default_needs_a_runtime() {
    let error = own_cache("no-runtime").set_runtime_default().unwrap_err();
    assert!(error.to_string().contains("tokio runtime"), "{error}");
}

#[tokio::test]
async fn a_disabled_cache_runs_every_body_and_still_stores_sessions() {
    let cache = Cache::disabled();
    let _default = cache.set_runtime_default().unwrap();
    for _ in 0..3 {
        assert_eq!(quota("disabled-a".to_owned()).await, 1000);
    }
    assert_eq!(computed("disabled-a"), 3, "every call ran the body");
    assert_eq!(
        quota_calls(&cache.stats().await),
        (0, 0, 3),
        "counted as bypassed"
    );
    assert_eq!(cache.stats().await.l1_entries, 0, "nothing stored");

    // Sessions store data rather than cache it: they still work.
    let sessions = SessionStore::<String>::builder("test_sessions")
        .build(&cache)
        .unwrap();
    let session = sessions.create("alice", "cart".to_owned()).await.unwrap();
    let read = sessions
        .get(session.id())
        .await
        .expect("the session is kept");
    assert_eq!(read.data(), "cart");
}

/// `GET path` over plain HTTP/1.1: the body of a 200 answer.
async fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap()
}
