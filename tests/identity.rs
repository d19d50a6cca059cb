//! Entry identity: a call never receives a value that belongs to another
//! function, type or instantiation — associated functions of two types,
//! instances of a generic impl, instantiations of a generic function, the
//! same name in two modules — in L1, in L2, and across processes.

use acgs_cache_harness as support;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

use acgs_cache::{cached, Cache};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use support::RedisServer;

fn l1_only() -> Cache {
    Cache::builder().service("identity").build().unwrap()
}

fn with_redis(server: &RedisServer, l1: bool) -> Cache {
    let builder = Cache::builder().service("identity").redis_url(server.url());
    let builder = if l1 { builder } else { builder.disable_l1() };
    builder.build().unwrap()
}

// 1. Associated functions of two types, in one module.
pub struct Users;
pub struct Orders;

impl Users {
    #[cached(ttl = "5m", companions = false)]
    pub async fn find(id: u64) -> String {
        format!("user #{id}")
    }

    /// The same, with companions: they become associated functions.
    #[cached(ttl = "5m")]
    pub async fn named(id: u64) -> String {
        format!("user name #{id}")
    }
}

impl Orders {
    #[cached(ttl = "5m", companions = false)]
    pub async fn find(id: u64) -> String {
        format!("order #{id}")
    }

    #[cached(ttl = "5m")]
    pub async fn named(id: u64) -> String {
        format!("order name #{id}")
    }
}

#[tokio::test]
async fn associated_functions_of_two_types_never_share_entries() {
    let cache = l1_only();
    cache
        .scope(async {
            assert_eq!(Users::find(1).await, "user #1");
            assert_eq!(Orders::find(1).await, "order #1");
            assert_eq!(Users::find(1).await, "user #1");
            assert_eq!(Orders::find(1).await, "order #1");
            assert_eq!(Users::named(1).await, "user name #1");
            assert_eq!(Orders::named(1).await, "order name #1");
            // The companions reach their own type's entries only.
            Orders::invalidate_all_named().await.unwrap();
            assert_eq!(Users::named(1).await, "user name #1");
        })
        .await;
    let stats = cache.stats().await;
    for name in [
        "Users::find",
        "Orders::find",
        "Users::named",
        "Orders::named",
    ] {
        assert!(
            stats.function(name).is_some(),
            "no stats row {name}: {stats:?}"
        );
    }
    assert_eq!(stats.function("Users::find").unwrap().l1_hits, 1);
    assert_eq!(stats.function("Orders::find").unwrap().l1_hits, 1);
    assert_eq!(
        stats.function("Users::named").unwrap().l1_hits,
        1,
        "Orders' invalidate_all left Users' entries alone"
    );
}

// 2. A generic impl: each instance of `Service<D>` has its own entries,
// receiver or not.
pub trait Store: Send + Sync + 'static {
    const NAME: &'static str;
}
pub struct Pg;
pub struct Mem;
impl Store for Pg {
    const NAME: &'static str = "pg";
}
impl Store for Mem {
    const NAME: &'static str = "mem";
}

pub struct Service<D>(PhantomData<D>);

impl<D: Store> Service<D> {
    #[cached(ttl = "5m", companions = false)]
    pub async fn assoc(id: u64) -> String {
        format!("{} #{id}", D::NAME)
    }

    #[cached(ttl = "5m", skip(self))]
    pub async fn method(&self, id: u64) -> String {
        format!("{} method #{id}", D::NAME)
    }
}

#[tokio::test]
async fn instances_of_a_generic_impl_never_share_entries() {
    let cache = l1_only();
    cache
        .scope(async {
            assert_eq!(Service::<Pg>::assoc(1).await, "pg #1");
            assert_eq!(Service::<Mem>::assoc(1).await, "mem #1");
            assert_eq!(Service::<Pg>::assoc(1).await, "pg #1");
            let (pg, mem) = (Service::<Pg>(PhantomData), Service::<Mem>(PhantomData));
            assert_eq!(pg.method(2).await, "pg method #2");
            assert_eq!(mem.method(2).await, "mem method #2");
            // Companions of a method take the receiver too.
            pg.invalidate_method(2).await.unwrap();
            assert_eq!(mem.method(2).await, "mem method #2");
        })
        .await;
    let stats = cache.stats().await;
    assert_eq!(stats.function("Service<Pg>::assoc").unwrap().l1_hits, 1);
    assert_eq!(stats.function("Service<Mem>::assoc").unwrap().misses, 1);
    assert_eq!(stats.function("Service<Mem>::method").unwrap().l1_hits, 1);
}

// 3. A generic function whose key does not name the type: the two value
// types have the same postcard layout, so only the identity keeps them apart.
pub trait Loadable: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    fn load(id: u64) -> Self;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub balance_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithdrawalLimit {
    pub max_cents: u64,
}

impl Loadable for Account {
    fn load(id: u64) -> Self {
        Account {
            balance_cents: id * 100_000,
        }
    }
}

impl Loadable for WithdrawalLimit {
    fn load(id: u64) -> Self {
        WithdrawalLimit { max_cents: id }
    }
}

