//! Sessions and token verifications against real redis-server processes:
//! the life of a session, revocation reaching a second instance that had it
//! in L1, revoking a user's sessions; tokens verified once, stored only by
//! digest, revoked across instances, errors not cached.

use acgs_cache_harness as support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use acgs_cache::{Cache, SessionStore, TokenCache, TtlPolicy};
use serde::{Deserialize, Serialize};
use support::RedisServer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    roles: Vec<String>,
}

fn profile(role: &str) -> Profile {
    Profile {
        roles: vec![role.to_owned()],
    }
}

fn instance(url: &str) -> Cache {
    Cache::builder()
        .service("auth")
        .redis_url(url)
        .l2_soft_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

fn sessions(cache: &Cache) -> SessionStore<Profile> {
    SessionStore::builder("web").build(cache).unwrap()
}

/// Polls `check` until it holds (logical wait: the propagation delay is
/// not asserted, only that it ends).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn function_stats(cache: &Cache, function: &str) -> acgs_cache::FunctionStats {
    cache
        .stats()
        .await
        .functions
        .into_iter()
        .find(|f| f.function == function)
        .unwrap_or_else(|| panic!("no stats for {function}"))
}

#[tokio::test]
async fn create_get_touch_revoke() {
    let server = RedisServer::start();
    let cache = instance(&server.url());
    let store = sessions(&cache);
    let session = store.create("alice", profile("admin")).await.unwrap();
    assert_eq!(session.id().len(), 64);
    assert!(
        !format!("{session:?}").contains(session.id()),
        "Debug hides the id"
    );
    let other = store.create("alice", profile("admin")).await.unwrap();
    assert_ne!(session.id(), other.id());
    let expires = session
        .expires_at()
        .duration_since(session.created_at())
        .unwrap();
    assert_eq!(
        expires,
        Duration::from_secs(30 * 60),
        "user_sessions policy"
    );

    let got = store.get(session.id()).await.unwrap();
    assert_eq!((got.user(), got.data()), ("alice", &profile("admin")));
    // From L2 too, once L1 is gone.
    cache.clear_l1();
    assert_eq!(store.get(session.id()).await.unwrap().user(), "alice");

    tokio::time::sleep(Duration::from_millis(20)).await;
    let touched = store.touch(session.id()).await.unwrap().unwrap();
    assert!(touched.expires_at() > session.expires_at());
    let mut raw = server.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("acgs:auth:map-session-web:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl_ms > 29 * 60 * 1000, "{ttl_ms}");

    store.revoke(session.id()).await.unwrap();
    assert!(store.get(session.id()).await.is_none());
    assert!(store.touch(session.id()).await.unwrap().is_none());
    assert!(store.get(other.id()).await.is_some(), "only that session");

    // Bad input: a miss or a clear error, never a panic.
    assert!(store.get("not-a-session").await.is_none());
    assert!(store.get(&"é".repeat(32)).await.is_none());
    assert!(store.revoke("../../etc").await.is_err());
    assert!(store.create("", profile("x")).await.is_err());
    assert!(SessionStore::<Profile>::builder("no spaces")
        .build(&cache)
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_reaches_a_second_instance_that_had_it_in_l1() {
    let server = RedisServer::start();
    let (a, b) = (instance(&server.url()), instance(&server.url()));
    let (on_a, on_b) = (sessions(&a), sessions(&b));
    let session = on_a.create("bob", profile("viewer")).await.unwrap();
    // B reads it (L2 hit, which fills its L1), then again from L1.
    assert_eq!(on_b.get(session.id()).await.unwrap().user(), "bob");
    assert_eq!(on_b.get(session.id()).await.unwrap().user(), "bob");
    let stats = function_stats(&b, "map-session-web").await;
    assert_eq!((stats.l2_hits, stats.l1_hits), (1, 1));

    on_a.revoke(session.id()).await.unwrap();
    assert!(
        on_a.get(session.id()).await.is_none(),
        "at once on the revoking instance"
    );
    eventually("B stops returning the revoked session", async || {
        on_b.get(session.id()).await.is_none()
    })
    .await;
    // A touch on B cannot bring it back.
    assert!(on_b.touch(session.id()).await.unwrap().is_none());
    assert!(on_a.get(session.id()).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_user_ends_every_session_of_that_user_only() {
    let server = RedisServer::start();
    let (a, b) = (instance(&server.url()), instance(&server.url()));
    let (on_a, on_b) = (sessions(&a), sessions(&b));
    let carol: Vec<_> = [
        on_a.create("carol", profile("a")).await.unwrap(),
        on_b.create("carol", profile("b")).await.unwrap(),
    ]
    .into();
    let dave = on_a.create("dave", profile("c")).await.unwrap();
    for s in &carol {
        assert!(on_a.get(s.id()).await.is_some());
        assert!(on_b.get(s.id()).await.is_some());
    }
    on_b.revoke_user("carol").await.unwrap();
    for s in &carol {
        assert!(on_b.get(s.id()).await.is_none());
        eventually("A drops carol's sessions", async || {
            on_a.get(s.id()).await.is_none()
        })
        .await;
    }
    assert!(on_a.get(dave.id()).await.is_some());
    assert!(on_b.get(dave.id()).await.is_some());
    // A new login after the revocation is valid.
    let again = on_a.create("carol", profile("a")).await.unwrap();
    assert!(on_a.get(again.id()).await.is_some());
}

#[tokio::test]
async fn sessions_work_in_process_without_redis() {
    let cache = Cache::builder().service("auth").build().unwrap();
    let store = sessions(&cache);
    let s = store.create("erin", profile("a")).await.unwrap();
    assert!(store.touch(s.id()).await.unwrap().is_some());
    store.revoke_user("erin").await.unwrap();
    assert!(store.get(s.id()).await.is_none());
}

#[tokio::test]
async fn a_session_expires_with_its_policy() {
    let cache = Cache::builder().service("auth").build().unwrap();
    const SHORT: TtlPolicy = TtlPolicy::new("short_sessions", Duration::from_millis(150));
    let store: SessionStore<Profile> = SessionStore::builder("short")
        .ttl(SHORT)
        .build(&cache)
        .unwrap();
    let s = store.create("frank", profile("a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(store.touch(s.id()).await.unwrap().is_some(), "sliding");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(store.get(s.id()).await.is_some(), "the touch extended it");
    eventually("the session expires", async || {
        store.get(s.id()).await.is_none()
    })
    .await;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

#[derive(Debug, PartialEq)]
struct Invalid;

/// A verifier that counts its calls: tokens `valid-<user>[.signature]` pass, with an
/// expiry `exp_in` from now.
fn verifier(
    calls: Arc<AtomicU32>,
    exp_in: Duration,
) -> impl AsyncFn(&str) -> Result<Claims, Invalid> + Clone {
    async move |token: &str| {
        calls.fetch_add(1, Ordering::SeqCst);
        let exp = (SystemTime::now() + exp_in)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        match token.strip_prefix("valid-") {
            Some(rest) => Ok(Claims {
                sub: rest.split('.').next().unwrap_or_default().to_owned(),
                exp,
            }),
            None => Err(Invalid),
        }
    }
}

fn tokens(cache: &Cache) -> TokenCache<Claims> {
    TokenCache::builder("api")
        .expires_at(|c: &Claims| Some(UNIX_EPOCH + Duration::from_millis(c.exp)))
        .build(cache)
        .unwrap()
}

const TOKEN: &str = "valid-alice.eyJzdXBlci1zZWNyZXQtc2lnbmF0dXJl";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_verified_once_stored_by_digest_and_revoked_everywhere() {
    let server = RedisServer::start();
    let (a, b) = (instance(&server.url()), instance(&server.url()));
    let (on_a, on_b) = (tokens(&a), tokens(&b));
    let calls = Arc::new(AtomicU32::new(0));
    let verify = verifier(calls.clone(), Duration::from_secs(3600));
    for _ in 0..5 {
        assert_eq!(on_a.verify(TOKEN, &verify).await.unwrap().sub, "alice");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "verified once on A");
    assert_eq!(on_b.verify(TOKEN, &verify).await.unwrap().sub, "alice");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "B found A's verification in L2"
    );

    // Nothing in Redis names the token, in keys or values.
    let mut raw = server.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    let token_keys: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains(":map-token-api:"))
        .collect();
    assert_eq!(token_keys.len(), 1, "{keys:?}");
    for key in &keys {
        assert!(!key.contains("alice.eyJ"), "raw token in a key: {key}");
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        if kind == "string" {
            let value: Vec<u8> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut raw)
                .await
                .unwrap();
            assert!(!String::from_utf8_lossy(&value).contains("eyJzdXBlci1"));
        }
    }
    assert!(!format!("{on_a:?}").contains("eyJ"));

    // Revoked on A: B's L1 copy stops vouching, the verifier runs again.
    on_a.revoke(TOKEN).await.unwrap();
    eventually("B drops the revoked verification", async || {
        let before = calls.load(Ordering::SeqCst);
        on_b.verify(TOKEN, &verify).await.unwrap();
        calls.load(Ordering::SeqCst) > before
    })
    .await;
}

/// Sixteen requests with one new token at once: one call to the identity
/// provider, every request gets the claims. (Before the token cache was
/// built on `CacheMap`, each of them called the provider.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_verifications_of_one_token_make_one_provider_call() {
    let server = RedisServer::start();
    let cache = instance(&server.url());
    let cache_of = tokens(&cache);
    let calls = Arc::new(AtomicU32::new(0));
    let slow_provider = {
        let calls = calls.clone();
        async move |token: &str| {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let exp = (SystemTime::now() + Duration::from_secs(3600))
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            match token.strip_prefix("valid-") {
                Some(rest) => Ok(Claims {
                    sub: rest.to_owned(),
                    exp,
                }),
                None => Err(Invalid),
            }
        }
    };
    let requests = (0..16).map(|_| cache_of.verify("valid-ivy", &slow_provider));
    for claims in futures_util::future::join_all(requests).await {
        assert_eq!(claims.unwrap().sub, "ivy");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one provider call for 16 requests"
    );
    // The same for a token the provider rejects: errors are shared by the
    // requests that waited for them, and never stored.
    calls.store(0, Ordering::SeqCst);
    let requests = (0..16).map(|_| cache_of.verify("forged-2", &slow_provider));
    for claims in futures_util::future::join_all(requests).await {
        assert_eq!(claims, Err(Invalid));
    }
    assert!(calls.load(Ordering::SeqCst) >= 1);
    cache_of
        .verify("forged-2", &slow_provider)
        .await
        .unwrap_err();
    assert!(calls.load(Ordering::SeqCst) >= 2, "an error is not stored");
}

#[tokio::test]
async fn errors_are_not_cached_and_expired_claims_end_the_entry() {
    let server = RedisServer::start();
    let cache = instance(&server.url());
    let cache_of = tokens(&cache);
    let calls = Arc::new(AtomicU32::new(0));
    let verify = verifier(calls.clone(), Duration::from_secs(3600));
    for _ in 0..3 {
        assert_eq!(cache_of.verify("forged", &verify).await, Err(Invalid));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "every failure verified again"
    );

    // Claims that expire in 200 ms are kept no longer than that (policy: 5 min).
    let short = verifier(calls.clone(), Duration::from_millis(200));
    calls.store(0, Ordering::SeqCst);
    cache_of.verify("valid-gina", &short).await.unwrap();
    cache_of.verify("valid-gina", &short).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    eventually("the entry ends with the claims", async || {
        cache_of.verify("valid-gina", &short).await.unwrap();
        calls.load(Ordering::SeqCst) > 1
    })
    .await;
    // And an already-expired verification is not kept at all.
    let expired = verifier(calls.clone(), Duration::ZERO);
    calls.store(0, Ordering::SeqCst);
    cache_of.verify("valid-hank", &expired).await.unwrap();
    cache_of.verify("valid-hank", &expired).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A session read back from Redis may hold any id: `Debug` never panics on it.
#[test]
fn debug_of_a_stored_session_with_any_id_never_panics() {
    for id in ["ü漢字ü漢字ü漢字", "", "short", "ab\u{0301}cdefghij"] {
        let id = serde_json::to_string(id).unwrap();
        let json = format!(
            r#"{{"id":{id},"user":"alice","data":{{"roles":[]}},"created_at_ms":0,"expires_at_ms":1}}"#
        );
        let session: acgs_cache::Session<Profile> = serde_json::from_str(&json).unwrap();
        let shown = format!("{session:?}");
        assert!(shown.contains("alice"), "{shown}");
    }
}
