use acgs_cache::cached;

struct DbPool;

#[cached(ttl = "policy_decision")]
async fn evaluate(pool: &DbPool, policy_id: u64) -> bool {
    let _ = pool;
    policy_id > 3
}

fn main() {}
