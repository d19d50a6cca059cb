//! Return-type rules (`Result`, `Option`), methods, `skip`, `key`, and the
//! stability of keys — in process (L1 only), where they are decided.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use acgs_cache::{cached, Cache};
use serde::Serialize;

fn l1_only() -> Cache {
    Cache::builder().service("shapes").build().unwrap()
}

#[derive(Debug, PartialEq)]
enum DbError {
    Unavailable,
}

static LOOKUPS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "governance_rules")]
async fn rule(id: u32) -> Result<String, DbError> {
    LOOKUPS.fetch_add(1, Ordering::SeqCst);
    if id == 0 {
        return Err(DbError::Unavailable);
    }
    let text = format!("rule-{id}");
    Ok(text)
}

#[tokio::test]
async fn result_caches_only_ok() {
    let cache = l1_only();
    cache
        .scope(async {
            let before = LOOKUPS.load(Ordering::SeqCst);
            assert_eq!(rule(0).await, Err(DbError::Unavailable));
            assert_eq!(rule(0).await, Err(DbError::Unavailable));
            assert_eq!(
                LOOKUPS.load(Ordering::SeqCst) - before,
                2,
                "errors are never cached"
            );
            assert_eq!(rule(3).await, Ok("rule-3".to_owned()));
            assert_eq!(rule(3).await, Ok("rule-3".to_owned()));
            assert_eq!(LOOKUPS.load(Ordering::SeqCst) - before, 3);
        })
        .await;
    let stats = cache.stats().await;
    let f = stats.function("rule").unwrap();
    assert_eq!((f.calls, f.misses, f.l1_hits, f.not_stored), (4, 3, 1, 2));
}

static USERS: AtomicU32 = AtomicU32::new(0);
static NEGATIVE: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "user_sessions")]
async fn find_user(id: u64) -> Option<String> {
    USERS.fetch_add(1, Ordering::SeqCst);
    (id != 0).then(|| format!("user-{id}"))
}

#[cached(ttl = "user_sessions", negative_ttl = "30s")]
async fn find_user_remembering_absence(id: u64) -> Option<String> {
    NEGATIVE.fetch_add(1, Ordering::SeqCst);
    (id != 0).then(|| format!("user-{id}"))
}

#[tokio::test]
async fn option_caches_none_only_when_asked() {
    let cache = l1_only();
    cache
        .scope(async {
            let before = USERS.load(Ordering::SeqCst);
            assert_eq!(find_user(0).await, None);
            assert_eq!(find_user(0).await, None);
            assert_eq!(
                USERS.load(Ordering::SeqCst) - before,
                2,
                "None not cached by default"
            );
            assert_eq!(find_user(9).await.as_deref(), Some("user-9"));
            assert_eq!(find_user(9).await.as_deref(), Some("user-9"));
            assert_eq!(USERS.load(Ordering::SeqCst) - before, 3);

            let before = NEGATIVE.load(Ordering::SeqCst);
            assert_eq!(find_user_remembering_absence(0).await, None);
            assert_eq!(find_user_remembering_absence(0).await, None);
            assert_eq!(
                NEGATIVE.load(Ordering::SeqCst) - before,
                1,
                "None cached with negative_ttl"
            );
        })
        .await;
}

/// A service struct: `self` holds connections and is not part of the key.
struct PolicyStore {
    calls: AtomicU32,
}

impl PolicyStore {
    #[cached(ttl = "policy_decision", skip(self))]
    async fn decision(&self, policy: u32) -> bool {
        self.calls.fetch_add(1, Ordering::SeqCst);
        policy.is_multiple_of(2)
    }
}

/// Another type with a method of the same name, signature and policy.
struct AuditStore {
    calls: AtomicU32,
}

impl AuditStore {
    #[cached(ttl = "policy_decision", skip(self))]
    async fn decision(&self, policy: u32) -> bool {
        self.calls.fetch_add(1, Ordering::SeqCst);
        policy % 2 == 1
    }
}

/// A receiver that is itself part of the key (`self` is serialized).
#[derive(Serialize)]
struct Tenant {
    id: u32,
}

static TENANT_CALLS: AtomicU32 = AtomicU32::new(0);

impl Tenant {
    #[cached(ttl = "api_responses")]
    async fn quota(&self, resource: &str) -> u32 {
        TENANT_CALLS.fetch_add(1, Ordering::SeqCst);
        self.id * 100 + resource.len() as u32
    }

    #[cached(ttl = "api_responses", skip(self))]
    async fn shared_banner(self: Arc<Self>) -> String {
        TENANT_CALLS.fetch_add(1, Ordering::SeqCst);
        format!("hello from tenant {}", self.id)
    }
}

