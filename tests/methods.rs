//! `#[cached]` on methods, associated functions and trait impls (native
//! `async fn` in traits and `#[async_trait]`, `Send` and `?Send`, with
//! `#[tracing::instrument]` above or below), their companions, and
//! `#[invalidates]` on writes; `with_outcome` tells how a call was answered.

use std::sync::atomic::{AtomicU64, Ordering};

use acgs_cache::{cached, cached_companions, invalidates, with_outcome, Cache, Outcome};
use async_trait::async_trait;

/// A service struct holding what cannot be part of a key.
struct PolicyService {
    computed: AtomicU64,
}

impl PolicyService {
    fn new() -> Self {
        PolicyService {
            computed: AtomicU64::new(0),
        }
    }

    fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// A `pub` method: companions on `self`.
    #[cached(ttl = "5m", skip(self))]
    pub async fn decide(&self, policy: u64, subject: String) -> String {
        self.computed.fetch_add(1, Ordering::Relaxed);
        format!("{policy}:{subject}")
    }

    /// An associated function: companions are associated functions.
    #[cached(ttl = "5m")]
    async fn default_for(tenant: String) -> String {
        format!("default:{tenant}")
    }

    /// A private method gets companions when asked.
    #[cached(ttl = "5m", skip(self), companions = true)]
    async fn private_rule(&self, id: u64) -> u64 {
        self.computed.fetch_add(1, Ordering::Relaxed);
        id * 2
    }
}

#[tokio::test]
async fn methods_and_associated_functions_have_companions() {
    let cache = Cache::builder().service("methods").build().unwrap();
    let _default = cache.set_runtime_default().unwrap();
    let service = PolicyService::new();

    assert_eq!(service.decide(1, "alice".into()).await, "1:alice");
    assert_eq!(service.decide(1, "alice".into()).await, "1:alice");
    assert_eq!(service.computed(), 1);

    // `<fn>_uncached` runs the body without the cache.
    assert_eq!(service.decide_uncached(1, "alice".into()).await, "1:alice");
    assert_eq!(service.computed(), 2);

    // One entry, through the method's own companion.
    service.invalidate_decide(1, "alice".into()).await.unwrap();
    service.decide(1, "alice".into()).await;
    assert_eq!(service.computed(), 3, "recomputed after invalidate_decide");

    // Every entry of the method.
    service.invalidate_all_decide().await.unwrap();
    service.decide(1, "alice".into()).await;
    assert_eq!(service.computed(), 4);

    // Warming through the method's companion: the next call hits.
    let report = cache
        .warmer()
        .await
        .load([service.warm_entry_decide(2, "bob".into(), "warmed".to_owned())])
        .await
        .unwrap();
    assert_eq!(report.written, 1, "{report:?}");
    assert_eq!(service.decide(2, "bob".into()).await, "warmed");
    assert_eq!(service.computed(), 4);

    // Associated functions: companions are associated functions.
    assert_eq!(
        PolicyService::default_for("acme".into()).await,
        "default:acme"
    );
    PolicyService::invalidate_default_for("acme".into())
        .await
        .unwrap();
    assert_eq!(
        PolicyService::default_for_uncached("acme".into()).await,
        "default:acme"
    );

    assert_eq!(service.private_rule(4).await, 8);
    service.invalidate_private_rule(4).await.unwrap();
    assert_eq!(service.private_rule(4).await, 8);
    assert_eq!(service.computed(), 6);
}

/// A native `async fn` in a trait.
trait Directory {
    async fn member(&self, group: u64) -> bool;
}

struct Ldap {
    looked_up: AtomicU64,
}

// The companions go into `impl Ldap` beside this impl.
#[cached_companions]
impl Directory for Ldap {
    #[cached(ttl = "5m", skip(self))]
    async fn member(&self, group: u64) -> bool {
        self.looked_up.fetch_add(1, Ordering::Relaxed);
        group.is_multiple_of(2)
    }
}

/// The same trait shape through `#[async_trait]`, `Send` and `?Send`.
#[async_trait]
trait Rules: Send + Sync {
    async fn count(&self, tenant: String) -> u64;
    async fn traced(&self, tenant: String) -> u64;
    async fn traced_inside(&self, tenant: String) -> u64;
    async fn update(&self, tenant: String, fail: bool) -> Result<(), String>;
}

