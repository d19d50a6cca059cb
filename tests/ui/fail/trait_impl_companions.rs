use acgs_cache::cached;

pub trait Rules {
    fn count(&self, tenant: u32) -> impl std::future::Future<Output = usize> + Send;
}

pub struct RuleStore;

impl Rules for RuleStore {
    #[cached(ttl = "governance_rules", skip(self))]
    async fn count(&self, tenant: u32) -> usize {
        tenant as usize
    }
}

fn main() {}
