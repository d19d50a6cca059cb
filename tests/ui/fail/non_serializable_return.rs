use acgs_cache::cached;

#[derive(Clone)]
struct Decision {
    allow: bool,
}

#[cached(ttl = "policy_decision")]
async fn evaluate(policy_id: u64) -> Decision {
    Decision { allow: policy_id > 3 }
}

fn main() {}