#[async_trait(?Send)]
trait LocalRules {
    async fn local_count(&self, tenant: String) -> u64;
}

struct Db {
    queries: AtomicU64,
}

impl Db {
    fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

// Above `#[async_trait]`, so it sees the `async fn`s as written.
#[cached_companions(pub(crate))]
#[async_trait]
impl Rules for Db {
    #[cached(ttl = "5m", skip(self), tags = ["tenant.{tenant}"])]
    async fn count(&self, tenant: String) -> u64 {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tenant.len() as u64
    }

    // `#[tracing::instrument]` above `#[cached]`…
    #[tracing::instrument(skip(self))]
    #[cached(ttl = "5m", skip(self), companions = false)]
    async fn traced(&self, tenant: String) -> u64 {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tenant.len() as u64 + 100
    }

    // …and below it.
    #[cached(ttl = "5m", skip(self))]
    #[tracing::instrument(skip(self))]
    async fn traced_inside(&self, tenant: String) -> u64 {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tenant.len() as u64 + 200
    }

    #[invalidates("tenant.{tenant}")]
    async fn update(&self, tenant: String, fail: bool) -> Result<(), String> {
        if fail {
            return Err(format!("{tenant}: refused"));
        }
        Ok(())
    }
}

#[async_trait(?Send)]
impl LocalRules for Db {
    #[cached(ttl = "5m", skip(self))]
    async fn local_count(&self, tenant: String) -> u64 {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tenant.len() as u64 + 300
    }
}

#[tokio::test]
async fn trait_impls_native_and_async_trait() {
    let cache = Cache::builder().service("traits").build().unwrap();
    let _default = cache.set_runtime_default().unwrap();

    let ldap = Ldap {
        looked_up: AtomicU64::new(0),
    };
    assert!(ldap.member(2).await);
    assert!(ldap.member(2).await);
    assert_eq!(ldap.looked_up.load(Ordering::Relaxed), 1);

    let db = Db {
        queries: AtomicU64::new(0),
    };
    // Through `dyn Rules`, as services hold them.
    let rules: &dyn Rules = &db;
    for _ in 0..2 {
        assert_eq!(rules.count("acme".into()).await, 4);
        assert_eq!(rules.traced("acme".into()).await, 104);
        assert_eq!(rules.traced_inside("acme".into()).await, 204);
        assert_eq!(db.local_count("acme".into()).await, 304);
    }
    assert_eq!(db.queries(), 4, "each method computed once");

    // A write that fails publishes nothing; one that succeeds drops the
    // tenant's entries.
    assert!(rules.update("acme".into(), true).await.is_err());
    rules.count("acme".into()).await;
    assert_eq!(db.queries(), 4);
    rules.update("acme".into(), false).await.unwrap();
    rules.count("acme".into()).await;
    assert_eq!(db.queries(), 5, "recomputed after the write's invalidation");
    // Other entries are untouched.
    rules.traced("acme".into()).await;
    assert_eq!(db.queries(), 5);

    let names: Vec<String> = cache
        .stats()
        .await
        .functions
        .iter()
        .map(|f| f.function.to_string())
        .collect();
    for expected in ["<Ldap as Directory>::member", "<Db as Rules>::count"] {
        assert!(
            names.iter().any(|n| n.ends_with(expected)),
            "{expected} in {names:?}"
        );
    }
}

#[cached(ttl = "5m", tags = ["tenant.{tenant}"])]
async fn plan(tenant: String) -> String {
    format!("plan:{tenant}")
}

#[cached(ttl = "5m")]
async fn may_fail(id: u64) -> Result<u64, String> {
    if id == 0 {
        Err("zero".to_owned())
    } else {
        Ok(id)
    }
}

#[tokio::test]
async fn with_outcome_tells_how_a_call_was_answered() {
    let cache = Cache::builder().service("outcomes").build().unwrap();
    let _default = cache.set_runtime_default().unwrap();

    assert_eq!(
        with_outcome(plan("acme".into())).await,
        ("plan:acme".to_owned(), Some(Outcome::Computed))
    );
    assert_eq!(
        with_outcome(plan("acme".into())).await.1,
        Some(Outcome::L1Hit)
    );
    assert_eq!(with_outcome(may_fail(0)).await.1, Some(Outcome::Computed));
    assert_eq!(
        with_outcome(may_fail(0)).await.1,
        Some(Outcome::Computed),
        "errors are not cached"
    );
    assert_eq!(with_outcome(async { 1 }).await, (1, None));

    let disabled = Cache::disabled();
    assert_eq!(
        with_outcome(disabled.scope(plan("acme".into()))).await.1,
        Some(Outcome::Bypassed)
    );
}

/// A write that changes the database and then fails (a partial batch) still
/// publishes with `when = "always"`: readers do not keep what it may have
/// changed until the TTL. The default publishes on `Ok` only.
#[invalidates("tenant.{tenant}", when = "always")]
async fn import_batch(tenant: String, fail_halfway: bool) -> Result<u32, String> {
    if fail_halfway {
        return Err(format!("{tenant}: row 7 refused after 6 were written"));
    }
    Ok(10)
}

#[invalidates("tenant.{tenant}")]
async fn import_batch_ok_only(tenant: String, fail_halfway: bool) -> Result<u32, String> {
    if fail_halfway {
        return Err(format!("{tenant}: refused"));
    }
    Ok(10)
}

#[tokio::test]
async fn a_write_that_fails_halfway_still_invalidates_when_always() {
    let cache = Cache::builder().service("always").build().unwrap();
    let _default = cache.set_runtime_default().unwrap();
    let computed =
        || async { with_outcome(plan("acme".into())).await.1 == Some(Outcome::Computed) };
    assert!(computed().await);
    assert!(!computed().await, "cached");
    assert!(import_batch_ok_only("acme".into(), true).await.is_err());
    assert!(!computed().await, "an Err publishes nothing by default");
    assert!(import_batch("acme".into(), true).await.is_err());
    assert!(
        computed().await,
        "`when = \"always\"` published the Err too"
    );
    assert_eq!(import_batch("acme".into(), false).await, Ok(10));
    assert!(computed().await, "and the Ok");
}

static RATES_COMPUTED: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = "5m", tags = ["tenant.{tenant}"])]
pub async fn exchange_rate(tenant: String) -> u64 {
    RATES_COMPUTED.fetch_add(1, Ordering::Relaxed) + 100
}

