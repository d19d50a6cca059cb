use acgs_cache::cached;

#[cached(ttl = "policy_decision")]
async fn label(id: u64) -> &'static str {
    if id > 3 { "high" } else { "low" }
}

#[cached(ttl = "policy_decision")]
async fn maybe(id: u64) -> Option<&'static str> {
    (id > 3).then_some("high")
}

fn main() {}