#[tokio::test]
async fn methods_share_entries_only_as_their_receiver_rule_says() {
    let cache = l1_only();
    cache
        .scope(async {
            let policies = PolicyStore {
                calls: AtomicU32::new(0),
            };
            let other_policies = PolicyStore {
                calls: AtomicU32::new(0),
            };
            let audits = AuditStore {
                calls: AtomicU32::new(0),
            };
            assert!(policies.decision(2).await);
            assert!(
                other_policies.decision(2).await,
                "skip(self): receivers of one type share"
            );
            assert_eq!(other_policies.calls.load(Ordering::SeqCst), 0);
            assert!(
                !audits.decision(2).await,
                "another type never shares, even with skip(self)"
            );
            assert_eq!(audits.calls.load(Ordering::SeqCst), 1);

            let before = TENANT_CALLS.load(Ordering::SeqCst);
            assert_eq!(Tenant { id: 1 }.quota("cpu").await, 103);
            assert_eq!(
                Tenant { id: 2 }.quota("cpu").await,
                203,
                "self in the key: receivers differ"
            );
            assert_eq!(Tenant { id: 1 }.quota("cpu").await, 103);
            assert_eq!(TENANT_CALLS.load(Ordering::SeqCst) - before, 2);

            let first = Arc::new(Tenant { id: 1 });
            let second = Arc::new(Tenant { id: 2 });
            assert_eq!(first.shared_banner().await, "hello from tenant 1");
            assert_eq!(
                second.shared_banner().await,
                "hello from tenant 1",
                "skip(self) is an explicit choice to share"
            );
        })
        .await;
}

static TRACE_CALLS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "compliance_checks", skip(trace_id))]
async fn compliance(subject: String, trace_id: u128) -> bool {
    TRACE_CALLS.fetch_add(1, Ordering::SeqCst);
    let _ = trace_id;
    subject.starts_with("ok")
}

#[derive(Debug, Clone)]
struct Request {
    tenant: u32,
    path: String,
    received_at: std::time::Instant,
}

#[cached(ttl = "api_responses", key = (req.tenant, &req.path))]
async fn respond(req: Request) -> String {
    TRACE_CALLS.fetch_add(1, Ordering::SeqCst);
    let _ = req.received_at;
    format!("{}:{}", req.tenant, req.path)
}

#[cached(ttl = "static_configuration")]
async fn settings(section: String, overrides: BTreeMap<String, String>) -> usize {
    TRACE_CALLS.fetch_add(1, Ordering::SeqCst);
    section.len() + overrides.len()
}

#[tokio::test]
async fn skip_and_key_decide_what_enters_the_key() {
    let cache = l1_only();
    cache
        .scope(async {
            let before = TRACE_CALLS.load(Ordering::SeqCst);
            assert!(compliance("ok-1".into(), 1).await);
            assert!(
                compliance("ok-1".into(), 2).await,
                "skipped argument does not change the key"
            );
            assert!(!compliance("no".into(), 2).await);
            assert_eq!(TRACE_CALLS.load(Ordering::SeqCst) - before, 2);

            let before = TRACE_CALLS.load(Ordering::SeqCst);
            let req = |tenant| Request {
                tenant,
                path: "/rules".into(),
                received_at: std::time::Instant::now(),
            };
            assert_eq!(respond(req(1)).await, "1:/rules");
            assert_eq!(
                respond(req(1)).await,
                "1:/rules",
                "key = (tenant, path) ignores received_at"
            );
            assert_eq!(respond(req(2)).await, "2:/rules");
            assert_eq!(TRACE_CALLS.load(Ordering::SeqCst) - before, 2);

            let before = TRACE_CALLS.load(Ordering::SeqCst);
            let mut a = BTreeMap::new();
            a.insert("x".to_string(), "1".to_string());
            a.insert("y".to_string(), "2".to_string());
            let b: BTreeMap<_, _> = a
                .iter()
                .rev()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(settings("db".into(), a).await, 4);
            assert_eq!(
                settings("db".into(), b).await,
                4,
                "ordered maps key the same whatever the insertion order"
            );
            assert_eq!(TRACE_CALLS.load(Ordering::SeqCst) - before, 1);
        })
        .await;
}

/// Argument serialization that fails at run time.
struct Flaky;
impl Serialize for Flaky {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this argument refuses to serialize",
        ))
    }
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "90s")]
async fn with_flaky_key(_arg: Flaky) -> u8 {
    FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    7
}

#[tokio::test]
async fn a_key_that_fails_to_serialize_bypasses_the_cache() {
    let cache = l1_only();
    let before = FLAKY_CALLS.load(Ordering::SeqCst);
    assert_eq!(cache.scope(with_flaky_key(Flaky)).await, 7);
    assert_eq!(cache.scope(with_flaky_key(Flaky)).await, 7);
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst) - before, 2);
    let stats = cache.stats().await;
    let f = stats.function("with_flaky_key").unwrap();
    assert_eq!((f.calls, f.bypassed, f.misses), (2, 2, 0));
}
