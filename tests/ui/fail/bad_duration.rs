use acgs_cache::cached;

#[cached(ttl = "5 fortnights")]
async fn evaluate(policy_id: u64) -> bool {
    policy_id > 3
}

#[cached(ttl = "0s")]
async fn never(policy_id: u64) -> bool {
    policy_id > 3
}

fn main() {}
