use std::time::Duration;

use acgs_cache::{cached, Cache, TtlPolicy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
}

#[derive(Debug)]
pub struct DbError;

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("db error")
    }
}

type Result<T> = std::result::Result<T, DbError>;

pub const RISK: TtlPolicy = TtlPolicy::new("risk", Duration::from_secs(120)).with_jitter_percent(10);

fn parse(raw: &str) -> std::result::Result<u64, DbError> {
    raw.parse().map_err(|_| DbError)
}

/// Doc comments and other attributes are kept.
#[cached(ttl = "policy_decision", invalidate_on = ["governance.*", "policy.updated"])]
#[allow(clippy::needless_lifetimes)]
pub async fn evaluate<'a>(policy_id: u64, subject: &'a str) -> Result<Decision> {
    // `?` and early `return` work inside the body.
    let threshold = parse("3")?;
    if subject.is_empty() {
        return Err(DbError);
    }
    Ok(Decision { allow: policy_id > threshold })
}

#[cached(ttl = RISK)]
async fn risk(subject: String) -> Option<u8> {
    subject.len().try_into().ok()
}

#[cached(ttl = "1h30m", negative_ttl = "10s", codec = "json", name = "rules_v2", version = 2)]
async fn rules(tenant: u32) -> Option<Vec<String>> {
    (tenant > 0).then(|| vec![format!("rule-{tenant}")])
}

static PINNED: std::sync::LazyLock<Cache> = std::sync::LazyLock::new(|| Cache::builder().build().unwrap());

#[cached(ttl = "90s", cache = PINNED)]
async fn pinned(n: u8) -> u8 {
    n
}

/// Generated names do not shadow the user's, and the user's do not shadow ours.
#[allow(non_snake_case)]
#[cached(ttl = "api_responses")]
async fn shadowing(__acgs_key: u32, __ACGS_SITE: u32, key: u32, site: u32, cache: u32) -> u32 {
    fn __acgs_instance() -> u32 {
        1
    }
    __acgs_key + __ACGS_SITE + key + site + cache + __acgs_instance()
}

/// `mut` bindings and a generic function with an explicit key.
#[cached(ttl = "api_responses", key = (&kind, std::any::type_name::<T>()))]
async fn generic_with_key<T: Default + Serialize + Send>(mut kind: String, _marker: std::marker::PhantomData<T>) -> String {
    kind.push('!');
    kind
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert!(evaluate(4, "a").await.unwrap().allow);
    assert!(evaluate(4, "").await.is_err());
    assert_eq!(risk("abc".into()).await, Some(3));
    assert_eq!(rules(0).await, None);
    assert_eq!(pinned(3).await, 3);
    assert_eq!(shadowing(1, 2, 3, 4, 5).await, 16);
    assert_eq!(generic_with_key::<u8>("a".into(), std::marker::PhantomData).await, "a!");
    invalidation::use_them().await.unwrap();
}

mod invalidation {
    use acgs_cache::cached;

    /// Tags from arguments (formatted only on a miss), a lease shorter than
    /// the cache's, and the generated companions.
    #[cached(ttl = "compliance_checks", tags = ["tenant.{tenant}", "region.{region}"], max_staleness = "250ms")]
    pub async fn compliance(tenant: String, region: u16, trace_id: u64) -> bool {
        let _ = trace_id;
        tenant.len() > usize::from(region)
    }

    /// The opt-out: L1 for its TTL while the log is unheard.
    #[cached(ttl = "compliance_checks", max_staleness = "l1_ttl")]
    pub async fn opted_out(id: u8) -> u8 {
        id
    }

    #[cached(ttl = "compliance_checks", companions = false)]
    pub async fn no_companions(id: u8) -> u8 {
        id
    }

    pub async fn use_them() -> Result<(), acgs_cache::Error> {
        assert!(compliance("acme".into(), 1, 9).await);
        invalidate_compliance("acme".into(), 1, 9).await?;
        invalidate_all_compliance().await?;
        acgs_cache::invalidate("tenant.acme").await?;
        assert_eq!(no_companions(1).await, 1);
        Ok(())
    }
}
