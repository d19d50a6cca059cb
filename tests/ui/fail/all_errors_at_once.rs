use acgs_cache::cached;

#[cached(ttl = "polcy_decision", invalidate_on = "governance.", codec = "xml", bogus = 1)]
fn evaluate(policy_id: &mut u64) -> bool {
    *policy_id > 3
}

fn main() {}
