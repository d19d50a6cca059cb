use acgs_cache::cached;

#[cached(ttl = "policy_decision")]
async fn lookup<T: serde::Serialize>(id: T) -> String {
    let _ = id;
    String::new()
}

fn main() {}