static LOADS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "5m", key = id)]
pub async fn load<T: Loadable>(id: u64) -> T {
    LOADS.fetch_add(1, Ordering::SeqCst);
    T::load(id)
}

#[tokio::test]
async fn instantiations_of_a_generic_function_never_share_entries_in_l1() {
    let cache = l1_only();
    cache
        .scope(async {
            assert_eq!(load::<Account>(42).await, Account::load(42));
            assert_eq!(load::<WithdrawalLimit>(42).await, WithdrawalLimit::load(42));
            assert_eq!(load::<Account>(42).await, Account::load(42));
        })
        .await;
    let stats = cache.stats().await;
    assert_eq!(stats.function("load<Account>").unwrap().l1_hits, 1);
    assert_eq!(stats.function("load<WithdrawalLimit>").unwrap().misses, 1);
}

#[tokio::test]
async fn instantiations_of_a_generic_function_never_share_entries_in_l2() {
    let server = RedisServer::start();
    let writer = with_redis(&server, false);
    let reader = with_redis(&server, false);
    assert_eq!(writer.scope(load::<Account>(42)).await, Account::load(42));
    assert_eq!(
        reader.scope(load::<WithdrawalLimit>(42)).await,
        WithdrawalLimit::load(42),
        "another instantiation's bytes were decoded"
    );
    assert_eq!(reader.scope(load::<Account>(42)).await, Account::load(42));
    let stats = reader.stats().await;
    assert_eq!(stats.function("load<WithdrawalLimit>").unwrap().l2_hits, 0);
    assert_eq!(stats.function("load<Account>").unwrap().l2_hits, 1);
    let keys = server.keys("acgs:identity:*");
    assert_eq!(keys.len(), 2, "{keys:?}");
}

/// A child process of this test binary: computes `load::<Account>(7)` into
/// the Redis named by the environment, and does nothing when run as a test.
#[tokio::test]
async fn child_process_writes_one_instantiation() {
    let Ok(url) = std::env::var("ACGS_IDENTITY_CHILD_REDIS") else {
        return;
    };
    let cache = Cache::builder()
        .service("identity")
        .redis_url(url)
        .disable_l1()
        .build()
        .unwrap();
    cache.connect().await.unwrap();
    assert_eq!(cache.scope(load::<Account>(7)).await, Account::load(7));
    assert_eq!(
        cache
            .stats()
            .await
            .function("load<Account>")
            .unwrap()
            .misses,
        1
    );
}

#[tokio::test]
async fn two_processes_holding_different_instantiations_share_only_their_own() {
    let server = RedisServer::start();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_writes_one_instantiation",
            "--nocapture",
        ])
        .env("ACGS_IDENTITY_CHILD_REDIS", server.url())
        .status()
        .unwrap();
    assert!(status.success());
    let here = with_redis(&server, false);
    here.connect().await.unwrap();
    assert_eq!(
        here.scope(load::<WithdrawalLimit>(7)).await,
        WithdrawalLimit::load(7)
    );
    assert_eq!(here.scope(load::<Account>(7)).await, Account::load(7));
    let stats = here.stats().await;
    assert_eq!(
        stats.function("load<Account>").unwrap().l2_hits,
        1,
        "the other process's entry of the same instance is shared"
    );
    assert_eq!(stats.function("load<WithdrawalLimit>").unwrap().l2_hits, 0);
}

// 4. The same function name in two modules.
mod users {
    use acgs_cache::cached;

    #[cached(ttl = "5m")]
    pub async fn get(id: u64) -> String {
        format!("user {id}")
    }
}

mod orders {
    use acgs_cache::cached;

    #[cached(ttl = "5m")]
    pub async fn get(id: u64) -> String {
        format!("order {id}")
    }
}

#[tokio::test]
async fn one_name_in_two_modules_has_two_rows_and_two_scopes() {
    let cache = l1_only();
    cache
        .scope(async {
            assert_eq!(users::get(1).await, "user 1");
            assert_eq!(orders::get(1).await, "order 1");
            orders::invalidate_all_get().await.unwrap();
            assert_eq!(users::get(1).await, "user 1");
            assert_eq!(orders::get(1).await, "order 1");
        })
        .await;
    let stats = cache.stats().await;
    let users = stats.function("users::get").unwrap();
    let orders = stats.function("orders::get").unwrap();
    assert_eq!(
        (users.misses, users.l1_hits),
        (1, 1),
        "users::get kept its entry"
    );
    assert_eq!((orders.misses, orders.l1_hits), (2, 0));
    cache.invalidate_function("users::get").await.unwrap();
    cache
        .scope(async { assert_eq!(users::get(1).await, "user 1") })
        .await;
    assert_eq!(
        cache.stats().await.function("users::get").unwrap().misses,
        2
    );
}

#[tokio::test]
async fn keys_name_the_instance_and_scan_finds_them() {
    let server = RedisServer::start();
    let cache = with_redis(&server, true);
    cache.scope(Service::<Pg>::assoc(3)).await;
    cache.scope(users::get(3)).await;
    let keys = cache
        .stored_keys("identity", "Service<Pg>::assoc", 10)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let keys = cache
        .stored_keys("identity", "users::get", 10)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("acgs:identity:users::get:"), "{keys:?}");
}

