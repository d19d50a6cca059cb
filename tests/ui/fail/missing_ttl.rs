use acgs_cache::cached;

#[cached(invalidate_on = "governance.*")]
async fn evaluate(policy_id: u64) -> bool {
    policy_id > 3
}

fn main() {}
