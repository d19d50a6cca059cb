use acgs_cache::cached;

#[cached(ttl = "policy_decisions")]
async fn evaluate(policy_id: u64) -> bool {
    policy_id > 3
}

#[cached(ttl = "forever_and_ever")]
async fn eternal(policy_id: u64) -> bool {
    policy_id > 3
}

fn main() {}
