use std::sync::Arc;

use acgs_cache::cached;
use serde::Serialize;

pub struct PolicyService {
    pub db: Vec<u64>,
}

impl PolicyService {
    #[cached(ttl = "policy_decision", skip(self))]
    pub async fn decision(&self, policy_id: u64) -> bool {
        self.db.contains(&policy_id)
    }

    #[cached(ttl = "policy_decision", skip(self))]
    pub async fn shared(self: Arc<Self>, policy_id: u64) -> bool {
        self.db.contains(&policy_id)
    }

    #[cached(ttl = "policy_decision", skip(self))]
    pub async fn with_lifetime<'a>(&'a self, subject: &'a str) -> Option<String> {
        self.db.first().map(|id| format!("{subject}{id}"))
    }
}

#[derive(Serialize)]
pub struct Tenant(u32);

impl Tenant {
    /// The receiver is part of the key.
    #[cached(ttl = "api_responses")]
    pub async fn quota(&self) -> u32 {
        self.0 * 10
    }
}

pub trait Rules {
    fn count(&self, tenant: u32) -> impl std::future::Future<Output = usize> + Send;
}

pub struct RuleStore;

impl Rules for RuleStore {
    // A trait impl holds only the trait's items: no companions there.
    #[cached(ttl = "governance_rules", skip(self), companions = false)]
    async fn count(&self, tenant: u32) -> usize {
        tenant as usize
    }
}

pub struct Repo<T>(std::marker::PhantomData<T>);

impl<T: Send + Sync + 'static> Repo<T> {
    /// Methods of generic types are keyed by the concrete `Self` type.
    #[cached(ttl = "governance_rules", skip(self))]
    pub async fn size(&self, id: u32) -> u32 {
        id + std::mem::size_of::<T>() as u32
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let service = Arc::new(PolicyService { db: vec![1, 2] });
    assert!(service.decision(1).await);
    assert!(Arc::clone(&service).shared(2).await);
    assert_eq!(service.with_lifetime("p").await.as_deref(), Some("p1"));
    assert_eq!(Tenant(2).quota().await, 20);
    assert_eq!(RuleStore.count(3).await, 3);
    assert_eq!(Repo::<u64>(std::marker::PhantomData).size(1).await, 9);
    assert_eq!(Repo::<u8>(std::marker::PhantomData).size(1).await, 2);
}
