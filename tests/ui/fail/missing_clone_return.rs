use acgs_cache::cached;

#[derive(serde::Serialize, serde::Deserialize)]
struct Decision {
    allow: bool,
}

#[cached(ttl = "policy_decision")]
async fn evaluate(policy_id: u64) -> Result<Decision, String> {
    Ok(Decision { allow: policy_id > 3 })
}

fn main() {}
