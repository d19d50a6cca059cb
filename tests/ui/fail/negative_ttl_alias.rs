use acgs_cache::cached;

type ApiResult<T> = Result<T, String>;

#[cached(ttl = "user_sessions", negative_ttl = "30s")]
async fn session(id: u64) -> ApiResult<String> {
    Ok(id.to_string())
}

fn main() {}
