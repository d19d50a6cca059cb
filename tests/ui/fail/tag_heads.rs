use acgs_cache::cached;

#[cached(ttl = "policy_decision", tags = ["tenant:{tenant}", "{tenant}", "tenant{tenant}", "tenant.{req.id}"])]
async fn evaluate(tenant: String, policy_id: u64) -> bool {
    !tenant.is_empty() && policy_id > 3
}

fn main() {}
