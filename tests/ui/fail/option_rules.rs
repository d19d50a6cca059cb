use acgs_cache::cached;

#[cached(ttl = "user_sessions", negative_ttl = "30s")]
async fn session(id: u64) -> Result<String, String> {
    Ok(id.to_string())
}

#[cached(ttl = "user_sessions", skip(tenant))]
async fn profile(id: u64) -> String {
    id.to_string()
}

#[cached(ttl = "user_sessions")]
async fn nothing(id: u64) {
    let _ = id;
}

fn main() {}
