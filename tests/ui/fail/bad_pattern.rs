use acgs_cache::cached;

#[cached(ttl = "policy_decision", invalidate_on = ["governance.*.rules", "governance..updated", "*", "rules/updated"])]
async fn evaluate(policy_id: u64) -> bool {
    policy_id > 3
}

fn main() {}
