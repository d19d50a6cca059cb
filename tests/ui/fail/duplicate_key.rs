use acgs_cache::cached;

#[cached(ttl = "policy_decision", ttl = "5m")]
async fn evaluate(policy_id: u64) -> bool {
    policy_id > 3
}

fn main() {}
