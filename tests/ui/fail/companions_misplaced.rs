use acgs_cache::{cached, cached_companions};

pub struct RuleStore;

// An inherent impl: `#[cached]` writes the companions beside the method.
#[cached_companions]
impl RuleStore {
    #[cached(ttl = "governance_rules")]
    async fn count(tenant: u32) -> usize {
        tenant as usize
    }
}

fn main() {}