/// `refresh_<fn>` recomputes without reading, stores what it computed, and
/// returns it: the next call is a hit on the new value (as the `cached`
/// crate's refresh and FusionCache's skip-read). Generated beside methods
/// too.
#[tokio::test]
async fn refresh_recomputes_stores_and_returns() {
    let cache = Cache::builder().service("refresh").build().unwrap();
    let _default = cache.set_runtime_default().unwrap();
    let first = exchange_rate("acme".into()).await;
    assert_eq!(exchange_rate("acme".into()).await, first, "a hit");
    let (refreshed, outcome) = with_outcome(refresh_exchange_rate("acme".into())).await;
    assert_eq!(refreshed, first + 1, "recomputed");
    assert_eq!(outcome, Some(Outcome::Computed));
    assert_eq!(
        with_outcome(exchange_rate("acme".into())).await,
        (refreshed, Some(Outcome::L1Hit)),
        "the refreshed value was stored"
    );
    // Its tags came with it: the tenant's invalidation drops it.
    cache.invalidate("tenant.acme").await.unwrap();
    assert_eq!(exchange_rate("acme".into()).await, first + 2);

    let service = PolicyService::new();
    assert_eq!(service.decide(9, "bob".into()).await, "9:bob");
    assert_eq!(service.refresh_decide(9, "bob".into()).await, "9:bob");
    assert_eq!(service.decide(9, "bob".into()).await, "9:bob");
    assert_eq!(service.computed(), 2, "one call, one refresh, one hit");
}

/// A generic impl: each instantiation is a function instance of its own,
/// and its companions reach that one only.
trait Quota {
    async fn quota(&self, tenant: u32) -> u64;
}

trait Backend {
    const BASE: u64;
}

struct Pg;
impl Backend for Pg {
    const BASE: u64 = 1_000;
}

struct Mysql;
impl Backend for Mysql {
    const BASE: u64 = 2_000;
}

struct Store<B> {
    reads: AtomicU64,
    _backend: std::marker::PhantomData<B>,
}

