use acgs_cache::cached;

#[cached(ttl = "policy_decision", max_staleness = "eventual")]
async fn not_a_duration(policy_id: u64) -> bool {
    policy_id > 3
}

#[cached(ttl = "policy_decision", max_staleness = "5ms")]
async fn too_short(policy_id: u64) -> bool {
    policy_id > 3
}

#[cached(ttl = "policy_decision", consistency = "strict")]
async fn replaced_argument(policy_id: u64) -> bool {
    policy_id > 3
}

fn main() {}