// 6. Tags from any value.
static QUOTAS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "5m", tags = ["tenant.{tenant}"])]
async fn quota(tenant: String) -> u32 {
    QUOTAS.fetch_add(1, Ordering::SeqCst)
}

#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub tenant: String,
    pub path: String,
}

#[cached(ttl = "5m", tags = ["tenant.{req.tenant}", "path.{req.path}"])]
async fn respond(req: Request) -> String {
    format!("{} {}", req.tenant, req.path)
}

const TENANTS: [&str; 11] = [
    "acme corp",
    "a@b.example",
    "x:y",
    "eu",
    "eu.acme",
    "*",
    "%41",
    "\t",
    "ünïcødé 漢字",
    "",
    "governance.*",
];

async fn computations() -> Vec<u32> {
    let mut seen = Vec::new();
    for tenant in TENANTS {
        seen.push(quota(tenant.to_owned()).await);
    }
    seen
}

async fn tags_from_any_value_drop_exactly_their_entries(cache: &Cache) {
    cache
        .scope(async {
            let first = computations().await;
            assert_eq!(computations().await, first, "every entry is a hit");
            for (i, tenant) in TENANTS.iter().enumerate() {
                cache.invalidate(&format!("tenant.{tenant}")).await.unwrap();
                let now = computations().await;
                for (j, (before, after)) in first.iter().zip(&now).enumerate() {
                    if j <= i {
                        assert_ne!(before, after, "tenant {:?} was not dropped", TENANTS[j]);
                    } else {
                        assert_eq!(
                            before, after,
                            "dropping {tenant:?} also dropped {:?}",
                            TENANTS[j]
                        );
                    }
                }
            }
            // Field access in a template.
            let req = Request {
                tenant: "acme corp".into(),
                path: "/a b".into(),
            };
            respond(req.clone()).await;
            respond(req.clone()).await;
            cache.invalidate("path./a b").await.unwrap();
            respond(req).await;
        })
        .await;
    let stats = cache.stats().await;
    let respond = stats.function("respond").unwrap();
    assert_eq!((respond.misses, respond.l1_hits + respond.l2_hits), (2, 1));
}

#[tokio::test]
async fn tags_from_any_value_l1_only() {
    tags_from_any_value_drop_exactly_their_entries(&l1_only()).await;
}

#[tokio::test]
async fn tags_from_any_value_with_redis() {
    let server = RedisServer::start();
    let cache = with_redis(&server, false);
    cache.connect().await.unwrap();
    tags_from_any_value_drop_exactly_their_entries(&cache).await;
}

#[tokio::test]
async fn events_are_names_not_patterns_and_bad_ones_are_refused() {
    let cache = l1_only();
    for bad in ["", "tenant:acme", "acme corp", ".x"] {
        assert!(
            matches!(
                cache.invalidate(bad).await,
                Err(acgs_cache::Error::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
}

// 7. Return shapes by type, not by spelling.
#[derive(Debug, PartialEq)]
pub struct NotSerde;
type ApiResult<T> = Result<T, NotSerde>;
type MaybeName = Option<String>;

static API_CALLS: AtomicU32 = AtomicU32::new(0);

#[cached(ttl = "5m")]
async fn api(id: u64) -> ApiResult<String> {
    API_CALLS.fetch_add(1, Ordering::SeqCst);
    if id == 0 {
        Err(NotSerde)
    } else {
        Ok(format!("api {id}"))
    }
}

#[cached(ttl = "5m")]
async fn read_file(id: u64) -> std::io::Result<u64> {
    API_CALLS.fetch_add(1, Ordering::SeqCst);
    if id == 0 {
        Err(std::io::Error::other("no such file"))
    } else {
        Ok(id)
    }
}

#[cached(ttl = "5m", negative_ttl = "30s")]
async fn maybe_name(id: u64) -> MaybeName {
    API_CALLS.fetch_add(1, Ordering::SeqCst);
    (id != 0).then(|| format!("name {id}"))
}

#[tokio::test]
async fn result_and_option_aliases_cache_by_type() {
    let cache = l1_only();
    cache
        .scope(async {
            let before = API_CALLS.load(Ordering::SeqCst);
            assert_eq!(api(0).await, Err(NotSerde));
            assert_eq!(api(0).await, Err(NotSerde));
            assert_eq!(api(1).await, Ok("api 1".into()));
            assert_eq!(api(1).await, Ok("api 1".into()));
            assert!(read_file(0).await.is_err());
            assert!(read_file(0).await.is_err());
            assert_eq!(read_file(2).await.unwrap(), 2);
            assert_eq!(read_file(2).await.unwrap(), 2);
            assert_eq!(maybe_name(0).await, None);
            assert_eq!(maybe_name(0).await, None, "None cached by negative_ttl");
            assert_eq!(API_CALLS.load(Ordering::SeqCst) - before, 7);
        })
        .await;
}
