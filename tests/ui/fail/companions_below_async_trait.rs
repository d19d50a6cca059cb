use acgs_cache::{cached, cached_companions};
use async_trait::async_trait;

#[async_trait]
pub trait Rules {
    async fn count(&self, tenant: u32) -> usize;
}

pub struct RuleStore;

// Below `#[async_trait]`, it would see rewritten methods: the error says
// which order works.
#[async_trait]
#[cached_companions]
impl Rules for RuleStore {
    #[cached(ttl = "governance_rules", skip(self))]
    async fn count(&self, tenant: u32) -> usize {
        tenant as usize
    }
}

fn main() {}
