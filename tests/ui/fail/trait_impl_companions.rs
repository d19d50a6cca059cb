use acgs_cache::cached;

pub trait Rules {
    fn count(tenant: u32) -> impl std::future::Future<Output = usize> + Send;
}

pub struct RuleStore;

// An associated function without a receiver gets companions by default; a
// trait impl cannot hold them, and the first error names the ways out
// (`#[cached_companions]` on the impl, or `companions = false`).
impl Rules for RuleStore {
    #[cached(ttl = "governance_rules")]
    async fn count(tenant: u32) -> usize {
        tenant as usize
    }
}

fn main() {}
