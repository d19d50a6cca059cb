use acgs_cache::cached;

#[cached(ttl = "policy_decision")]
fn evaluate(policy_id: u64) -> bool {
    policy_id > 3
}

fn main() {
    // The function is kept despite the error, so this still resolves.
    let _ = evaluate(1);
}