impl<B> Store<B> {
    fn new() -> Self {
        Store {
            reads: AtomicU64::new(0),
            _backend: std::marker::PhantomData,
        }
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

#[cached_companions]
impl<B: Backend + Sync> Quota for Store<B> {
    #[cached(ttl = "5m", skip(self))]
    async fn quota(&self, tenant: u32) -> u64 {
        self.reads.fetch_add(1, Ordering::Relaxed);
        B::BASE + u64::from(tenant)
    }
}

#[tokio::test]
async fn trait_impls_get_companions_beside_them() {
    let cache = Cache::builder()
        .service("trait-companions")
        .build()
        .unwrap();
    let _default = cache.set_runtime_default().unwrap();

    // Native `async fn` in a trait.
    let ldap = Ldap {
        looked_up: AtomicU64::new(0),
    };
    let looked_up = || ldap.looked_up.load(Ordering::Relaxed);
    assert!(ldap.member(2).await);
    assert!(ldap.member(2).await);
    assert_eq!(looked_up(), 1);
    ldap.invalidate_member(2).await.unwrap();
    assert!(ldap.member(2).await);
    assert_eq!(
        looked_up(),
        2,
        "the entry companion reached the method's entry"
    );
    assert!(ldap.refresh_member(2).await);
    assert_eq!(looked_up(), 3, "refresh computes without reading");
    assert!(ldap.member(2).await);
    assert_eq!(looked_up(), 3, "and stores what the method then finds");
    assert!(ldap.member_uncached(2).await);
    assert_eq!(looked_up(), 4);
    ldap.invalidate_all_member().await.unwrap();
    assert!(ldap.member(2).await);
    assert_eq!(looked_up(), 5, "every entry of the method invalidated");

    // `#[async_trait]`: per-entry invalidation, and warming an entry the
    // method then finds.
    let db = Db {
        queries: AtomicU64::new(0),
    };
    assert_eq!(db.count("acme".into()).await, 4);
    db.invalidate_count("acme".into()).await.unwrap();
    assert_eq!(db.count("acme".into()).await, 4);
    assert_eq!(db.queries(), 2);
    let report = cache
        .warmer()
        .await
        .load([db.warm_entry_count("zeta".into(), 999u64)])
        .await
        .unwrap();
    assert_eq!(report.written, 1, "{report:?}");
    assert_eq!(db.count("zeta".into()).await, 999, "the warmed entry");
    assert_eq!(db.queries(), 2);

    // A generic impl: the companions of one instantiation leave the other's
    // entries alone.
    let (pg, mysql) = (Store::<Pg>::new(), Store::<Mysql>::new());
    assert_eq!(pg.quota(7).await, 1_007);
    assert_eq!(mysql.quota(7).await, 2_007);
    pg.invalidate_quota(7).await.unwrap();
    assert_eq!(pg.quota(7).await, 1_007);
    assert_eq!(mysql.quota(7).await, 2_007);
    assert_eq!((pg.reads(), mysql.reads()), (2, 1));
}

/// A trait with an associated type in the method's signature: beside the
/// impl, the companions name it through the trait.
trait Catalog {
    type Item;
    async fn item(&self, id: u32) -> Self::Item;
}

struct Books {
    reads: AtomicU64,
}

#[cached_companions]
impl Catalog for Books {
    type Item = String;

    #[cached(ttl = "5m", skip(self))]
    async fn item(&self, id: u32) -> Self::Item {
        self.reads.fetch_add(1, Ordering::Relaxed);
        format!("book {id}")
    }
}

#[tokio::test]
async fn companions_of_a_method_returning_an_associated_type() {
    let cache = Cache::builder().service("trait-assoc").build().unwrap();
    let _default = cache.set_runtime_default().unwrap();
    let books = Books {
        reads: AtomicU64::new(0),
    };
    assert_eq!(books.item(1).await, "book 1");
    assert_eq!(books.item(1).await, "book 1");
    books.invalidate_item(1).await.unwrap();
    assert_eq!(books.refresh_item(1).await, "book 1");
    assert_eq!(books.item(1).await, "book 1");
    assert_eq!(
        books.reads.load(Ordering::Relaxed),
        2,
        "one read, one refresh"
    );
}
