use acgs_cache::cached;

#[cached(ttl = "policy_decision", tags = ["tenant.{tenant}", "policy.{policy_id}", "bad.{policy_id"])]
async fn evaluate(policy_id: u64, tenant_id: u32) -> bool {
    policy_id > u64::from(tenant_id)
}

fn main() {}
